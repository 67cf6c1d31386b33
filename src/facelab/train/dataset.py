"""A side's aligned faces, loaded once into memory at model resolution.

At 64-128 px even thousands of faces fit in RAM as uint8 (a 128 px face is
48 KiB), so decoding happens once and each batch costs only augmentation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facelab.align import hull_mask
from facelab.errors import WorkspaceError
from facelab.faceimage import read_face
from facelab.train.augment import AugmentOptions, augment_sample


def _load_one(path: Path, resolution: int) -> tuple[np.ndarray, np.ndarray, str]:
    image, record = read_face(path)
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if w > resolution else cv2.INTER_CUBIC
    face = cv2.resize(image, (resolution, resolution), interpolation=interp)
    landmarks = np.asarray(record.landmarks, np.float64) * (resolution / w)
    mask = hull_mask(landmarks, (resolution, resolution), record.face_type)
    return face, mask, record.face_type


class FaceDataset:
    """Faces ``(N, R, R, 3) uint8`` BGR and hull masks ``(N, R, R) float32`` of one side.

    Args:
        paths: aligned face files (JPEG/PNG with facelab metadata).
        resolution: model input side ``R``.
        face_type: the model's face type; faces of another type are kept but
            counted in :attr:`mismatched` so the caller can warn.
    """

    def __init__(self, paths: list[Path], resolution: int, face_type: str = "full", augment: AugmentOptions = AugmentOptions()) -> None:
        if not paths:
            raise WorkspaceError("no aligned faces to train on", "run `facelab extract src` and `facelab extract dst` first")
        self.paths = [Path(p) for p in paths]
        self.resolution = resolution
        self.augment = augment
        with ThreadPoolExecutor(4) as pool:  # cv2 decoding releases the GIL
            loaded = list(pool.map(lambda p: _load_one(p, resolution), self.paths))
        self.faces = np.stack([f for f, _, _ in loaded])
        self.masks = np.stack([m for _, m, _ in loaded])
        self.mismatched = sum(t != face_type for _, _, t in loaded)

    def __len__(self) -> int:
        return len(self.faces)

    def sample(self, batch_size: int, rng: np.random.Generator, augment: bool = True):
        """A random batch: ``(inputs, targets)`` uint8 ``(B, R, R, 3)`` and target masks ``(B, R, R)`` float32.

        With ``augment=False`` inputs equal targets (no warp, affine or flip).
        """
        idx = rng.choice(len(self.faces), batch_size, replace=batch_size > len(self.faces))
        if not augment:
            return self.faces[idx], self.faces[idx], self.masks[idx]
        out = [augment_sample(self.faces[i], self.masks[i], rng, self.augment) for i in idx]
        return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), np.stack([o[2] for o in out]))
