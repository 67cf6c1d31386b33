"""The interactive merger's engine: one dst frame merged again on every change of its settings.

A :class:`MergeSession` loads the model once and renders single frames
(:meth:`MergeSession.render`) exactly as ``facelab merge`` writes them: the same
steps (:mod:`facelab.merge.compose`), the same model variant, face records and
motion (:mod:`facelab.merge.sources`), and the same invisible watermark, so a
rendered frame's pixels are those of ``data_dst/merged/<frame>.png`` for the
same model and settings. The browser UI's merger page calls it; the web code is
elsewhere.

What a change costs. No merge setting changes what the model sees (the faces
are cut out at the model's resolution and face type whatever the settings;
``face_scale`` scales the finished face when it is put back), so the model runs
once per frame and model save, and a change of any blending or colour option
only composes the frame again. Kept per frame, for the last ``cache_frames``
frames shown:

- the decoded frame, its face records and their motion;
- the faces cut out for the model (:class:`~facelab.merge.compose.PreparedFaces`);
- the model's faces and masks; the dst-side masks once a ``learned-dst`` mask
  asks for them; the enhanced faces per enhancer (DeepFaceLab's super
  resolution), once one is chosen.

What is left of an update is composing: the face steps at the model's size
(a few ms) and the frame-sized work, warping the face back and blending it,
which grows with the face's area in the frame. Seamless (Poisson) blending of a
close-up face at 1280x720 costs about the whole 250 ms an update may take on 2
cores, so :meth:`MergeSession.render` can compose a draft on a smaller copy of
the frame (``scale``, picked by :func:`draft_scale`) while a control moves; the
exact frame follows when it stops.

When the model folder gets a new save (training saved a checkpoint), the next
render loads it and predicts again; decoded frames and records are kept.
:meth:`MergeSession.refresh` forgets everything (new frames or faces on disk).

Where a render can differ from ``facelab merge``: ``suppress_jitter`` (on by
default) is a running average over the frames before (the render loop's
:class:`~facelab.merge.temporal.JitterFilter`), which one frame alone cannot
show (:attr:`Rendered.notes` says so); and the merge runs the model on batches
of faces from several frames (``--batch-size``, default 8), whose arithmetic
may differ from one frame's batch by a rounding step, so a pixel could differ
by 1 (the merge's own tests allow that between batch sizes; a merge with
``--batch-size 1`` gives the same pixels by construction, and on the test clip
batch 8 did too).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import FaceRecord
from facelab.fileio import encode_image, read_image
from facelab.merge.compose import (
    MergeSettings,
    Predictor,
    PreparedFaces,
    aligned_outputs,
    compose_faces,
    passthrough_frame,
    predict_dst_masks,
    prepare_faces,
)
from facelab.merge.masks import parse_mask
from facelab.merge.masks import uses_segmenter
from facelab.merge.sources import frame_number, group_records, load_enhancer, load_segmenter, model_id, motions, resolve_model
from facelab.provenance.marker import Marker, require_marker
from facelab.provenance.watermark import MIN_SIZE as WATERMARK_MIN
from facelab.workspace import Workspace

MIN_SCALE = 0.25
"""The smallest draft scale :meth:`MergeSession.render` takes."""
VIEWS = ("image", "side_by_side", "mask")
"""What :meth:`MergeSession.png` encodes of a :class:`Rendered`."""


def markable(image: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, C) uint8``, enlarged (bicubic) so that its shorter side is at least the watermark's
    :data:`~facelab.provenance.watermark.MIN_SIZE` (a raw-predict face of a tiny model); else itself."""
    if min(image.shape[:2]) >= WATERMARK_MIN:
        return image
    k = WATERMARK_MIN / min(image.shape[:2])
    return cv2.resize(image, (round(image.shape[1] * k), round(image.shape[0] * k)), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class Rendered:
    """One frame as the interactive merger shows it.

    Attributes:
        frame: the frame number.
        source: the frame's file name (``00012.png``); merged files have the same name.
        settings: the settings it was merged with.
        image: ``(H, W, 3) uint8`` BGR merged frame, ``(H, W, 4)`` BGRA with ``settings.alpha``, watermarked:
            at ``scale`` 1 the pixels ``facelab merge`` writes to ``data_dst/merged/<frame>.png``. In ``raw-predict`` mode the
            aligned faces side by side (what ``merge --preview`` writes), or the frame when it has no face.
        mask: ``(H, W) uint8`` blend mask 0..255 (``data_dst/merged_mask/<frame>.png``; raw-predict: the
            faces' masks side by side).
        side_by_side: ``(H, W + W', 3) uint8`` BGR, the dst frame and the merged one side by side,
            watermarked (``merge --preview``'s ``_compare.png``), or None when not asked for.
        faces: faces merged.
        model_id: save id of the model that predicted them (None for a model given as an object).
        scale: 1 for the exact frame; less for a draft (:meth:`MergeSession.render`'s ``scale``): the image, mask
            and side-by-side are that much smaller, and only approximate the frame the merge writes.
        timings: milliseconds of each part that ran for this render (``decode``, ``prepare``, ``predict``,
            ``dst_masks``, ``enhance``, ``compose``, ``mark``); a part served from the cache is absent.
        notes: where this frame differs from what the merge would write, and why.
    """

    frame: int
    source: str
    settings: MergeSettings
    image: np.ndarray
    mask: np.ndarray
    side_by_side: np.ndarray | None
    faces: int
    model_id: str | None
    scale: float = 1.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class _Frame:
    """What one frame's renders share (see the module docstring)."""

    path: Path
    image: np.ndarray
    records: list[FaceRecord]
    motion: list | None = None
    prepared: PreparedFaces | None = None
    faces: np.ndarray | None = None
    masks: np.ndarray | None = None
    dst_masks: np.ndarray | None = None
    enhanced: dict[str, np.ndarray] = field(default_factory=dict)
    drafts: dict[float, tuple[np.ndarray, float, float]] = field(default_factory=dict)  # the last draft size only

    def scaled(self, scale: float) -> tuple[np.ndarray, float, float]:
        """The frame scaled by about ``scale`` (INTER_AREA) and the exact x and y factors of its rounded size."""
        if scale not in self.drafts:
            h, w = self.image.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            self.drafts = {scale: (cv2.resize(self.image, size, interpolation=cv2.INTER_AREA), size[0] / w, size[1] / h)}
        return self.drafts[scale]

    def forget_predictions(self) -> None:
        self.prepared = self.faces = self.masks = self.dst_masks = None
        self.enhanced = {}


class MergeSession:
    """The dst frames of a workspace, merged one at a time with a model loaded once (see the module docstring).

    Args:
        ws: the workspace (dst frames extracted, ``data_dst/aligned`` filled).
        name: model folder under ``model/``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` for the model and enhancers.
        gpu: the model trained with ``facelab train --gpu <gpu>`` (see :func:`~facelab.merge.sources.resolve_model`).
        marker: marks every frame shown (:func:`facelab.provenance.default_marker`); required.
        predictor: use this model instead of loading ``name`` (tests); it is never reloaded.
        cache_frames: how many frames keep their decoded image and predictions (least recently shown go first).

    Thread-safe: renders run one at a time (a UI that wants the latest change to win drops the requests
    that queued up behind a render).
    """

    def __init__(self, ws: Workspace, name: str = "quick", device: str = "cpu", *, gpu: int | None = None,
                 marker: Marker | None = None, predictor: Predictor | None = None, cache_frames: int = 8) -> None:
        self.marker = require_marker(marker, "merge session")
        if not (isinstance(cache_frames, int) and cache_frames >= 1):
            raise SettingsError(f"cache_frames: {cache_frames!r} is not a number of frames", "use 1 or more")
        self.ws, self.name, self.device, self.cache_frames = ws, name, device, cache_frames
        self._model_warnings: list[str] = []
        self._frame_warnings: list[str] = []
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, _Frame] = OrderedDict()
        self._enhancers: dict[str, object] = {}
        self._seg = None  # the segmenter, once a setting asks for a segmentation mask
        self._predictor = predictor
        self.model_id: str | None = None
        self._model_dir: Path | None = None
        self._state_stat: tuple | None = None
        ws.require_exists()
        if predictor is None:
            self._model_dir, self._prefix, model_warnings = resolve_model(ws, name, gpu)
            self._model_warnings = model_warnings
            self._load_model()
        self.refresh()

    # -- frames and faces ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the dst frames and face records again and forget every cached frame (not the model)."""
        with self._lock:
            paths = self.ws.require_frames("dst")
            by_frame, warnings = group_records(self.ws.require_aligned("dst"))
            self._paths = {n: p for p in paths if (n := frame_number(p.stem)) is not None}
            unnumbered = [p.name for p in paths if frame_number(p.stem) is None]
            if unnumbered:
                warnings.append(f"{len(unnumbered)} dst frame(s) without a frame number cannot be shown (e.g. {unnumbered[0]})")
            self._by_frame = by_frame
            self._by_number = {n: recs for fname, recs in by_frame.items() if (n := frame_number(Path(fname).stem)) is not None}
            self._frame_warnings = warnings
            self._cache.clear()

    @property
    def warnings(self) -> list[str]:
        """What the user should know about the model and the frames (variants not chosen, unreadable face files)."""
        return self._model_warnings + self._frame_warnings

    def frames(self) -> list[int]:
        """The dst frame numbers, ascending."""
        return sorted(self._paths)

    def face_counts(self) -> dict[int, int]:
        """Frame number -> faces recorded on it (0 for a frame without one), for a scrubber's marks."""
        return {n: len(self._by_frame.get(p.name, [])) for n, p in sorted(self._paths.items())}

    def _frame(self, number: int, timings: dict[str, float]) -> _Frame:
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or int(number) not in self._paths:
            lo, hi = (min(self._paths), max(self._paths)) if self._paths else (None, None)
            raise SettingsError(f"merge: there is no dst frame {number!r}",
                                f"use a frame number from {lo} to {hi}" if self._paths else "extract the dst frames first")
        number = int(number)
        entry = self._cache.get(number)
        if entry is None:
            t = time.perf_counter()
            path = self._paths[number]
            entry = _Frame(path, read_image(path), self._by_frame.get(path.name, []))
            timings["decode"] = _ms(t)
            self._cache[number] = entry
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        self._cache.move_to_end(number)
        return entry

    # -- the model ----------------------------------------------------------------------------
    def _state_path(self) -> Path:
        from facelab.train.checkpoint import STATE

        return self._model_dir / (self._prefix + STATE)

    def _load_model(self) -> None:
        """Load the model folder's newest save (its save id read from the very state it was loaded with)."""
        from facelab.device import resolve_device
        from facelab.inference import Predictor as TorchPredictor
        from facelab.train.checkpoint import load_checkpoint

        stat = _stat(self._state_path())
        dev = resolve_device(self.device)
        ckpt = load_checkpoint(self._model_dir, dev, with_optimizer=False, prefix=self._prefix)
        self._predictor = TorchPredictor(ckpt.model, dev)
        self.model_id = ckpt.state.get("save_id")
        self._state_stat = stat

    def _check_model(self, notes: list[str]) -> None:
        """Load the model again when its folder has a newer save; cheap (one ``stat``) when it has not."""
        if self._model_dir is None or _stat(self._state_path()) == self._state_stat:
            return
        if model_id(self.ws, self.name, self._prefix) == self.model_id:
            self._state_stat = _stat(self._state_path())
            return
        try:
            self._load_model()
        except FacelabError as e:  # e.g. caught in the middle of a save: show the last one, try again next time
            notes.append(f"the model's newest save could not be loaded ({e.message}): showing the one before")
            return
        for entry in self._cache.values():
            entry.forget_predictions()

    @property
    def predictor(self) -> Predictor:
        """The loaded model."""
        return self._predictor

    def _segmenter(self, st: MergeSettings):
        """The workspace's segmenter when ``st.mask`` names a segmentation mask (loaded on first use, again
        after it was retrained), else None."""
        if not uses_segmenter(st.mask):
            return None
        from facelab.seg.model import DEFAULT_NAME
        from facelab.train.checkpoint import save_id

        current = save_id(self.ws.model_dir(DEFAULT_NAME))
        if self._seg is None or self._seg.model_id != current:
            self._seg = load_segmenter(self.ws, self.device)
        return self._seg

    def _enhancer(self, name: str | None):
        if name is None:
            return None
        if name not in self._enhancers:
            self._enhancers[name] = load_enhancer(self.ws, name, self.device)
        return self._enhancers[name]

    def _predict(self, number: int, entry: _Frame, settings: MergeSettings, timings: dict[str, float]) -> None:
        """Fill in what ``settings`` need of the frame's model outputs that the cache does not hold."""
        p = self._predictor
        if entry.prepared is None:
            t = time.perf_counter()
            entry.prepared = prepare_faces(entry.image, entry.records, p.resolution, p.face_type)
            timings["prepare"] = _ms(t)
        if entry.faces is None:
            t = time.perf_counter()
            entry.faces, entry.masks = p.predict(entry.prepared.faces)
            timings["predict"] = _ms(t)
        if entry.dst_masks is None and "learned-dst" in parse_mask(settings.mask):
            t = time.perf_counter()
            entry.dst_masks = predict_dst_masks(p, entry.prepared, settings)
            timings["dst_masks"] = _ms(t)
        if settings.motion_blur and entry.motion is None:
            entry.motion = motions(entry.records, number, self._by_number)

    def _enhance(self, entry: _Frame, name: str | None, timings: dict[str, float]):
        """The enhancer ``name`` as the merge steps call it, answering from the frame's cache (the steps
        enhance exactly the predicted faces, once per frame)."""
        enhancer = self._enhancer(name)
        if enhancer is None:
            return None

        def cached(faces: np.ndarray) -> np.ndarray:
            if name not in entry.enhanced:
                t = time.perf_counter()
                entry.enhanced[name] = np.asarray(enhancer(faces), np.float32)
                timings["enhance"] = _ms(t)
            return entry.enhanced[name]

        return cached

    # -- rendering ----------------------------------------------------------------------------
    def render(self, frame: int, settings: MergeSettings, *, side_by_side: bool = False, scale: float = 1.0) -> Rendered:
        """Merge dst frame ``frame`` with ``settings``; the model runs only when the cache lacks its output.

        Args:
            frame: a frame number of :meth:`frames`.
            settings: the frame's merge settings (a :class:`MergePlan`'s ``settings_for(frame)``).
            side_by_side: also make :attr:`Rendered.side_by_side`.
            scale: ``0.25..1``: put the faces into the frame scaled by this (a draft, see :func:`draft_scale`);
                1 (default) gives the exact frame. The face steps run at full size either way; only the
                frame-sized work (warping back, blending) shrinks. Not used by ``raw-predict``.

        Raises:
            SettingsError: no such frame; settings that are not a :class:`MergeSettings`; a scale out of range;
                an enhancer or a ``learned-dst`` mask the model cannot give.
        """
        if not isinstance(settings, MergeSettings):
            raise SettingsError(f"merge: expected MergeSettings, got {type(settings).__name__}",
                                "build them with MergeSettings(...) or MergePlan.settings_for(frame)")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not MIN_SCALE <= scale <= 1:
            raise SettingsError(f"merge: scale {scale!r} is out of range", f"use {MIN_SCALE} to 1 (1: the exact frame)")
        scale = 1.0 if settings.mode == "raw-predict" else float(scale)
        with self._lock:
            timings: dict[str, float] = {}
            notes: list[str] = []
            entry = self._frame(frame, timings)
            self._check_model(notes)
            enhancer = self._enhancer(settings.enhancer)
            if entry.records:
                self._predict(int(frame), entry, settings, timings)
                enhancer = self._enhance(entry, settings.enhancer, timings)
            t = time.perf_counter()
            original, merged, mask = self._compose(entry, settings, enhancer, scale)
            timings["compose"] = _ms(t)
            t = time.perf_counter()
            image = self.marker.watermark(markable(merged))
            both = self.marker.watermark(markable(_side_by_side(original, merged))) if side_by_side else None
            timings["mark"] = _ms(t)
        if settings.suppress_jitter and settings.mode != "raw-predict":
            notes.append("suppress_jitter steadies the face over the frames before it: the merge applies it, this single frame does not show it")
        return Rendered(int(frame), entry.path.name, settings, image, mask, both, len(entry.records), self.model_id,
                        scale, timings, tuple(notes))

    def _compose(self, entry: _Frame, st: MergeSettings, enhancer, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps 3-14 of :mod:`facelab.merge.compose` on the cached model outputs: ``(dst frame as shown, merged,
        mask)``."""
        image = entry.image
        if st.mode == "raw-predict":  # the aligned faces side by side, as merge --preview shows them
            if not entry.records:
                return image, image, np.zeros(image.shape[:2], np.uint8)
            outs = aligned_outputs(entry.prepared, entry.faces, entry.masks, st, dst_masks=entry.dst_masks, enhancer=enhancer,
                                   segmenter=self._segmenter(st))
            return image, np.hstack([f for f, _ in outs]), np.hstack([m for _, m in outs])
        prepared, motion = entry.prepared, entry.motion if st.motion_blur else None
        if scale != 1.0:
            image, kx, ky = entry.scaled(scale)
            if prepared is not None:  # frame -> face affines of the smaller frame: x = x_small / k
                mats = prepared.mats.copy()
                mats[:, :, 0] /= kx
                mats[:, :, 1] /= ky
                prepared = replace(prepared, mats=mats)
            if motion is not None:
                motion = [None if m is None else (m[0] * kx, m[1] * ky) for m in motion]
        if not entry.records:
            return (image, *passthrough_frame(image, st))
        return (image, *compose_faces(image, prepared, entry.faces, entry.masks, st, dst_masks=entry.dst_masks,
                                      motion=motion, enhancer=enhancer, segmenter=self._segmenter(st)))

    def png(self, rendered: Rendered, view: str = "image", title: str | None = None) -> bytes:
        """PNG bytes of one view of ``rendered`` (:data:`VIEWS`), as the merge writes its files: the image
        and the side-by-side (already watermarked) with the synthetic-media labels and a signed C2PA manifest
        titled ``title`` (default the file name the merge or ``merge --preview`` gives it); the mask with the labels only."""
        from facelab.provenance.labels import label_png

        if view not in VIEWS:
            raise SettingsError(f"merge: no view {view!r}", f"use one of {', '.join(VIEWS)}")
        image = getattr(rendered, view)
        if image is None:
            raise SettingsError("merge: this render has no side-by-side view", "render it with side_by_side=True")
        data = label_png(encode_image(image, ".png"))
        if view == "mask":
            return data
        if title is None:
            title = rendered.source if view == "image" else f"{Path(rendered.source).stem}_compare.png"
        return self.marker.sign_bytes(data, "image/png", title)

    def jpeg(self, rendered: Rendered, view: str = "image", quality: int = 90, title: str | None = None) -> bytes:
        """JPEG bytes (``quality`` 1..100) of the image or the side-by-side view of ``rendered``, marked as
        :meth:`png` marks them: the pixels carry the watermark (it survives JPEG), a COM segment the
        synthetic-media statement, and a signed C2PA manifest titled ``title`` (default the file name as a
        ``.jpg``). For a live view: one 1280x720 photo took 6 ms and 150 KB at quality 90, its PNG 65 ms and
        1.3 MB. A BGRA image
        (``settings.alpha``) and the mask have no JPEG: use :meth:`png`."""
        from facelab.provenance.labels import label_jpeg

        if view not in ("image", "side_by_side"):
            raise SettingsError(f"merge: no JPEG of view {view!r}", "use image or side_by_side (the mask: png)")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise SettingsError(f"merge: JPEG quality {quality!r} is out of range", "use 1 to 100")
        image = getattr(rendered, view)
        if image is None:
            raise SettingsError("merge: this render has no side-by-side view", "render it with side_by_side=True")
        if image.ndim == 3 and image.shape[2] == 4:
            raise SettingsError("merge: a frame with alpha has no JPEG", "use png")
        if title is None:
            stem = Path(rendered.source).stem
            title = f"{stem}.jpg" if view == "image" else f"{stem}_compare.jpg"
        return self.marker.sign_bytes(label_jpeg(encode_image(image, ".jpg", quality)), "image/jpeg", title)


def draft_scale(last: Rendered, budget_ms: float = 250.0) -> float:
    """The ``scale`` for live renders of a frame while a control moves, from a render of it (``last``).

    The frame-sized work (warping back, blending) grows with the frame's area, and it is most of
    ``compose``: a seamless blend of a close-up face at 1280x720 took ~250 ms on 2 cores
    (``benchmarks/bench_merge_preview.py --zoom 2.5``), overlay ~35 ms. Returns the largest of 1, 0.75,
    0.5, 0.25 whose ``compose + mark`` time, estimated as ``last``'s times the area ratio, fits in 60 % of
    ``budget_ms`` (the rest is the request and the PNG), or 0.25. Render the exact frame (scale 1) once
    the control stops, or to apply settings.
    """
    full = (last.timings.get("compose", 0.0) + last.timings.get("mark", 0.0)) / (last.scale * last.scale)
    for scale in (1.0, 0.75, 0.5):
        if full * scale * scale <= 0.6 * budget_ms:
            return scale
    return MIN_SCALE


def _side_by_side(image: np.ndarray, merged: np.ndarray) -> np.ndarray:
    """The dst frame and the merged one (its BGR) side by side, the merged one scaled to the frame's height."""
    side = merged[..., :3]
    if side.shape[0] != image.shape[0]:
        scale = image.shape[0] / side.shape[0]
        side = cv2.resize(side, (max(1, round(side.shape[1] * scale)), image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.hstack([image, side])


def _stat(path: Path) -> tuple | None:
    try:
        s = path.stat()
    except OSError:
        return None
    return s.st_ino, s.st_mtime_ns, s.st_size


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
