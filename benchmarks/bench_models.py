"""Benchmark: training cost of every registered model at its default size, on CPU.

For each model prints ms/iteration (forward + backward + Adam step on a batch
of ``--batch`` src and ``--batch`` dst faces, as the trainer does), samples/s
(src+dst faces per second), parameter count, forward FLOPs per face (counted
with ``torch.utils.flop_counter.FlopCounterMode``; a training step costs
about 3x that) and the process's peak RSS so far (it only grows, so run one
model per process with ``--models`` for a clean figure).

Random inputs are fine here: the cost of a dense network does not depend on
the pixel values.

    PYTHONPATH=src python benchmarks/bench_models.py [--models h64,df] [--iters 5] [--batch 4]
        [--lightweight] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def train_step(model, opt, src, dst) -> None:
    """One trainer-like step: both sides reconstructed, a pixel + mask loss, Adam update."""
    s, sm, d, dm = model(src, dst)
    loss = (s - src).square().mean() + (d - dst).square().mean() + sm.mean() + dm.mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=None, help="comma-separated names (default: all registered)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lightweight", action="store_true", help="build models that have the option as lightweight")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    import inspect

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from facelab.models import MODELS, create_model, list_models

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else list_models()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}+{args.batch}, {args.iters} timed iterations")
    print(f"{'model':10} {'res':>4} {'params':>11} {'GFLOP/face':>11} {'ms/it':>8} {'faces/s':>8} {'peak RSS MB':>12}")
    for name in names:
        torch.manual_seed(0)
        config = {"lightweight": True} if args.lightweight and "lightweight" in inspect.signature(MODELS.get(name)).parameters else {}
        model = create_model(name, **config)
        r = model.config["resolution"]
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.rand(1, 3, r, r), torch.rand(1, 3, r, r))
        gflop = counter.get_total_flops() / 2 / 1e9  # two faces went through
        opt = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.5, 0.999))
        src, dst = torch.rand(args.batch, 3, r, r), torch.rand(args.batch, 3, r, r)

        train_step(model, opt, src, dst)  # warm-up: allocations, Adam state
        t = time.perf_counter()
        for _ in range(args.iters):
            train_step(model, opt, src, dst)
        ms = (time.perf_counter() - t) / args.iters * 1000
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024 * 1024)
        label = name + ("-lw" if config else "")
        print(f"{label:10} {r:>4} {params:>11,} {gflop:>11.2f} {ms:>8.0f} {2 * args.batch * 1000 / ms:>8.1f} {rss_mb:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
