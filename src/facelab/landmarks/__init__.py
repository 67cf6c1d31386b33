"""Landmark models behind one registry.

A landmark model is a callable ``model(image, detection) -> (68, 2) float32``
landmarks in frame pixels (iBUG 300-W order), given an ``(H, W, 3) uint8`` BGR
frame and a :class:`facelab.detect.Detection`. Register one with
:func:`register_landmarker` (see ``dlib68.py`` for the template).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from facelab.detect import Detection
from facelab.registry import Registry


class Landmarker(Protocol):
    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray: ...


LANDMARKERS = Registry("landmark model", ("facelab.landmarks.dlib68",))
register_landmarker = LANDMARKERS.register
list_landmarkers = LANDMARKERS.names


def create_landmarker(name: str = "dlib68", **options: Any) -> Landmarker:
    return LANDMARKERS.create(name, **options)
