"""SMPTE timecode of a video: read the start timecode a camera or editor wrote, and move it by frames.

A result that keeps its dst's start timecode drops back into the edit at the place the shot came
from. Timecodes are ``HH:MM:SS:FF`` (``;`` before the frames: drop-frame, the 29.97 and 59.94 fps
count that skips frame numbers 0 and 1 (0-3 at 59.94) each minute except every tenth).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["read_timecode", "shift_timecode"]

_TIMECODE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")


def read_timecode(path: str | Path) -> str | None:
    """The start timecode of a video file (its video stream's tag, else a timecode track's, else the
    container's), or None when it has none or it is not ``HH:MM:SS:FF``."""
    try:
        with av.open(str(path)) as container:
            streams = sorted(container.streams, key=lambda s: s.type != "video")
            for metadata in [s.metadata for s in streams] + [container.metadata]:
                value = metadata.get("timecode")
                if value and _TIMECODE.match(value.strip()):
                    return value.strip()
    except (av.FFmpegError, OSError):
        return None
    return None


def shift_timecode(timecode: str, frames: int, fps: Fraction | float) -> str:
    """``timecode`` moved ``frames`` frames later, at the video's ``fps`` (the count runs at its rounded
    rate: 25, 30 for 29.97, 24 for 23.976); drop-frame timecodes stay drop-frame. Wraps at 24 hours.

    Raises:
        ValueError: not ``HH:MM:SS:FF``.
    """
    match = _TIMECODE.match(timecode.strip())
    if match is None:
        raise ValueError(f"not a timecode: {timecode!r}")
    h, m, s, sep, f = match.groups()
    h, m, s, f = int(h), int(m), int(s), int(f)
    rate = max(1, round(float(fps)))
    drop = round(rate / 15) if sep in ";," else 0  # numbers skipped a minute: 2 at 30, 4 at 60
    minutes = 60 * h + m
    number = ((minutes * 60) + s) * rate + f - drop * (minutes - minutes // 10)
    number = (number + frames) % _frames_per_day(rate, drop)
    if drop:  # back to the nominal count: put the skipped numbers back in
        per_ten = rate * 600 - 9 * drop
        per_minute = rate * 60 - drop
        tens, rest = divmod(number, per_ten)
        number += 9 * drop * tens + (drop * ((rest - drop) // per_minute) if rest > drop else 0)
    f = number % rate
    s = number // rate % 60
    m = number // (rate * 60) % 60
    h = number // (rate * 3600) % 24
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{f:02d}"


def _frames_per_day(rate: int, drop: int) -> int:
    return 24 * (rate * 3600 - drop * 54)
