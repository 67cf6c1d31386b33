"""Tool `denoise dst`: temporal-spatial denoising of the extracted dst frames, in place (SPEC section 2).

Each frame is denoised with non-local means over a temporal window of itself and
its neighbours (``cv2.fastNlMeansDenoisingColoredMulti``: patches are averaged
only where they match, so edges stay sharp, and matching patches in the
neighbouring frames add temporal averaging). ``factor`` (1-20, default 5) is the
filter strength ``h`` for luminance and colour; 5 suits mild sensor/compression
noise (sigma ~10), raise it for heavy grain.

Frames are replaced atomically one by one, in name order. The step record
``denoise`` of dst (:mod:`facelab.steprecord`) holds the factor and the first
frame's name, journals each frame as it is replaced (so the frames done are a
prefix of the sorted frame list) and says whether the run completed. A rerun
skips done frames and resumes after them. ``facelab frames dst --force``
resets this record with its own (fresh frames are not denoised). Because frames are changed in place,
denoising again with another factor would filter already-filtered frames:
that is refused unless ``force`` (which denoises the current frames once more;
to start from clean frames, re-extract with ``facelab frames dst --force``).
On resume, neighbours before the resume point are already denoised, which
only slightly changes the first resumed frame. A merge made before renders the
frames denoised since again (:func:`filtered_frames`; the record's ``pass``
counts ``--force`` passes).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facelab import jobs
from facelab.options import Option
from facelab.errors import WorkspaceError
from facelab.fileio import read_image, write_image
from facelab.progress import track
from facelab.stages import Summary
from facelab.steprecord import Saved, StepRecord, read_old_json
from facelab.workspace import Workspace

STEP = "denoise"
LEGACY_RECORD = "denoise.json"  # what facelab wrote before step records
RADIUS = 1  # temporal window: the frame and RADIUS frames each side
TEMPLATE = 5  # patch size (pixels)
SEARCH = 11  # search window (pixels)


@dataclass(frozen=True)
class DenoiseSettings:
    """``factor``: strength 1-20 (non-local-means ``h``), default 5."""

    factor: int = 5

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name), "denoise ")


OPTIONS = (
    Option("factor", int, 5, "Strength 1-20.", lo=1, hi=20, hint="5 for mild noise, 10-20 for heavy grain",
           doc="strength 1-20 (non-local means `h`): 5 for mild noise, 10-20 for heavy grain"),
)
"""Every setting of :class:`DenoiseSettings`, declared once (see :mod:`facelab.options`)."""


def denoise_window(frames: list[np.ndarray], center: int, factor: int) -> np.ndarray:
    """Denoise ``frames[center]`` using all of ``frames`` as its temporal window.

    Args:
        frames: ``(H, W, 3) uint8`` BGR images of the same size; an odd-length window is used
            around ``center`` (clipped to what exists).
        center: index of the frame to denoise.
        factor: strength 1-20.

    Returns:
        ``(H, W, 3) uint8`` BGR.
    """
    r = min(center, len(frames) - 1 - center)
    window = frames[center - r: center + r + 1]
    if len(window) == 1:
        return cv2.fastNlMeansDenoisingColored(window[0], None, factor, factor, TEMPLATE, SEARCH)
    return cv2.fastNlMeansDenoisingColoredMulti(window, r, 2 * r + 1, None, factor, factor, TEMPLATE, SEARCH)


def _record(ws: Workspace) -> StepRecord:
    return ws.step_record(STEP, "dst", legacy=_legacy)


def filtered_frames(ws: Workspace) -> dict[str, str]:
    """``frame name -> key`` of the dst frames this step changed in place: the key names the filter and the
    pass (``--force`` denoising again is a new pass), so a merge renders again the frames it changed since."""
    saved = _record(ws).load()
    if saved is None or not saved.settings:
        return {}
    key = saved.fingerprint
    if saved.done:
        return {name: key for name in saved.done}
    names = [p.name for p in ws.frame_paths("dst")]  # an old record holds a count: the first frames
    return {name: key for name in names[:_frames_done(saved, names)]}


def last_written(ws: Workspace) -> float | None:
    """When this step last changed the dst frames' record (its header or journal; seconds since the epoch),
    None when it never ran."""
    record = _record(ws)
    legacy = record.folder / LEGACY_RECORD
    times = (record.written_at(), legacy.stat().st_mtime if legacy.exists() else None)
    return max((t for t in times if t is not None), default=None)


def _legacy(folder: Path) -> Saved | None:
    """``denoise.json`` of facelab before step records: the settings, ``done`` (how many frames, a prefix
    of the sorted frame list; names are not recorded, so the prefix is named when it is resumed) and
    ``completed``."""
    path = folder / LEGACY_RECORD
    d = read_old_json(path)
    if d is None:
        return None
    return Saved(settings={k: v for k, v in d.items() if k not in ("done", "completed")},
                 summary={"done": d.get("done", 0)}, completed=bool(d.get("completed")), legacy_files=[path])


def _frames_done(saved: Saved, names: list[str]) -> int:
    """How many frames of ``names`` (sorted) the record says are denoised: the journaled prefix, or the count
    an old ``denoise.json`` gave."""
    if "done" in saved.summary and not saved.done:  # an old record, migrated: a count
        try:
            return min(int(saved.summary["done"]), len(names))
        except (TypeError, ValueError):
            return 0
    n = 0
    while n < len(names) and names[n] in saved.done:
        n += 1
    return n


@jobs.step
def run(ws: Workspace, settings: DenoiseSettings = DenoiseSettings(), force: bool = False) -> Summary:
    """Denoise ``data_dst/<frames>`` in place (see the module doc for resuming and ``force``)."""
    t0 = time.perf_counter()
    ws.require_exists()
    paths = ws.require_frames("dst")
    summary = Summary(step="denoise dst")
    summary.outputs.append(str(ws.frames_dir("dst")))
    names = [p.name for p in paths]
    step_record = _record(ws)
    saved = step_record.load()
    record = saved.settings if saved is not None and saved.settings else None
    done, passes = 0, int(record.get("pass", 1)) if record is not None else 1
    if record is not None and force:
        passes += 1  # the frames are filtered once more: a new pass, not the same frames
    if record is not None and not force:
        if record.get("factor") != settings.factor:
            raise WorkspaceError(
                f"the dst frames were already denoised (factor {record.get('factor')}) in place",
                f"pass --force to denoise them again with factor {settings.factor}, or re-extract clean frames "
                "with `facelab frames dst --force` first",
            )
        if record.get("names_head") == names[:1]:
            done = _frames_done(saved, names)
    if done == len(names):
        summary.counts.update({"frames": len(names), "skipped (already done, --force redoes)": len(names)})
        summary.seconds = time.perf_counter() - t0
        return summary

    base = {"factor": settings.factor, "method": f"fastNlMeansDenoisingColoredMulti r={RADIUS} t={TEMPLATE} s={SEARCH}",
            "frame_count": len(names), "names_head": names[:1], "pass": passes}
    step_record.begin(base, names[:done])
    # Sliding window of frames as read *before* they were replaced.
    cache: dict[int, np.ndarray] = {}
    order: deque[int] = deque()

    def get(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = read_image(paths[i])
            order.append(i)
        return cache[i]

    for i in track(range(done, len(paths)), len(paths) - done, "denoise dst"):
        lo, hi = max(0, i - RADIUS), min(len(paths) - 1, i + RADIUS)
        window = [get(j) for j in range(lo, hi + 1)]
        if any(w.shape != window[0].shape for w in window):
            raise WorkspaceError(f"dst frames around {names[i]} differ in size", "re-extract with `facelab frames dst --force`")
        out = denoise_window(window, i - lo, settings.factor)
        write_image(paths[i], out)
        step_record.done(names[i])
        while order and order[0] < i - RADIUS + 1:
            cache.pop(order.popleft(), None)
    step_record.finish({"done": len(paths)})
    n = len(paths) - done
    summary.seconds = time.perf_counter() - t0
    summary.counts.update(frames=len(paths), denoised=n, resumed_after=done,
                          frames_per_s=round(n / max(summary.seconds, 1e-9), 2))
    return summary
