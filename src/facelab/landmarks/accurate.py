"""Second "accurate" landmark pass: re-landmark on the aligned crop and average jittered passes.

The first pass places dlib's box from the detector box, so its landmarks shake
with the detector. The second pass

1. aligns the face with the first landmarks (similarity to the mean face),
2. warps a grey crop of it upright at a fixed scale (:data:`CROP_SIZE` px),
3. runs the landmark model again from a box fixed in that aligned space
   (:data:`CANONICAL_BOX`: where dlib's own detector puts its box relative to
   the mean face), plus a few shifted/scaled copies of that box,
4. averages the passes and maps them back to frame pixels.

Because the box now follows the face's own geometry instead of the detector,
and the model sees an upright face at one scale, frame-to-frame shake drops
(see ``benchmarks/bench_landmark_jitter.py`` and ``docs/extraction.md``).
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab import align
from facelab.checks import check_mask, check_points

# dlib-convention box in the canonical unit face space (centre x, centre y, side),
# fitted on 96 real faces of the shared test data (mean of dlib_box() mapped to
# unit space: centre (0.490, 0.520), side 1.347; made symmetric).
CANONICAL_BOX = (0.5, 0.52, 1.35)
CROP_SIZE = 192  # px of the grey crop the second pass runs on
# (dx, dy, scale) of the jittered boxes, in fractions of the box side
JITTERS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 1.0),
    (0.03, 0.0, 1.0),
    (-0.03, 0.0, 1.0),
    (0.0, 0.03, 1.0),
    (0.0, -0.03, 1.0),
    (0.0, 0.0, 1.05),
    (0.0, 0.0, 0.95),
)


def crop_matrix(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Frame -> crop ``(2, 3)`` affine: the unit face square ``[-0.5, 1.5]^2`` fills ``size`` px."""
    to_unit = align.umeyama(np.asarray(landmarks, np.float64)[align.INNER], align.MEAN_FACE_68[align.INNER])
    k = size / 2.0
    unit_to_px = np.array([[k, 0, 0.5 * k], [0, k, 0.5 * k], [0, 0, 1.0]])
    return (unit_to_px @ np.vstack([to_unit, [0, 0, 1]]))[:2]


def refine_landmarks(gray: np.ndarray, landmarks: np.ndarray, landmarker, jitters=JITTERS, size: int = CROP_SIZE) -> np.ndarray:
    """Refined ``(68, 2) float32`` landmarks in frame pixels.

    Args:
        gray: ``(H, W) uint8`` grey frame.
        landmarks: ``(68, 2)`` first-pass landmarks in frame pixels.
        landmarker: an object with ``from_box(gray, (x0, y0, x1, y1)) -> (68, 2)``
            (e.g. :class:`facelab.landmarks.dlib68.Dlib68`).
        jitters: ``(dx, dy, scale)`` box variations to average (fractions of the side).
        size: crop side in pixels.
    """
    check_mask(gray, "refine_landmarks gray", dtype=np.uint8)  # a 2-D grey image: the mask check's layout
    pts = check_points(landmarks, "refine_landmarks landmarks", count=68, what="landmarks")
    if not jitters:
        raise ValueError("refine_landmarks: need at least one jitter")
    mat = crop_matrix(pts, size)
    crop = cv2.warpAffine(gray, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    k = size / 2.0
    cx, cy, side = ((CANONICAL_BOX[0] + 0.5) * k, (CANONICAL_BOX[1] + 0.5) * k, CANONICAL_BOX[2] * k)
    acc = np.zeros((68, 2), np.float64)
    for dx, dy, s in jitters:
        x, y, h = cx + dx * side, cy + dy * side, side * s / 2
        acc += landmarker.from_box(crop, (x - h, y - h, x + h, y + h))
    return align.transform_points(acc / len(jitters), align.invert_affine(mat))
