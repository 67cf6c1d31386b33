"""Faces placed by hand: landmarks for a box the user puts on a frame (manual extraction).

The manual extraction page moves a square box with the mouse, sizes it with
the wheel and shows the landmarks found in it at every move, so this runs the
landmark model on the user's box directly (no detector) and must be fast:
``benchmarks/bench_manual_box.py`` measures it on a 1280x720 frame: median
1.3 ms for one pass, 8.7 ms with ``accurate`` (one CPU core, dlib68).

The box is ``(cx, cy, size)``: its centre (where the mouse is) and its side,
in frame pixels. It is handed to the landmark model as a detector box would
be, so it frames the face the way a detector's box does (brows to chin, ear
to ear); :func:`box_from_detection` gives that square for a detector box.
The accurate pass is the one automatic extraction uses
(:func:`facelab.landmarks.accurate.refine_landmarks`: the face re-landmarked
upright on a crop placed by the first landmarks, averaged over jittered
boxes), so a face placed by hand is cut exactly as an automatic one with the
same landmarks.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from facelab.checks import check_image, check_points
from facelab.detect import Detection
from facelab.find_faces import FoundFace
from facelab.landmarks import create_landmarker
from facelab.landmarks.accurate import refine_landmarks

Box = tuple[float, float, float]
"""A square box ``(cx, cy, size)``: centre and side in frame pixels."""

MIN_BOX = 8.0  # px: a smaller box holds no face the landmark model can place


@lru_cache(maxsize=4)
def default_landmarker(name: str = "dlib68"):
    """One shared landmark model per name (loading dlib's takes about a second; the UI calls this per mouse move)."""
    return create_landmarker(name)


def box_corners(box: Box) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of a ``(cx, cy, size)`` box; ``ValueError`` for a box that is not finite or too small."""
    try:
        cx, cy, size = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box: expected (cx, cy, size), got {box!r}") from None
    if not (np.isfinite([cx, cy, size]).all() and size >= MIN_BOX):
        raise ValueError(f"box: expected finite (cx, cy, size) with size >= {MIN_BOX:g}, got {box!r}")
    h = size / 2
    return cx - h, cy - h, cx + h, cy + h


def box_from_detection(detection: Detection) -> Box:
    """The square box a user would draw for a detector box: same centre, side the mean of its width and height."""
    x0, y0, x1, y1 = detection.box
    return (x0 + x1) / 2, (y0 + y1) / 2, ((x1 - x0) + (y1 - y0)) / 2


def landmarks_in_box(image: np.ndarray, box: Box, accurate: bool = False, landmarker=None) -> FoundFace:
    """Landmarks of the face in a user-given box, by the landmark model alone.

    Args:
        image: ``(H, W, 3) uint8`` BGR frame (not modified).
        box: ``(cx, cy, size)`` square box in frame pixels; it may reach past the frame's border.
        accurate: add the second landmark pass automatic extraction makes with ``--accurate``.
        landmarker: a model of :mod:`facelab.landmarks` (with ``from_box`` when ``accurate``);
            default the shared ``dlib68``.

    Returns:
        A :class:`~facelab.find_faces.FoundFace`: ``detection.box`` is the box's
        ``(x0, y0, x1, y1)`` with score 1.0 (placed by hand), ``landmarks`` are
        ``(68, 2) float32`` frame pixels, ready for
        :meth:`facelab.stages.manual.ManualSession.accept` (edited or not).
    """
    check_image(image, "landmarks_in_box image", channels=3, dtype=np.uint8)
    detection = Detection(box_corners(box), 1.0)
    model = landmarker if landmarker is not None else default_landmarker()
    lm = model(image, detection)
    if accurate:
        lm = refine_landmarks(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), lm, model)
    return FoundFace(detection, check_points(lm, "landmarks_in_box landmarks", count=68, what="landmarks").astype(np.float32))


def box_of_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` bounding box of ``(68, 2)`` frame-pixel landmarks: the ``source_rect`` of a face
    given by its landmarks alone (as DeepFaceLab's import does when a face has no rect)."""
    pts = check_points(landmarks, "box_of_landmarks landmarks", count=68, what="landmarks")
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return float(x0), float(y0), float(x1), float(y1)


__all__ = ["Box", "box_corners", "box_from_detection", "box_of_landmarks", "default_landmarker", "landmarks_in_box"]
