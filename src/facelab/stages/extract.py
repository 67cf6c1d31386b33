"""``facelab extract src|dst``: detect, landmark, align and save every face of every frame.

Pipeline: frames are decoded ahead on a worker thread, detection and landmarks
run on the calling thread (ONNX Runtime and dlib release the GIL), and warping,
JPEG encoding and writing go to worker threads. Each finished frame is journaled
in the side's step record ``extract`` (:mod:`facelab.steprecord`, which also holds
the face-shaping settings), so an interrupted run continues where it stopped.

Per face: detector box -> dlib landmarks -> (``accurate``) a second landmark
pass on the aligned crop, averaged over jittered boxes
(:mod:`facelab.landmarks.accurate`) -> a plausibility check that drops faces
whose aligned square is far larger or smaller than the detector box -> (with a
``reference``) an identity check. With ``smooth``, a second phase smooths the
landmark tracks over time (:mod:`facelab.landmarks.smooth`) and re-cuts the
faces from the smoothed landmarks. With ``debug``, ``aligned_debug/<frame>.jpg``
is written for every frame (drawn from the stored face metadata for frames
extracted earlier without it); the step record ``extract-debug`` lists the frames
whose debug image was written, so one missing from that folder was deleted by
the user: :func:`redo_deleted_debug` extracts those frames again.
:func:`manual_todo` lists frames awaiting manual extraction. Options are
documented in ``docs/extraction.md``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from facelab import align, jobs
from facelab.detect import create_detector, parse_device
from facelab.errors import FaceFileError, FacelabError, SettingsError
from facelab.faceimage import FaceRecord, read_record, write_face
from facelab.find_faces import (  # noqa: F401 - also this module's public names, as before the move
    UNIT_AREA_RATIO,
    FoundFace,
    crop_ratio,
    crop_ratio_bounds,
    draw_debug,
    draw_debug_records,
    find_faces,
    load_reference,
    make_face,
    plausible,
)
from facelab.fileio import atomic_write_bytes, atomic_write_json, read_image, write_image
from facelab.identity import DEFAULT_THRESHOLD
from facelab.landmarks import create_landmarker
from facelab.landmarks import smooth as lm_smooth
from facelab.masks.polygons import remap_extra
from facelab.options import Option, rename_field
from facelab.pipeline import prefetch
from facelab.progress import track
from facelab.stages import Summary
from facelab.steprecord import Saved, StepRecord
from facelab.types import FaceType
from facelab.workspace import Workspace, check_side


_FACE, _RUN = "Faces (kept from the existing extraction when left out)", "Options"

OPTIONS: tuple[Option, ...] = (
    Option("face_type", str, "full", "How much of the head to keep.", choices=tuple(t.value for t in FaceType),
           group=_FACE, metavar="TYPE", shown_default="`full`",
           doc="how much of the head the square keeps: half (brows to lips), mid, full (cheeks and chin), whole (adds "
               "the forehead), head (the whole head with hair)"),
    Option("size", int, 512, "Aligned face size in pixels.", lo=64, hi=2048, group=_FACE, hint="use 64..2048 (default 512)",
           doc="side of the aligned face in pixels (64..2048)"),
    Option("jpeg_quality", int, 90, "JPEG quality 1-100.", flags=("--jpeg-quality",), lo=1, hi=100, group=_FACE,
           hint="use 1..100 (default 90)", doc="JPEG quality of the faces"),
    Option("detector", str, "retinaface", "Face detector (facelab.detect's registry).", group=_FACE, metavar="NAME",
           shown_default="`retinaface`"),
    Option("landmarks", str, "dlib68", "Landmark model (facelab.landmarks' registry).", group=_FACE, metavar="NAME",
           shown_default="`dlib68`"),
    Option("max_faces", int, 0, "Keep at most N faces per frame (largest first); 0 = all.", flags=("--max-faces",), lo=0,
           group=_FACE, hint="use 0 (all) or more", shown_default="0 (all)",
           doc="keep at most N faces per frame, largest first"),
    Option("min_score", float, 0.7, "Detector confidence threshold.", flags=("--min-score",), lo=0.05, hi=1.0, group=_FACE,
           hint="use 0.05..1.0 (default 0.7)", doc="detector confidence threshold (0.5 for small or dark faces)"),
    Option("rotate", bool, True, "Look again in the frame turned 90, 180 and 270 degrees when nothing is found.",
           flags=("--rotate/--no-rotate",), group=_FACE, doc="when nothing is found, look again in the frame turned by "
                                                            "90, 180 and 270 degrees (faces lying down)"),
    Option("accurate", bool, True, "Second landmark pass on the aligned crop, averaged over jittered boxes (less shake).",
           flags=("--accurate/--no-accurate",), group=_FACE,
           doc="second landmark pass on the aligned crop (below)"),
    Option("smooth", bool, False, "Smooth landmarks over time (for dst); never across scene cuts.",
           flags=("--smooth/--no-smooth",), group=_FACE,
           doc="smooth landmarks over time, never across cuts (for dst; below)"),
    Option("reference", Path, "", "Photo of the person, or a folder of their aligned faces: keep only their faces.",
           group=_FACE, shown_default="none",
           doc="keep only the faces of the person in PATH (below)", metavar="PATH"),
    Option("reference_threshold", float, DEFAULT_THRESHOLD, "Identity distance below which a face counts as the reference "
                                                            "person.", flags=("--reference-threshold",), lo=0.0, lo_open=True,
           hi=2.0, group=_FACE, hint="use 0..2 (default 0.6; lower is stricter)",
           doc="identity distance below which a face is that person"),
    Option("debug", bool, False, "Write aligned_debug/<frame>.jpg with box, landmarks, hull and crop (drawn from the faces for "
                                 "frames already extracted).", flags=("--debug/--no-debug",), group=_RUN,
           doc="write `aligned_debug/<frame>.jpg`: box (red), landmarks (green), hull (blue), crop square (yellow); on "
               "a finished extraction, draws the missing ones from the faces without detecting again"),
    Option("workers", int, 0, "Worker threads for detection and writing; 0 = all cores.", lo=0, group=_RUN,
           hint="use 0 (all cores) or more"),
    Option("device", str, "auto", "Where the face detector runs: auto (the best GPU if ONNX Runtime has CUDA, else the CPU), "
                                  "cpu, cuda or cuda:N. Landmarks always run on the CPU.", group=_RUN, metavar="D",
           shown_default="`auto`", doc="where the face detector runs (below); landmarks always run on the CPU"),
)
"""Every setting of :class:`ExtractSettings`, declared once (see :mod:`facelab.options`): the CLI's flags, the
checks and the table in ``docs/extraction.md`` come from here."""
RUN_ONLY = ("debug", "workers", "device")
"""Settings that do not change what the faces look like (left out of :meth:`ExtractSettings.output_key`)."""


@dataclass(frozen=True)
class ExtractSettings:
    """Settings of the extract step: one field per option of :data:`OPTIONS`, where each is declared with its
    default, range and help (``facelab extract --help`` lists them)."""

    face_type: str = "full"
    size: int = 512
    jpeg_quality: int = 90
    detector: str = "retinaface"
    landmarks: str = "dlib68"
    max_faces: int = 0
    min_score: float = 0.7
    rotate: bool = True
    debug: bool = False
    workers: int = 0
    accurate: bool = True
    smooth: bool = False
    reference: str = ""
    reference_threshold: float = DEFAULT_THRESHOLD
    device: str = "auto"
    threads: InitVar[int | None] = None  # the old name of ``workers``: still accepted, with a DeprecationWarning

    def __post_init__(self, threads: int | None) -> None:
        rename_field(self, "threads", "workers", threads)
        FaceType.parse(self.face_type)  # "unknown face type ...", as every other reader of a face type says
        for option in OPTIONS:
            option.check(getattr(self, option.name))
        parse_device(self.device)
        if self.reference and not Path(self.reference).exists():
            raise SettingsError(f"reference {self.reference} does not exist", "give an image showing the person, or a folder of their aligned faces")

    def output_key(self) -> dict[str, Any]:
        """The settings that change what the aligned faces look like."""
        return {k: v for k, v in asdict(self).items() if k not in RUN_ONLY}


def recorded_settings(ws: Workspace, side: str) -> dict[str, Any]:
    """The face-shaping settings the side's aligned faces were extracted with (``{}`` if none are recorded).

    Only keys :class:`ExtractSettings` knows are returned, so a caller can fill
    the options a user did not give with them.
    """
    saved = _record(ws, check_side(side)).load()
    recorded = saved.settings if saved is not None else None
    if not isinstance(recorded, dict):
        return {}
    known = {f.name for f in fields(ExtractSettings)}
    return {k: v for k, v in recorded.items() if k in known}


STEP, DEBUG_STEP = "extract", "extract-debug"  # step records: the extraction; the frames given a debug image


def _record(ws: Workspace, side: str) -> StepRecord:
    return ws.step_record(STEP, side, legacy=_legacy)


def _debug_record(ws: Workspace, side: str) -> StepRecord:
    return ws.step_record(DEBUG_STEP, side, legacy=_legacy_debug)


def _legacy(folder: Path) -> Saved | None:
    """Facelab before step records: ``extract.json`` (settings, completed) and ``extract_done.txt`` (a frame
    name a line), either of which may be missing."""
    files = [p for p in (folder / "extract.json", folder / "extract_done.txt") if p.exists()]
    if not files:
        return None
    previous = _read_json(folder / "extract.json")
    settings = previous.get("settings") if isinstance(previous, dict) else None
    return Saved(settings=settings if isinstance(settings, dict) else {},
                 done={n: "" for n in _read_lines(folder / "extract_done.txt")},
                 completed=bool(isinstance(previous, dict) and previous.get("completed")), legacy_files=files)


def _legacy_debug(folder: Path) -> Saved | None:
    """``debug_done.txt`` of facelab before step records: the frames whose debug image was written."""
    path = folder / "debug_done.txt"
    return Saved(settings={}, done={n: "" for n in _read_lines(path)}, legacy_files=[path]) if path.exists() else None


def done_frames(ws: Workspace, side: str) -> list[str]:
    """The side's frames extracted so far (also by an interrupted run), in the order they finished."""
    saved = _record(ws, side).load()
    return list(saved.done) if saved is not None else []


def _debug_written(ws: Workspace, side: str, done: set[str] | list[str]) -> set[str]:
    """Frames whose debug image was written. Workspaces from before this was recorded:
    if any debug image exists, every extracted frame is taken to have had one."""
    saved = _debug_record(ws, side).load()
    if saved is not None:
        return set(saved.done)
    return set(done) if any(ws.aligned_debug_dir(side).glob("*.jpg")) else set()


def deleted_debug_frames(ws: Workspace, side: str) -> list[str]:
    """Extracted frames whose ``aligned_debug`` image was written and has since been deleted, sorted."""
    check_side(side)
    done = done_frames(ws, side)
    if not done:
        raise FacelabError(f"data_{side} has not been extracted yet", f"run `facelab extract {side}` first")
    if not _debug_written(ws, side, done):
        raise FacelabError(
            f"{ws.aligned_debug_dir(side)} holds no debug images, so none can have been deleted",
            f"run `facelab extract {side} --debug` (it draws them from the extracted faces), delete the bad frames from aligned_debug, then run this again",
        )
    return _deleted_debug(ws, side, done)


def _deleted_debug(ws: Workspace, side: str, done: list[str]) -> list[str]:
    debug_dir = ws.aligned_debug_dir(side)
    return sorted(n for n in set(done) & _debug_written(ws, side, done) if not (debug_dir / f"{Path(n).stem}.jpg").exists())


def _open_debug_log(ws: Workspace, side: str, done: set[str] | list[str]) -> StepRecord:
    """The ``extract-debug`` record, begun with the frames it holds (a workspace from before it: the frames
    it had); ``.done(frame)`` adds one."""
    record = _debug_record(ws, side)
    saved = record.load()
    record.begin({}, sorted(saved.done) if saved is not None else sorted(_debug_written(ws, side, done)))
    return record


def _faces_of(aligned: Path, stem: str) -> list[Path]:
    """Aligned face files cut from the frame ``stem`` (``<stem>_<i>.jpg|png``)."""
    return sorted(p for p in list(aligned.glob(f"{stem}_*.jpg")) + list(aligned.glob(f"{stem}_*.png")) if p.stem.rsplit("_", 1)[0] == stem)


def write_missing_debug(ws: Workspace, side: str, pool: ThreadPoolExecutor | None = None) -> int:
    """Draw ``aligned_debug/<frame>.jpg`` from the stored faces for extracted frames that never had one.

    Frames whose debug image was written and later deleted are left alone (they
    mark frames for :func:`redo_deleted_debug`). Returns the number written.
    """
    done = done_frames(ws, side)
    debug_dir = ws.aligned_debug_dir(side)
    written = _debug_written(ws, side, done)
    missing = [p for p in ws.frame_paths(side) if p.name in set(done) - written and not (debug_dir / f"{p.stem}.jpg").exists()]
    if not missing:
        return 0
    records: dict[str, list[FaceRecord]] = {}
    for p in ws.aligned_paths(side):
        try:
            rec = read_record(p)
        except FaceFileError:
            continue  # not a face (a stray file): nothing to draw
        records.setdefault(rec.source_filename, []).append(rec)
    debug_dir.mkdir(parents=True, exist_ok=True)
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=2)
    try:
        with _open_debug_log(ws, side, done) as log:
            for path, image in track(prefetch(read_image, missing, pool), len(missing), f"debug images {side}"):
                faces = sorted(records.get(path.name, []), key=lambda r: r.face_index)
                write_image(debug_dir / f"{path.stem}.jpg", draw_debug_records(image, faces), 90)
                log.done(path.name)
    finally:
        if own_pool:
            pool.shutdown()
    return len(missing)


@dataclass
class _Pass:
    """What one pass over the frames found (:func:`_extract_frames`)."""

    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    smoothed: int = 0
    smooth_skipped: list[str] = field(default_factory=list)
    debug_drawn: int = 0


@jobs.step
def run(ws: Workspace, side: str, settings: ExtractSettings = ExtractSettings(), force: bool = False) -> Summary:
    """Extract aligned faces of ``side`` into ``data_<side>/aligned``. See module docstring."""
    check_side(side)
    start = time.perf_counter()
    frames = ws.require_frames(side)
    # -- what is done already (faces extracted with other settings are refused without --force)
    record = _record(ws, side)
    done_order, previous = _resume(ws, side, settings, record, force)
    # -- the models first: a device or reference that does not work must not cost the existing faces (--force)
    detector, landmarker, reference = _models(settings)
    for d in (ws.aligned_dir(side), ws.aligned_debug_dir(side), ws.state_dir(side)):
        d.mkdir(parents=True, exist_ok=True)
    if force:
        _clear(ws, side, record)
    record.begin(settings.output_key(), done_order)
    # -- the frames left: detect, align, write; then smoothing and debug images
    done = set(done_order)
    todo = [p for p in frames if p.name not in done]
    found = _extract_frames(ws, side, settings, todo, (detector, landmarker, reference), record, done,
                            smooth=settings.smooth and bool(todo or not (previous or {}).get("completed")))
    # -- the record of frames without a face, and the summary
    old_no_face = _read_lines(ws.no_face_list(side)) if done else []
    ws.no_face_list(side).write_text("".join(n + "\n" for n in sorted(set(old_no_face) | set(found.no_face))))
    record.finish()
    total_faces = len(ws.aligned_paths(side))
    if total_faces == 0:
        raise FacelabError(
            f"no face found in any of the {len(frames)} frames of data_{side}",
            "check that the video shows a face; try --min-score 0.5 for small or dark faces",
        )
    summary = _summary(ws, side, settings, found, len(frames), len(todo), total_faces, done)
    summary.step += f" ({getattr(detector, 'device', settings.device)})"
    summary.seconds = time.perf_counter() - start
    return summary


def _resume(ws: Workspace, side: str, settings: ExtractSettings, record: StepRecord,
            force: bool) -> tuple[list[str], dict | None]:
    """``(frames done, in order; the previous run's settings and completion)``; with ``force`` nothing is done.
    Raises :class:`SettingsError` when the faces there were extracted with other settings (without ``force``)."""
    saved = record.load()
    previous = {"settings": saved.settings, "completed": saved.completed} if saved is not None and saved.settings else None
    aligned = ws.aligned_dir(side)
    if not force and previous and previous.get("settings") != settings.output_key() and aligned.exists() and any(aligned.iterdir()):
        raise SettingsError(
            f"{aligned} holds faces extracted with other settings ({_diff(previous.get('settings', {}), settings.output_key())})",
            f"run `facelab extract {side} --force` to extract again with the new settings",
        )
    if saved is None or force:
        return [], previous
    if saved.done and not ws.aligned_paths(side):
        # every face of the earlier run is gone (the folder emptied or deleted, as DeepFaceLab users do to
        # extract again): nothing is left to keep, so every frame is extracted again, with these settings
        return [], None
    return list(saved.done), previous


def _clear(ws: Workspace, side: str, record: StepRecord) -> None:
    """``--force``: the faces, debug images and records of earlier runs go."""
    aligned, debug_dir = ws.aligned_dir(side), ws.aligned_debug_dir(side)
    for p in list(aligned.glob("*.jpg")) + list(aligned.glob("*.png")) + list(debug_dir.glob("*.jpg")):
        p.unlink()
    record.reset()
    _debug_record(ws, side).reset()


def _extract_frames(ws: Workspace, side: str, settings: ExtractSettings, todo: list[Path], models: tuple,
                    record: StepRecord, done: set[str], smooth: bool) -> _Pass:
    """Find and write the faces of the frames ``todo`` (each frame is logged as done once its files are written),
    then smooth the landmark tracks (``smooth``) and draw missing debug images."""
    detector, landmarker, reference = models
    aligned, debug_dir = ws.aligned_dir(side), ws.aligned_debug_dir(side)
    out = _Pass()
    # frames whose faces are still being written, oldest first: logged as done once written
    writing: deque[tuple[str, list[Future[None]]]] = deque()
    debug_log = _open_debug_log(ws, side, done) if settings.debug and todo else nullcontext()
    with ThreadPoolExecutor(max_workers=2) as pool, record as log, debug_log as dlog:

        def flush(block: bool) -> None:
            while writing and (block or all(f.done() for f in writing[0][1])):
                name, futs = writing.popleft()
                for f in futs:
                    f.result()  # re-raise a write error (disk full ...) here
                log.done(name)
                if dlog is not None:
                    dlog.done(name)

        for path, image in track(prefetch(read_image, todo, pool), len(todo), f"extract {side}"):
            found = find_faces(image, detector, landmarker, settings, reference, out.dropped)
            futs = [pool.submit(_write_face, image, f, i, path, aligned, settings) for i, f in enumerate(found)]
            if settings.debug:
                futs.append(pool.submit(lambda im=image, fs=found, p=path: write_image(debug_dir / f"{p.stem}.jpg", draw_debug(im, fs, settings), 90)))
            out.faces += len(found)
            if not found:
                out.no_face.append(path.name)
            writing.append((path.name, futs))
            flush(block=len(writing) > 8)
        flush(block=True)
        out.smoothed = smooth_faces(ws, side, settings, pool, out.smooth_skipped) if smooth else 0
        # frames extracted earlier without --debug: draw theirs from the stored faces, no detection
        out.debug_drawn = write_missing_debug(ws, side, pool) if settings.debug else 0
    return out


def _summary(ws: Workspace, side: str, settings: ExtractSettings, found: _Pass, n_frames: int, n_todo: int,
             total_faces: int, done: set[str]) -> Summary:
    summary = Summary(
        step=f"extract {side}",
        counts={"frames": n_todo, "skipped (already done)": n_frames - n_todo, "faces": found.faces,
                "frames without face": len(found.no_face), "dropped (implausible)": found.dropped.get("implausible", 0),
                "faces in set": total_faces},
        outputs=[str(ws.aligned_dir(side))],
    )
    if settings.reference:
        summary.counts["dropped (other person)"] = found.dropped.get("other person", 0)
    if settings.smooth:
        summary.counts["smoothed faces"] = found.smoothed
        summary.warnings += found.smooth_skipped
    if found.debug_drawn:
        summary.counts["debug images drawn from the faces"] = found.debug_drawn
    if found.no_face:
        summary.warnings.append(f"{len(found.no_face)} frame(s) without a face (listed in {ws.no_face_list(side)})")
    deleted = _deleted_debug(ws, side, done_frames(ws, side)) if settings.debug else []
    if deleted:
        summary.warnings.append(f"{len(deleted)} debug image(s) deleted from {ws.aligned_debug_dir(side)}: run `facelab extract "
                                f"{side} --redo-deleted-debug` (with e.g. a lower --min-score) to extract those frames again")
    return summary


def _models(settings: ExtractSettings):
    """``(detector, landmarker, reference embedding or None)`` for ``settings``."""
    threads = settings.workers or os.cpu_count() or 2
    detector = create_detector(settings.detector, threads=threads, score_threshold=settings.min_score, device=settings.device)
    landmarker = create_landmarker(settings.landmarks)
    reference = load_reference(settings.reference, detector, landmarker, settings) if settings.reference else None
    return detector, landmarker, reference


def smooth_faces(ws: Workspace, side: str, settings: ExtractSettings, pool: ThreadPoolExecutor | None = None,
                 skipped: list[str] | None = None) -> int:
    """Second phase of ``--smooth``: smooth every face's landmark track and re-cut the faces.

    Always starts from the unsmoothed landmarks (kept in ``extra["raw_landmarks"]``),
    so running it again gives the same faces. Scene cuts are found from frame
    thumbnails; tracks also break at frames without the face and at big jumps.
    Returns the number of faces rewritten; a face file that cannot be read is left as it is and named in
    ``skipped``.
    """
    by_frame: dict[str, list[tuple[Path, FaceRecord]]] = {}
    for p in ws.aligned_paths(side):
        try:
            rec = read_record(p)
        except FaceFileError as e:  # left as it is; named in the summary
            if skipped is not None:
                skipped.append(f"not smoothed: {e.message}")
            continue
        by_frame.setdefault(rec.source_filename, []).append((p, rec))
    frame_paths = [p for p in ws.frame_paths(side) if p.name in by_frame]
    if not frame_paths:
        return 0
    all_names = [p.name for p in ws.frame_paths(side)]
    position = {n: i for i, n in enumerate(all_names)}
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=2)
    try:
        # cut flags: a gap in frame numbers breaks tracks too (the face left the picture)
        thumbs = [lm_smooth.thumbnail(img) for _, img in prefetch(read_image, frame_paths, pool)]
        cuts = [False] + [
            position[b.name] != position[a.name] + 1 or lm_smooth.is_cut(ta, tb)
            for a, b, ta, tb in zip(frame_paths, frame_paths[1:], thumbs, thumbs[1:])
        ]
        faces = [sorted(by_frame[p.name], key=lambda pr: pr[1].face_index) for p in frame_paths]
        raw = [[np.asarray(r.extra.get("raw_landmarks", r.source_landmarks), np.float32) for _, r in fs] for fs in faces]
        smoothed = lm_smooth.smooth_landmarks(raw, cuts)
        index = {p.name: t for t, p in enumerate(frame_paths)}

        def rewrite(item: tuple[Path, np.ndarray]) -> int:
            frame, image = item
            t = index[frame.name]
            for (path, rec), lm_raw, lm in zip(faces[t], raw[t], smoothed[t]):
                mat = align.face_matrix(lm, rec.face_type, rec.size)
                new = rec.replace(
                    source_landmarks=lm,
                    landmarks=align.transform_points(lm, mat),
                    image_to_face_mat=mat,
                    extra={**remap_extra(rec.extra, rec.image_to_face_mat, mat, rec.size),  # polygons and applied mask move too
                           "raw_landmarks": np.round(lm_raw.astype(np.float64), 3).tolist(), "smoothed": True},
                )
                write_face(path, align.warp_image(image, mat, rec.size), new, settings.jpeg_quality)
            return len(faces[t])

        return sum(rewrite(item) for item in prefetch(read_image, frame_paths, pool))
    finally:
        if own_pool:
            pool.shutdown()


def manual_todo(ws: Workspace, side: str, no_face: bool = True) -> list[str]:
    """List frames awaiting manual extraction in ``data_<side>/.facelab/manual_todo.json``.

    ``no_face``: add the frames listed in ``no_face.txt`` (``--manual-fix``).
    Frames already in the file stay there (the manual extraction UI, or
    :func:`redo_deleted_debug` once it finds their faces, removes them).
    Returns the sorted list.
    """
    check_side(side)
    if not done_frames(ws, side):
        raise FacelabError(f"data_{side} has not been extracted yet", f"run `facelab extract {side}` first")
    add = {name: "no face" for name in _read_lines(ws.no_face_list(side))} if no_face else {}
    return _update_todo(ws, side, add=add, keep_reason=True)


def _update_todo(ws: Workspace, side: str, add: dict[str, str] | None = None, remove: set[str] | frozenset[str] = frozenset(), keep_reason: bool = False) -> list[str]:
    """Add (``keep_reason``: without overwriting an earlier reason) and remove frames in ``manual_todo.json``."""
    todo_path = ws.manual_todo_path(side)
    previous = _read_json(todo_path) or {}
    reasons: dict[str, str] = {k: v for k, v in dict(previous.get("reasons", {})).items() if k not in remove}
    for name, why in (add or {}).items():
        if keep_reason:
            reasons.setdefault(name, why)
        else:
            reasons[name] = why
    frames = sorted(reasons)
    if frames or todo_path.exists():
        atomic_write_json(todo_path, {"side": side, "frames": frames, "reasons": {f: reasons[f] for f in frames}})
    return frames


@jobs.step
def redo_deleted_debug(ws: Workspace, side: str, settings: ExtractSettings = ExtractSettings()) -> Summary:
    """Extract again, automatically with ``settings``, the frames whose ``aligned_debug`` image the user deleted.

    The frames are re-detected with the options given (a lower ``min_score``,
    another ``face_type``, ``max_faces``, a ``reference`` ...); to place their
    faces by hand instead, see :mod:`facelab.stages.manual`. For each frame the new faces are written first (each
    replacing the file of the same name atomically), then old faces the new
    ones did not replace are removed, then a new debug image is written: a face
    is never deleted before its replacement exists. A frame where nothing is
    found keeps its old faces (if any) and stays listed in ``manual_todo.json``
    without a debug image, so it can be retried with other options. The
    recorded extraction settings are left as they are.
    """
    check_side(side)
    start = time.perf_counter()
    frames = {p.name: p for p in ws.require_frames(side)}
    deleted = deleted_debug_frames(ws, side)
    aligned, debug_dir = ws.aligned_dir(side), ws.aligned_debug_dir(side)
    summary = Summary(step=f"extract {side} --redo-deleted-debug", outputs=[str(aligned)])
    gone = [n for n in deleted if n not in frames]
    todo = [frames[n] for n in deleted if n in frames]
    fixed: list[str] = []
    unfound: list[str] = []
    dropped: dict[str, int] = {}
    n_faces = n_removed = 0
    if todo:
        detector, landmarker, reference = _models(settings)
        summary.step += f" ({getattr(detector, 'device', settings.device)})"
        debug_dir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=2) as pool, _open_debug_log(ws, side, done_frames(ws, side)) as dlog:
            for path, image in track(prefetch(read_image, todo, pool), len(todo), f"re-extract {side}"):
                found = find_faces(image, detector, landmarker, settings, reference, dropped)
                if not found:
                    unfound.append(path.name)
                    continue
                old = _faces_of(aligned, path.stem)
                for i, f in enumerate(found):  # replacements first ...
                    _write_face(image, f, i, path, aligned, settings)
                new_names = {f"{path.stem}_{i}.jpg" for i in range(len(found))}
                for p in old:  # ... then the old faces they did not overwrite
                    if p.name not in new_names:
                        p.unlink()
                        n_removed += 1
                write_image(debug_dir / f"{path.stem}.jpg", draw_debug(image, found, settings), 90)
                dlog.done(path.name)
                fixed.append(path.name)
                n_faces += len(found)
    if fixed:
        no_face_path = ws.no_face_list(side)
        if no_face_path.exists():
            atomic_write_bytes(no_face_path, "".join(n + "\n" for n in _read_lines(no_face_path) if n not in set(fixed)).encode())
        if settings.smooth:
            summary.counts["smoothed faces"] = smooth_faces(ws, side, settings, skipped=summary.warnings)
    _update_todo(ws, side, add={n: "debug image deleted; automatic re-extraction found no face" for n in unfound}, remove=set(fixed))
    summary.counts.update({"frames": len(todo), "re-extracted": len(fixed), "faces": n_faces, "old faces removed": n_removed,
                           "not found (old faces kept)": len(unfound), "dropped (implausible)": dropped.get("implausible", 0)})
    if settings.reference:
        summary.counts["dropped (other person)"] = dropped.get("other person", 0)
    if not deleted:
        summary.warnings.append(f"no debug image is missing from {debug_dir}: delete the images of the bad frames there, then run this again")
    if unfound:
        summary.warnings.append(
            f"{len(unfound)} frame(s) gave no face with these settings and keep their old faces (listed in {ws.manual_todo_path(side)}): "
            f"{', '.join(unfound[:10])}{' ...' if len(unfound) > 10 else ''}; try a lower --min-score (or --no-accurate), "
            f"or delete their faces from {aligned} by hand")
    if gone:
        summary.warnings.append(f"{len(gone)} deleted debug image(s) belong to frames no longer in data_{side}: skipped")
    summary.seconds = time.perf_counter() - start
    return summary


def _write_face(image: np.ndarray, found: FoundFace, index: int, frame: Path, aligned: Path, settings: ExtractSettings) -> None:
    face, record = make_face(image, found, index, frame.name, settings)
    write_face(aligned / f"{frame.stem}_{index}.jpg", face, record, settings.jpeg_quality)


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)) or "unknown"
