"""Frame-to-frame landmark shake with and without ``--accurate`` (and ``--smooth``).

Clip: person_a_franck/video/franck.mp4 from the shared test data (a still
talking head, 360x288, 24 fps). The script landmarks the first ``--scan``
frames once (fast pass), picks the ``--window``-frame stretch where the head
moves least, and prints for that stretch the mean frame-to-frame landmark
motion in pixels:

- ``all 68``: mean |p_t - p_(t-1)| over all 68 points (includes real mouth motion);
- ``rigid``: brows, nose and eye corners (17-35, 36, 39, 42, 45) after removing
  the best similarity transform between the two frames (global head motion),
  i.e. shake of the face shape that no head movement explains;
- ``centre``: motion of the landmarks' centroid (shake of the crop position).

    python benchmarks/bench_landmark_jitter.py [--scan 960] [--window 72]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from facelab import align
from facelab.detect import create_detector
from facelab.landmarks import create_landmarker
from facelab.landmarks import smooth as lm_smooth
from facelab.stages import extract

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "person_a_franck" / "video" / "franck.mp4"
RIGID = list(range(17, 36)) + [36, 39, 42, 45]


def decode(count: int) -> list[np.ndarray]:
    out = []
    with av.open(str(CLIP)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= count:
                break
            out.append(f.to_ndarray(format="bgr24"))
    return out


def landmarks(frames, detector, landmarker, accurate: bool) -> np.ndarray:
    s = extract.ExtractSettings(accurate=accurate, max_faces=1)
    return np.stack([extract.find_faces(f, detector, landmarker, s)[0].landmarks for f in frames]).astype(np.float64)


def jitter(lms: np.ndarray) -> tuple[float, float, float]:
    step = np.linalg.norm(np.diff(lms, axis=0), axis=2)
    resid = []
    for a, b in zip(lms[:-1], lms[1:]):
        m = align.umeyama(a[RIGID], b[RIGID])
        resid.append(np.linalg.norm(align.transform_points(a[RIGID], m) - b[RIGID], axis=1).mean())
    centre = np.linalg.norm(np.diff(lms.mean(1), axis=0), axis=1)
    return float(step.mean()), float(np.mean(resid)), float(centre.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scan", type=int, default=960, help="frames to search for a still stretch")
    ap.add_argument("--window", type=int, default=72, help="length of the still stretch in frames")
    args = ap.parse_args()
    if not CLIP.exists():
        raise SystemExit(f"needs {CLIP} (the shared test data)")
    detector, landmarker = create_detector("retinaface", threads=2), create_landmarker("dlib68")
    frames = decode(args.scan)
    fast = landmarks(frames, detector, landmarker, accurate=False)
    # head motion per frame: centroid of the rigid points, smoothed over 9 frames to ignore shake
    centre = np.convolve(fast[:, RIGID].mean(1)[:, 0], np.ones(9) / 9, "same"), np.convolve(fast[:, RIGID].mean(1)[:, 1], np.ones(9) / 9, "same")
    motion = np.hypot(np.diff(centre[0]), np.diff(centre[1]))
    w = args.window
    cost = [motion[i + 5 : i + w - 5].sum() for i in range(len(motion) - w)]
    start = int(np.argmin(cost))
    seg = frames[start : start + w]
    size = np.mean([lm_smooth.face_size(lm) for lm in fast[start : start + w]])
    print(f"clip {CLIP.name}: still stretch frames {start}..{start + w - 1}, face ~{size:.0f} px")
    print(f"{'landmarks':>22} {'all 68 px':>10} {'rigid px':>9} {'centre px':>10} {'ms/frame':>9}")
    rows = {}
    for label, acc in (("first pass only", False), ("accurate", True)):
        t = time.perf_counter()
        lms = landmarks(seg, detector, landmarker, acc)
        ms = (time.perf_counter() - t) / len(seg) * 1000
        rows[label] = lms
        print(f"{label:>22} " + " ".join(f"{v:>9.3f}" for v in jitter(lms)) + f" {ms:>9.1f}")
    sm = np.stack([f[0] for f in lm_smooth.smooth_landmarks([[lm] for lm in rows["accurate"]])])
    print(f"{'accurate + smooth':>22} " + " ".join(f"{v:>9.3f}" for v in jitter(sm)))
    a, b = jitter(rows["first pass only"]), jitter(rows["accurate"])
    print(f"accurate cuts shake by {100 * (1 - b[0] / a[0]):.0f}% (all 68), {100 * (1 - b[1] / a[1]):.0f}% (rigid), {100 * (1 - b[2] / a[2]):.0f}% (centre)")


if __name__ == "__main__":
    main()
