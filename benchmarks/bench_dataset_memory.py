"""Peak memory and time of loading a face set for training (``facelab.train.dataset.FaceDataset``).

The set is built as in ``bench_sort.py``: real aligned faces from the two shipped clips, repeated with
small augmentations until there are N. Each resolution is loaded in a fresh process, so each peak
resident set size is that load's own; the line also prints what ``set_bytes`` predicts.

    PYTHONPATH=src python benchmarks/bench_dataset_memory.py [--n 4800] [--size 512] [--resolutions 128,256]
    PYTHONPATH=src python benchmarks/bench_dataset_memory.py --faces WS/data_src/aligned   # your own set
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("FACELAB_QUIET", "1")

HERE = Path(__file__).resolve().parent

CHILD = """
import resource, sys, time
from pathlib import Path
from facelab.train.dataset import FaceDataset, set_bytes
paths = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix in ('.jpg', '.png'))
r = int(sys.argv[2])
t = time.perf_counter()
d = FaceDataset(paths, r, 'full')
secs = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{len(d):6d} faces at {r:3d} px: {secs:6.1f} s, detail copies {'kept' if d.detail is not None else 'none'}, "
      f"peak RSS {rss:7.0f} MiB (the arrays: {set_bytes(len(d), r, d.detail is not None) / 2**20:.0f} MiB)")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4800)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--resolutions", default="128,256")
    ap.add_argument("--faces", type=Path, help="an aligned folder to load instead of the built set")
    args = ap.parse_args()
    tmp = None
    try:
        folder = args.faces
        if folder is None:
            sys.path.insert(0, str(HERE))
            from bench_sort import augmented_set, base_faces

            from facelab.workspace import Workspace

            tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
            ws = Workspace(tmp / "set")
            augmented_set(base_faces(tmp, args.size), ws, args.n)
            folder = ws.aligned_dir("src")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(HERE.parent / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for r in args.resolutions.split(","):
            subprocess.run([sys.executable, "-c", CHILD, str(folder), r], check=True, env=env)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
