"""Face alignment: similarity transforms between frames and aligned faces.

An aligned face is made by fitting the 51 inner landmarks (brows, eyes, nose,
mouth: iBUG indices 17..67) of a detected face to :data:`MEAN_FACE_68` with a
least-squares similarity transform (Umeyama 1991), then cropping a square of
that canonical space chosen by the face type.

Conventions (see :mod:`facelab.types`): landmarks are ``(68, 2)`` pixel
``(x, y)``; an ``Affine`` is a ``(2, 3) float64`` matrix mapping frame pixels
to face pixels: ``face = A @ [x, y, 1]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.checks import check_affine, check_image, check_points
from facelab.errors import SettingsError
from facelab.types import Affine, FaceType, Landmarks, Mask

# Canonical 68-point face, made by tools/make_mean_face.py from dlib landmarks
# of 298 frames of the shared test data (Procrustes mean, made mirror-symmetric).
# The inner points 17..67 span the unit square.
MEAN_FACE_68 = np.array([
    [-0.1045, 0.3541],
    [-0.0991, 0.5121],
    [-0.0855, 0.6704],
    [-0.0600, 0.8285],
    [-0.0091, 0.9783],
    [0.0789, 1.1096],
    [0.1968, 1.2182],
    [0.3364, 1.2987],
    [0.5000, 1.3246],
    [0.6636, 1.2987],
    [0.8032, 1.2182],
    [0.9211, 1.1096],
    [1.0091, 0.9783],
    [1.0600, 0.8285],
    [1.0855, 0.6704],
    [1.0991, 0.5121],
    [1.1045, 0.3541],
    [0.0000, 0.1689],
    [0.0628, 0.0736],
    [0.1732, 0.0304],
    [0.2920, 0.0363],
    [0.4032, 0.0765],
    [0.5968, 0.0765],
    [0.7080, 0.0363],
    [0.8268, 0.0304],
    [0.9372, 0.0736],
    [1.0000, 0.1689],
    [0.5000, 0.2108],
    [0.5000, 0.3109],
    [0.5000, 0.4083],
    [0.5000, 0.5128],
    [0.3758, 0.6208],
    [0.4363, 0.6387],
    [0.5000, 0.6542],
    [0.5637, 0.6387],
    [0.6242, 0.6208],
    [0.1247, 0.2710],
    [0.1887, 0.2250],
    [0.2672, 0.2226],
    [0.3399, 0.2688],
    [0.2660, 0.2873],
    [0.1879, 0.2912],
    [0.6601, 0.2688],
    [0.7328, 0.2226],
    [0.8113, 0.2250],
    [0.8753, 0.2710],
    [0.8121, 0.2912],
    [0.7340, 0.2873],
    [0.2665, 0.8637],
    [0.3514, 0.8084],
    [0.4369, 0.7804],
    [0.5000, 0.7966],
    [0.5631, 0.7804],
    [0.6486, 0.8084],
    [0.7335, 0.8637],
    [0.6503, 0.9326],
    [0.5677, 0.9632],
    [0.5000, 0.9696],
    [0.4323, 0.9632],
    [0.3497, 0.9326],
    [0.3022, 0.8620],
    [0.4362, 0.8387],
    [0.5000, 0.8446],
    [0.5638, 0.8387],
    [0.6978, 0.8620],
    [0.5643, 0.8830],
    [0.5000, 0.8909],
    [0.4357, 0.8830],
], dtype=np.float64)

INNER = slice(17, 68)

# Crop of the canonical space per face type: (centre x, centre y, half width).
# half: brows to lips; full: adds cheeks and chin; whole: adds the forehead;
# head: the whole head with hair.
FACE_TYPE_CROPS: dict[FaceType, tuple[float, float, float]] = {
    FaceType.HALF: (0.5, 0.52, 0.56),
    FaceType.MID: (0.5, 0.56, 0.68),
    FaceType.FULL: (0.5, 0.62, 0.80),
    FaceType.WHOLE: (0.5, 0.52, 1.00),
    FaceType.HEAD: (0.5, 0.45, 1.30),
}


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> Affine:
    """Least-squares similarity transform mapping ``src`` points onto ``dst``.

    Args:
        src, dst: ``(N, 2)`` corresponding points, N >= 2.
        estimate_scale: fit a uniform scale too (else rotation + translation).

    Returns:
        ``(2, 3) float64`` matrix ``A`` minimising ``sum |A [src, 1] - dst|^2``,
        with a proper rotation (no reflection).
    """
    src, dst = check_points(src, "src"), check_points(dst, "dst")
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"umeyama: need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    var = s.var(0).sum()
    scale = float(np.trace(np.diag(sig) @ fix) / var) if estimate_scale and var > 0 else 1.0
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def face_matrix(landmarks: Landmarks, face_type: FaceType | str, size: int) -> Affine:
    """Frame-to-face transform for an aligned face of ``size`` x ``size`` pixels.

    Args:
        landmarks: ``(68, 2)`` landmarks in frame pixels.
        face_type: which crop of the canonical face (see :data:`FACE_TYPE_CROPS`).
        size: output side in pixels.
    """
    landmarks = check_points(landmarks, "face_matrix landmarks", count=68, what="landmarks")
    if size < 8:
        raise SettingsError(f"face size {size} is too small", "use at least 8 (default 512)")
    cx, cy, r = FACE_TYPE_CROPS[FaceType.parse(face_type)]
    to_unit = umeyama(landmarks[INNER], MEAN_FACE_68[INNER])
    # unit canonical space -> output pixels
    k = size / (2 * r)
    unit_to_px = np.array([[k, 0, (r - cx) * k], [0, k, (r - cy) * k], [0, 0, 1.0]])
    return (unit_to_px @ np.vstack([to_unit, [0, 0, 1]]))[:2]


def invert_affine(mat: Affine) -> Affine:
    """Inverse of a ``(2, 3)`` affine matrix."""
    return cv2.invertAffineTransform(check_affine(mat))


def transform_points(points: np.ndarray, mat: Affine) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``(N, 2)`` points; returns ``float32``."""
    points, mat = check_points(points, "points"), check_affine(mat)
    return (points @ mat[:, :2].T + mat[:, 2]).astype(np.float32)


def crop_matrix(mat: Affine, x0: float, y0: float) -> Affine:
    """The same frame -> face alignment for a crop of the frame whose top-left corner is ``(x0, y0)``."""
    out = np.array(check_affine(mat), np.float64)
    out[:, 2] += out[:, :2] @ np.array([x0, y0], np.float64)
    return out


def scale_matrix(mat: Affine, factor: float) -> Affine:
    """The same alignment for an output scaled by ``factor`` (e.g. 512 px face -> 128 px model input)."""
    return check_affine(mat) * factor


def warp_image(image: np.ndarray, mat: Affine, size: int, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Cut the aligned face out of a frame: ``(H, W, C)`` -> ``(size, size, C)``, same dtype."""
    check_image(image, "warp_image", channels=None, dtype=None, gray=True)
    return cv2.warpAffine(image, check_affine(mat), (size, size), flags=cv2.INTER_CUBIC, borderMode=border)


def unwarp_image(face: np.ndarray, mat: Affine, frame_shape: tuple[int, int], border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Put an aligned face (or mask) back into frame geometry ``(H, W)``; outside is 0."""
    h, w = frame_shape[:2]
    return cv2.warpAffine(
        face, check_affine(mat), (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_CUBIC, borderMode=border
    )


def hull_mask(landmarks: Landmarks, shape: tuple[int, int], face_type: FaceType | str = FaceType.FULL) -> Mask:
    """Filled convex hull of the landmarks, ``(H, W) float32`` in ``{0, 1}``.

    For whole and head faces the hull is raised over the forehead by pushing
    the brow points up along the face's vertical axis.
    """
    pts = check_points(landmarks, "landmarks").copy()
    face_type = FaceType.parse(face_type)
    if face_type in (FaceType.WHOLE, FaceType.HEAD) and len(pts) == 68:
        up = pts[27] - pts[8]  # chin -> nose bridge
        lift = 0.45 if face_type == FaceType.WHOLE else 0.8
        pts = np.vstack([pts, pts[17:27] + up * lift])
    mask = np.zeros(shape[:2], np.float32)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_AA)
    return mask
