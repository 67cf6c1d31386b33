"""Benchmark: the real trainer step of every registered model, on CPU (and on a GPU with mixed precision).

For each row prints ms/iteration (median of ``--iters`` timed steps after
``--warmup``), samples/s (src + dst faces per second), the FLOPs of one
training step per face (forward + backward, counted with
``torch.utils.flop_counter.FlopCounterMode``; the Adam update has no matrix
products and is left out), the achieved GFLOP/s and its share of this
machine's measured matrix-multiply peak (:mod:`bench_matmul_peak`), and the
peak memory of the process (``ru_maxrss``: every row runs in its own
subprocess, so the figure is that row's own; on a GPU also
``torch.cuda.max_memory_allocated``).

The step is the trainer's own: :func:`facelab.train.loop.train_step` with the
default loss (DSSIM + MSE + mask), on real augmented batches from
:class:`facelab.train.dataset.FaceDataset` (drawn by the trainer's
:func:`facelab.train.loop.batch_maker`; the time to make a batch is shown
apart, ``batch ms``), the model in channels_last, denormals flushed and
torch using every core, as ``facelab train`` does. The aligned faces come
from ``facelab extract`` run once on frames of the shipped sample clips
(cached in ``--workspace``).

Rows: every registered model at its default config and the trainer's default
batch size; ``quick`` at batch 4 (DeepFaceLab 2's Quick96 batch; quick's own
default is 64 px, the 96 px row is the same size as Quick96); and SAEHD's
128 px full-face ``df-ud`` / ``liae-ud`` with ae 256, e 64, d 64, mask 22
(SAEHD decoders have one residual block per level) at batch 8. Where
DeepFaceLab 2's own trainer was measured on a 2-core CPU, its figure and our
speed-up and memory ratio are shown.

    PYTHONPATH=src python benchmarks/bench_models.py [--rows quick,sae-df-ud] [--iters 6] [--warmup 2]
        [--device cpu|cuda|all] [--threads N] [--no-cpu-bf16] [--workspace DIR] [--json PATH]

``--one LABEL`` (used internally) measures one row in this process and
prints it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_WS = Path("/tmp/facelab_bench_models_ws")
FACES_PER_SIDE = 30

# DeepFaceLab 2's own trainer on a 2-core CPU: (what, seconds per iteration, GB of memory)
DFL = {
    "quick-b4": ("Quick96 b4", 1.0, 2.3),
    "quick96-b4": ("Quick96 b4", 1.0, 2.3),
    "sae-df-ud": ("SAEHD df-ud b8", 2.8, 4.0),
    "sae-liae-ud": ("SAEHD liae-ud b8", 3.8, 5.5),
}
SAEHD_128 = {"resolution": 128, "face_type": "full", "ae_dims": 256, "e_dims": 64, "d_dims": 64, "d_mask_dims": 22,
             "d_res_blocks": 1}


# also run with CPU bfloat16 autocast by default (--cpu-bf16); any row can be asked for with "+bf16"
BF16_ROWS = ("quick", "quick-b4", "quick96-b4", "sae-df-ud", "sae-liae-ud")


def rows() -> dict[str, tuple[str, dict, int]]:
    """``label -> (model name, config, batch size)`` in print order; a label ending in ``+bf16`` is the row
    without it, run under ``torch.autocast("cpu", torch.bfloat16)`` (what ``facelab train`` does by default on
    a CPU with native bfloat16)."""
    from facelab.models import list_models
    from facelab.train.loop import TrainOptions

    b = TrainOptions.batch_size
    out: dict[str, tuple[str, dict, int]] = {name: (name, {}, b) for name in list_models()}
    out["quick-b4"] = ("quick", {}, 4)
    out["quick96-b4"] = ("quick", {"resolution": 96}, 4)
    out["quick128"] = ("quick", {"resolution": 128}, b)
    out["quick128-double"] = ("quick", {"resolution": 128, "double_res": True}, b)  # body at 64 px, face at 128
    out["quick96-double"] = ("quick", {"resolution": 96, "double_res": True}, b)
    out["sae-df-ud"] = ("sae", {**SAEHD_128, "archi": "df-ud"}, 8)
    out["sae-liae-ud"] = ("sae", {**SAEHD_128, "archi": "liae-ud"}, 8)
    for label in list(out):
        out[label + "+bf16"] = out[label]
    return out


NAMES = {"sae-df-ud": "sae df-ud (SAEHD)", "sae-liae-ud": "sae liae-ud (SAEHD)"}


def display(label: str) -> str:
    base, _, bf16 = label.partition("+")
    return NAMES.get(base, base) + (" bf16" if bf16 else "")


# ---------------------------------------------------------------- faces


def build_workspace(root: Path) -> Path:
    """A workspace with up to 30 real aligned faces per side (full face, 256 px), cut by ``facelab extract``
    from frames of the shipped clips, as the tests' ``sample_faces_ws`` fixture does. Cached: a second call
    finds ``root/READY`` and returns at once."""
    if (root / "READY").exists():
        return root
    import av
    import cv2

    from facelab.stages import extract
    from facelab.workspace import Workspace

    samples = Path(__import__("facelab").__file__).parent / "sample_data"
    ws = Workspace(root)
    ws.create()
    for side, clip, step in (("src", samples / "src_clm_cap13.mp4", 25), ("dst", samples / "dst_grid_bbaf2n.mpg", 2)):
        with av.open(str(clip)) as c:
            kept = 0
            for i, f in enumerate(c.decode(video=0)):
                if i % step == 0 and kept < FACES_PER_SIDE:
                    cv2.imwrite(str(ws.frames_dir(side) / f"{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
                    kept += 1
        extract.run(ws, side, extract.ExtractSettings(size=256))
    (root / "READY").write_text("ok\n")
    return root


# ---------------------------------------------------------------- one row (in its own process)


def _rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def measure(label: str, device_name: str, iters: int, warmup: int, workspace: Path, seed: int = 0) -> dict:
    """Time the trainer's step for one row; returns its figures (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from facelab.models import create_model
    from facelab.train.augment import AugmentOptions
    from facelab.train.dataset import FaceDataset
    from facelab.train.loop import AmpState, TrainOptions, batch_maker, make_optimizer, train_step
    from facelab.workspace import Workspace

    name, config, batch = rows()[label]
    device = torch.device(device_name)
    torch.manual_seed(seed)
    torch.set_flush_denormal(True)  # as facelab.train.loop.train
    model = create_model(name, **config).to(device).to(memory_format=torch.channels_last)
    model.train()
    cfg = model.config
    opts = TrainOptions(batch_size=batch, amp=device.type == "cuda")
    optimizer = make_optimizer(model, opts)
    amp = AmpState.for_device(device, opts.amp)
    if label.endswith("+bf16"):
        if device.type != "cpu":
            raise ValueError("+bf16 rows are CPU rows (on CUDA every row runs with the trainer's --amp)")
        amp = AmpState.for_device(device, True)  # what `facelab train --amp` does on a CPU: bfloat16 autocast
        if amp is None:
            raise SystemExit("this CPU has no native bfloat16: run with --no-cpu-bf16")
    ws = Workspace(workspace)
    aug = AugmentOptions()
    src = FaceDataset(ws.aligned_paths("src"), cfg["resolution"], cfg["face_type"], aug)
    dst = FaceDataset(ws.aligned_paths("dst"), cfg["resolution"], cfg["face_type"], aug)
    make = batch_maker(src, dst, opts, seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(i: int) -> tuple[float, float, tuple]:
        t0 = time.perf_counter()
        sb, db = make(i)
        t1 = time.perf_counter()
        losses = train_step(model, optimizer, sb, db, device, losses=opts.losses, amp=amp)  # .item(): synchronises
        sync()
        return t1 - t0, time.perf_counter() - t1, losses

    for i in range(warmup):
        step(i)
    # FLOPs of one step (forward + backward; counted under the same autocast as the timed steps)
    sb, db = make(warmup)
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, sb, db, device, losses=opts.losses, amp=amp)
    flops_step = counter.get_total_flops()
    batch_s, step_s = [], []
    for i in range(warmup + 1, warmup + 1 + iters):
        b, s, losses = step(i)
        batch_s.append(b)
        step_s.append(s)
    sec = statistics.median(step_s)
    out = {
        "label": label, "model": name, "config": cfg, "batch": batch, "device": device.type,
        "amp": str(amp.dtype).replace("torch.", "") if amp is not None else None,
        "threads": torch.get_num_threads(), "resolution": cfg["resolution"], "face_type": cfg["face_type"],
        "params": sum(p.numel() for p in model.parameters()),
        "load_avg_1min": os.getloadavg()[0],
        "iters": iters, "ms_per_iter": sec * 1000, "ms_per_iter_min": min(step_s) * 1000,
        "ms_per_iter_all": [round(s * 1000, 1) for s in step_s],
        "batch_ms": statistics.median(batch_s) * 1000,
        "samples_per_s": 2 * batch / sec,
        "flops_per_step": flops_step, "gflop_per_sample": flops_step / (2 * batch) / 1e9,
        "achieved_gflops": flops_step / sec / 1e9,
        "peak_rss_mib": _rss_mib(), "last_losses": [float(x) for x in losses],
        "faces": [len(src), len(dst)],
    }
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ---------------------------------------------------------------- the table


def _fmt_row(r: dict) -> str:
    mem = f"{r['peak_rss_mib']:>7.0f}" + (f" {r['peak_cuda_mib']:>7.0f}" if "peak_cuda_mib" in r else "")
    arch = r["config"].get("archi", "")
    return (f"{display(r['label']):24} {arch:7} {r['resolution']:>4} {r['face_type']:5} {r['batch']:>2} {r['params'] / 1e6:>6.1f}"
            f" {r['ms_per_iter']:>7.0f} {r['ms_per_iter_min']:>6.0f} {r['batch_ms']:>5.0f} {r['samples_per_s']:>7.2f}"
            f" {r['gflop_per_sample']:>7.2f} {r['achieved_gflops']:>7.1f} {r['peak_share'] * 100:>5.1f}% {r['peak_ref']:>4}"
            f" {mem} {r['load_avg_1min']:>5.2f}")


def _header(cuda: bool) -> str:
    mem = f"{'RSS MiB':>7}" + (f" {'GPU MiB':>7}" if cuda else "")
    return (f"{'row':24} {'archi':7} {'res':>4} {'face':5} {'b':>2} {'Mpar':>6} {'ms/it':>7} {'min':>6} {'batch':>5}"
            f" {'samp/s':>7} {'GFLOP':>7} {'GFLOP/s':>7} {'%peak':>6} {'of':>4} {mem} {'load':>5}\n"
            f"{'':24} {'':7} {'':>4} {'':5} {'':>2} {'':>6} {'median':>7} {'':>6} {'ms':>5}"
            f" {'':>7} {'/sample':>7} {'achvd':>7}")


def _dfl_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        base = r["label"].split("+")[0]
        if base not in DFL or r["device"] != "cpu":
            continue
        what, s, gb = DFL[base]
        speed = s * 1000 / r["ms_per_iter"]
        dfl_mib = gb * 1e9 / 2**20  # GB read as 10^9 bytes: the smaller (stricter) reading
        mem = r["peak_rss_mib"] / dfl_mib
        ok = "MET" if speed >= 1.5 and mem < 1 else "not met"
        lines.append(f"  {display(r['label']):24} vs {what:17} {s:>4.1f} s {gb:>4.1f} GB ({dfl_mib:>5.0f} MiB): "
                     f"{speed:4.2f}x as fast, memory {mem * 100:3.0f}% of DFL's  [1.5x faster, less memory: {ok}]")
    return lines


def _run_child(label: str, device: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", label, "--device", device,
           "--iters", str(args.iters), "--warmup", str(args.warmup), "--workspace", str(args.workspace)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ)
    src_dir = str(HERE.parent / "src")
    env["PYTHONPATH"] = src_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{label} on {device} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _peaks(device: str, amp_dtype: str | None) -> dict:
    from bench_matmul_peak import matmul_peak

    if device == "cpu":
        return {dt: matmul_peak((2048, 4096), 3, "cpu", dt) for dt in ("float32",) + ((amp_dtype,) if amp_dtype else ())}
    return {dt: matmul_peak((4096, 8192), 3, "cuda", dt) for dt in ("float32", amp_dtype)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default=None, help="comma-separated row labels (default: all)")
    ap.add_argument("--iters", type=int, default=6, help="timed steps per row (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu, cuda or all (default: cpu, and cuda too when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core, as the trainer)")
    ap.add_argument("--cpu-bf16", action=argparse.BooleanOptionalAction, default=True,
                    help=f"on CPU also run {', '.join(BF16_ROWS)} under bfloat16 autocast (default: where the CPU has bf16)")
    ap.add_argument("--workspace", type=Path, default=DEFAULT_WS, help="aligned faces (built here once if missing)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)  # as facelab.stages.train on CPU
    if args.one:
        r = measure(args.one, args.device or "cpu", args.iters, args.warmup, args.workspace)
        print(json.dumps(r))
        return

    sys.path.insert(0, str(HERE))
    from bench_matmul_peak import merge

    devices = ["cpu", "cuda"] if args.device in (None, "all") else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            sys.exit("no CUDA device")
        devices.remove("cuda")
    all_rows = rows()
    labels = args.rows.split(",") if args.rows else [x for x in all_rows if "+" not in x]
    unknown = [x for x in labels if x not in all_rows]
    if unknown:
        sys.exit(f"unknown rows {unknown}; known: {', '.join(all_rows)}")
    cpu_bf16 = args.cpu_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()

    t = time.perf_counter()
    build_workspace(args.workspace)
    print(f"faces: {args.workspace} ready in {time.perf_counter() - t:.1f} s")
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores, "
          f"load average {load:.2f} at start; {args.iters} timed steps (median) after {args.warmup} warm-up")

    report: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "load_start": load, "devices": {}}
    for device in devices:
        if device == "cpu":
            amp_dt = "bfloat16" if cpu_bf16 else None
            labs = list(labels)
            if cpu_bf16 and not args.rows:
                labs += [x + "+bf16" for x in BF16_ROWS]
        else:
            amp_dt = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"  # what AmpState.for_device picks
            labs = [x for x in labels if "+" not in x]
        before = _peaks(device, amp_dt)
        print()
        print(f"== {device}" + (f" ({torch.cuda.get_device_name()}), mixed precision {amp_dt} (the trainer's --amp)"
                                if device == "cuda" else ""))
        results = []
        for label in labs:
            r = _run_child(label, device, args)
            results.append(r)
        # other processes' load lowers both figures: keep the best peak measured before and after
        peaks = {dt: merge(p, q) for (dt, p), q in zip(before.items(), _peaks(device, amp_dt).values())}
        for dt, p in peaks.items():
            sizes = ", ".join(f"{n}: {g:.0f}" for n, g in p["by_size"].items())
            runs = ", ".join(f"{g:.0f}" for g in p["runs"])
            print(f"matmul peak {dt:8}: {p['gflops']:7.1f} GFLOP/s  (torch.mm, best by size [n={sizes}]; before/after: {runs})")
        print(_header(device == "cuda"))
        for r in results:
            ref = "float32" if r["amp"] is None else r["amp"]
            r["peak_ref"] = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}[ref]
            r["peak_share"] = r["achieved_gflops"] / peaks[ref]["gflops"]
            print(_fmt_row(r), flush=True)
        print("ms/it: median (and min) train_step: forward, DSSIM+MSE+mask loss, backward, Adam; batch: making the src+dst"
              " batches (augmentation), not in ms/it; samp/s = 2*batch/step; GFLOP/sample = FLOPs of one step (fwd+bwd)"
              " per face; %peak = achieved GFLOP/s / matmul peak of that dtype; RSS = the row's process peak"
              " (ru_maxrss); load = 1-min load average after the row")
        busy = [display(r["label"]) for r in results if r["load_avg_1min"] > (os.cpu_count() or 1) + 0.5]
        if busy:
            print(f"WARNING: other processes were busy (1-min load average above {os.cpu_count()} cores + 0.5) during:"
                  f" {', '.join(busy)}; on a shared machine torch's threads then wait on each other and a step can take"
                  " several times longer: rerun those rows (--rows) when the machine is quiet")
        dfl = _dfl_lines(results)
        if dfl:
            print("DeepFaceLab 2 on a 2-core CPU:")
            print("\n".join(dfl))
        for r in results:
            if r["label"].startswith("sae-") and r["amp"] is None:
                ok = "MET" if r["peak_share"] >= 0.5 else "not met"
                print(f"  {display(r['label']):24} {r['peak_share'] * 100:5.1f}% of the float32 matmul peak"
                      f"  [>= 50 % for sae at 128 px: {ok}]")
        report["devices"][device] = {"matmul_peak": peaks, "rows": results}
    report["load_end"] = os.getloadavg()[0]
    print(f"\nload average at end {report['load_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
