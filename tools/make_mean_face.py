"""Re-create the canonical mean face in ``facelab.align`` (MEAN_FACE_68).

Runs dlib's HOG detector and 68-point predictor over the frame folders of the
shared test data, aligns all shapes with generalised Procrustes (similarity
transforms, no reflection), and prints the mean shape normalised so that the
inner points (17..67: brows, eyes, nose, mouth) span the unit square.

    python tools/make_mean_face.py ../shared/data/faces
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import dlib
import face_recognition_models
import numpy as np


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping src points onto dst, as a 2x3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


# iBUG 68 index of each point's mirror partner
MIRROR = (
    list(range(16, -1, -1))
    + list(range(26, 21, -1)) + list(range(21, 16, -1))
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def main(root: Path) -> None:
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    shapes = []
    for folder in sorted(root.glob("*/frames")):
        for p in sorted(folder.glob("*.jpg")):
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            rects = det(img, 1)
            if len(rects) != 1:
                continue
            pts = sp(img, rects[0])
            shapes.append(np.array([(pt.x, pt.y) for pt in pts.parts()], np.float64))
    shapes = np.stack(shapes)
    mean = shapes[0].copy()
    for _ in range(10):
        aligned = []
        for s in shapes:
            m = similarity(s, mean)
            aligned.append(s @ m[:, :2].T + m[:, 2])
        mean = np.mean(aligned, 0)
    # average with the mirror image so the canonical face looks straight ahead
    # (after turning it so the eyes-to-mouth line is vertical)
    eyes, mouth = mean[36:48].mean(0), mean[48:68].mean(0)
    dx, dy = mouth - eyes
    angle = np.arctan2(dx, dy)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mean = (mean - eyes) @ rot.T
    mirrored = mean[MIRROR].copy()
    mirrored[:, 0] *= -1
    mean = (mean + mirrored) / 2
    inner = mean[17:]
    lo, hi = inner.min(0), inner.max(0)
    span = (hi - lo).max()
    mean = (mean - lo) / span
    # centre the inner points horizontally and vertically in the unit square
    mean += (1 - (mean[17:].max(0) - mean[17:].min(0))) / 2 - mean[17:].min(0)
    print(f"# {len(shapes)} faces")
    print("MEAN_FACE_68 = np.array([")
    for x, y in mean:
        print(f"    [{x:.4f}, {y:.4f}],")
    print("], dtype=np.float64)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/faces"))
