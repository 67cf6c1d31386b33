"""Time :func:`facelab.manual_faces.landmarks_in_box` on a 720p frame: is it fast enough to follow the mouse?

Frame: person_a_franck/stills/franck_01829.jpg (720x576, face ~290 px) centred
on a black 1280x720 canvas. The box starts on the detector's box and moves a
pixel per call, as under a moving mouse. Prints the median and 95th
percentile milliseconds per call, one pass and with ``accurate``.

    python benchmarks/bench_manual_box.py [--calls 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from facelab.detect import create_detector
from facelab.manual_faces import box_from_detection, default_landmarker, landmarks_in_box

STILL = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "person_a_franck" / "stills" / "franck_01829.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    still = cv2.imread(str(STILL))
    frame = np.zeros((720, 1280, 3), np.uint8)
    y, x = (720 - still.shape[0]) // 2, (1280 - still.shape[1]) // 2
    frame[y:y + still.shape[0], x:x + still.shape[1]] = still
    cx, cy, side = box_from_detection(create_detector("retinaface", threads=2)(frame)[0])
    default_landmarker()  # loading the model is not part of a mouse move
    for accurate in (False, True):
        times = []
        for i in range(args.calls):
            t = time.perf_counter()
            landmarks_in_box(frame, (cx + i % 20, cy, side), accurate=accurate)
            times.append((time.perf_counter() - t) * 1000)
        print(f"accurate={accurate!s:5}  median {np.median(times):.2f} ms  p95 {np.percentile(times, 95):.2f} ms  "
              f"({args.calls} calls, 1280x720 frame, face {side:.0f} px)")


if __name__ == "__main__":
    main()
