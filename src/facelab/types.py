"""Array conventions used across facelab, said once.

- ``Image``: ``(H, W, 3) uint8`` BGR at I/O boundaries (files, OpenCV);
  ``(H, W, 3) float32`` in ``[0, 1]`` inside merge and training.
- ``Mask``: ``(H, W) float32`` in ``[0, 1]`` (or ``(H, W, 1)`` where noted).
- ``Landmarks``: ``(68, 2) float32`` pixel coordinates ``(x, y)``, iBUG 300-W order.
- ``Affine``: ``(2, 3) float64`` matrix mapping frame pixels to face pixels.
- Model tensors: ``(N, 3, H, W) float32`` in ``[0, 1]``, BGR channel order.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]
Mask = npt.NDArray[np.float32]
Landmarks = npt.NDArray[np.float32]
Affine = npt.NDArray[np.float64]


class FaceType(str, Enum):
    """How much of the head an aligned face shows (DeepFaceLab's names)."""

    HALF = "half"  # eyebrows to mouth
    MID = "mid"  # half plus cheeks ("mid-full")
    FULL = "full"  # eyebrows to chin, cheek to cheek
    WHOLE = "whole"  # full plus forehead
    HEAD = "head"  # the whole head with hair

    @classmethod
    def parse(cls, value: "str | FaceType") -> "FaceType":
        from facelab.errors import SettingsError

        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(t.value for t in cls)
            raise SettingsError(f"unknown face type {value!r}", f"use one of: {allowed}") from None


SIDES = ("src", "dst")
