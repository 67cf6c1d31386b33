"""Face masks for the merge, behind one registry.

A merge mask setting names one provider or a product of several joined by
``*`` (``learned*dst``, the default). A provider is a function
``provider(inputs: MaskInputs) -> (N, R, R) float32 [0, 1]`` that gives one
mask per face of a frame, in aligned-face space (the square the model sees);
register one with :func:`register_mask`. Built in:

- ``learned``: the mask the model predicts with the swapped face;
- ``learned-dst``: the mask the model predicts for the dst face itself (its
  dst-side reconstruction; needs ``Predictor.predict_dst_mask``);
- ``dst``: the filled hull of the dst face's landmarks;
- ``predicted``: the hull of 68 landmarks found (dlib) on the *predicted* face,
  so the mask follows the swapped face's own outline. dlib is given the box
  the dst face would have (from its known landmarks in the aligned square),
  on the face upscaled to at least :data:`LANDMARK_MIN_SIDE` px.

- ``segmentation-dst``: the trained segmenter (``facelab seg train``, DeepFaceLab's
  XSeg) run on the dst face: what of the dst face is really face, so a hand or
  hair in front of it is left alone;
- ``segmentation-prd``: the segmenter run on the predicted face.

Products such as ``learned*segmentation-dst`` or ``segmentation-prd*segmentation-dst``
combine them. The segmentation masks need ``MaskInputs.segmenter``; the merge
loads the workspace's ``model/segmenter`` when a setting asks for one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from facelab.align import hull_mask
from facelab.errors import SettingsError
from facelab.registry import Registry

MASKS = Registry("merge mask", ("facelab.merge.masks",))
register_mask = MASKS.register

SEGMENTATION_MASKS = ("segmentation-prd", "segmentation-dst")
"""The masks that run the trained segmenter (the merge loads it only when a setting names one)."""

LANDMARK_MIN_SIDE = 256
"""The predicted face is upscaled to at least this side before dlib looks for landmarks
(dlib's predictor was trained on faces of roughly this size and worse on small ones)."""

# dlib's detector box relative to the bounding box (w, h) of its 68 landmarks:
# left, top, right, bottom offsets as fractions of w, h (mean of 41 real faces
# of the shared test data; spread about 0.05). The predictor wants a box of
# that convention, and the dst face's landmarks are known in aligned space.
_BOX_FROM_LANDMARKS = (-0.01, -0.10, 0.07, -0.10)
# without landmarks: that box as fractions of the aligned square, per face type
# (mean over 30 faces of the shared test data; spread 0.01-0.05)
_BOX_IN_SQUARE = {
    "half": (-0.11, -0.06, 1.05, 1.10),
    "mid": (0.00, 0.01, 0.95, 0.97),
    "full": (0.08, 0.05, 0.88, 0.86),
    "whole": (0.16, 0.19, 0.81, 0.84),
    "head": (0.24, 0.29, 0.74, 0.79),
}


@dataclass(frozen=True)
class MaskInputs:
    """What a mask provider may look at, for the ``N`` faces of one frame (all aligned, ``R`` px).

    Attributes:
        dst_faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` dst faces (model input).
        pred_faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` predicted (swapped) faces.
        pred_masks: ``(N, R, R) float32 [0, 1]`` masks predicted with the swap.
        dst_masks: ``(N, R, R) float32 [0, 1]`` masks the model predicts for the
            dst faces, or None when they were not computed.
        hulls: ``(N, R, R) float32 {0, 1}`` dst landmark hulls.
        landmarks: ``(N, 68, 2) float32`` dst landmarks in aligned-face pixels (NaN
            where unknown), or None.
        face_type: the model's face type.
        segmenter: the trained segmenter (:class:`facelab.seg.model.SegmenterRunner`), or None when no
            setting asks for a segmentation mask.
    """

    dst_faces: np.ndarray
    pred_faces: np.ndarray
    pred_masks: np.ndarray
    dst_masks: np.ndarray | None
    hulls: np.ndarray
    landmarks: np.ndarray | None
    face_type: str
    segmenter: object | None = None


MaskProvider = Callable[[MaskInputs], np.ndarray]


def known_masks() -> list[str]:
    """Every name a mask setting may use: the registered providers."""
    return sorted(MASKS.names())


def parse_mask(spec: str) -> tuple[str, ...]:
    """Split and check a mask setting (``"learned*dst"`` -> ``("learned", "dst")``).

    Raises:
        SettingsError: naming the ``mask`` key, for an unknown or repeated name.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SettingsError(f"merge setting mask={spec!r} is not allowed", f"use one of {', '.join(known_masks())} or a product like learned*dst")
    names = tuple(part.strip() for part in spec.split("*"))
    for name in names:
        if name not in known_masks():
            raise SettingsError(
                f"merge setting mask={spec!r}: unknown mask {name!r}",
                f"use one of {', '.join(known_masks())}, or a product of them joined by * (e.g. learned*dst)",
            )
    if len(set(names)) != len(names):
        raise SettingsError(f"merge setting mask={spec!r} repeats a mask", "name each mask once (e.g. learned*dst)")
    return names


def build_masks(spec: str | tuple[str, ...], inputs: MaskInputs) -> np.ndarray:
    """The product of the named providers' masks: ``(N, R, R) float32 [0, 1]``."""
    names = parse_mask(spec) if isinstance(spec, str) else spec
    out: np.ndarray | None = None
    for name in names:
        m = np.asarray(MASKS.get(name)(inputs), np.float32)
        if m.shape != inputs.hulls.shape:
            raise ValueError(f"mask provider {name!r} returned {m.shape}, expected {inputs.hulls.shape}")
        out = m if out is None else out * m
    assert out is not None
    return np.clip(out, 0.0, 1.0)


@register_mask("learned")
def learned_mask(inputs: MaskInputs) -> np.ndarray:
    return inputs.pred_masks


@register_mask("learned-dst")
def learned_dst_mask(inputs: MaskInputs) -> np.ndarray:
    if inputs.dst_masks is None:
        raise SettingsError(
            "merge setting mask uses learned-dst, but no dst-side masks were predicted",
            "use a Predictor with predict_dst_mask (facelab.inference), or mask learned/dst/predicted",
        )
    return inputs.dst_masks


@register_mask("dst")
def dst_mask(inputs: MaskInputs) -> np.ndarray:
    return inputs.hulls


def uses_segmenter(spec: str) -> bool:
    """Whether a mask setting names a segmentation mask (so the merge must load the segmenter)."""
    return any(part.strip() in SEGMENTATION_MASKS for part in str(spec).split("*"))


def _segment(inputs: MaskInputs, faces: np.ndarray, name: str) -> np.ndarray:
    if inputs.segmenter is None:
        raise SettingsError(f"merge setting mask uses {name}, but there is no trained segmenter",
                            "train one with `facelab seg train` (it is saved in model/segmenter), or use another mask")
    return inputs.segmenter.masks_in_square(faces, inputs.landmarks, inputs.face_type)  # type: ignore[attr-defined]


@register_mask("segmentation-dst")
def segmentation_dst_mask(inputs: MaskInputs) -> np.ndarray:
    return _segment(inputs, inputs.dst_faces, "segmentation-dst")


@register_mask("segmentation-prd")
def segmentation_prd_mask(inputs: MaskInputs) -> np.ndarray:
    return _segment(inputs, inputs.pred_faces, "segmentation-prd")


_landmarker_lock = threading.Lock()
_landmarker = None


def _dlib68():
    # loaded once per process, on first use (the stage blends on several threads)
    global _landmarker
    with _landmarker_lock:
        if _landmarker is None:
            from facelab.landmarks import create_landmarker

            _landmarker = create_landmarker("dlib68")
        return _landmarker


def _landmark_box(landmarks: np.ndarray | None, size: int, face_type: str = "full") -> tuple[float, float, float, float]:
    """dlib-convention box of the dst face in an aligned square of side ``size``."""
    if landmarks is None or not np.isfinite(landmarks).all():
        # no landmarks: where that box usually lies in a square of this face type
        return tuple(v * size for v in _BOX_IN_SQUARE.get(str(face_type), _BOX_IN_SQUARE["full"]))  # type: ignore[return-value]
    (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
    w, h = x1 - x0, y1 - y0
    left, top, right, bottom = _BOX_FROM_LANDMARKS
    return x0 + left * w, y0 + top * h, x1 + right * w, y1 + bottom * h


def predicted_landmarks(face: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """68 landmarks found by dlib on an aligned face.

    Args:
        face: ``(R, R, 3) float32`` BGR ``[0, 1]``.
        box: the face's dlib-convention box in the face's pixels.

    Returns:
        ``(68, 2) float32`` in the face's pixels.
    """
    r = face.shape[0]
    scale = max(1.0, LANDMARK_MIN_SIDE / r)
    side = int(round(r * scale))
    gray = cv2.cvtColor((np.clip(face, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    if side != r:
        gray = cv2.resize(gray, (side, side), interpolation=cv2.INTER_CUBIC)
    lm = _dlib68().from_box(gray, tuple(v * scale for v in box))
    return (lm + 0.5) / scale - 0.5  # pixel centres of the upscaled image back to the face's


@register_mask("predicted")
def predicted_mask(inputs: MaskInputs) -> np.ndarray:
    n, r = inputs.pred_faces.shape[:2]
    out = np.zeros((n, r, r), np.float32)
    for i in range(n):
        box = _landmark_box(None if inputs.landmarks is None else inputs.landmarks[i], r, inputs.face_type)
        out[i] = hull_mask(predicted_landmarks(inputs.pred_faces[i], box), (r, r), inputs.face_type)
    return out
