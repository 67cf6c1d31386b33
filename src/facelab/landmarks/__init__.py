"""Landmark models behind one registry.

A landmark model is a callable ``model(image, detection) -> (68, 2) float32``
landmarks in frame pixels (iBUG 300-W order), given an ``(H, W, 3) uint8`` BGR
frame and a :class:`facelab.detect.Detection`. Register one with
:func:`register_landmarker` (see ``dlib68.py`` for the template).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from facelab.detect import Detection
from facelab.errors import SettingsError


class Landmarker(Protocol):
    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray: ...


_REGISTRY: dict[str, Callable[..., Landmarker]] = {}


def register_landmarker(name: str) -> Callable[[Any], Any]:
    def deco(cls: Any) -> Any:
        _REGISTRY[name] = cls
        return cls

    return deco


def list_landmarkers() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def create_landmarker(name: str = "dlib68", **options: Any) -> Landmarker:
    _load_builtin()
    if name not in _REGISTRY:
        raise SettingsError(f"unknown landmark model {name!r}", f"use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


def _load_builtin() -> None:
    from facelab.landmarks import dlib68  # noqa: F401  (registers itself)
