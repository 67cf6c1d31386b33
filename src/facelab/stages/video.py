"""Step `video`: merged frames -> ``result.<ext>`` with the dst video's timing and audio (SPEC section 2).

Frames are read one at a time from ``data_dst/merged`` in name order; the frame
rate comes from the dst ``frames`` step record (so the result has the dst
video's frame count and rate; for a variable-frame-rate dst each frame keeps
its recorded time) and the audio from ``data_dst.<ext>``. The file carries the
synthetic-media container tags, and every frame the invisible watermark (added here to any
frame that lacks it).

Formats (``VideoSettings.format``):

- ``mp4``: H.264 4:2:0 (CRF or bitrate) + AAC, ``result.mp4``.
- ``avi``: MPEG-4 part 2 + AAC, ``result.avi`` (AVI keeps only standard tags: ``comment``).
- ``mp4-lossless``: RGB H.264 at qp 0 (libx264rgb) + AAC, ``result.mp4``; decodes to
  exactly the merged PNGs.
- ``mov-alpha``: QuickTime Animation (qtrle) ARGB + AAC, ``result.mov``; RGB is the merged
  frame, alpha is ``data_dst/merged_mask/<frame>.png``; both lossless.

``mask_video`` also writes ``result_mask.<ext>``: the merged masks as a grey video in
the same format (for mov-alpha: qtrle RGB, lossless), without audio.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from facelab import jobs
from facelab.options import Option
from facelab.errors import MediaError, WorkspaceError
from facelab.fileio import read_image
from facelab.media import parse_bitrate, read_timecode, write_video
from facelab.progress import track
from facelab.provenance.manifest import SUPPORTED_SUFFIXES
from facelab.provenance.marker import Marker, require_marker
from facelab.provenance.watermark import detect_frames
from facelab.stages import Summary
from facelab.stages.frames import frame_timestamps, frame_timing
from facelab.steprecord import Saved, StepRecord, read_old_json
from facelab.workspace import Workspace

STEP = "video"
LEGACY_RECORD = "video.json"  # what facelab wrote before step records

# format -> (extension, codec of the result, codec of the mask video)
FORMATS = {
    "mp4": ("mp4", "h264", "h264"),
    "avi": ("avi", "mpeg4", "mpeg4"),
    "mp4-lossless": ("mp4", "h264-lossless", "h264-lossless"),
    "mov-alpha": ("mov", "qtrle-alpha", "qtrle"),
}


@dataclass(frozen=True)
class VideoSettings:
    """Settings of the `video` step.

    - ``format``: ``mp4``, ``avi``, ``mp4-lossless`` or ``mov-alpha`` (see the module doc).
    - ``bitrate``: target video bitrate in megabits per second as in DeepFaceLab
      (``8`` or ``"8"``; ``"8M"`` and ``"800k"`` also work, see
      :func:`facelab.media.parse_bitrate`, the same reading as `cut`); unset means
      constant quality set by ``crf``. Lossless formats ignore it.
    - ``crf``: x264 constant rate factor 0-51 (0 lossless, 18 visually lossless).
    - ``mask_video``: also write ``result_mask.<ext>`` from ``data_dst/merged_mask``.
    - ``fps``: the frame rate of a dst given as images (no ``data_dst`` video to take it from);
      23.976, 29.97 and 59.94 mean the NTSC rates (24000/1001, ...).
    """

    bitrate: str | float | None = None
    crf: int = 18
    format: str = "mp4"
    mask_video: bool = False
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.bitrate is not None:
            parse_bitrate(self.bitrate, "video --bitrate")  # raises SettingsError naming the option
        for option in OPTIONS:
            if option.name != "bitrate":
                option.check(getattr(self, option.name), "video.")


OPTIONS = (
    Option("format", str, "mp4", "mp4 (H.264), avi (MPEG-4), mp4-lossless (RGB H.264 qp 0), mov-alpha (QuickTime RLE with the "
                                 "merge mask as alpha).", flags=("--format",), choices=tuple(FORMATS), metavar="FORMAT",
           hint="mp4 for sharing, mp4-lossless for exact frames, mov-alpha for compositing", shown_default="`mp4`",
           doc="the container and codec: see the table below"),
    Option("bitrate", str, None, "Video bitrate in megabits/s as in DeepFaceLab, e.g. 8 (8M and 800k also work; default: "
                                 "quality-based, CRF 18). Ignored by lossless formats.", metavar="MBIT",
           shown_default="quality-based", doc="target bitrate in megabits/s (`8`; `8M` and `800k` also work); unset, the "
                                              "quality is constant (`--crf`)"),
    Option("crf", int, 18, "x264 constant rate factor 0-51 when no --bitrate is given (0 lossless, 18 visually lossless).",
           lo=0, hi=51, hint="18 is visually lossless; higher is smaller",
           doc="x264 constant rate factor without `--bitrate`: 0 lossless, 18 visually lossless, higher is smaller"),
    Option("mask_video", bool, False, "Also write result_mask.<ext> from data_dst/merged_mask.", flags=("--mask-video",),
           doc="also write `result_mask.<ext>` from `data_dst/merged_mask`"),
    Option("fps", float, None, "Frame rate when the dst frames were given as images (no data_dst video); 29.97 means "
                               "30000/1001.", lo=1, hi=240, shown_default="the dst video's",
           doc="frame rate of a dst given as an image sequence (no `data_dst` video); 23.976, 29.97, 59.94 are the NTSC rates"),
)
"""Every setting of :class:`VideoSettings`, declared once (see :mod:`facelab.options`)."""


def _timing(ws: Workspace, settings: VideoSettings, merged: int, summary: Summary) -> tuple[Fraction, int]:
    """``(fps, dst frame count)``: from the dst video's frames, else (frames given as images) ``--fps``."""
    try:
        fps, count = frame_timing(ws, "dst")
    except WorkspaceError:
        if settings.fps is None:
            raise WorkspaceError("data_dst holds frames but no video to take their frame rate from",
                                 "give it: `facelab video --fps 25` (or copy the dst video in as data_dst.mp4)") from None
        return _rate(settings.fps), merged
    if settings.fps is not None and _rate(settings.fps) != fps:
        summary.warnings.append(f"--fps {settings.fps:g} ignored: the dst frames came from a video at {float(fps):.3f} fps "
                                "(their times and the audio follow it)")
    return fps, count


def _rate(fps: float) -> Fraction:
    """A frame rate as a fraction: within 0.01 of an NTSC rate N*1000/1001 (23.976, 29.97, 59.94, ...) it is that rate."""
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.01 and abs(fps - ntsc) > 0.01:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def merged_frames(ws: Workspace) -> list[Path]:
    folder = ws.merged_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith("."))


def _marked(image: np.ndarray, summary: Summary, marker: Marker) -> np.ndarray:
    """The frame with facelab's invisible watermark: frames merged by facelab carry it already (found in
    ~3 ms at 720p); any other frame put into merged/ is marked here, so no result goes out unmarked."""
    if detect_frames([image[..., :3]]).found:
        return image
    summary.counts["frames marked now"] = summary.counts.get("frames marked now", 0) + 1
    return marker.watermark(image)


def _read_all(paths: list[Path], summary: Summary, marker: Marker) -> Iterator[np.ndarray]:
    for p in paths:
        yield _marked(read_image(p), summary, marker)


def _read_mask(ws: Workspace, frame: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``(H, W) uint8`` mask of a merged frame from ``merged_mask/<stem>.png``."""
    path = ws.merged_mask_dir / f"{frame.stem}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if mask is None:
        raise WorkspaceError(f"{path} is missing or unreadable", "run `facelab merge --force` to write the masks again")
    if mask.shape != shape[:2]:
        raise MediaError(f"{path} is {mask.shape[1]}x{mask.shape[0]}, its frame is {shape[1]}x{shape[0]}",
                         "run `facelab merge --force`")
    return mask


def _with_alpha(ws: Workspace, paths: list[Path], summary: Summary, marker: Marker) -> Iterator[np.ndarray]:
    for p in paths:
        image = _marked(read_image(p), summary, marker)
        yield np.dstack([image, _read_mask(ws, p, image.shape)])


def _masks(ws: Workspace, paths: list[Path]) -> Iterator[np.ndarray]:
    for p in paths:
        yield cv2.cvtColor(_read_mask_any(ws, p), cv2.COLOR_GRAY2BGR)


def _read_mask_any(ws: Workspace, frame: Path) -> np.ndarray:
    path = ws.merged_mask_dir / f"{frame.stem}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if mask is None:
        raise WorkspaceError(f"{path} is missing or unreadable", "run `facelab merge --force` to write the masks again")
    return mask


def _timestamps_for(ws: Workspace, frames: list[Path], summary: Summary) -> list[float] | None:
    """Recorded times of the merged frames (matched by frame number) for a VFR dst, else ``None``."""
    ts = frame_timestamps(ws, "dst")
    if ts is None:
        return None
    try:
        numbers = [int(p.stem) for p in frames]
    except ValueError:
        numbers = []
    if numbers and all(1 <= n <= len(ts) for n in numbers):
        return [ts[n - 1] for n in numbers]
    summary.warnings.append("merged frame names do not match the dst frames: variable frame timing dropped, using the average fps")
    return None


def _record(ws: Workspace) -> StepRecord:
    return ws.step_record(STEP, "dst", legacy=_legacy)


def _legacy(folder: Path) -> Saved | None:
    """``video.json`` of facelab before step records: the settings and what was written."""
    path = folder / LEGACY_RECORD
    d = read_old_json(path)
    if d is None:
        return None
    settings = d.get("settings")
    if not isinstance(settings, dict):
        return Saved(settings={}, legacy_files=[path])
    return Saved(settings=settings, summary={k: v for k, v in d.items() if k != "settings"}, completed=True,
                 legacy_files=[path])


@jobs.step
def run(ws: Workspace, settings: VideoSettings = VideoSettings(), force: bool = False, *, marker: Marker | None = None) -> Summary:
    """Encode ``data_dst/merged/*.png`` into ``result.<ext>`` (and ``result_mask.<ext>``).

    ``marker`` (required; e.g. :func:`facelab.provenance.default_marker`) watermarks any frame that
    lacks the mark, gives the container tags and signs the finished file; without one the step
    refuses (FacelabError) before it writes anything."""
    marker = require_marker(marker, "video")
    t0 = time.perf_counter()
    ws.require_exists()
    summary = Summary(step="video")
    frames = merged_frames(ws)
    if not frames:
        raise WorkspaceError(f"{ws.merged_dir} has no merged frames", "run `facelab merge` first")
    ext, codec, mask_codec = FORMATS[settings.format]
    out = ws.result_path(ext)
    mask_out = out.with_name(f"{out.stem}_mask.{ext}")
    summary.outputs.append(str(out))
    if settings.mask_video:
        summary.outputs.append(str(mask_out))
    record = _record(ws)

    outputs = [out] + ([mask_out] if settings.mask_video else [])
    if not force and all(p.is_file() for p in outputs):
        newest = max(p.stat().st_mtime for p in frames)
        saved = record.load()
        recorded = saved.settings if saved is not None and saved.settings else None
        legacy = recorded is not None and settings.format == "mp4" and not settings.mask_video and "format" not in recorded
        same = (recorded is not None and {**asdict(VideoSettings()), **recorded} == asdict(settings)) or legacy
        if same and all(p.stat().st_mtime > newest for p in outputs):
            summary.counts.update({"frames": len(frames), "skipped (up to date, --force redoes)": len(frames)})
            summary.seconds = time.perf_counter() - t0
            return summary

    fps, dst_count = _timing(ws, settings, len(frames), summary)
    if len(frames) != dst_count:
        summary.warnings.append(f"{len(frames)} merged frames but the dst video has {dst_count}: the result's length differs")
    timestamps = _timestamps_for(ws, frames, summary)
    try:
        audio_from = ws.find_video("dst")
    except WorkspaceError:
        audio_from = None
        summary.warnings.append("no data_dst video: the result has no audio")

    timecode = read_timecode(audio_from) if audio_from is not None else None  # the result drops back in the edit
    source = _with_alpha(ws, frames, summary, marker) if settings.format == "mov-alpha" else _read_all(frames, summary, marker)
    written = write_video(
        track(source, len(frames), "video"),
        out,
        fps,
        audio_from=audio_from,
        audio_track="all",  # a second microphone, a dub or a commentary stays
        tags=marker.video_tags,
        bitrate=settings.bitrate,
        crf=settings.crf,
        codec=codec,
        timestamps=timestamps,
        timecode=timecode,
    )
    if out.suffix.lower() in SUPPORTED_SUFFIXES:
        marker.sign_file(out, title=out.name)  # last: the manifest binds the finished file's bytes
    else:
        summary.warnings.append(f"{out.suffix} files cannot carry a C2PA manifest: {out.name} is marked by its"
                                " invisible watermark and container tags only (use mp4 or mov-alpha for all three)")
    if settings.mask_video:
        write_video(track(_masks(ws, frames), len(frames), "mask video"), mask_out, fps, tags=marker.video_tags,
                    bitrate=settings.bitrate, crf=settings.crf, codec=mask_codec, timestamps=timestamps, timecode=timecode)
    record.begin(asdict(settings))
    record.finish({"fps": f"{fps.numerator}/{fps.denominator}", "frames": written, "vfr": timestamps is not None,
                   "audio_from": audio_from.name if audio_from else None, "output": out.name,
                   "mask_output": mask_out.name if settings.mask_video else None})
    summary.counts.update(frames=written, fps=float(fps))
    if timestamps is not None:
        summary.counts["variable-rate frames"] = written
    summary.seconds = time.perf_counter() - t0
    return summary
