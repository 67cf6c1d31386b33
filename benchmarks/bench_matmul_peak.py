"""This machine's measured matrix-multiply peak, the yardstick for a model's achieved FLOP/s.

``torch.mm`` of large square matrices with torch's current thread count: the
best of a few runs per size, counting ``2 * n**3`` FLOPs per product. float32
is the reference for float32 training; bfloat16 (CPU: AMX/AVX512-BF16 where
the CPU has them; CUDA: tensor cores) and float16 are the references for
mixed precision.

On a shared machine other processes' load lowers the figure (on the 2-core
test machine: 306 GFLOP/s idle, 150-160 with another busy process), so
:func:`merge` keeps the best of several measurements (e.g. before and after a
benchmark run).

    PYTHONPATH=src python benchmarks/bench_matmul_peak.py [--sizes 2048,4096] [--repeats 3]
        [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--threads N]
"""

from __future__ import annotations

import argparse
import time


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096), repeats: int = 3, device: str = "cpu",
                dtype: str = "float32") -> dict:
    """Best ``torch.mm`` rate over ``sizes`` x ``repeats`` runs (after one warm-up product per size).

    Returns ``{"gflops": best, "by_size": {n: best GFLOP/s}, "device", "dtype", "threads"}``.
    """
    import torch

    dt = getattr(torch, dtype)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    by_size = {}
    for n in sizes:
        g = torch.Generator(device="cpu").manual_seed(n)
        a = torch.rand(n, n, generator=g).to(dev, dt)
        b = torch.rand(n, n, generator=g).to(dev, dt)
        out = torch.empty(n, n, device=dev, dtype=dt)
        torch.mm(a, b, out=out)  # warm-up: library init, thread pool, allocations
        sync()
        # on a GPU one product takes about a millisecond: time a few back to back
        inner = 1 if dev.type == "cpu" else 20
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b, out=out)
            sync()
            best = min(best, (time.perf_counter() - t) / inner)
        by_size[n] = 2 * n**3 / best / 1e9
        del a, b, out
    return {"gflops": max(by_size.values()), "by_size": by_size, "device": dev.type, "dtype": dtype,
            "threads": torch.get_num_threads()}


def merge(*results: dict) -> dict:
    """The best of several :func:`matmul_peak` results of the same device and dtype (size by size)."""
    by_size: dict = {}
    for r in results:
        for n, g in r["by_size"].items():
            by_size[n] = max(by_size.get(n, 0.0), g)
    return {**results[0], "gflops": max(by_size.values()), "by_size": by_size, "runs": [r["gflops"] for r in results]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2048,4096")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    r = matmul_peak(tuple(int(s) for s in args.sizes.split(",")), args.repeats, args.device, args.dtype)
    sizes = ", ".join(f"{n}: {g:.1f}" for n, g in r["by_size"].items())
    print(f"matmul peak ({r['device']}, {r['dtype']}, {r['threads']} threads): {r['gflops']:.1f} GFLOP/s  [{sizes}]")


if __name__ == "__main__":
    main()
