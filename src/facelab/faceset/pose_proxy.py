"""A simple 2-D head-pose proxy from the 68 landmarks of an aligned face.

Not an angle, but monotonic in it and cheap; used by the coverage report.

yaw
    ``(|nose - jaw_left| - |nose - jaw_right|) / (|nose - jaw_left| + |nose - jaw_right|)``
    with the nose tip (point 30) and the top jaw points 0 and 16, distances
    measured along the eye axis (36 -> 45). 0 for a frontal face, towards +1
    when the nose points to the image's right (the face turned to its left),
    towards -1 the other way.
pitch
    where the nose tip lies between the eye centre (mean of 36..47) and the
    mouth centre (mean of 48..67), as a fraction of that distance, minus the
    same fraction for :data:`facelab.align.MEAN_FACE_68`. 0 for a frontal face,
    positive when the nose tip moves towards the mouth (head tilted down),
    negative when it moves towards the eyes (head tilted up).
"""

from __future__ import annotations

import numpy as np

from facelab.align import MEAN_FACE_68


def _raw(landmarks: np.ndarray) -> tuple[float, float]:
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    axis = lm[45] - lm[36]
    axis = axis / (np.linalg.norm(axis) + 1e-9)
    nose = lm[30]
    dl = abs(float(np.dot(nose - lm[0], axis)))
    dr = abs(float(np.dot(lm[16] - nose, axis)))
    yaw = (dl - dr) / (dl + dr + 1e-9)
    eyes, mouth = lm[36:48].mean(0), lm[48:68].mean(0)
    down = mouth - eyes
    t = float(np.dot(nose - eyes, down) / (np.dot(down, down) + 1e-9))
    return yaw, t


_T0 = _raw(MEAN_FACE_68)[1]


def yaw_pitch(landmarks: np.ndarray) -> tuple[float, float]:
    """``(yaw, pitch)`` proxies (see the module docstring) for ``(68, 2)`` landmarks."""
    yaw, t = _raw(landmarks)
    return yaw, t - _T0
