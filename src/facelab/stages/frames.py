"""Step `frames`: decode ``data_<side>.<ext>`` into ``data_<side>/00001.png, ...`` (SPEC section 2).

The video is ``data_<side>.<ext>`` in the workspace, or any file given as
``video``. The step record ``frames`` of the side (:mod:`facelab.steprecord`) says which video
(name, size, mtime, ``video_path``) and settings the frames came from, their
timing (fps as ``"num/den"``, count, size, ``timestamps``: each kept frame's
time in seconds from the video stream's start, and ``vfr``: whether those stray
from the regular ``i / fps`` grid, i.e. the source has a variable frame rate)
and whether extraction completed. The `video` step stamps result frames with
these times for VFR sources. Re-running skips a completed extraction, resumes
an interrupted one (frames already on disk are kept) and refuses to mix frames
of another video or settings unless ``force``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from facelab import jobs
from facelab.options import Option
from facelab.errors import MediaError, WorkspaceError
from facelab.fileio import write_image
from facelab.media import hdr, is_vfr, iter_frames, probe
from facelab.progress import track
from facelab.stages import Summary
from facelab.steprecord import Saved, StepRecord, read_old_json
from facelab.workspace import FRAME_EXTENSIONS, Workspace, check_side

FORMATS = ("png", "jpg")
STEP = "frames"
LEGACY_RECORD = "frames.json"  # what facelab wrote before step records
# what a finished extraction adds to the record (its summary); the rest are its settings
_RESULTS = ("frame_count", "timestamps", "vfr")
MAX_FPS = 1000.0


@dataclass(frozen=True)
class FramesSettings:
    """Settings of the `frames` step.

    - ``fps``: frames per second to keep (the frame nearest each point of a
      regular grid), ``None`` for every frame. Ignored for dst, which always
      keeps every frame so the result has the dst video's timing.
    - ``format``: ``"png"`` (lossless) or ``"jpg"`` (quality 95).
    """

    fps: float | None = None
    format: str = "png"

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name), "frames.")


OPTIONS = (
    Option("fps", float, None, "Frames per second to keep (default: every frame; dst always keeps every frame).", lo=0,
           lo_open=True, hi=MAX_FPS, hint="leave it unset to keep every frame", shown_default="every frame",
           doc="frames per second to keep, the frame nearest each point of a regular grid (src only: dst always keeps "
               "every frame, so the result has the dst video's timing)"),
    Option("format", str, "png", "Frame image format.", flags=("--format",), choices=FORMATS, hint="png is lossless, jpg is smaller",
           metavar="png|jpg", shown_default="`png`", doc="`png` (lossless) or `jpg` (quality 95)"),
)
"""Every setting of :class:`FramesSettings`, declared once (see :mod:`facelab.options`)."""


def _record(ws: Workspace, side: str) -> StepRecord:
    return ws.step_record(STEP, side, legacy=_legacy)


def _legacy(folder: Path) -> Saved | None:
    """``frames.json`` of facelab before step records: settings, timing and ``completed`` in one object."""
    path = folder / LEGACY_RECORD
    d = read_old_json(path)
    if d is None:
        return None
    return Saved(settings={k: v for k, v in d.items() if k not in (*_RESULTS, "completed")},
                 summary={k: d[k] for k in _RESULTS if k in d}, completed=bool(d.get("completed")), legacy_files=[path])


def read_record(ws: Workspace, side: str) -> dict | None:
    """What the side's ``frames`` record says, as one object: the video's identity, the settings, the
    timing (``fps``, ``frame_count``, ``timestamps``, ``vfr``) and ``completed``; ``None`` if there is none
    (or it is unreadable)."""
    saved = _record(ws, side).load()
    if saved is None or not saved.settings:
        return None
    return {**saved.settings, "frame_count": None, **saved.summary, "completed": saved.completed}


def _video_id(video: Path) -> dict:
    st = video.stat()
    return {"video": video.name, "video_size": st.st_size, "video_mtime": st.st_mtime}


def _frame_name(number: int, width: int, ext: str) -> str:
    return f"{number:0{width}d}.{ext}"


def _delete_frames(folder: Path) -> int:
    removed = 0
    if folder.is_dir():
        for p in folder.iterdir():
            stray_tmp = p.name.startswith(".") and p.name.endswith(".tmp")
            if p.is_file() and (p.suffix.lower() in FRAME_EXTENSIONS or stray_tmp):
                p.unlink()
                removed += 1
    return removed


def frame_timing(ws: Workspace, side: str) -> tuple[Fraction, int]:
    """``(fps, frame_count)`` of a side's extracted frames.

    Read from a completed ``frames`` record; without one, probed from the side's
    video (exact count, which may decode the whole video).
    """
    check_side(side)
    record = read_record(ws, side)
    if record and record.get("completed"):
        try:
            return Fraction(record["fps"]), int(record["frame_count"])
        except (KeyError, ValueError, ZeroDivisionError):
            pass
    info = probe(ws.find_video(side))
    return info.fps, info.frame_count


def frame_timestamps(ws: Workspace, side: str) -> list[float] | None:
    """Times (seconds from the stream start) of a side's extracted frames, in frame order,
    if a completed ``frames`` record holds them and says the source has a variable frame
    rate; ``None`` for constant-rate sources (use :func:`frame_timing`) or older records."""
    check_side(side)
    record = read_record(ws, side)
    if not record or not record.get("completed") or not record.get("vfr"):
        return None
    ts = record.get("timestamps")
    if not isinstance(ts, list) or len(ts) != record.get("frame_count"):
        return None
    return [float(t) for t in ts]


def interrupted_message(ws: Workspace, side: str) -> str:
    """What an interrupted `frames` run leaves behind, and how to go on (for the CLI's Ctrl+C message)."""
    kept = len(ws.frame_paths(side))
    return (f"interrupted: {kept} frames are kept in {ws.frames_dir(side)}; run the same `facelab frames {side}` "
            "command again to continue (frames on disk are kept, not decoded again)")


@jobs.step
def run(
    ws: Workspace,
    side: str,
    settings: FramesSettings = FramesSettings(),
    force: bool = False,
    video: str | Path | None = None,
) -> Summary:
    """Extract the frames of a side's video (``video``, any video file, overrides ``data_<side>.<ext>``)."""
    t0 = time.perf_counter()
    check_side(side)
    ws.require_exists()
    video = Path(video) if video is not None else ws.find_video(side)
    summary = Summary(step=f"frames {side}")
    fps = settings.fps
    if side == "dst" and fps is not None:
        summary.warnings.append(f"fps={fps:g} ignored: dst frames are always extracted at the video's full rate")
        fps = None

    info = probe(video, count_frames=False)
    if fps is not None and fps >= info.fps:
        summary.warnings.append(f"fps={fps:g} is not below the video's {float(info.fps):g} fps: keeping every frame")
        fps = None
    out_fps = info.fps if fps is None else Fraction(fps).limit_denominator(1_000_000)
    folder = ws.frames_dir(side)
    folder.mkdir(parents=True, exist_ok=True)
    ws.state_dir(side).mkdir(parents=True, exist_ok=True)

    ident = {**_video_id(video), "requested_fps": fps, "format": settings.format}
    if info.hdr:  # frames of an HDR clip written before decoding tone-mapped it look flat: not resumed into
        ident["tone_map"] = hdr.METHOD
    record = read_record(ws, side)
    existing = ws.frame_paths(side)
    same = record is not None and all(record.get(k) == v for k, v in ident.items())
    # Frames of a phone's portrait clip written by a facelab that did not turn them upright have the stored size.
    same = same and record.get("width", info.width) == info.width and record.get("height", info.height) == info.height
    if force:
        _delete_frames(folder)
        _record(ws, side).reset()  # and the records of steps that changed the frames in place (denoise)
        record, existing, same = None, [], False
    elif existing and not same:
        raise WorkspaceError(
            f"{folder} already holds {len(existing)} frames from another video or other settings",
            f"run `facelab frames {side} --force` to replace them",
        )
    if same and record.get("completed"):
        names = {p.name for p in existing}
        width, ext = int(record["name_width"]), record["format"]
        if all(_frame_name(i, width, ext) in names for i in range(1, int(record["frame_count"]) + 1)):
            summary.counts.update({"frames": int(record["frame_count"]), "skipped (already done, --force redoes)": int(record["frame_count"])})
            summary.outputs.append(str(folder))
            summary.seconds = time.perf_counter() - t0
            return summary

    estimate = info.frame_count if fps is None else round(info.duration * fps)
    # Keep the name width of an interrupted run so names stay sortable.
    width = int(record["name_width"]) if same and record.get("name_width") else max(5, len(str(int(estimate * 1.1) + 1)))
    base = {**ident, "video_path": str(video.resolve()), "fps": f"{out_fps.numerator}/{out_fps.denominator}", "width": info.width,
            "height": info.height, "name_width": width, "settings": asdict(settings)}
    step_record = _record(ws, side)
    step_record.begin(base)

    for stray in folder.glob(".*.tmp"):  # left by a killed run
        stray.unlink(missing_ok=True)
    names = {p.name for p in ws.frame_paths(side)}
    written, kept, times = _decode(video, fps, folder, lambda n: _frame_name(n, width, settings.format), names,
                                   estimate, f"frames {side}")
    count = written + kept
    if count == 0:
        raise MediaError(f"{video} has no decodable frames", "check that the video plays; re-encode it if needed")
    if info.frame_count and fps is None and count < info.frame_count:
        summary.warnings.append(f"decoded {count} frames, the container says {info.frame_count}: the video may be truncated")
    vfr = fps is None and is_vfr(times, info.fps)
    if vfr:
        summary.warnings.append(f"variable frame rate (average {float(info.fps):.3f} fps): the result keeps each frame's time")
    step_record.finish({"frame_count": count, "timestamps": times, "vfr": vfr})

    summary.counts.update(frames=count, written=written, resumed=kept)
    if info.interlaced:
        summary.counts["deinterlaced (bwdif)"] = count
    if info.hdr:
        summary.counts["tone-mapped (HDR to SDR BT.709)"] = count
    summary.outputs.append(str(folder))
    summary.seconds = time.perf_counter() - t0
    return summary


def _decode(video: Path, fps: float | None, folder: Path, name_of: Callable[[int], str], names: set[str], estimate: int,
            label: str) -> tuple[int, int, list[float]]:
    """Decode ``video`` (at ``fps``, None: every frame) into ``folder``; frames whose name is in ``names`` are
    there already (a resumed run) and only timed. ``(written, kept, each frame's time in seconds)``."""
    written = kept = 0
    times: list[float] = []
    # PNG/JPEG encoding (OpenCV, GIL released) is the bottleneck, not decoding: encode on
    # a few threads, with a bounded number of frames in flight so memory stays flat.
    workers = max(1, min(8, os.cpu_count() or 1))
    in_flight: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="frames") as pool:
        for number, (_, t, image) in enumerate(track(iter_frames(video, fps), estimate, label), start=1):
            times.append(round(t, 6))
            name = name_of(number)
            if name in names:
                kept += 1
                continue
            in_flight.append(pool.submit(write_image, folder / name, image))
            written += 1
            if len(in_flight) >= 2 * workers:
                in_flight.popleft().result()
        for future in in_flight:
            future.result()
    return written, kept, times
