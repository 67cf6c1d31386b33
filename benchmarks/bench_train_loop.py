"""Benchmark: ms/iteration of the whole training stage (``facelab.stages.train.run``) on the demo's faces.

``bench_train.py`` times ``train_step`` alone; this one times what a user's run
costs per iteration through the loop (:mod:`facelab.train.runner`): batches,
the step, loss history, the divergence guard, logging, and the final preview and
save, on a copy of the demo's face sets (built once by ``bench_train.py``'s
``build_workspace``). Compare two versions by running each alternately, since
this 2-core machine drifts by ~10 % from minute to minute.

    PYTHONPATH=src python benchmarks/bench_train_loop.py [--iters 300] [--ws /tmp/facelab_bench_ws]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import build_workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", default="/tmp/facelab_bench_ws")
    ap.add_argument("--iters", type=int, default=300)
    args = ap.parse_args()

    from facelab.provenance import default_marker
    from facelab.stages import train
    from facelab.workspace import Workspace

    src = build_workspace(Path(args.ws))
    tmp = Path(tempfile.mkdtemp())
    for side in ("src", "dst"):
        shutil.copytree(src / f"data_{side}" / "aligned", tmp / f"data_{side}" / "aligned")
    ws, marker = Workspace(tmp), default_marker(Path(tempfile.mkdtemp()))
    quiet = lambda s: None  # noqa: E731
    train.run(ws, train.TrainSettings(iterations=20, seed=7, device="cpu"), log=quiet, marker=marker)  # warm-up
    t0 = time.perf_counter()
    s = train.run(ws, train.TrainSettings(iterations=20 + args.iters, seed=7, device="cpu"), log=quiet, marker=marker)
    dt = time.perf_counter() - t0
    print(f"{args.iters} iterations through train.run: {dt * 1000 / args.iters:.1f} ms/it (incl. loading the faces, "
          f"the final preview and save); losses src {s.counts['src_loss']:.4f} dst {s.counts['dst_loss']:.4f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
