"""Interactive merger latency: one 1280x720 frame merged again per settings change (facelab.merge.session).

Usage::

    PYTHONPATH=src python benchmarks/bench_merge_preview.py [--workspace WS] [--name quick] [--updates 20]

Without ``--workspace`` it builds one in a temporary folder: the shipped src clip's faces
(``facelab extract``), the first ``--frames`` frames of the shipped dst clip (GRID, 360x288)
scaled 2.5x to 900x720 and padded to 1280x720 (edge pixels repeated), extracted the same way,
and a ``quick`` model trained ``--iterations`` steps on them (the figures are about time,
not quality). With ``--workspace`` it uses that workspace's dst frames and ``model/<name>``.

The process is held to 2 CPUs (affinity where the machine has more; OpenCV 2 threads,
torch ``--torch-threads``, default 2), as the interactive merger's target machine. Printed, median and p90 ms
over ``--updates`` renders each:

- ``new frame``: a frame not shown before (decode, cut out, predict, compose, mark): scrubbing;
- ``back to a frame``: a frame still in the cache, same settings (compose, mark);
- ``option change``: the same frame, one blending or colour option changed per update
  (compose, mark), per mode and per colour transfer;
- drafts (``render(..., scale=...)``, :func:`facelab.merge.session.draft_scale`) of the seamless mode;
- the parts of a render (``Rendered.timings``) and the PNG the UI would send (``session.png``).

Target: an option change under 250 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "facelab" / "sample_data"
SIZE = (1280, 720)


def two_cores(torch_threads: int) -> str:
    """Hold this process to 2 CPUs, OpenCV to 2 threads and torch to ``torch_threads``; say what was done."""
    import torch

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > 2:
        os.sched_setaffinity(0, cpus[:2])
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(2)
    return (f"CPUs {sorted(os.sched_getaffinity(0)) if cpus else '?'} of {os.cpu_count()}, OpenCV 2 threads, "
            f"torch {torch_threads}")


def to_720p(frame: np.ndarray, zoom: float = 1.0) -> np.ndarray:
    """A 360x288 GRID frame scaled to 720 px high and padded (edge pixels repeated) to 1280x720; with ``zoom``
    > 1 only the middle 1/zoom of its height, about the speaker's face (a close-up: a bigger face to blend)."""
    if zoom > 1:
        h, w = frame.shape[:2]
        ch, cw = round(h / zoom), round(w / zoom)
        y0, x0 = min(max(round(0.45 * h - ch / 2), 0), h - ch), (w - cw) // 2
        frame = frame[y0:y0 + ch, x0:x0 + cw]
    h, w = frame.shape[:2]
    k = SIZE[1] / h
    big = cv2.resize(frame, (round(w * k), SIZE[1]), interpolation=cv2.INTER_CUBIC)
    left = (SIZE[0] - big.shape[1]) // 2
    return cv2.copyMakeBorder(big, 0, 0, left, SIZE[0] - big.shape[1] - left, cv2.BORDER_REPLICATE)


def build_workspace(root: Path, frames: int, iterations: int, marker, zoom: float = 1.0):
    """A workspace with src faces, ``frames`` 720p dst frames with their faces, and a trained quick model."""
    import av

    from facelab.stages import extract, train
    from facelab.workspace import Workspace

    ws = Workspace(root)
    ws.create()
    with av.open(str(SAMPLES / "src_clm_cap13.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 25 == 0 and i < 25 * 30:
                cv2.imwrite(str(ws.frames_dir("src") / f"{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
    with av.open(str(SAMPLES / "dst_grid_bbaf2n.mpg")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= frames:
                break
            cv2.imwrite(str(ws.frames_dir("dst") / f"{i + 1:05d}.png"), to_720p(f.to_ndarray(format="bgr24"), zoom))
    t = time.perf_counter()
    for side in ("src", "dst"):
        extract.run(ws, side, extract.ExtractSettings(size=128))
    print(f"extracted src and dst faces in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    train.run(ws, train.TrainSettings(model="quick", iterations=iterations, batch_size=8, device="cpu"),
              log=lambda _s: None, marker=marker)
    print(f"trained quick for {iterations} iterations in {time.perf_counter() - t:.0f} s", flush=True)
    return ws


def stats(ms: list[float]) -> str:
    q = np.percentile(ms, [50, 90])
    return f"median {q[0]:7.1f}  p90 {q[1]:7.1f}  (n={len(ms)})"


def option_changes(n: int) -> list[dict]:
    """``n`` single changes of blending options, as a user dragging the erode and blur sliders."""
    return [{"erode": (i * 7) % 60 - 20} if i % 2 else {"blur": (i * 11) % 80 - 20} for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="an existing workspace (dst frames, aligned dst faces, model/<name>)")
    ap.add_argument("--name", default="quick")
    ap.add_argument("--frames", type=int, default=24, help="dst frames to make when building a workspace")
    ap.add_argument("--iterations", type=int, default=40, help="training steps when building a workspace")
    ap.add_argument("--zoom", type=float, default=1.0, help="when building: crop the dst frames to 1/ZOOM of their "
                    "height about the face before scaling to 720p (2: a face twice as big)")
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--mask", default=None, help="the mask of every render (default: the merge's default); a "
                                                  "segmentation-* mask needs model/segmenter in --workspace")
    ap.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the built workspace (its path is printed)")
    args = ap.parse_args()

    print(two_cores(args.torch_threads) + f"; load average {os.getloadavg()[0]:.1f} (other processes share these CPUs)")
    from facelab.merge.compose import MergeSettings
    from facelab.merge.session import MergeSession, draft_scale
    from facelab.provenance import default_marker
    from facelab.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench_merge_preview_"))
    os.environ.setdefault("FACELAB_HOME", str(tmp / "home"))  # signing key for the PNGs: not the user's
    marker = default_marker()
    try:
        ws = Workspace(args.workspace) if args.workspace else build_workspace(tmp / "ws", args.frames, args.iterations, marker,
                                                                                args.zoom)
        t = time.perf_counter()
        session = MergeSession(ws, args.name, "cpu", marker=marker, cache_frames=8)
        print(f"session opened (model loaded, records read) in {(time.perf_counter() - t) * 1000:.0f} ms")
        with_faces = [n for n, faces in session.face_counts().items() if faces]
        fixed_mask = {"mask": args.mask} if args.mask else {}
        t = time.perf_counter()
        first = session.render(with_faces[0], MergeSettings(**fixed_mask))
        first_ms = (time.perf_counter() - t) * 1000
        box = cv2.boundingRect(first.mask)
        print(f"frame {first.image.shape[1]}x{first.image.shape[0]}, model {session.predictor.resolution} px, "
              f"{len(with_faces)} frames with faces, blend mask {box[2]}x{box[3]} px; first render {first_ms:.0f} ms")
        base = MergeSettings(**fixed_mask)
        parts: dict[str, list[float]] = {}

        def timed(frame: int, settings: MergeSettings, scale: float = 1.0) -> float:
            t = time.perf_counter()
            r = session.render(frame, settings, scale=scale)
            ms = (time.perf_counter() - t) * 1000
            for k, v in r.timings.items():
                parts.setdefault(k, []).append(v)
            return ms

        visited = (with_faces * 2)[1:args.updates + 1]
        new = [timed(n, base) for n in visited]  # frames not in the cache
        new_parts = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in parts.items())
        back_frames = visited[-3:]  # still in the cache
        back = [timed(back_frames[i % 3], base) for i in range(args.updates)]
        print(f"\nnew frame (scrub; decode + cut out + predict + compose + mark): {stats(new)}")
        print(f"  parts (median ms): {new_parts}")
        print(f"back to a cached frame (compose + mark):                          {stats(back)}")
        print("\noption change on the same frame (one erode/blur change per update: compose + mark)")
        frame = with_faces[len(with_faces) // 2]
        session.render(frame, base)
        rows = [("mode", m, {"mode": m}) for m in ("seamless", "overlay", "hist-match", "hist-match-bw", "raw-rgb")]
        rows += [("color", c, {"color": c, "mode": "overlay"}) for c in ("none", "rct-m", "rct", "lct-m", "mkl-m", "idt-m", "sot-m")]
        rows += [("effect", e, {e: v, "mode": "overlay"}) for e, v in (("sharpen", 40), ("bicubic_degrade", 50),
                                                                         ("degrade_color", 50), ("face_scale", 15),
                                                                         ("denoise_frame", 100))]
        worst = 0.0
        for kind, label, fixed in rows:
            parts.clear()
            ms = [timed(frame, MergeSettings(**{**fixed_mask, **fixed, **c})) for c in option_changes(args.updates)]
            worst = max(worst, float(np.percentile(ms, 50)))
            print(f"  {kind:6s} {label:14s} {stats(ms)}   compose {statistics.median(parts['compose']):6.1f}"
                  f"  mark {statistics.median(parts['mark']):5.1f}")
        exact = session.render(frame, base)
        print(f"\ndrafts of the default (seamless) while a slider moves; draft_scale picks {draft_scale(exact)}")
        for scale in (0.75, 0.5):
            ms = [timed(frame, MergeSettings(**fixed_mask, **c), scale) for c in option_changes(args.updates)]
            print(f"  scale {scale:4.2f}            {stats(ms)}")
        parts.clear()
        shown = session.render(frame, base, side_by_side=True)
        t = time.perf_counter()
        for _ in range(5):
            session.png(shown)
        png = (time.perf_counter() - t) * 200
        t = time.perf_counter()
        for _ in range(5):
            session.render(frame, MergeSettings(blur=5), side_by_side=True)
        sbs = (time.perf_counter() - t) * 200
        print(f"\nsession.png (encode, label, sign C2PA) of the merged frame: {png:.1f} ms; a render with the side-by-side: "
              f"{sbs:.1f} ms")
        print(f"slowest option change (median): {worst:.1f} ms; target < 250 ms")
        if args.keep and not args.workspace:
            print(f"workspace kept: {tmp / 'ws'} (use --workspace to reuse it)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
