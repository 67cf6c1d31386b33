"""Merge settings and the per-frame merge: predicted faces back into a dst frame.

For every face of a frame (:func:`merge_frame`), in this order:

1. cut the dst face out of the frame at the model's resolution and face type
   (aligned again from the record's frame landmarks, :func:`prepare_faces`);
2. predict: run the model on all faces of the frame as one batch
   (:func:`run_predictor`; also the dst-side masks when ``mask`` uses ``learned-dst``);
3. build the raw face mask from the ``mask`` setting (:mod:`facelab.merge.masks`,
   on the raw prediction); colour transfer and histogram matching measure
   their statistics inside it;
4. super resolution: an optional ``enhancer`` upscales the predicted faces
   (the rest of the face steps run at its size);
5. colour transfer toward the dst face (``color``; ``-m`` variants measure
   inside the raw mask, plain ones on the whole aligned squares);
6. histogram match (``hist-match``, ``hist-match-bw``, ``seamless-hist-match``
   modes; inside the raw mask when ``masked_hist``);
7. degrade: ``bicubic_degrade``, then ``degrade_color``;
8. ``sharpen`` (positive: unsharp mask; negative: blur);
9. shape the mask: ``erode``, then feather by :data:`DEFAULT_FEATHER` plus
   ``blur`` (:func:`feather_width`), in face space at :data:`MASK_WORK_SIZE` or more;
10. ``face_scale``: scale face and mask about the face centre (the centroid
    of the dst landmark hull, which stays in place);
11. warp face and mask back into the frame (the face's region of interest);
12. ``motion_blur`` of the warped face along the face's motion;
13. blend: ``seamless`` (Poisson) variants, alpha ``overlay`` (``overlay`` and
    the hist-match modes), or a hard paste (``raw-rgb``);
14. ``alpha``: the merged frame gets the mask as a fourth channel.

``denoise_frame`` filters the whole frame before step 13; frames without faces
are filtered the same way (:func:`passthrough_frame`), so a clip does not
flicker between filtered and raw frames; otherwise they pass through unchanged. The
``raw-predict`` mode stops after step 9 and returns the aligned faces and
masks instead of a frame (:func:`predict_faces`, :func:`aligned_outputs`).

Everything but step 2 is plain numpy/OpenCV; :func:`prepare_faces`,
:func:`run_predictor` and :func:`compose_faces` are separate so a render loop
can run the model in one thread and the image work in others. Every option
that is off costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import InitVar, asdict, dataclass, fields
from typing import Any, Protocol

import cv2
import numpy as np

from facelab.align import crop_matrix, face_matrix, hull_mask, scale_matrix, transform_points, unwarp_image, warp_image
from facelab.checks import check_image
from facelab.color import color_transfer
from facelab.errors import SettingsError
from facelab.faceimage import FaceRecord
from facelab.types import FaceType
from facelab.merge import effects
from facelab.merge.blend import erode_blur_mask
from facelab.merge.masks import MaskInputs, build_masks, parse_mask
from facelab.merge.modes import DEFAULT_MODE, MERGE_MODES
from facelab.options import rename_field

MODES = tuple(MERGE_MODES)
"""Every merge mode, read from the one table :data:`facelab.merge.modes.MERGE_MODES`."""
SEAMLESS_MODES = tuple(name for name, m in MERGE_MODES.items() if m.blend is MERGE_MODES["seamless"].blend)
HIST_MODES = tuple(name for name, m in MERGE_MODES.items() if m.hist is not None)
MASK_WORK_SIZE = 256
"""Masks are eroded/blurred at no less than this side, so small models still get smooth edges."""
DEFAULT_FEATHER = 32
"""Width of the soft mask edge every merge gets before the ``blur`` setting is added, in pixels of a 512 px
face: 1/16 of the face's side whatever its size, enough that overlay shows no seam. As DeepFaceLab's
merger added the user's blur modifier to a default, a negative ``blur`` narrows this edge."""


Enhancer = Callable[[np.ndarray], np.ndarray]
"""Super resolution: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` -> ``(N, R*k, R*k, 3) float32`` BGR ``[0, 1]``."""


class Segmenter(Protocol):
    """What the ``segmentation-*`` masks need (:class:`facelab.seg.model.SegmenterRunner`)."""

    def masks_in_square(self, faces: np.ndarray, landmarks: np.ndarray | None, face_type: str) -> np.ndarray: ...


class Predictor(Protocol):
    """What the merge needs from a trained model (see ``facelab.inference.load_predictor``).

    A predictor may also have ``predict_dst_mask(batch) -> (N, R, R) float32``
    (the mask the model predicts for the dst faces themselves), which the
    ``learned-dst`` mask needs.
    """

    resolution: int
    face_type: str

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, R, R, 3) float32`` BGR ``[0, 1]`` dst faces -> ``(faces (N, R, R, 3), masks (N, R, R))`` float32 ``[0, 1]``."""
        ...


@dataclass(frozen=True)
class MergeSettings:
    """How predicted faces are blended into the frames (the order is in the module docstring).

    Attributes:
        mode: ``seamless`` (Poisson clone, default); ``seamless-hist-match``
            (histogram match, then seamless); ``overlay`` (alpha blend);
            ``hist-match`` (per-channel histogram match, then alpha blend);
            ``hist-match-bw`` (match the luma histogram only, keep the predicted
            chroma, then alpha blend); ``raw-rgb`` (the predicted face pasted
            where the mask is >= 0.5, no blending); ``raw-predict`` (no frame:
            the aligned predicted faces and masks, see :func:`predict_faces`).
        color: colour transfer of the predicted face toward the dst face:
            ``none``, ``rct`` (Reinhard Lab), ``lct``, ``mkl``, ``idt``,
            ``sot`` (see :mod:`facelab.color`). Plain names measure the
            colours of the whole aligned squares (face and background); the
            ``-m`` variants (``rct-m``, ..., ``sot-m``) only inside the raw
            face mask, so the background cannot pull the face's colour.
            Default ``rct-m`` (what facelab did before the plain variants
            existed; DeepFaceLab's rct also measured the masked face).
        mask: ``learned``, ``learned-dst``, ``dst``, ``predicted``,
            ``segmentation-prd``, ``segmentation-dst`` or a product of them
            joined by ``*``; default ``learned*dst`` (see
            :mod:`facelab.merge.masks`; the segmentation masks run the
            workspace's trained segmenter, ``facelab seg train``).
        erode: ``-200..200``, shrink (+) or grow (-) the mask, in pixels of a
            512 px face (DeepFaceLab's scale). Default 0.
        blur: ``-200..200``, added to the default feather :data:`DEFAULT_FEATHER`
            (32, same unit, about 6 % of the face): the soft mask edge is
            ``max(0, 32 + blur)`` wide (:func:`feather_width`). Default 0 (the
            default feather); positive widens it, negative narrows it, and
            ``-32`` or less gives a hard edge.
        face_scale: ``-50..50`` percent: scale the predicted face and its mask
            about the face centre (centroid of the dst landmark hull) before
            blending; +20 makes the face 1.2x as wide. Default 0.
        hist_threshold: ``0..255``, hist-match threshold (DeepFaceLab's 238; 0
            acts as 1). Default 238.
        masked_hist: hist-match statistics only inside the raw mask (default
            True); False: the whole aligned squares.
        seamless_hist: hist-match before the seamless blend. The same as mode
            ``seamless-hist-match``: either spelling gives equal settings
            (mode ``seamless-hist-match`` and ``seamless_hist=True``); only
            allowed with the seamless modes. Default False.
        degrade_color: ``0..100``, blend the predicted face toward a copy with
            3 bits per channel (DeepFaceLab's "color degrade power"). Default 0.
        bicubic_degrade: ``0..100``, downscale the predicted face by up to 4x
            bicubically and back, so a sharp swap matches a soft video. Default 0.
        sharpen: ``-100..100``, positive unsharp-masks the predicted face,
            negative blurs it. Default 0.
        motion_blur: ``0..100``, blur the face along its motion (given per face
            to :func:`compose_faces`; no motion given, no blur). Default 0.
        denoise_frame: ``0..500``, median-filter the whole frame before the
            merge (each 100 one 5x5 pass); frames without faces too. Default 0.
        alpha: the merged frame gets the mask as alpha: ``(H, W, 4)`` BGRA. Default False.
        suppress_jitter: steady the merged face's low-frequency colour and light from frame to frame
            (the render loop's :class:`facelab.merge.temporal.JitterFilter`; seamless blending's
            per-frame colour shifts are its main source). Default True (the stage applies it; one frame
            merged alone, as :func:`merge_frame` or the UI's preview does, cannot show it).
        enhancer: name of a face enhancer model (DeepFaceLab's "super resolution"), or None (default). The
            enhancer itself is passed to :func:`compose_faces` by the caller.
    """

    mode: str = DEFAULT_MODE
    color: str = "rct-m"
    mask: str = "learned*dst"
    erode: int = 0
    blur: int = 0
    face_scale: int = 0
    hist_threshold: int = 238
    masked_hist: bool = True
    seamless_hist: bool = False
    degrade_color: int = 0
    bicubic_degrade: int = 0
    sharpen: int = 0
    motion_blur: int = 0
    denoise_frame: int = 0
    alpha: bool = False
    enhancer: str | None = None
    suppress_jitter: bool = True
    super_resolution: InitVar[str | None] = None  # the old name of ``enhancer``: still accepted, with a DeprecationWarning

    def __post_init__(self, super_resolution: str | None) -> None:
        from facelab.merge.options import SETTINGS

        rename_field(self, "super_resolution", "enhancer", super_resolution)
        for option in SETTINGS:  # type, range and choices as declared (numpy scalars from a TOML/JSON reader are fine)
            value = getattr(self, option.name)
            if isinstance(value, np.bool_) or (option.kind is int and isinstance(value, np.integer) and not isinstance(value, bool)):
                value = value.item()
                object.__setattr__(self, option.name, value)
            if value is None and option.default is not None:  # None means "not given" to a command, not here
                raise SettingsError(f"merge setting {option.name}=None is not allowed", f"use {option.range_text()}")
            if option.name != "enhancer":
                option.check(value)
        parse_mask(self.mask)
        name = self.enhancer
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SettingsError(f"merge setting enhancer={name!r} is not allowed", "use the name of an enhancer model, or none")
        if isinstance(name, str) and name.strip().lower() == "none":
            object.__setattr__(self, "enhancer", None)
        # seamless_hist and mode seamless-hist-match are two spellings of one thing
        if self.seamless_hist and self.mode not in SEAMLESS_MODES:
            raise SettingsError(
                f"merge setting seamless_hist=True does not apply to mode={self.mode!r}",
                "use it with mode seamless (or mode seamless-hist-match), or set seamless_hist false",
            )
        if self.seamless_hist or self.mode == "seamless-hist-match":
            object.__setattr__(self, "mode", "seamless-hist-match")
            object.__setattr__(self, "seamless_hist", True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MergeSettings":
        """Settings from a dict (a settings file's keys, a step record's); old key names are read under their
        new ones (:data:`facelab.merge.options.RENAMED_SETTINGS`)."""
        from facelab.merge.options import RENAMED_SETTINGS

        d = {RENAMED_SETTINGS.get(k, k): v for k, v in d.items()}
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
        landmarks: ``(N, 68, 2) float32`` dst landmarks in model-face pixels
            (NaN for a face without the 68-point set, or None for all; the
            ``predicted`` mask then guesses the face box).
    """

    mats: np.ndarray
    faces: np.ndarray
    hulls: np.ndarray
    face_type: str
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.mats)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    return check_image(frame, "merge frame", dtype=np.uint8)


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
    lms = np.full((n, 68, 2), np.nan, np.float32)  # NaN: this face's landmarks are not the 68-point set
    for i, rec in enumerate(records):
        mats[i] = face_matrix(rec.source_landmarks, face_type, r)
        faces[i] = warp_image(frame, mats[i], r).astype(np.float32) / 255.0
        pts = transform_points(rec.source_landmarks, mats[i])
        hulls[i] = hull_mask(pts, (r, r), face_type)
        if len(pts) == 68:
            lms[i] = pts
    return PreparedFaces(mats, faces, hulls, FaceType.parse(face_type).value, lms)  # str() of the enum is "FaceType.FULL"


def _mask_names(settings: MergeSettings) -> tuple[str, ...]:
    return parse_mask(settings.mask)


def run_predictor(predictor: Predictor, prepared: PreparedFaces, settings: MergeSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run the model on the prepared faces of one frame (step 2).

    Returns:
        ``(faces (N, R, R, 3), masks (N, R, R), dst_masks (N, R, R) or None)``
        float32 ``[0, 1]``; ``dst_masks`` only when the ``mask`` setting uses
        ``learned-dst`` (pass it on to :func:`compose_faces`).

    Raises:
        SettingsError: ``learned-dst`` with a predictor that has no ``predict_dst_mask``.
    """
    faces, masks = predictor.predict(prepared.faces)
    return faces, masks, predict_dst_masks(predictor, prepared, settings)


def predict_dst_masks(predictor: Predictor, prepared: PreparedFaces, settings: MergeSettings) -> np.ndarray | None:
    """The dst-side masks ``(N, R, R) float32 [0, 1]`` when the ``mask`` setting uses ``learned-dst``, else None
    (the part of :func:`run_predictor` a caller with cached predictions runs on its own).

    Raises:
        SettingsError: ``learned-dst`` with a predictor that has no ``predict_dst_mask``.
    """
    if "learned-dst" not in _mask_names(settings):
        return None
    fn = getattr(predictor, "predict_dst_mask", None)
    if fn is None:
        raise SettingsError(
            f"merge setting mask={settings.mask!r}: this model cannot predict dst masks (learned-dst)",
            "use learned, dst or predicted masks with it",
        )
    return fn(prepared.faces)


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


@dataclass(frozen=True)
class FaceLayers:
    """The faces of one frame after the face steps (3-9), still in aligned space.

    Attributes:
        faces: ``(N, S, S, 3) float32`` BGR ``[0, 1]``; ``S`` is the model's
            ``R`` or the enhancer's output side.
        masks: ``(N, M, M) float32 [0, 1]`` shaped masks (eroded, feathered),
            ``M = max(S, MASK_WORK_SIZE)``.
    """

    faces: np.ndarray
    masks: np.ndarray


def _enhance(enhancer: Enhancer | None, faces: np.ndarray, settings: MergeSettings) -> np.ndarray:
    if enhancer is None:
        if settings.enhancer is not None:
            raise SettingsError(
                f"merge setting enhancer={settings.enhancer!r}: no enhancer model was given",
                "pass the loaded enhancer (enhancer=...) or set the enhancer setting to none",
            )
        return faces
    n, r = faces.shape[:2]
    out = np.asarray(enhancer(faces), np.float32)
    if out.ndim != 4 or out.shape[0] != n or out.shape[1] != out.shape[2] or out.shape[3] != 3 or out.shape[1] < r:
        raise ValueError(f"merge: enhancer returned {out.shape}, expected ({n}, {r}*k, {r}*k, 3)")
    return np.clip(out, 0.0, 1.0)


def face_layers(
    prepared: PreparedFaces,
    pred_faces: np.ndarray,
    pred_masks: np.ndarray,
    settings: MergeSettings,
    *,
    dst_masks: np.ndarray | None = None,
    enhancer: Enhancer | None = None,
    segmenter: Segmenter | None = None,
) -> FaceLayers:
    """Run the face steps (3-9 of the module docstring) on the predicted faces of one frame.

    Args:
        prepared: from :func:`prepare_faces` for this frame (``N`` faces, ``R`` px).
        pred_faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` model output.
        pred_masks: ``(N, R, R) float32`` ``[0, 1]`` learned masks.
        settings: the merge settings.
        dst_masks: ``(N, R, R) float32`` dst-side learned masks (``learned-dst``), see :func:`run_predictor`.
        enhancer: optional super resolution, :data:`Enhancer`.
        segmenter: the trained segmenter for the ``segmentation-*`` masks (:class:`facelab.seg.model.SegmenterRunner`).
    """
    n = len(prepared)
    r = prepared.faces.shape[1] if n else 0
    pred_faces, pred_masks = _check_predictions(pred_faces, pred_masks, n, r)
    if dst_masks is not None:
        dst_masks = np.clip(np.asarray(dst_masks, np.float32).reshape(n, r, r), 0.0, 1.0)
    inputs = MaskInputs(prepared.faces, pred_faces, pred_masks, dst_masks, prepared.hulls, prepared.landmarks, prepared.face_type,
                        segmenter)
    raw_masks = build_masks(_mask_names(settings), inputs) if n else np.zeros((0, r, r), np.float32)
    faces = _enhance(enhancer, pred_faces, settings) if n else pred_faces
    s = faces.shape[1] if n else r
    work = max(s, MASK_WORK_SIZE)
    out_faces = np.empty_like(faces)
    out_masks = np.empty((n, work, work), np.float32)
    color, masked_color = settings.color.removesuffix("-m"), settings.color.endswith("-m")
    mode = MERGE_MODES[settings.mode]
    for i in range(n):
        face, dst_face, mask = faces[i], prepared.faces[i], raw_masks[i]
        if s != r:  # statistics at the enhanced size
            dst_face = cv2.resize(dst_face, (s, s), interpolation=cv2.INTER_CUBIC)
            stat_mask = cv2.resize(mask, (s, s), interpolation=cv2.INTER_LINEAR)
        else:
            stat_mask = mask
        if color != "none":
            m = stat_mask if masked_color else None
            face = color_transfer(color, face, dst_face, m, m)
        if mode.hist is not None:
            face = mode.hist(face, np.clip(dst_face, 0.0, 1.0), stat_mask if settings.masked_hist else None, max(settings.hist_threshold, 1))
        for key, effect in effects.FACE_EFFECTS.items():  # an effect that is off costs nothing
            if getattr(settings, key):
                face = effect(face, getattr(settings, key))
        out_faces[i] = face
        if work != r:
            mask = cv2.resize(mask, (work, work), interpolation=cv2.INTER_LINEAR)
        out_masks[i] = erode_blur_mask(mask, settings.erode, feather_width(settings.blur))
    return FaceLayers(out_faces, out_masks)


def feather_width(blur: int) -> int:
    """The soft mask edge's width for a ``blur`` setting: :data:`DEFAULT_FEATHER` plus ``blur``, at least 0
    (pixels of a 512 px face; ``blur=-10`` -> 22, ``blur=-50`` -> 0, ``blur=40`` -> 72)."""
    return max(0, DEFAULT_FEATHER + int(blur))


def _face_centre(hull: np.ndarray) -> tuple[float, float]:
    """Centroid of the dst hull in aligned-face pixels (the square's centre when the hull is empty)."""
    m = cv2.moments(hull)
    if m["m00"] <= 0:
        c = (hull.shape[0] - 1) / 2.0
        return c, c
    return m["m10"] / m["m00"], m["m01"] / m["m00"]


def _scaled_about_centre(mat: np.ndarray, centre: tuple[float, float], face_scale: int) -> np.ndarray:
    """``mat`` (frame -> face) changed so that the face comes out ``1 + face_scale / 100`` times
    bigger about ``centre`` (aligned-face pixels), which stays where it was in the frame."""
    s = 1.0 + face_scale / 100.0
    c = np.asarray(centre, np.float64)
    out = mat / s
    out[:, 2] += c - c / s
    return out


def _check_motion(motion: Sequence[tuple[float, float] | None] | None, n: int) -> list[tuple[float, float] | None]:
    if motion is None:
        return [None] * n
    motion = list(motion)
    if len(motion) != n:
        raise ValueError(f"merge: expected one motion (dx, dy) or None per face ({n}), got {len(motion)}")
    return motion


def compose_faces(
    frame: np.ndarray,
    prepared: PreparedFaces,
    pred_faces: np.ndarray,
    pred_masks: np.ndarray,
    settings: MergeSettings,
    *,
    dst_masks: np.ndarray | None = None,
    motion: Sequence[tuple[float, float] | None] | None = None,
    enhancer: Enhancer | None = None,
    segmenter: Segmenter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend predicted faces into ``frame`` (steps 3-14 of the module docstring).

    Args:
        frame: ``(H, W, 3) uint8`` BGR (not modified).
        prepared: from :func:`prepare_faces` for this frame.
        pred_faces: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` model output.
        pred_masks: ``(N, R, R) float32`` ``[0, 1]`` learned masks.
        settings: how to blend (not ``raw-predict``: see :func:`aligned_outputs`).
        dst_masks: ``(N, R, R) float32`` dst-side learned masks, needed by the
            ``learned-dst`` mask (from :func:`run_predictor`).
        motion: one ``(dx, dy)`` (frame pixels, previous frame -> this one) or
            None per face, for ``motion_blur``; None: no motion blur.
        enhancer: super resolution applied to the predicted faces,
            :data:`Enhancer`; needed when ``settings.enhancer`` is set.

    Returns:
        ``(merged, mask)``: merged is ``(H, W, 3) uint8`` BGR, or ``(H, W, 4)``
        BGRA with alpha = mask when ``settings.alpha``; mask is ``(H, W) uint8``,
        the largest blend weight of any face at each pixel, 0..255 (for
        ``raw-rgb`` the soft mask too, though the paste is hard at 0.5).
    """
    _check_frame(frame)
    blend = MERGE_MODES[settings.mode].blend
    if blend is None:
        raise ValueError(f"compose_faces: mode {settings.mode} gives aligned faces, not a frame: use predict_faces or aligned_outputs")
    n = len(prepared)
    r = prepared.faces.shape[1] if n else 0
    motion = _check_motion(motion, n)
    layers = face_layers(prepared, pred_faces, pred_masks, settings, dst_masks=dst_masks, enhancer=enhancer, segmenter=segmenter)
    out = effects.denoise_frame(frame, settings.denoise_frame) if settings.denoise_frame else frame.copy()
    out_mask = np.zeros(frame.shape[:2], np.uint8)
    for i in range(n):
        face, mask = layers.faces[i], layers.masks[i]
        s, work = face.shape[0], mask.shape[0]
        mat = prepared.mats[i]
        if settings.face_scale:
            mat = _scaled_about_centre(mat, _face_centre(prepared.hulls[i]), settings.face_scale)
        roi = _face_roi(mat, r, frame.shape)
        if roi is None:
            continue
        x0, y0, x1, y1 = roi
        roi_mat = crop_matrix(mat, x0, y0)
        shape = (y1 - y0, x1 - x0)
        frame_mask = np.clip(unwarp_image(mask, scale_matrix(roi_mat, work / r), shape), 0.0, 1.0)
        frame_mask[frame_mask < 1.0 / 255.0] = 0.0
        if not frame_mask.any():
            continue
        face_mat = roi_mat if s == r else scale_matrix(roi_mat, s / r)
        frame_face = np.clip(unwarp_image(face, face_mat, shape, border=cv2.BORDER_REPLICATE), 0.0, 1.0)
        if settings.motion_blur and motion[i] is not None:
            width = r / np.sqrt(abs(np.linalg.det(mat[:, :2])))  # the face square's side in frame pixels
            frame_face = effects.motion_blur(frame_face, motion[i], settings.motion_blur, width)
        frame_roi = out[y0:y1, x0:x1].astype(np.float32) / 255.0
        out[y0:y1, x0:x1] = _to_u8(blend(frame_roi, frame_face, frame_mask))
        np.maximum(out_mask[y0:y1, x0:x1], _to_u8(frame_mask), out=out_mask[y0:y1, x0:x1])
    if settings.alpha:
        out = np.dstack([out, out_mask])
    return out, out_mask


def aligned_outputs(
    prepared: PreparedFaces,
    pred_faces: np.ndarray,
    pred_masks: np.ndarray,
    settings: MergeSettings,
    *,
    dst_masks: np.ndarray | None = None,
    enhancer: Enhancer | None = None,
    segmenter: Segmenter | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``raw-predict`` output of one frame: every predicted face after the face steps (3-9).

    Same arguments as :func:`compose_faces` (any mode; the blend settings are
    not used). Colour transfer, histogram matching (in the hist-match modes),
    degrade and sharpen are applied as the settings say.

    Returns:
        One ``(face (S, S, 3) uint8 BGR, mask (S, S) uint8 0..255)`` per face,
        ``S`` the model's resolution (or the enhancer's output side); the mask
        is the shaped (eroded, feathered) mask.
    """
    layers = face_layers(prepared, pred_faces, pred_masks, settings, dst_masks=dst_masks, enhancer=enhancer, segmenter=segmenter)
    out = []
    for face, mask in zip(layers.faces, layers.masks):
        s = face.shape[0]
        if mask.shape[0] != s:
            mask = cv2.resize(mask, (s, s), interpolation=cv2.INTER_AREA)
        out.append((_to_u8(face), _to_u8(mask)))
    return out


def predict_faces(
    frame: np.ndarray,
    records: Sequence[FaceRecord],
    predictor: Predictor,
    settings: MergeSettings = MergeSettings(mode="raw-predict"),
    *,
    enhancer: Enhancer | None = None,
    segmenter: Segmenter | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Predict every recorded face of one frame and return the aligned results (``raw-predict`` mode).

    Args:
        frame: ``(H, W, 3) uint8`` BGR frame (not modified).
        records: the dst faces of this frame (may be empty).
        predictor: the trained model.
        settings: colour transfer, mask and face effects to apply (any mode).
        enhancer: optional super resolution (:data:`Enhancer`).

    Returns:
        One ``(face (R, R, 3) uint8 BGR, mask (R, R) uint8)`` per record, in
        order (``R * k`` with an enhancer).
    """
    _check_frame(frame)
    if not records:
        return []
    prepared = prepare_faces(frame, records, predictor.resolution, predictor.face_type)
    faces, masks, dst_masks = run_predictor(predictor, prepared, settings)
    return aligned_outputs(prepared, faces, masks, settings, dst_masks=dst_masks, enhancer=enhancer, segmenter=segmenter)


def passthrough_frame(frame: np.ndarray, settings: MergeSettings) -> tuple[np.ndarray, np.ndarray]:
    """A frame without faces as the merge writes it: denoised like the merged frames when ``denoise_frame``
    is set (else an unchanged copy), with an all-zero mask (and alpha when asked for).

    Args:
        frame: ``(H, W, 3) uint8`` BGR (not modified).
        settings: the frame's merge settings.

    Returns:
        ``(out (H, W, 3) uint8 BGR, or (H, W, 4) BGRA with settings.alpha, mask (H, W) uint8 zeros)``.
    """
    _check_frame(frame)
    out = effects.denoise_frame(frame, settings.denoise_frame) if settings.denoise_frame else frame.copy()
    mask = np.zeros(frame.shape[:2], np.uint8)
    return (np.dstack([out, mask]) if settings.alpha else out), mask


def merge_frame(
    frame_bgr_uint8: np.ndarray,
    records: Sequence[FaceRecord],
    predictor: Predictor,
    settings: MergeSettings = MergeSettings(),
    *,
    motion: Sequence[tuple[float, float] | None] | None = None,
    enhancer: Enhancer | None = None,
    segmenter: Segmenter | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace every recorded face of one frame with the model's prediction.

    Args:
        frame_bgr_uint8: ``(H, W, 3) uint8`` BGR frame (not modified).
        records: the dst faces of this frame (may be empty: the frame is returned unchanged).
        predictor: the trained model (all faces are predicted as one batch).
        settings: blending settings (not ``raw-predict``: use :func:`predict_faces`).
        motion: per face ``(dx, dy)`` or None, for ``motion_blur`` (see :func:`compose_faces`).
        enhancer: super resolution (see :func:`compose_faces`).

    Returns:
        ``(merged (H, W, 3) uint8 BGR, or (H, W, 4) BGRA with settings.alpha, mask (H, W) uint8 0..255)``.
    """
    _check_frame(frame_bgr_uint8)
    if MERGE_MODES[settings.mode].blend is None:
        raise ValueError(f"merge_frame: mode {settings.mode} gives aligned faces, not a frame: use predict_faces")
    if not records:
        return passthrough_frame(frame_bgr_uint8, settings)
    prepared = prepare_faces(frame_bgr_uint8, records, predictor.resolution, predictor.face_type)
    faces, masks, dst_masks = run_predictor(predictor, prepared, settings)
    return compose_faces(frame_bgr_uint8, prepared, faces, masks, settings, dst_masks=dst_masks, motion=motion, enhancer=enhancer,
                         segmenter=segmenter)
