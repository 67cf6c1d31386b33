"""``facelab merge``: put the model's faces back into every dst frame.

Reads ``data_dst/*.png`` frames and the face records of ``data_dst/aligned``,
writes ``data_dst/merged/<frame>.png`` (invisibly watermarked, labelled as
synthetic and carrying a signed C2PA manifest, :mod:`facelab.provenance`) and ``data_dst/merged_mask/<frame>.png``
(grayscale blend mask). Frames without a face are copied through unchanged but
for the watermark (PSNR ~48 dB against the input) and ``denoise_frame``, which
filters every frame so the clip does not flicker between filtered and raw.

Pipeline: frames are decoded ahead on worker threads; alignment and the model
run on the calling thread (one batch per frame); colour transfer, blending,
PNG encoding and writing run on worker threads (OpenCV, zlib and most numpy
work release the GIL). At most a few frames are in flight, so memory does not
grow with the clip. Threads rather than processes: on 2 cores
``benchmarks/bench_merge.py`` measured a 2-process pool within noise of 2
threads (1280x720, overlay+rct: 40 frames/s with 2 threads vs 23 with 1 on a
quiet machine), and threads need no pickling of frames or of the model. Finished frames are skipped on a re-run; the resolved
settings and each finished frame's fingerprint (model save id, the frame's settings and its faces' landmarks) are kept in the
step record ``merge`` of dst (:mod:`facelab.steprecord`), and a frame whose fingerprint changed renders again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facelab import jobs
from facelab.device import resolve_device
from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import FaceRecord
from facelab.fileio import (
    atomic_write_bytes,
    encode_image,
    read_image,
)
from facelab.merge.compose import (
    MergeSettings,
    Predictor,
    PreparedFaces,
    aligned_outputs,
    compose_faces,
    passthrough_frame,
    prepare_faces,
    run_predictor,
)
from facelab.merge.masks import uses_segmenter
from facelab.merge.ranges import FrameRange, MergePlan
from facelab.merge.session import MergeSession, markable
from facelab.merge.sources import frame_number as _frame_number
from facelab.merge.sources import group_records, resolve_model
from facelab.merge.sources import load_enhancer as _load_enhancer
from facelab.merge.sources import load_segmenter as _load_segmenter
from facelab.merge.sources import model_id as _model_id
from facelab.merge.sources import motions as _motions
from facelab.merge.temporal import JitterFilter, load_tracks, save_tracks
from facelab.pipeline import prefetch
from facelab.progress import track
from facelab.provenance.labels import label_png
from facelab.provenance.marker import Marker, require_marker
from facelab.stages import Summary, denoise
from facelab.steprecord import Saved, StepRecord
from facelab.workspace import Workspace

STEP = "merge"
STATE_VERSION = 3  # 3: ``blur`` is added to the default feather (2: it was the whole feather width)
LEGACY_STATE, LEGACY_JOURNAL = "merge.json", "merge_done.txt"  # what facelab wrote before step records


def _write_png(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, label_png(encode_image(image, ".png")))


def _write_synthetic_png(path: Path, image: np.ndarray, marker: Marker) -> None:
    """A merged frame: invisible watermark, IPTC labels and a signed C2PA manifest (see facelab.provenance).
    An image smaller than the watermark needs (a raw-predict face of a tiny test model) is enlarged to it."""
    atomic_write_bytes(path, marker.png(markable(image), path.name))


def _fingerprint(model_id: str | None, plan: MergePlan, number: int | None) -> str:
    return hashlib.sha1(f"{model_id}|{plan.fingerprint(number)}".encode()).hexdigest()[:16]


def _faces_key(recs: list[FaceRecord]) -> str:
    """What a frame's merge takes from its face files: each face's index, landmarks and cut (rounded as the
    face file stores them). A face deleted, added or re-aligned (manual re-extract) changes it."""
    parts = [(r.face_index, np.round(np.asarray(r.source_landmarks, np.float64), 2).tolist(),
              np.round(np.asarray(r.image_to_face_mat, np.float64), 5).tolist()) for r in recs]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:8]


def _same_frame(recorded: str | None, wanted: str) -> bool:
    """A frame's recorded fingerprint matches the wanted one. An older facelab recorded the settings' part
    only (16 characters, no faces): such a frame is taken as made from the faces there now."""
    return recorded == wanted or (recorded is not None and len(recorded) == 16 and wanted.startswith(recorded))


def _concat(parts: list[PreparedFaces]) -> PreparedFaces:
    """The prepared faces of several frames as one batch (for one model call)."""
    first = parts[0]
    values = {}
    for f in dataclasses.fields(first):
        v = getattr(first, f.name)
        values[f.name] = np.concatenate([getattr(p, f.name) for p in parts]) if isinstance(v, np.ndarray) else v
    return PreparedFaces(**values)


def _split(prepared: PreparedFaces, start: int, stop: int) -> PreparedFaces:
    return PreparedFaces(**{f.name: getattr(prepared, f.name)[start:stop] if isinstance(getattr(prepared, f.name), np.ndarray)
                            else getattr(prepared, f.name) for f in dataclasses.fields(prepared)})


@dataclasses.dataclass
class _Job:
    """One frame on its way through the render loop."""

    path: Path
    frame: np.ndarray
    settings: MergeSettings
    recs: list[FaceRecord]
    motion: list | None = None
    prepared: PreparedFaces | None = None
    faces: np.ndarray | None = None
    masks: np.ndarray | None = None
    dst_masks: np.ndarray | None = None


def _finish(job: _Job, ws: Workspace, enhancer, marker: Marker, write: bool = True,
            segmenter=None) -> tuple[np.ndarray, np.ndarray, list | None] | None:
    """Blend (when there are faces) and write one frame; runs on a worker thread. With ``write=False``
    the merged frame, its mask and the faces' :meth:`JitterFilter.measure` (None without faces) are returned
    instead, for ``suppress_jitter``'s in-order step."""
    st = job.settings
    if st.mode == "raw-predict":
        raw_dir = ws.merged_raw_dir
        raw_dir.mkdir(parents=True, exist_ok=True)
        outs = aligned_outputs(job.prepared, job.faces, job.masks, st, dst_masks=job.dst_masks, enhancer=enhancer,
                               segmenter=segmenter) \
            if job.prepared is not None else []
        for i, (face, mask) in enumerate(outs):
            _write_png(raw_dir / f"{job.path.stem}_{i}_mask.png", mask)
            _write_synthetic_png(raw_dir / f"{job.path.stem}_{i}.png", face, marker)
        return None
    if job.prepared is None:
        merged, mask = passthrough_frame(job.frame, st)
    else:
        merged, mask = compose_faces(job.frame, job.prepared, job.faces, job.masks, st, dst_masks=job.dst_masks,
                                     motion=job.motion, enhancer=enhancer, segmenter=segmenter)
    if not write:
        lows = None if job.prepared is None else \
            JitterFilter.measure(merged, mask, job.prepared.mats, job.prepared.faces.shape[1])
        return merged, mask, lows
    _write_frame(ws, job.path, merged, mask, marker)
    return None


def _correct_and_write(ws: Workspace, job: _Job, merged: np.ndarray, mask: np.ndarray, fixes: list | None,
                       marker: Marker) -> None:
    """``suppress_jitter``'s last step (the corrections found in frame order added) and the write; runs on a
    worker thread."""
    if fixes is not None:
        merged = JitterFilter.correct(merged, mask, job.prepared.mats, job.prepared.faces.shape[1], fixes)
    _write_frame(ws, job.path, merged, mask, marker)


def _write_frame(ws: Workspace, path: Path, merged: np.ndarray, mask: np.ndarray, marker: Marker) -> None:
    _write_png(ws.merged_mask_dir / f"{path.stem}.png", mask)
    _write_synthetic_png(ws.merged_dir / f"{path.stem}.png", merged, marker)  # written last: its presence marks the frame done


def _record(ws: Workspace) -> StepRecord:
    return ws.step_record(STEP, "dst", step_version=STATE_VERSION, legacy=_legacy)


def _legacy(folder: Path) -> Saved | None:
    """A workspace of facelab before step records: ``merge.json`` (version 2 or 3: settings and the frames
    it recorded) and ``merge_done.txt`` (``<stem> <fingerprint>`` per frame finished since)."""
    files = [p for p in (folder / LEGACY_STATE, folder / LEGACY_JOURNAL) if p.exists()]
    if not files:
        return None
    try:
        d = json.loads((folder / LEGACY_STATE).read_text("utf-8"))
    except (OSError, ValueError):
        d = {}
    if isinstance(d, dict) and d.get("version") == 2:
        d = _migrate_v2(d)
    if not (isinstance(d, dict) and d.get("version") == STATE_VERSION):
        return Saved(settings={}, legacy_files=files)  # nothing usable: the old files go with the next run
    done = {str(k): str(v) for k, v in dict(d.get("frames", {})).items()}
    try:
        lines = (folder / LEGACY_JOURNAL).read_text("utf-8").splitlines()
    except OSError:
        lines = []
    done.update(dict(parts for line in lines if len(parts := line.split()) == 2))
    settings = {k: d.get(k) for k in ("model", "gpu", "model_id", "resolution", "face_type", "plan")}
    return Saved(settings=settings, done=done, step_version=STATE_VERSION, legacy_files=files)


def _migrate_v2(d: dict) -> dict:
    """Version 2 -> 3: a saved ``blur`` was the whole feather width (negative acted as 0); now it is added to
    :data:`~facelab.merge.compose.DEFAULT_FEATHER`. Each saved value becomes the one that gives the same edge,
    and frames recorded as made with the old settings keep their record (their pixels would be the same)."""
    from facelab.merge.compose import DEFAULT_FEATHER

    def shift(settings: dict) -> dict:
        if "blur" not in settings:
            return settings
        old = settings["blur"]
        if isinstance(old, bool) or not isinstance(old, int):
            return settings  # invalid anyway: left for the checks to report
        return {**settings, "blur": max(old, 0) - DEFAULT_FEATHER}

    try:
        old_plan = MergePlan.from_dict(d["plan"])  # the values as saved: what the frames' fingerprints hold
        plan = {"default": shift(dict(d["plan"]["default"])),
                "ranges": [{**r, "settings": shift(dict(r.get("settings", {})))} for r in d["plan"].get("ranges", [])]}
        new_plan = MergePlan.from_dict(plan)
    except (KeyError, TypeError, AttributeError, FacelabError):
        return {}  # not a plan this version wrote: start afresh
    model_id = d.get("model_id")
    frames = {}
    for stem, fp in dict(d.get("frames", {})).items():
        n = _frame_number(stem)
        frames[stem] = _fingerprint(model_id, new_plan, n) if fp == _fingerprint(model_id, old_plan, n) else fp
    return {**d, "version": STATE_VERSION, "plan": new_plan.to_dict(), "frames": frames}


def gpu_choices(ws: Workspace, name: str) -> list[int]:
    """The GPU indices to choose from when ``model/<name>`` holds only models trained with ``--gpu N``
    and more than one of them (so a merge without ``gpu`` cannot tell which); else empty."""
    from facelab.train.checkpoint import model_variants

    variants = model_variants(ws.model_dir(name))
    return [v for v in variants if v is not None] if len(variants) > 1 and None not in variants else []


def _tracks_path(ws: Workspace) -> Path:
    """Where the merge keeps ``suppress_jitter``'s running averages after the last frame it journaled."""
    return ws.state_dir("dst") / "merge_jitter.npz"


def _resume_tracks(ws: Workspace, chosen: list[Path], todo: list[Path], wanted) -> dict | None:
    """The ``suppress_jitter`` tracks to start from: those kept after the frame just before the first one left
    to render, if that frame is finished with the same model and settings (a resumed run then gives the
    frames of an uninterrupted one); else None (a cold start, as at a clip's first frame)."""
    first = chosen.index(todo[0]) if todo else 0
    if first == 0:
        return None
    before = chosen[first - 1]
    kept = load_tracks(_tracks_path(ws))
    if kept is None or kept[0] != before.stem or kept[1] != wanted(before):
        return None
    return kept[2]


def _render(todo, plan, predictor, by_frame, by_number, ws, enhancers, workers, batch_size, counts, record, wanted,
            marker, segmenter=None, tracks: dict | None = None) -> None:
    """The render loop: frames decoded ahead, the model run on batches of faces over consecutive frames,
    blending and writing on worker threads, each finished frame journaled.

    ``suppress_jitter`` frames take one more turn: the blend's worker also measures the faces' coarse colour,
    the main thread folds it into the running averages in frame order (the only ordered part, a few small
    arrays), and a worker adds the corrections and writes the frame. The running averages after each such
    frame are kept when it is journaled, so that a resumed run starts from ``tracks``."""
    in_flight = 2 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="merge") as pool:
        pending: deque[tuple[Future, _Job]] = deque()  # blending
        writing: deque[tuple[Future, Path, dict | None]] = deque()  # written (or being written), in frame order
        batch: list[_Job] = []
        jitter = JitterFilter()
        if tracks:
            jitter.tracks = tracks

        def journal_one() -> None:
            fut, p, kept = writing.popleft()
            fut.result()
            fingerprint = wanted(p)
            record.done(p.stem, fingerprint)  # journaled and flushed: a kill -9 loses no finished frame
            if kept is not None:
                try:
                    save_tracks(_tracks_path(ws), kept, p.stem, fingerprint)
                except OSError:
                    pass  # only a resume's exactness depends on it: it then starts the averages afresh

        def journal(block: bool) -> None:
            while writing and (block or len(writing) > in_flight or writing[0][0].done()):
                journal_one()

        def collect(block: bool) -> None:
            while pending and (block or len(pending) > in_flight or pending[0][0].done()):
                fut, job = pending.popleft()
                result, kept = fut.result(), None
                if result is not None:  # suppress_jitter: the running averages, in frame order
                    merged, mask, lows = result
                    fixes = None if lows is None else \
                        jitter.update(lows, [r.face_index for r in job.recs], _frame_number(job.path.stem))
                    kept = jitter.tracks
                    fut = pool.submit(_correct_and_write, ws, job, merged, mask, fixes, marker)
                writing.append((fut, job.path, kept))
                journal(False)
            if block:
                journal(True)

        def flush() -> None:
            with_faces = [j for j in batch if j.prepared is not None]
            if with_faces:
                allp = _concat([j.prepared for j in with_faces])
                # one model call for the batch; settings that need dst masks ask for them for all
                need_dst = next((j.settings for j in with_faces if "learned-dst" in j.settings.mask), with_faces[0].settings)
                faces, masks, dst_masks = run_predictor(predictor, allp, need_dst)
                k = 0
                for j in with_faces:
                    n = len(j.prepared)
                    j.faces, j.masks = faces[k:k + n], masks[k:k + n]
                    j.dst_masks = dst_masks[k:k + n] if dst_masks is not None else None
                    k += n
            for j in batch:
                steady = j.settings.suppress_jitter and j.settings.mode != "raw-predict"
                pending.append((pool.submit(_finish, j, ws, enhancers.get(j.settings.enhancer), marker, not steady, segmenter), j))
            batch.clear()
            collect(False)

        try:
            for path, frame in track(prefetch(read_image, todo, pool, workers), len(todo), "merge"):
                number = _frame_number(path.stem)
                st = plan.settings_for(number)
                recs = by_frame.get(path.name, [])
                job = _Job(path, frame, st, recs)
                if recs:
                    job.prepared = prepare_faces(frame, recs, predictor.resolution, predictor.face_type)
                    job.motion = _motions(recs, number, by_number) if st.motion_blur else None
                    counts["merged"] += 1
                    counts["faces"] += len(recs)
                else:
                    counts["passthrough"] += 1
                batch.append(job)
                if sum(len(j.recs) for j in batch) >= batch_size or len(batch) >= in_flight:
                    flush()
            if batch:
                flush()
            collect(True)
        finally:  # a cancel or an error: the frames already on their way to disk are journaled, none is lost
            while writing and writing[0][0].exception() is None:
                journal_one()


@jobs.step
def run(
    ws: Workspace,
    name: str,
    settings: MergeSettings | MergePlan = MergeSettings(),
    device: str = "auto",
    force: bool = False,
    *,
    predictor: Predictor | None = None,
    workers: int | None = None,
    only: FrameRange | None = None,
    batch_size: int = 8,
    gpu: int | None = None,
    marker: Marker | None = None,
    onnx: str | Path | None = None,
    face_type: str | None = None,
) -> Summary:
    """Merge the dst frames with the faces predicted by ``model/<name>``.

    Args:
        ws: the workspace.
        name: model folder name under ``model/``.
        settings: blending settings, or a :class:`MergePlan` with per-frame-range settings (saved to
            the merge step record, so the result records how each frame was made).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` for the model.
        force: render frames that are already merged again.
        predictor: use this model instead of loading ``name`` (tests, UI).
        workers: threads for decoding, blending and writing (default: CPU count, 2..8).
        only: render only these frames (the others keep what they have).
        batch_size: faces per model call, gathered over consecutive frames (1..256).
        gpu: use the model trained with ``facelab train --gpu <gpu>`` (files ``gpu<gpu>_*``; see
            :func:`resolve_model`). The model runs on ``device`` whatever the index.
        marker: marks every frame written (watermark, labels, C2PA), e.g.
            :func:`facelab.provenance.default_marker`; required: without one the step refuses
            (FacelabError) before it reads or writes anything.
        onnx: merge with this exported file (``facelab export``, or a DeepFaceLive ``.dfm``) run by
            onnxruntime instead of ``model/<name>``; its model id is the file's sha256, so frames made
            with another file or model render again. The frames are marked exactly as with a model folder.
        face_type: with ``onnx``, the face type of a file without facelab's metadata (DeepFaceLive: whole).

    Returns:
        A :class:`Summary` with counts ``frames``, ``merged`` (frames with faces rendered), ``passthrough``
        (frames without faces rendered), ``skipped`` and ``faces``.

    A frame is done when its outputs exist and the step record records it as made with the same model
    (save id) and settings; anything else is rendered again, so a run stopped at any point continues
    with the missing frames only, and changed settings re-render just the frames they touch.
    """
    marker = require_marker(marker, "merge")
    start = time.perf_counter()
    plan = settings if isinstance(settings, MergePlan) else MergePlan(settings)
    if not (isinstance(batch_size, int) and 1 <= batch_size <= 256):
        raise SettingsError(f"batch_size: {batch_size!r} is out of range", "use a whole number from 1 to 256")
    # -- inputs: frames, their faces, the model, enhancers
    ws.require_exists()
    frames = ws.require_frames("dst")
    aligned = ws.require_aligned("dst")
    warnings: list[str] = []
    model_id = None
    if predictor is None and onnx is not None:
        predictor, model_id = _load_onnx(onnx, device, face_type)
    elif predictor is None:
        _no_face_type(face_type)
        predictor, model_id = _load_model(ws, name, gpu, device, warnings)
    all_settings = [plan.default] + [plan.settings_for(f.first) for f, _ in plan.ranges]
    names = {s.enhancer for s in all_settings}
    enhancers = {n: _load_enhancer(ws, n, device) for n in names if n}
    segmenter = _load_segmenter(ws, device) if any(uses_segmenter(s.mask) for s in all_settings) else None
    by_frame, by_number = _faces_by_frame(ws, frames, aligned, warnings)

    # -- what is left: frames the step record does not hold as made with this model and these settings
    for d in (ws.merged_dir, ws.merged_mask_dir):
        d.mkdir(parents=True, exist_ok=True)
    record = _record(ws)
    state = {"model": name, "gpu": gpu, "model_id": model_id, "resolution": int(predictor.resolution),
             "face_type": str(predictor.face_type), "plan": plan.to_dict(), "onnx": str(onnx) if onnx is not None else None,
             "denoise_in_fingerprint": True}
    # dst frames denoised in place since they were merged render again
    filtered = {Path(name).stem: key for name, key in denoise.filtered_frames(ws).items()}
    done = _still_done(record, state, filtered, denoise.last_written(ws))

    # the segmenter's weights are part of what makes a frame: retrained, the frames that use it render again
    made_by = model_id if segmenter is None else f"{model_id}|segmenter={segmenter.model_id}"

    def wanted(p: Path) -> str:
        """The frame's fingerprint: model, settings and its faces (and its neighbours' for motion blur)."""
        n = _frame_number(p.stem)
        faces = _faces_key(by_frame.get(p.name, []))
        if n is not None and plan.settings_for(n).motion_blur:
            faces += "".join(_faces_key(by_number.get(n + step, [])) for step in (-1, 1))
        return _fingerprint(made_by, plan, n) + faces + _denoised_key(p.stem, filtered)

    chosen = [p for p in frames if only is None or (_frame_number(p.stem) or 0) in only]
    todo = [p for p in chosen if force or not _finished(ws, p, plan, done, wanted(p))]
    changed = sum(1 for p in chosen if p.stem in done and not _same_frame(done[p.stem], wanted(p)))
    if changed:
        warnings.append(f"{changed} frame(s) were made with other settings, another model or other faces: rendered again")
    for p in todo:
        done.pop(p.stem, None)

    # -- render
    record.begin(state, done)
    counts = {"frames": len(chosen), "merged": 0, "passthrough": 0, "skipped": len(chosen) - len(todo), "faces": 0}
    workers = workers or min(max(os.cpu_count() or 1, 2), 8)
    try:
        _render(todo, plan, predictor, by_frame, by_number, ws, enhancers, workers, batch_size, counts, record, wanted, marker,
                segmenter, tracks=_resume_tracks(ws, chosen, todo, wanted))
    finally:
        record.save()  # also after an error: the frames finished so far stay recorded
    if any(plan.settings_for(_frame_number(p.stem)).mode == "raw-predict" for p in chosen):
        warnings.append(f"raw-predict faces and masks are in {ws.merged_raw_dir} (merged/ is left as it was)")
    return Summary(step="merge", counts=counts, seconds=time.perf_counter() - start, outputs=[str(ws.merged_dir)],
                   warnings=warnings)


def _load_model(ws: Workspace, name: str, gpu: int | None, device: str, warnings: list[str]) -> tuple[Predictor, str | None]:
    """The model folder's predictor and save id (a retrained model has a new one)."""
    from facelab.inference import load_predictor

    model_dir, prefix, model_warnings = resolve_model(ws, name, gpu)
    warnings.extend(model_warnings)
    return load_predictor(model_dir, str(resolve_device(device)), prefix=prefix), _model_id(ws, name, prefix)


def _load_onnx(path: str | Path, device: str, face_type: str | None) -> tuple[Predictor, str]:
    """An exported file's onnxruntime predictor and model id (``onnx:`` + its sha256)."""
    from facelab.export.runtime import load_onnx_predictor

    predictor = load_onnx_predictor(path, device, face_type)
    return predictor, predictor.model_id


def _no_face_type(face_type: str | None) -> None:
    if face_type is not None:
        raise SettingsError(f"merge face_type {face_type!r}: only a model file given with --onnx takes a face type",
                            "a model folder knows its face type: leave out --face-type")


def _faces_by_frame(ws: Workspace, frames: list[Path], aligned: list[Path], warnings: list[str]) -> tuple[dict, dict]:
    """``(frame name -> records, frame number -> records)``; faces of frames that are not there are ignored."""
    by_frame, group_warnings = group_records(aligned)
    warnings.extend(group_warnings)
    orphans = sorted(set(by_frame) - {p.name for p in frames})
    if orphans:
        warnings.append(f"faces of {len(orphans)} frame(s) not in {ws.frames_dir('dst')} were ignored (e.g. {orphans[0]})")
    by_number = {n: recs for fname, recs in by_frame.items() if (n := _frame_number(Path(fname).stem)) is not None}
    return by_frame, by_number


def _denoised_key(stem: str, filtered: dict[str, str]) -> str:
    """The part of a frame's fingerprint that says its dst frame was denoised in place (and which pass)."""
    return f"|denoised={filtered[stem]}" if stem in filtered else ""


def _still_done(record: StepRecord, state: dict, filtered: dict[str, str], denoised_at: float | None) -> dict[str, str]:
    """``frame stem -> fingerprint`` of the frames the record holds as finished, if they were made with the same
    model folder, GPU variant and resolution (a change of any of these makes every frame stale). A record of
    facelab before frame fingerprints named denoising is read as made from the frames as they are now, unless
    ``denoise dst`` ran after it was written (``denoised_at``)."""
    saved = record.load()
    old = saved.settings if saved is not None else {}
    if any(old.get(k) != state[k] for k in ("model", "gpu", "resolution")):
        return {}
    if old.get("denoise_in_fingerprint") or (denoised_at is not None and denoised_at > (record.written_at() or 0.0)):
        return dict(saved.done)
    return {stem: fp if len(fp) == 16 else fp + _denoised_key(stem, filtered) for stem, fp in saved.done.items()}


def _finished(ws: Workspace, p: Path, plan: MergePlan, done: dict[str, str], wanted: str) -> bool:
    """Frame ``p`` was merged with these settings and model, and its outputs are there."""
    if not _same_frame(done.get(p.stem), wanted):
        return False
    if plan.settings_for(_frame_number(p.stem)).mode == "raw-predict":
        return True
    return (ws.merged_dir / f"{p.stem}.png").is_file() and (ws.merged_mask_dir / f"{p.stem}.png").is_file()


def saved_plan(ws: Workspace) -> MergePlan | None:
    """The plan (default and per-range settings) of the last merge run in this workspace, kept in its step
    record for the runs after it; None before the first. :func:`run` saves the plan it is given, so an
    editor (the UI's merger) reads the plan here and hands its edited plan to :func:`run`."""
    last = _record(ws).load()
    saved = last.settings.get("plan") if last is not None else None
    return MergePlan.from_dict(saved) if saved else None


def save_plan(ws: Workspace, plan: MergePlan) -> None:
    """Keep ``plan`` for the merge runs to come without rendering anything (the UI's merger applying settings
    to a frame, a range or all): :func:`saved_plan` returns it, and ``facelab merge`` without settings flags
    (or ``--frames``) renders with it.

    The step record keeps everything else the last run recorded (model, resolution, finished frames), so
    the next run still skips the frames whose settings the new plan leaves as they were and renders again
    those it changes (their fingerprints no longer match). Do not call it while a merge of this workspace
    runs: that run would write its own plan over this one."""
    if not isinstance(plan, MergePlan):
        raise SettingsError(f"merge: expected a MergePlan, got {type(plan).__name__}", "build one with MergePlan(...)")
    record = _record(ws)
    last = record.load()
    settings = {**(last.settings if last is not None else {}), "plan": plan.to_dict()}
    record.begin(settings, last.done if last is not None else {})
    record.close()


def plan_from_options(ws: Workspace, given: dict, config: Path | None = None, frames: str | None = None,
                      clear_ranges: bool = False) -> tuple[MergePlan, FrameRange | None]:
    """The plan a ``facelab merge`` command line asks for, and the frames to render (None: all).

    Without ``frames``: the default is the built-in defaults, overridden by the ``config`` file's
    top-level keys, overridden by ``given`` (flags); the per-range settings are the file's ``[[ranges]]``
    if it has any, else those saved by earlier runs (unless ``clear_ranges``). With ``frames``: the
    saved (or file's) default stays and ``given`` applies to those frames only.
    """
    from facelab.settings_file import load_toml

    file_plan = MergePlan.from_toml(load_toml(config), str(config)) if config is not None else None
    last_plan = saved_plan(ws)
    if frames is None:
        base = file_plan.default.to_dict() if file_plan else {}
        plan = MergePlan(MergeSettings.from_dict({**base, **given}))
        ranges = file_plan.ranges if file_plan and file_plan.ranges else (() if clear_ranges or last_plan is None else last_plan.ranges)
        return dataclasses.replace(plan, ranges=ranges), None
    only = FrameRange.parse(frames)
    plan = file_plan or last_plan or MergePlan()
    if clear_ranges:
        plan = dataclasses.replace(plan, ranges=())
    return plan.with_range(only, given), only


@jobs.step
def preview(ws: Workspace, name: str, settings: MergeSettings | MergePlan, frame: int, device: str = "auto",
            *, predictor: Predictor | None = None, gpu: int | None = None, marker: Marker | None = None,
            onnx: str | Path | None = None, face_type: str | None = None) -> Summary:
    """Merge one frame only (``facelab merge --preview FRAME``): writes ``data_dst/merged_preview/<frame>.png``
    and ``<frame>_compare.png`` (original | merged side by side), both marked as synthetic by ``marker``
    (required, as in :func:`run`); nothing else is rendered or recorded. ``gpu`` picks a model trained
    with ``--gpu N``, and ``onnx`` / ``face_type`` an exported file, as in :func:`run`. The frame is rendered by
    the interactive merger's :class:`~facelab.merge.session.MergeSession`, so the two show the same pixels."""
    marker = require_marker(marker, "merge preview")
    start = time.perf_counter()
    plan = settings if isinstance(settings, MergePlan) else MergePlan(settings)
    if predictor is None and onnx is not None:
        predictor, _ = _load_onnx(onnx, device, face_type)
    elif predictor is None:
        _no_face_type(face_type)
    session = MergeSession(ws, name, device, gpu=gpu, marker=marker, predictor=predictor, cache_frames=1)
    shown = session.render(frame, plan.settings_for(frame), side_by_side=True)
    warnings = session.warnings + list(shown.notes)
    if not shown.faces:
        warnings.append(f"frame {frame} has no face: the preview is the frame itself")
    out_dir = ws.merged_preview_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(shown.source).stem
    out, compare = out_dir / f"{stem}.png", out_dir / f"{stem}_compare.png"
    atomic_write_bytes(out, session.png(shown, "image", out.name))
    atomic_write_bytes(compare, session.png(shown, "side_by_side", compare.name))
    return Summary(step="merge preview", counts={"frame": frame, "faces": shown.faces}, seconds=time.perf_counter() - start,
                   outputs=[str(out), str(compare)], warnings=warnings)
