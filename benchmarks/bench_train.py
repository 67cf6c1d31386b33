"""Benchmark: speed and memory of training the ``quick`` model on real faces.

Builds (once, cached) the demo's face sets from the shipped sample clips
(306 src faces, 75 dst faces, via facelab's own frames and extract steps). Then trains for a fixed number of
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

import numpy as np

def build_workspace(root: Path) -> Path:
    """The demo's face sets: frames and extract on the shipped sample clips (cached in ``root``)."""
    import shutil

    from facelab.stages import extract, frames
    from facelab.stages.demo import SAMPLE_DST, SAMPLE_SRC, SRC_FPS, sample_path
    from facelab.workspace import Workspace

    ws = Workspace(root)
    ws.create()
    for side, name in (("src", SAMPLE_SRC), ("dst", SAMPLE_DST)):
        if not any(ws.root.glob(f"data_{side}.*")):
            shutil.copyfile(sample_path(name), ws.root / f"data_{side}{Path(name).suffix}")
        frames.run(ws, side, frames.FramesSettings(fps=SRC_FPS if side == "src" else None))
        extract.run(ws, side)
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
