"""Extraction speed and memory on real clips.

Prints frames/s of ``facelab extract`` (detection, landmarks, alignment to
512 px, JPEG writing) on the shipped src clip at its own size (400x300) and
scaled to 640x360 and 1280x720, with the second "accurate" landmark pass on
(the default) and off (``--no-accurate``), and the process's peak resident memory.

    python benchmarks/bench_extract.py [--frames 150] [--threads 0] [--sizes 1280x720]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import av
import cv2

from facelab.stages import extract
from facelab.stages.demo import SAMPLE_SRC, sample_path
from facelab.workspace import Workspace


def make_frames(ws: Workspace, size: tuple[int, int] | None, count: int) -> None:
    out = ws.frames_dir("src")
    out.mkdir(parents=True, exist_ok=True)
    with av.open(str(sample_path(SAMPLE_SRC))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= count:
                break
            img = f.to_ndarray(format="bgr24")
            if size:
                img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(out / f"{i + 1:05d}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--sizes", default="400x300,640x360,1280x720", help="comma-separated WxH list (400x300 is the clip's own size)")
    args = ap.parse_args()
    print(f"{'input':>12} {'accurate':>9} {'frames':>7} {'faces':>6} {'frames/s':>9}")
    for label in args.sizes.split(","):
        size = None if label == "400x300" else tuple(int(v) for v in label.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace(Path(tmp))
            ws.create()
            make_frames(ws, size, args.frames)
            for accurate in (True, False):
                t = time.perf_counter()
                s = extract.run(ws, "src", extract.ExtractSettings(workers=args.threads, accurate=accurate), force=True)
                dt = time.perf_counter() - t
                print(f"{label:>12} {'on' if accurate else 'off':>9} {int(s.counts['frames']):>7} {int(s.counts['faces']):>6} {s.counts['frames'] / dt:>9.1f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
