"""Step `video`: merged frames -> ``result.mp4`` with the dst video's timing and audio (SPEC section 2).

Frames are read one at a time from ``data_dst/merged`` in name order; the frame
rate comes from ``data_dst/.facelab/frames.json`` (so the result has the dst
video's frame count and rate) and the audio from ``data_dst.<ext>``. The file
carries the synthetic-media container tags.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facelab.errors import SettingsError, WorkspaceError
from facelab.fileio import atomic_write_json, read_image
from facelab.media import parse_bitrate, write_video
from facelab.progress import track
from facelab.provenance.labels import VIDEO_TAGS
from facelab.stages import Summary
from facelab.stages.frames import frame_timing
from facelab.workspace import Workspace


@dataclass(frozen=True)
class VideoSettings:
    """Settings of the `video` step.

    - ``bitrate``: target video bitrate such as ``"8M"`` or ``"800k"``; unset
      means constant quality set by ``crf``.
    - ``crf``: x264 constant rate factor 0-51 (0 lossless, 18 visually lossless).
    """

    bitrate: str | None = None
    crf: int = 18

    def __post_init__(self) -> None:
        if self.bitrate is not None:
            parse_bitrate(self.bitrate)  # raises SettingsError naming the value
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise SettingsError(f"video.crf must be an integer 0-51, got {self.crf!r}", "18 is visually lossless; higher is smaller")


def merged_frames(ws: Workspace) -> list[Path]:
    folder = ws.merged_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith("."))


def _read_all(paths: list[Path]) -> Iterator[np.ndarray]:
    for p in paths:
        yield read_image(p)


def run(ws: Workspace, settings: VideoSettings = VideoSettings(), force: bool = False) -> Summary:
    """Encode ``data_dst/merged/*.png`` into ``result.mp4``."""
    t0 = time.perf_counter()
    ws.require_exists()
    summary = Summary(step="video")
    frames = merged_frames(ws)
    if not frames:
        raise WorkspaceError(f"{ws.merged_dir} has no merged frames", "run `facelab merge` first")
    out = ws.result_path("mp4")
    summary.outputs.append(str(out))

    if not force and out.is_file():
        newest = max(p.stat().st_mtime for p in frames)
        if out.stat().st_mtime > newest:
            summary.counts.update({"frames": len(frames), "skipped (up to date, --force redoes)": len(frames)})
            summary.seconds = time.perf_counter() - t0
            return summary

    fps, dst_count = frame_timing(ws, "dst")
    if len(frames) != dst_count:
        summary.warnings.append(f"{len(frames)} merged frames but the dst video has {dst_count}: the result's length differs")
    try:
        audio_from = ws.find_video("dst")
    except WorkspaceError:
        audio_from = None
        summary.warnings.append("no data_dst video: the result has no audio")

    written = write_video(
        track(_read_all(frames), len(frames), "video"),
        out,
        fps,
        audio_from=audio_from,
        tags=VIDEO_TAGS,
        bitrate=settings.bitrate,
        crf=settings.crf,
    )
    ws.state_dir("dst").mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        ws.state_dir("dst") / "video.json",
        {"settings": asdict(settings), "fps": f"{fps.numerator}/{fps.denominator}", "frames": written,
         "audio_from": audio_from.name if audio_from else None, "output": out.name},
    )
    summary.counts.update(frames=written, fps=float(fps))
    summary.seconds = time.perf_counter() - t0
    return summary
