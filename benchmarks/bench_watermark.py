"""Watermark cost, invisibility and robustness, on real video.

Usage: ``PYTHONPATH=src python benchmarks/bench_watermark.py [--clips 40] [--keys 200]``

Printed:
- ``embed``: ms per frame at 1280x720 and 640x360 (cache warm, as in a merge run),
  with OpenCV's default threads and with one thread.
- ``psnr``: marked vs unmarked, on the first frame of every clip and at 1280x720.
- ``clips``: N 3-second clips cut evenly from the shipped sample videos and the
  videos of ``../shared/data/faces`` (when present). Each is marked, scaled to half
  size (alternately OpenCV INTER_AREA and FFmpeg's swscale), encoded with H.264
  CRF 23 (yuv420p), decoded by ``detect_video``: z per clip, detection rate, min z.
  The same pipeline without marking gives the null scores.
- ``null``: max |z| over the unmarked clips, every unmarked sample video file, every
  photo and frame in shared/data/faces; and the z of the unmarked clips under
  ``--keys`` random keys (the model the threshold's bound is derived from).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from facelab.media.video import iter_frames_between, probe
from facelab.provenance import watermark as wm

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "facelab" / "sample_data"
SHARED = ROOT.parent / "shared" / "data" / "faces"
VIDEOS = [SAMPLES / "src_clm_cap13.mp4", SAMPLES / "dst_grid_bbaf2n.mpg"] + sorted(
    p for p in SHARED.glob("*/video/*") if p.suffix in (".mp4", ".mov", ".mpg")
) + sorted(p for p in SHARED.glob("grid_av/*.mpg") if p.name != "bbaf2n.mpg")  # bbaf2n is the shipped clip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def reencode(frames: list[np.ndarray], out: Path, fps: float, mark: bool, swscale: bool) -> None:
    """Optionally mark, scale to half size and write H.264 CRF 23 yuv420p."""
    h, w = frames[0].shape[:2]
    h2, w2 = h // 2 // 2 * 2, w // 2 // 2 * 2
    with av.open(str(out), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=round(fps))
        s.width, s.height, s.pix_fmt = w2, h2, "yuv420p"
        s.options = {"crf": "23"}
        for i, f in enumerate(frames):
            if mark:
                f = wm.embed(f)
            if swscale:
                vf = av.VideoFrame.from_ndarray(f, format="bgr24").reformat(width=w2, height=h2, format="yuv420p")
            else:
                vf = av.VideoFrame.from_ndarray(cv2.resize(f, (w2, h2), interpolation=cv2.INTER_AREA), format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def clip_list(n: int) -> list[tuple[Path, float, float]]:
    """``n`` (video, start, fps) triples: 3-s windows spread over the videos in proportion to length."""
    infos = [(v, probe(v, count_frames=False)) for v in VIDEOS if v.exists()]
    # every video gets one clip; the rest go to the videos with room for more, by length
    lengths = {v: max(0.0, i.duration - 3.0) for v, i in infos}
    total = sum(lengths.values()) or 1.0
    slots = {v: 1 + int((n - len(infos)) * lengths[v] / total) for v, _ in infos}
    longest = max(lengths, key=lengths.get)
    slots[longest] += max(0, n - sum(slots.values()))
    out = []
    for v, info in infos:
        k = slots[v]
        span = max(0.0, info.duration - 3.0)
        out += [(v, span * (j + 0.5) / k if k > 1 else 0.0, float(info.fps)) for j in range(k)]
    return out[:n]


def bench_embed() -> None:
    for threads in (cv2.getNumThreads(), 1):
        cv2.setNumThreads(threads)
        for h, w in ((720, 1280), (360, 640)):
            frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            wm.embed(frame)  # fills the per-size cache, as the first frame of a merge does
            t = time.perf_counter()
            for _ in range(100):
                wm.embed(frame)
            print(f"embed {w}x{h}: {(time.perf_counter() - t) / 100 * 1e3:.2f} ms/frame ({threads} OpenCV threads)")
    cv2.setNumThreads(-1)


def random_key_null(cells: np.ndarray, keys: int, rng: np.random.Generator) -> np.ndarray:
    w = wm._weights(cells).astype(np.float64)
    s = rng.integers(0, 2, size=(keys, *w.shape)) * 2 - 1
    return (s * w).sum(axis=(1, 2)) / np.sqrt((w * w).sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--keys", type=int, default=200)
    args = ap.parse_args()
    print(f"THRESHOLD = {wm.THRESHOLD}; grid {wm.GRID} cells on the short side; amplitude {wm.AMPLITUDE}")
    bench_embed()

    clips = clip_list(args.clips)
    marked, null, psnrs, key_null = [], [], [], []
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (video, start, fps) in enumerate(clips):
            frames = [f for _, f in iter_frames_between(video, start, start + 3.0)]
            psnrs.append(psnr(wm.embed(frames[0]), frames[0]))
            swscale = i % 2 == 1
            out = Path(tmp) / f"c{i}.mp4"
            reencode(frames, out, fps, True, swscale)
            z = wm.detect_video(out).score
            reencode(frames, out, fps, False, swscale)
            zn = wm.detect_video(out).score
            ev = wm._Evidence()
            with av.open(str(out)) as c:
                for f in c.decode(video=0):
                    ev.add(f.to_ndarray(format="gray"))
            key_null.append(random_key_null((ev.total / ev.frames).astype(np.float32), args.keys, rng))
            marked.append(z)
            null.append(zn)
            h, w = frames[0].shape[:2]
            print(f"  clip {i:2d} {video.name:18s} t={start:6.1f}s {w}x{h}->{w // 2 // 2 * 2}x{h // 2 // 2 * 2} "
                  f"{len(frames):3d} fr {'swscale' if swscale else 'area   '}  marked z {z:6.2f}  unmarked z {zn:6.2f}")
    print(f"clips: {len(clips)} in {time.perf_counter() - t0:.0f} s")
    marked_a = np.array(marked)
    print(f"detection rate {np.mean(marked_a >= wm.THRESHOLD) * 100:.1f}% ; marked z min {marked_a.min():.2f} "
          f"median {np.median(marked_a):.2f} max {marked_a.max():.2f}")

    hd = cv2.resize(frames[0], (1280, 720), interpolation=cv2.INTER_CUBIC)
    print(f"psnr on clip first frames: min {min(psnrs):.2f} mean {np.mean(psnrs):.2f} dB; at 1280x720: {psnr(wm.embed(hd), hd):.2f} dB")

    files = [(v.name, wm.detect_video(v).score) for v in VIDEOS if v.exists()]
    images = [p for p in sorted([*SAMPLES.glob("*"), *SHARED.rglob("*")]) if p.suffix.lower() in IMAGE_SUFFIXES]
    files += [(p.name, wm.detect_image(p).score) for p in images]
    worst = max(files, key=lambda x: abs(x[1]))
    print(f"null: unmarked re-encoded clips max |z| {np.max(np.abs(null)):.2f} (max z {max(null):.2f}); "
          f"{len(files)} unmarked files ({len(images)} images) max |z| {abs(worst[1]):.2f} ({worst[0]})")
    kn = np.concatenate(key_null)
    print(f"null over random keys: {kn.size} scores, mean {kn.mean():.3f} std {kn.std():.3f} max {kn.max():.2f}; "
          f"Hoeffding bound P(z >= {wm.THRESHOLD}) <= {np.exp(-wm.THRESHOLD ** 2 / 2):.1e}")


if __name__ == "__main__":
    main()
