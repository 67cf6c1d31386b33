"""Benchmark: the segmenter's speed and memory on real faces (issue 13: apply >= 50 faces/s at 256 px on 2 cores).

Builds (once, cached) the demo's face sets (306 src + 75 dst real faces, 512 px full face, via facelab's own
frames and extract steps), then prints:

- network alone: faces/s of the inference runner (batch norm folded, channels-last) at the resolution;
- ``seg apply`` on the dst set: faces/s of the whole step (read, cut, segment, write the mask into each file),
  plain and with ``--flip-average``;
- training: ms/iteration at the batch size (augmentation + forward + backward + Adam), peak RSS.

    PYTHONPATH=src python benchmarks/bench_seg.py [--resolution 256] [--batch 8] [--iters 20] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ws", type=Path, default=Path("/tmp/facelab_bench_ws"))
    args = ap.parse_args()

    import torch

    from bench_train import build_workspace
    from facelab.seg.data import load_faces
    from facelab.seg.model import SegmenterRunner, create_segmenter
    from facelab.seg.training import SegLoopOptions, make_batch, make_optimizer, train_step
    from facelab.stages import seg
    from facelab.train.checkpoint import save_checkpoint
    from facelab.workspace import Workspace

    if args.threads:
        torch.set_num_threads(args.threads)
    ws = Workspace(build_workspace(args.ws))
    r = args.resolution
    torch.manual_seed(0)
    net = create_segmenter(resolution=r, face_type="full")
    n_params = sum(p.numel() for p in net.parameters())
    data = load_faces(ws.aligned_paths("src") + ws.aligned_paths("dst"), "full", r)
    print(f"segmenter {r} px: {n_params / 1e6:.2f} M parameters; {len(data)} real faces; {torch.get_num_threads()} threads")

    runner = SegmenterRunner(net)
    faces = data.faces[:64]
    runner.predict(faces[:16])
    t = time.perf_counter()
    runner.predict(faces)
    print(f"network alone: {len(faces) / (time.perf_counter() - t):.1f} faces/s")

    save_checkpoint(ws.model_dir("segmenter_bench"), net, None, {}, {"iteration": 0})
    seg.remove(ws, side="both")
    t = time.perf_counter()
    s = seg.apply(ws, side="both", name="segmenter_bench", device="cpu")
    el = time.perf_counter() - t
    print(f"seg apply (src and dst, {s.counts['applied']} faces of 512 px, load included): {s.counts['applied'] / el:.1f} faces/s")
    t = time.perf_counter()
    s = seg.apply(ws, side="both", name="segmenter_bench", device="cpu", flip_average=True)
    print(f"seg apply --flip-average: {s.counts['applied'] / (time.perf_counter() - t):.1f} faces/s")
    sizes = [len(__import__("facelab.faceimage", fromlist=["read_record"]).read_record(p).extra["seg_mask"]["png"])
             for p in ws.aligned_paths("dst")]
    print(f"stored mask (untrained net): {np.mean(sizes) / 1024:.1f} KB of base64 per face")
    seg.remove(ws, side="both")

    net.train()
    opt = make_optimizer(net)
    opts = SegLoopOptions(batch_size=args.batch)
    dev = torch.device("cpu")
    train_step(net, opt, *make_batch(data, opts, 0), dev)
    times, aug = [], []
    for i in range(1, args.iters + 1):
        t0 = time.perf_counter()
        batch = make_batch(data, opts, i)
        t1 = time.perf_counter()
        train_step(net, opt, *batch, dev)
        times.append(time.perf_counter() - t0)
        aug.append(t1 - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"training, batch {args.batch}: {np.median(times) * 1000:.0f} ms/iteration (augmentation "
          f"{np.median(aug) * 1000:.0f} ms of it), {args.batch / np.median(times):.1f} faces/s; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
