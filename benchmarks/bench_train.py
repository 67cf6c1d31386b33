"""Benchmark: speed and memory of training the ``quick`` model on real faces.

Builds (once, cached) a workspace of aligned faces cut with dlib from the
shared test videos: ~300 src faces (person_a_franck) and ~75 dst faces
(person_b_clm_webcam), the demo's sizes. Then trains for a fixed number of
iterations and prints ms/iteration, samples/s and peak RSS.

    PYTHONPATH=src python benchmarks/bench_train.py [--iters 60] [--batch 8]
        [--resolution 64] [--ws /tmp/facelab_bench_ws] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/faces")


def build_workspace(root: Path, n_src: int = 300, n_dst: int = 75, size: int = 512) -> Path:
    """Cut aligned faces from the shared videos into ``root`` (a facelab workspace)."""
    import dlib
    import face_recognition_models

    from facelab.align import face_matrix, transform_points, warp_image
    from facelab.faceimage import FaceRecord, write_face
    from facelab.workspace import Workspace

    ws = Workspace(root)
    jobs = {"src": (DATA / "person_a_franck/video/franck.mp4", n_src), "dst": (DATA / "person_b_clm_webcam/video/cap13_edit2.mp4", n_dst)}
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    ws.create()
    for side, (video, count) in jobs.items():
        out = ws.aligned_dir(side)
        if len(ws.aligned_paths(side)) >= count:
            continue
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        step = max(1, total // (count + 5))
        made, index = 0, 0
        while made < count:
            ok, frame = cap.read()
            if not ok:
                break
            index += 1
            if (index - 1) % step:
                continue
            rects = detector(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), 0)
            if not rects:
                continue
            r = rects[0]
            shape = predictor(frame, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            mat = face_matrix(lm, "full", size)
            face = warp_image(frame, mat, size)
            rec = FaceRecord(
                face_type="full", size=size, source_filename=f"{index:05d}.png", source_size=(frame.shape[1], frame.shape[0]),
                source_rect=(r.left(), r.top(), r.right(), r.bottom()), source_landmarks=lm.astype(np.float32),
                landmarks=transform_points(lm, mat), image_to_face_mat=mat,
            )
            write_face(out / f"{index:05d}_0.jpg", face, rec)
            made += 1
        cap.release()
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", default="/tmp/facelab_bench_ws")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import torch

    from facelab.models import create_model
    from facelab.models.quick import DEFAULT_CONFIG
    from facelab.train.dataset import FaceDataset
    from facelab.train.loop import TrainOptions, train_step, make_optimizer
    from facelab.workspace import Workspace

    t = time.perf_counter()
    ws = Workspace(build_workspace(Path(args.ws)))
    print(f"faces ready in {time.perf_counter() - t:.1f} s: src {len(ws.aligned_paths('src'))}, dst {len(ws.aligned_paths('dst'))}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as facelab.train.loop.train does
    config = dict(DEFAULT_CONFIG)
    if args.resolution:
        config["resolution"] = args.resolution
    opts = TrainOptions()
    batch = args.batch or opts.batch_size
    model = create_model("quick", **config).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, opts)
    t = time.perf_counter()
    src = FaceDataset(ws.aligned_paths("src"), config["resolution"], config["face_type"])
    dst = FaceDataset(ws.aligned_paths("dst"), config["resolution"], config["face_type"])
    print(f"datasets loaded in {time.perf_counter() - t:.1f} s")
    rng = np.random.default_rng(0)
    warm = 5
    for i in range(args.iters + warm):
        if i == warm:
            t = time.perf_counter()
        losses = train_step(model, opt, src.sample(batch, rng), dst.sample(batch, rng), torch.device("cpu"))
    dt = (time.perf_counter() - t) / args.iters
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"quick {config} params {params:.2f} M, batch {batch}, threads {torch.get_num_threads()}")
    print(f"{dt * 1000:.0f} ms/it  {2 * batch / dt:.1f} samples/s  peak RSS {rss:.0f} MiB  last losses src {losses[0]:.4f} dst {losses[1]:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
