"""Decode and encode speed of facelab.media, and the `frames` step, on the shipped GRID clip.

    python benchmarks/bench_media.py [--repeat 3] [--sizes 360x288,1280x720,1920x1080] [--hdr hlg|pq]

At each size the GRID clip (75 frames, 360x288) is scaled up and stored as H.264 naming BT.709;
printed: decoding to BGR as players show it (the YUV matrix, rounding and chroma interpolation,
display matrix and pixel aspect applied), encoding BGR frames to H.264 (CRF 18, matrix named),
and the `frames` step (decode + PNG write) into a scratch workspace. Best of ``--repeat`` runs.
With ``--hdr``, the clip is 10-bit HEVC in HLG or PQ (the GRID frames mastered into HDR as BT.2408 maps
SDR), so decoding includes the tone mapping to SDR.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2

from facelab.media import hdr, iter_frames, write_video
from facelab.stages.demo import SAMPLE_DST, sample_path
from facelab.stages import frames as frames_stage
from facelab.workspace import Workspace


def make_clip(path: Path, size: tuple[int, int], frames: list) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = 1, 1
        for image in frames:
            frame = av.VideoFrame.from_ndarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), format="bgr24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            frame.colorspace, frame.color_range = 1, 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="360x288,1280x720,1920x1080")
    parser.add_argument("--hdr", choices=["hlg", "pq"], help="an HDR clip (10-bit HEVC) instead of SDR H.264")
    args = parser.parse_args()
    source = [image for _, _, image in iter_frames(sample_path(SAMPLE_DST))]
    n = len(source)
    print(f"{'size':>10} | {'decode':>18} | {'encode H.264':>18} | {'frames step':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for text in args.sizes.split(","):
            size = tuple(int(v) for v in text.split("x"))
            clip = tmp / f"clip_{text}.mp4"
            if args.hdr:
                hdr.write_hdr_clip([cv2.resize(im, size, interpolation=cv2.INTER_CUBIC) for im in source], clip,
                                   hdr.HLG if args.hdr == "hlg" else hdr.PQ)
            else:
                make_clip(clip, size, source)
            decoded = [image for _, _, image in iter_frames(clip)]
            t_dec = best(lambda: sum(1 for _ in iter_frames(clip)), args.repeat)
            t_enc = best(lambda: write_video(iter(decoded), tmp / "out.mp4", Fraction(25)), args.repeat)

            def frames_step() -> None:
                ws = Workspace(tmp / "ws")
                shutil.rmtree(ws.root, ignore_errors=True)
                ws.create()
                shutil.copy(clip, ws.root / "data_dst.mp4")
                frames_stage.run(ws, "dst")

            t_step = best(frames_step, args.repeat)
            cell = lambda t: f"{n / t:6.0f} fps {1000 * t / n:5.1f} ms"  # noqa: E731
            print(f"{text:>10} | {cell(t_dec):>18} | {cell(t_enc):>18} | {cell(t_step):>18}")


if __name__ == "__main__":
    main()
