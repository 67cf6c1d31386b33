"""A side's aligned faces, loaded once into memory at model resolution.

At 64-128 px even thousands of faces fit in RAM as uint8 (a 128 px face is
48 KiB), so decoding happens once and each batch costs only augmentation.

Face type re-crop: a model may want another face type than extraction made
(``h64`` wants ``half`` faces, the workspace holds ``full`` ones). Each such
face is cut again from the aligned image with ``face_matrix(record.landmarks,
model_face_type, size)``: the landmarks are in aligned-face pixels, so this is
the same crop a direct alignment from the frame would give, exactly so while
the new crop lies inside the old one (full -> half). A crop reaching outside
the aligned image (half -> whole) has its border filled by edge replication;
such faces are counted in :attr:`FaceDataset.outside` so the caller can warn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facelab.align import (
    face_matrix,
    hull_mask,
    invert_affine,
    transform_points,
    warp_image,
)
from facelab.errors import WorkspaceError
from facelab.faceimage import read_face
from facelab.faceset.pose import yaw_pitch
from facelab.train.augment import AugmentOptions, augment_sample
from facelab.types import FaceType


def _recrop(image: np.ndarray, landmarks: np.ndarray, face_type: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Cut a ``face_type`` face out of an aligned face image (same side); returns image, landmarks, and whether
    the new crop reaches more than 1 % of the side outside the old image."""
    size = image.shape[0]
    mat = face_matrix(landmarks, face_type, size)
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), invert_affine(mat))
    outside = bool((corners < -0.01 * size).any() or (corners > 1.01 * size).any())
    return warp_image(image, mat, size), transform_points(landmarks, mat).astype(np.float64), outside


def _load_one(path: Path, resolution: int, face_type: str | None) -> tuple[np.ndarray, np.ndarray, bool, bool, float]:
    image, record = read_face(path)
    landmarks = np.asarray(record.landmarks, np.float64)
    recropped = outside = False
    if face_type is not None and FaceType.parse(record.face_type) != FaceType.parse(face_type):
        image, landmarks, outside = _recrop(image, landmarks, face_type)
        recropped = True
    w = image.shape[1]
    interp = cv2.INTER_AREA if w > resolution else cv2.INTER_CUBIC
    face = cv2.resize(image, (resolution, resolution), interpolation=interp)
    landmarks = landmarks * (resolution / w)
    mask = hull_mask(landmarks, (resolution, resolution), face_type or record.face_type)
    return face, mask, recropped, outside, yaw_pitch(landmarks)[0]


class FaceDataset:
    """Faces ``(N, R, R, 3) uint8`` BGR and hull masks ``(N, R, R) float32`` of one side.

    Args:
        paths: aligned face files (JPEG/PNG with facelab metadata).
        resolution: model input side ``R``.
        face_type: the model's face type; faces of another type are re-cut to it
            (counted in :attr:`recropped`, those reaching outside their aligned
            image in :attr:`outside`). None keeps every face as it is.
        augment: augmentation options for :meth:`sample`.

    Attributes:
        yaw: ``(N,) float32`` yaw of each face in degrees (for ``sort_by_yaw``).
    """

    def __init__(self, paths: list[Path], resolution: int, face_type: str | None = "full",
                 augment: AugmentOptions = AugmentOptions()) -> None:
        if not paths:
            raise WorkspaceError("no aligned faces to train on", "run `facelab extract src` and `facelab extract dst` first")
        self.paths = [Path(p) for p in paths]
        self.resolution = resolution
        self.augment = augment
        with ThreadPoolExecutor(4) as pool:  # cv2 decoding releases the GIL
            loaded = list(pool.map(lambda p: _load_one(p, resolution, face_type), self.paths))
        self.faces = np.stack([x[0] for x in loaded])
        self.masks = np.stack([x[1] for x in loaded])
        self.recropped = sum(x[2] for x in loaded)
        self.outside = sum(x[3] for x in loaded)
        self.yaw = np.array([x[4] for x in loaded], np.float32)
        self._yaw_order = np.argsort(self.yaw, kind="stable")

    @property
    def mismatched(self) -> int:
        """Faces whose stored face type differed from the model's (now re-cut)."""
        return self.recropped

    def __len__(self) -> int:
        return len(self.faces)

    def pick(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Random face indices (without repeats while the set is large enough)."""
        return rng.choice(len(self.faces), batch_size, replace=batch_size > len(self.faces))

    def pick_by_yaw(self, yaws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each yaw in ``yaws``, a random face among the ones nearest in yaw (a bucket of about 5 % of the set)."""
        n = len(self.faces)
        bucket = min(n, max(1, round(n * 0.05)))
        sorted_yaw = self.yaw[self._yaw_order]
        pos = np.searchsorted(sorted_yaw, np.asarray(yaws, np.float32))
        out = []
        for p, y in zip(pos, np.asarray(yaws, np.float32)):
            lo, hi = max(0, p - bucket), min(n, p + bucket)  # candidates either side, keep the nearest `bucket`
            cand = np.arange(lo, hi)
            cand = cand[np.argsort(np.abs(sorted_yaw[cand] - y), kind="stable")[:bucket]]
            out.append(self._yaw_order[rng.choice(cand)])
        return np.array(out, np.int64)

    def sample(self, batch_size: int, rng: np.random.Generator, augment: bool = True, indices: np.ndarray | None = None):
        """A random batch (or the faces at ``indices``): ``(inputs, targets)`` uint8 ``(B, R, R, 3)`` and target
        masks ``(B, R, R)`` float32.

        With ``augment=False`` inputs equal targets (no warp, affine or flip).
        """
        idx = self.pick(batch_size, rng) if indices is None else np.asarray(indices)
        if not augment:
            return self.faces[idx], self.faces[idx], self.masks[idx]
        out = [augment_sample(self.faces[i], self.masks[i], rng, self.augment) for i in idx]
        return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), np.stack([o[2] for o in out]))
