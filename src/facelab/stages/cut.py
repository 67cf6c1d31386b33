"""Tool `cut`: a frame-exact excerpt of a video, ``<name>_cut.<ext>`` beside it (SPEC section 2).

Video is re-encoded (so the cut starts exactly at the first frame at or after
``--from``, whatever the key frames), keeping each frame's own time (variable
frame rates survive); one chosen audio track is re-encoded in sync (AAC; MP2 in
``.mpg``). The original is only read; the output is written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from facelab import jobs
from facelab.errors import MediaError, SettingsError
from facelab.media import is_vfr, iter_frames_between, parse_bitrate, probe, read_timecode, shift_timecode, write_video
from facelab.media.audio import count_audio_tracks, describe_audio_tracks
from facelab.options import Option
from facelab.stages import Summary

_TIME = re.compile(r"\s*(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d*)?)\s*")


def parse_time(text: str | float | int) -> float:
    """``"HH:MM:SS.mmm"``, ``"MM:SS.mmm"`` or ``"SS.mmm"`` (or a number) -> seconds.

    Raises:
        SettingsError: not a time of that form, or minutes/seconds of 60 or more in a ``:`` form.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise SettingsError(f"time {text!r} is negative", "times count from the start of the video, e.g. 00:00:01.500")
        return float(text)
    m = _TIME.fullmatch(str(text))
    if not m:
        raise SettingsError(f"time {text!r} is not understood", "write HH:MM:SS.mmm, e.g. 00:01:02.500 (or seconds, e.g. 62.5)")
    hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2) or 0), float(m.group(3))
    if m.group(2) is not None and (minutes >= 60 or seconds >= 60):
        raise SettingsError(f"time {text!r} has minutes or seconds of 60 or more", "write HH:MM:SS.mmm with MM and SS below 60")
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class CutSettings:
    """``start``/``end``: seconds (or ``HH:MM:SS.mmm`` strings); ``audio_track``: index among the
    audio streams; ``bitrate``: megabits per second as in DeepFaceLab (``8``; ``"8M"`` and ``"800k"`` also
    work, read by :func:`facelab.media.parse_bitrate` like `video`'s), ``None`` for quality-based (CRF 18);
    ``all_audio``: keep every audio track instead (each with its language tag). Declared in :data:`OPTIONS`."""

    start: float | str
    end: float | str
    audio_track: int = 0
    bitrate: float | str | None = None
    all_audio: bool = False

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.name)
            if option.name in ("start", "end"):  # a string or a number of seconds
                try:
                    parse_time(value)
                except SettingsError as e:
                    raise SettingsError(f"cut {option.cli_flags[0]}: {e.message}", e.hint) from None
            elif option.name == "bitrate":
                if value is not None:
                    parse_bitrate(value, "cut --bitrate")  # raises SettingsError naming the option
            else:
                option.check(value, "cut.")


OPTIONS = (
    Option("start", str, None, "Start time HH:MM:SS.mmm (or seconds).", flags=("--from",), required=True, metavar="TIME",
           doc="the first frame kept is the first at or after this time: `HH:MM:SS.mmm`, `MM:SS.mmm` or seconds"),
    Option("end", str, None, "End time HH:MM:SS.mmm (or seconds), exclusive.", flags=("--to",), required=True, metavar="TIME",
           doc="frames at or after this time are left out (same forms as `--from`)"),
    Option("audio_track", int, 0, "Audio track to keep, by index among the audio tracks (default 0).",
           flags=("--audio-track",), lo=0, hint="give 0 or more (0: the first audio track)",
           doc="the audio track to keep, by index among the audio streams (0-based, audio streams only)"),
    Option("bitrate", str, None, "Video bitrate in megabits/s as in DeepFaceLab, e.g. 8 (8M and 800k also work; default: "
                                 "quality-based, CRF 18).", metavar="MBIT", shown_default="quality-based (CRF 18)",
           doc="target bitrate in megabits/s (`8`; `8M` and `800k` also work)"),
    Option("all_audio", bool, False, "Keep every audio track (a second microphone, a dub), not only --audio-track's.",
           flags=("--all-audio",), doc="keep every audio track, in order, with its language tag (instead of `--audio-track`)"),
)
"""Every setting of :class:`CutSettings`, declared once (see :mod:`facelab.options`)."""


def output_path(video: Path) -> Path:
    return video.with_name(f"{video.stem}_cut{video.suffix}")


@jobs.step
def run(video: str | Path, settings: CutSettings, force: bool = False) -> Summary:
    """Write ``<name>_cut.<ext>`` with the frames whose time is in ``[start, end)``.

    Raises:
        SettingsError: start >= end, start beyond the video, or an audio track index out of range (the
            message lists the tracks); :class:`CutSettings` itself refuses unparseable times and a bad bitrate.
        MediaError: unreadable video.
    """
    t0 = time.perf_counter()
    video = Path(video)
    start, end = parse_time(settings.start), parse_time(settings.end)
    if end <= start:
        raise SettingsError(f"--to ({end:g} s) must be after --from ({start:g} s)", "give a later --to time")
    info = probe(video, count_frames=False)
    if start >= info.duration:
        raise SettingsError(f"--from ({start:g} s) is at or past the end of {video.name} ({info.duration:.3f} s)",
                            "give a start time inside the video")
    summary = Summary(step="cut")
    if end > info.duration + 1 / float(info.fps):
        summary.warnings.append(f"--to ({end:g} s) is past the end ({info.duration:.3f} s): cut to the end")
    n_audio = count_audio_tracks(video)
    track = settings.audio_track
    if isinstance(track, bool) or not isinstance(track, int) or (n_audio and not 0 <= track < n_audio) or (not n_audio and track != 0):
        listed = describe_audio_tracks(video) or "none"
        raise SettingsError(f"{video.name} has no audio track {track!r} (audio tracks: {listed})", "pick an index from that list")
    out = output_path(video)
    summary.outputs.append(str(out))
    if out.exists() and not force:
        raise MediaError(f"{out} already exists", "delete it or pass --force to overwrite it")

    def frames():
        for _, image in iter_frames_between(video, start, end):
            yield image

    # A first pass (decode only, no pixel conversion) gets the frame times the encoder's time base
    # needs up front; variable-frame-rate sources keep their own times.
    all_times = [t for t, _ in _times_only(video, start, end)]
    if not all_times:
        raise SettingsError(f"no frame of {video.name} lies between {start:g} s and {end:g} s", "widen the range")
    vfr = is_vfr(all_times, info.fps)
    written = write_video(
        frames(), out, info.fps,
        audio_from=video if n_audio else None,
        bitrate=settings.bitrate,
        timestamps=all_times if vfr else None,
        audio_track="all" if settings.all_audio else track,
        audio_start=all_times[0],
        timecode=_cut_timecode(video, all_times[0], info.fps),
    )
    summary.counts.update(frames=written, seconds=round(all_times[-1] - all_times[0] + 1 / float(info.fps), 3),
                          audio_track=("all" if settings.all_audio else track) if n_audio else "none")
    if vfr:
        summary.counts["variable-rate frames"] = written
    summary.seconds = time.perf_counter() - t0
    return summary


def _cut_timecode(video: Path, first: float, fps: Fraction) -> str | None:
    """The source's start timecode moved to the cut's first frame (``first`` seconds in); None without one."""
    timecode = read_timecode(video)
    return shift_timecode(timecode, round(first * fps), fps) if timecode else None


def _times_only(video: Path, start: float, end: float):
    """``(t, None)`` of the frames in ``[start, end)`` without converting pixels."""
    from facelab.media.video import _check_file, _decode

    for _, t, _frame in _decode(_check_file(video), seek_to=start):
        if t >= end - 1e-6:
            return
        if t >= start - 1e-6:
            yield float(t), None
