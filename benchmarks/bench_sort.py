"""Seconds and peak memory of every `facelab sort` method on a 2,000-face set.

The set is built from real faces: aligned faces extracted from the two shipped
clips (src_clm_cap13.mp4, dst_grid_bbaf2n.mpg), each repeated with small
augmentations (shift by a few pixels, horizontal flip with mirrored landmarks,
brightness gain) until there are N faces.

    PYTHONPATH=src python benchmarks/bench_sort.py [--n 2000] [--size 512] [--methods blur,final]

Peak memory: ``tracemalloc`` peak (Python and numpy allocations) of the sort
itself, and the process's maximum resident set size so far.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("FACELAB_QUIET", "1")

import av
import cv2
import numpy as np

from facelab import align
from facelab.faceimage import read_face, write_face
from facelab.faceset import features
from facelab.faceset.pose import mirror_landmarks
from facelab.faceset.sort import METHODS
from facelab.stages import extract, sort
from facelab.workspace import Workspace

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "facelab" / "sample_data"


def base_faces(root: Path, size: int) -> list[Path]:
    ws = Workspace(root / "base")
    ws.create()
    for clip, step, limit in (("src_clm_cap13.mp4", 12, 60), ("dst_grid_bbaf2n.mpg", 2, 30)):
        with av.open(str(SAMPLES / clip)) as c:
            kept = 0
            for i, f in enumerate(c.decode(video=0)):
                if i % step == 0 and kept < limit:
                    cv2.imwrite(str(ws.frames_dir("src") / f"{clip[:3]}{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
                    kept += 1
    extract.run(ws, "src", extract.ExtractSettings(size=size, workers=2))
    return ws.aligned_paths("src")


def augmented_set(base: list[Path], ws: Workspace, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    out = ws.aligned_dir("src")
    out.mkdir(parents=True, exist_ok=True)
    faces = [read_face(p) for p in base]
    for k in range(n):
        image, rec = faces[k % len(faces)]
        size = image.shape[0]
        dx, dy = rng.integers(-4, 5, 2)
        shift = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
        img = cv2.warpAffine(image, shift, (size, size), borderMode=cv2.BORDER_REPLICATE)
        lm = align.transform_points(rec.landmarks, shift)
        mat = np.vstack([shift, [0, 0, 1]]) @ np.vstack([rec.image_to_face_mat, [0, 0, 1]])
        if rng.random() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
            lm = mirror_landmarks(lm, size)
            mat = np.array([[-1, 0, size - 1], [0, 1, 0], [0, 0, 1]], np.float64) @ mat
        img = np.clip(img.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        name = f"{Path(rec.source_filename).stem}_{rec.face_index}_{k:05d}.jpg"
        write_face(out / name, img, rec.replace(landmarks=lm, image_to_face_mat=mat[:2], source_filename=f"{k:05d}.png"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sort_"))
    try:
        t = time.perf_counter()
        base = base_faces(tmp, args.size)
        master = Workspace(tmp / "master")
        augmented_set(base, master, args.n)
        print(f"set: {args.n} faces of {args.size} px from {len(base)} real faces ({time.perf_counter() - t:.1f} s to build)")
        print(f"{'method':18s} {'seconds':>8s} {'peak MiB':>9s} {'maxrss MiB':>10s}  result")
        for method in args.methods.split(","):
            ws = Workspace(tmp / "run")
            if ws.root.exists():
                shutil.rmtree(ws.root)
            shutil.copytree(master.root, ws.root)
            features.clear_cache()
            kwargs = {"reference": base[0]} if method == "identity" else {}
            settings = sort.SortSettings(by=method, workers=args.workers, target=min(2000, args.n // 2) if method == "final" else 2000, **kwargs)
            tracemalloc.start()
            t = time.perf_counter()
            summary = sort.run(ws, "src", settings)
            secs = time.perf_counter() - t
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{method:18s} {secs:8.2f} {peak / 2**20:9.1f} {rss:10.0f}  kept {summary.counts['kept']}, trash {summary.counts['to trash']}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
