"""Head pose (yaw, pitch) from the 68 stored landmarks.

Method: a weak-perspective (scaled orthographic) camera is fitted by least
squares between a generic 3-D face and the face's 68 landmarks. The 3-D face is
:data:`facelab.align.MEAN_FACE_68` (x, y) with a hand-made depth per landmark
(:data:`FACE_DEPTH_68`: nose tip forward, jaw corners back), so it is mirror
symmetric and a mirrored face gets exactly the negated yaw and the same pitch.
The fitted 2x3 projection is made orthonormal (Gram-Schmidt) to give the
rotation; yaw and pitch are the angles of the face's forward axis.

Conventions (degrees): yaw > 0 when the nose points towards the image's right
(+x), pitch > 0 when the nose points up (-y). 0, 0 is a frontal face. Roll is not
reported (aligned faces are already upright).
"""

from __future__ import annotations

import numpy as np

from facelab.align import MEAN_FACE_68

# depth towards the camera, in the units of MEAN_FACE_68 (face width ~1.2)
_JAW = [-0.45, -0.42, -0.36, -0.28, -0.18, -0.08, 0.0, 0.05, 0.07, 0.05, 0.0, -0.08, -0.18, -0.28, -0.36, -0.42, -0.45]
_BROWS = [-0.05, 0.02, 0.06, 0.08, 0.09, 0.09, 0.08, 0.06, 0.02, -0.05]
_BRIDGE = [0.08, 0.14, 0.20, 0.27]
_NOSTRILS = [0.10, 0.14, 0.17, 0.14, 0.10]
_EYES = [-0.02, 0.0, 0.0, 0.02, 0.0, 0.0, 0.02, 0.0, 0.0, -0.02, 0.0, 0.0]
_MOUTH_OUT = [0.02, 0.06, 0.09, 0.10, 0.09, 0.06, 0.02, 0.06, 0.08, 0.09, 0.08, 0.06]
_MOUTH_IN = [0.03, 0.06, 0.07, 0.06, 0.03, 0.06, 0.07, 0.06]
FACE_DEPTH_68 = np.array(_JAW + _BROWS + _BRIDGE + _NOSTRILS + _EYES + _MOUTH_OUT + _MOUTH_IN, np.float64)

# landmark index of the mirror partner of each of the 68 points (iBUG order)
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer mouth
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner mouth
)

# generic 3-D face in camera axes: X right, Y down, Z away from the camera
MODEL_3D = np.column_stack([MEAN_FACE_68[:, 0] - 0.5, MEAN_FACE_68[:, 1], -FACE_DEPTH_68])
MODEL_3D = MODEL_3D - MODEL_3D.mean(0)


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the horizontally flipped image (x -> width - 1 - x, left/right points swapped)."""
    pts = np.asarray(landmarks, np.float32).copy()
    pts[:, 0] = (width - 1) - pts[:, 0]
    return pts[MIRROR_68]


def rotation(landmarks: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation (model -> camera) of the weak-perspective fit."""
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"pose: expected (68, 2) landmarks, got {pts.shape}")
    p = pts - pts.mean(0)
    a, *_ = np.linalg.lstsq(MODEL_3D, p, rcond=None)  # (3, 2): p = MODEL_3D @ a
    r1, r2 = a[:, 0], a[:, 1]
    r1 = r1 / (np.linalg.norm(r1) + 1e-12)
    r2 = r2 - (r2 @ r1) * r1
    r2 = r2 / (np.linalg.norm(r2) + 1e-12)
    return np.stack([r1, r2, np.cross(r1, r2)])


def yaw_pitch(landmarks: np.ndarray) -> tuple[float, float]:
    """``(yaw, pitch)`` in degrees of a face from its ``(68, 2)`` landmarks (any pixel space)."""
    r = rotation(landmarks)
    fwd = -r[:, 2]  # where the nose points, camera axes
    yaw = float(np.degrees(np.arctan2(fwd[0], -fwd[2])))
    pitch = float(np.degrees(np.arctan2(-fwd[1], -fwd[2])))
    return yaw, pitch


def project(yaw: float, pitch: float, scale: float = 100.0) -> np.ndarray:
    """Landmarks of the generic 3-D face turned by ``yaw``/``pitch`` degrees (orthographic); for checks."""
    y, p = np.radians(yaw), np.radians(pitch)
    # yaw about the vertical axis (nose to +x), then pitch about the horizontal axis (nose up)
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    cam = MODEL_3D @ (rx @ ry).T
    return (cam[:, :2] * scale + 200).astype(np.float32)
