"""Merge settings and the per-frame merge: predicted faces back into a dst frame.

For every face of a frame (:func:`merge_frame`):

1. cut the dst face out of the frame at the model's resolution and face type
   (aligned again from the record's frame landmarks, :func:`prepare_faces`);
2. run the model on all faces of the frame as one batch;
3. recolour the predicted face toward the dst face (``rct``/``lct``, measured
   inside the face mask), or histogram-match it (``hist-match`` mode);
4. build the face mask (learned mask, dst landmark hull, or their product),
   erode/blur it in face space, and warp face and mask back into the frame;
5. blend (``seamless`` Poisson clone or ``overlay``).

Steps 1 and 3-5 are plain numpy/OpenCV; :func:`prepare_faces` and
:func:`compose_faces` are separate so a render loop can run the model in one
thread and the image work in others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import cv2
import numpy as np

from facelab.align import face_matrix, hull_mask, scale_matrix, transform_points, unwarp_image, warp_image
from facelab.errors import SettingsError
from facelab.faceimage import FaceRecord
from facelab.merge.blend import erode_blur_mask, hist_match, overlay, seamless
from facelab.merge.color import lct, rct

MODES = ("seamless", "overlay", "hist-match")
COLORS = ("none", "rct", "lct")
MASKS = ("learned", "dst", "learned*dst")
MASK_WORK_SIZE = 256
"""Masks are eroded/blurred at no less than this side, so small models still get smooth edges."""


class Predictor(Protocol):
    """What the merge needs from a trained model (see ``facelab.train.checkpoint.load_predictor``)."""

    resolution: int
    face_type: str

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, R, R, 3) float32`` BGR ``[0, 1]`` dst faces -> ``(faces (N, R, R, 3), masks (N, R, R))`` float32 ``[0, 1]``."""
        ...


@dataclass(frozen=True)
class MergeSettings:
    """How predicted faces are blended into the frames.

    Attributes:
        mode: ``seamless`` (Poisson clone, default), ``overlay`` (alpha blend)
            or ``hist-match`` (per-channel histogram match, then alpha blend).
        color: colour transfer of the predicted face toward the dst face:
            ``none``, ``rct`` (Reinhard, default) or ``lct`` (linear, covariance).
        mask: ``learned`` (the model's mask), ``dst`` (dst landmark hull) or
            ``learned*dst`` (their product, default).
        erode: ``-200..200``, shrink (+) or grow (-) the mask, in pixels of a
            512 px face (DeepFaceLab's scale). Default 0.
        blur: ``0..200``, width of the soft mask edge, same unit. Default 32
            (about 6 % of the face), so overlay has no visible seam.
        hist_threshold: ``1..255``, hist-match threshold (DeepFaceLab's 238).
    """

    mode: str = "seamless"
    color: str = "rct"
    mask: str = "learned*dst"
    erode: int = 0
    blur: int = 32
    hist_threshold: int = 238

    def __post_init__(self) -> None:
        for key, allowed in (("mode", MODES), ("color", COLORS), ("mask", MASKS)):
            value = getattr(self, key)
            if value not in allowed:
                raise SettingsError(f"merge setting {key}={value!r} is not allowed", f"use one of: {', '.join(allowed)}")
        for key, lo, hi in (("erode", -200, 200), ("blur", 0, 200), ("hist_threshold", 1, 255)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise SettingsError(f"merge setting {key}={value!r} is out of range", f"use an integer in {lo}..{hi}")
            object.__setattr__(self, key, int(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MergeSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SettingsError(f"unknown merge setting(s): {', '.join(unknown)}", f"known: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass(frozen=True)
class PreparedFaces:
    """The dst faces of one frame, aligned for the model.

    Attributes:
        mats: ``(N, 2, 3) float64`` frame -> model-face affines.
        faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` dst faces (the model input).
        hulls: ``(N, R, R) float32`` ``{0, 1}`` dst landmark hull masks.
        face_type: face type of the model.
    """

    mats: np.ndarray
    faces: np.ndarray
    hulls: np.ndarray
    face_type: str

    def __len__(self) -> int:
        return len(self.mats)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"merge: expected a (H, W, 3) uint8 BGR frame, got {got}")
    return frame


def prepare_faces(frame: np.ndarray, records: Sequence[FaceRecord], resolution: int, face_type: str) -> PreparedFaces:
    """Cut every recorded face out of ``frame`` for a model of ``resolution`` px and ``face_type``.

    Args:
        frame: ``(H, W, 3) uint8`` BGR.
        records: the faces of this frame (their ``source_landmarks`` are used).
        resolution: model input side ``R``.
        face_type: model face type.
    """
    _check_frame(frame)
    n, r = len(records), int(resolution)
    mats = np.zeros((n, 2, 3), np.float64)
    faces = np.zeros((n, r, r, 3), np.float32)
    hulls = np.zeros((n, r, r), np.float32)
    for i, rec in enumerate(records):
        mats[i] = face_matrix(rec.source_landmarks, face_type, r)
        faces[i] = warp_image(frame, mats[i], r).astype(np.float32) / 255.0
        hulls[i] = hull_mask(transform_points(rec.source_landmarks, mats[i]), (r, r), face_type)
    return PreparedFaces(mats, faces, hulls, str(face_type))


def _face_roi(mat: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Frame box ``(x0, y0, x1, y1)`` covering the face square, or None if it is off-frame."""
    inv = cv2.invertAffineTransform(mat)
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    h, w = frame_shape[:2]
    x0, y0 = (int(max(np.floor(pts[:, k].min()) - 2, 0)) for k in (0, 1))
    x1 = int(min(np.ceil(pts[:, 0].max()) + 3, w))
    y1 = int(min(np.ceil(pts[:, 1].max()) + 3, h))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_predictions(pred_faces: np.ndarray, pred_masks: np.ndarray, n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    pred_faces = np.asarray(pred_faces, np.float32)
    pred_masks = np.asarray(pred_masks, np.float32)
    if pred_masks.ndim == 4 and pred_masks.shape[-1] == 1:
        pred_masks = pred_masks[..., 0]
    if pred_faces.shape != (n, r, r, 3) or pred_masks.shape != (n, r, r):
        raise ValueError(
            f"merge: predictor returned faces {pred_faces.shape} and masks {pred_masks.shape}, "
            f"expected ({n}, {r}, {r}, 3) and ({n}, {r}, {r})"
        )
    return np.clip(pred_faces, 0.0, 1.0), np.clip(pred_masks, 0.0, 1.0)


def compose_faces(
    frame: np.ndarray,
    prepared: PreparedFaces,
    pred_faces: np.ndarray,
    pred_masks: np.ndarray,
    settings: MergeSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend predicted faces into ``frame`` (steps 3-5 of the module docstring).

    Args:
        frame: ``(H, W, 3) uint8`` BGR (not modified).
        prepared: from :func:`prepare_faces` for this frame.
        pred_faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` model output.
        pred_masks: ``(N, R, R) float32`` ``[0, 1]`` learned masks.
        settings: how to blend.

    Returns:
        ``(merged (H, W, 3) uint8 BGR, mask (H, W) uint8)``; the mask is the
        largest blend weight of any face at each pixel, 0..255.
    """
    _check_frame(frame)
    n = len(prepared)
    r = prepared.faces.shape[1] if n else 0
    pred_faces, pred_masks = _check_predictions(pred_faces, pred_masks, n, r)
    out = frame.copy()
    out_mask = np.zeros(frame.shape[:2], np.uint8)
    work = max(r, MASK_WORK_SIZE)
    for i in range(n):
        mat, dst_face, face = prepared.mats[i], prepared.faces[i], pred_faces[i]
        if settings.mask == "learned":
            mask = pred_masks[i]
        elif settings.mask == "dst":
            mask = prepared.hulls[i]
        else:
            mask = pred_masks[i] * prepared.hulls[i]
        if settings.color == "rct":
            face = rct(face, dst_face, mask, mask)
        elif settings.color == "lct":
            face = lct(face, dst_face, mask, mask)
        if settings.mode == "hist-match":
            face = hist_match(face, dst_face, mask, settings.hist_threshold)

        roi = _face_roi(mat, r, frame.shape)
        if roi is None:
            continue
        x0, y0, x1, y1 = roi
        roi_mat = mat.copy()
        roi_mat[:, 2] += mat[:, :2] @ np.array([x0, y0], np.float64)
        if work != r:
            mask = cv2.resize(mask, (work, work), interpolation=cv2.INTER_LINEAR)
        mask = erode_blur_mask(mask, settings.erode, settings.blur)
        shape = (y1 - y0, x1 - x0)
        frame_mask = np.clip(unwarp_image(mask, scale_matrix(roi_mat, work / r), shape), 0.0, 1.0)
        frame_mask[frame_mask < 1.0 / 255.0] = 0.0
        if not frame_mask.any():
            continue
        frame_face = np.clip(unwarp_image(face, roi_mat, shape, border=cv2.BORDER_REPLICATE), 0.0, 1.0)
        frame_roi = out[y0:y1, x0:x1].astype(np.float32) / 255.0
        if settings.mode == "seamless":
            blended = seamless(frame_roi, frame_face, frame_mask)
        else:
            blended = overlay(frame_roi, frame_face, frame_mask)
        out[y0:y1, x0:x1] = _to_u8(blended)
        np.maximum(out_mask[y0:y1, x0:x1], _to_u8(frame_mask), out=out_mask[y0:y1, x0:x1])
    return out, out_mask


def merge_frame(
    frame_bgr_uint8: np.ndarray,
    records: Sequence[FaceRecord],
    predictor: Predictor,
    settings: MergeSettings = MergeSettings(),
) -> tuple[np.ndarray, np.ndarray]:
    """Replace every recorded face of one frame with the model's prediction.

    Args:
        frame_bgr_uint8: ``(H, W, 3) uint8`` BGR frame (not modified).
        records: the dst faces of this frame (may be empty: the frame is returned unchanged).
        predictor: the trained model (all faces are predicted as one batch).
        settings: blending settings.

    Returns:
        ``(merged (H, W, 3) uint8 BGR, mask (H, W) uint8 0..255)``.
    """
    _check_frame(frame_bgr_uint8)
    if not records:
        return frame_bgr_uint8.copy(), np.zeros(frame_bgr_uint8.shape[:2], np.uint8)
    prepared = prepare_faces(frame_bgr_uint8, records, predictor.resolution, predictor.face_type)
    faces, masks = predictor.predict(prepared.faces)
    return compose_faces(frame_bgr_uint8, prepared, faces, masks, settings)
