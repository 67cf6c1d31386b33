"""A workspace written by facelab before step records (``tests/data/old_workspace``, made by
``tools/make_old_workspace.py`` with that version's code) is migrated on first use and every step
resumes skipping exactly what that version would have skipped."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import WorkspaceError
from facelab.merge.compose import MergeSettings
from facelab.stages import denoise, extract, frames, merge, video
from facelab.steprecord import HEADER_SUFFIX, LEGACY_FILES
from facelab.workspace import Workspace

FIXTURE = Path(__file__).parent / "data" / "old_workspace"
MODEL = "stand-in"  # the model name the fixture was merged with
EXTRACT = extract.ExtractSettings(size=64, debug=True, device="cpu")  # the fixture's extraction
OLD_FILES = {name for names in LEGACY_FILES.values() for name in names}


class Identity:
    """The fixture's stand-in model (see tools/make_old_workspace.py): its input face, a full mask."""

    resolution, face_type = 64, "full"

    def predict(self, batch: np.ndarray):
        return batch.copy(), np.ones(batch.shape[:3], np.float32)


@pytest.fixture()
def old_ws(tmp_path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)
    recorded = json.loads((root / "data_dst" / ".facelab" / "frames.json").read_text())
    os.utime(root / "data_dst.mpg", (recorded["video_mtime"], recorded["video_mtime"]))  # git keeps no mtimes
    newest = max(p.stat().st_mtime for p in (root / "data_dst" / "merged").iterdir())
    os.utime(root / "result.mp4", (newest + 1, newest + 1))  # made after the merged frames
    return Workspace(root)


def _outputs(ws: Workspace) -> dict[str, int]:
    """Every output file (not a record) and its mtime."""
    return {str(p.relative_to(ws.root)): p.stat().st_mtime_ns for p in ws.root.rglob("*")
            if p.is_file() and ".facelab" not in p.parts}


def _run_all(ws: Workspace, marker) -> dict[str, dict]:
    return {
        "frames": frames.run(ws, "dst", frames.FramesSettings(format="jpg")).counts,
        "denoise": denoise.run(ws).counts,
        "extract": extract.run(ws, "dst", EXTRACT).counts,
        # the settings the fixture's frames were made with: suppress_jitter was off by default then (a plain
        # `facelab merge` now renders them again, steadied, and says so)
        "merge": merge.run(ws, MODEL, MergeSettings(suppress_jitter=False), device="cpu", predictor=Identity(),
                           marker=marker).counts,
        "video": video.run(ws, marker=marker).counts,
    }


def test_the_fixture_is_in_the_old_format():
    names = {p.name for p in (FIXTURE / "data_dst" / ".facelab").iterdir()}
    assert {"frames.json", "denoise.json", "extract.json", "extract_done.txt", "debug_done.txt", "merge.json",
            "merge_done.txt", "video.json"} <= names and not any(n.endswith(HEADER_SUFFIX) for n in names)


def test_an_old_workspace_is_migrated_and_every_step_skips_its_finished_work(old_ws, marker):
    ws = old_ws
    before = _outputs(ws)
    assert frames.frame_timing(ws, "dst") == (Fraction(25), 3)  # read through the migrated record
    counts = _run_all(ws, marker)
    assert counts["frames"]["skipped (already done, --force redoes)"] == 3
    assert counts["denoise"]["skipped (already done, --force redoes)"] == 3
    assert counts["extract"]["frames"] == 0 and counts["extract"]["skipped (already done)"] == 3
    assert counts["merge"]["skipped"] == 3 and counts["merge"]["merged"] == 0
    assert counts["video"]["skipped (up to date, --force redoes)"] == 3
    assert _outputs(ws) == before  # nothing was made again
    state = {p.name for p in ws.state_dir("dst").iterdir()}
    assert not state & OLD_FILES  # migrated: the old files are gone ...
    for step in ("frames", "denoise", "extract", "extract-debug", "merge", "video"):
        assert f"{step}{HEADER_SUFFIX}" in state  # ... and each step has its record
    assert extract.recorded_settings(ws, "dst")["size"] == 64 and extract.done_frames(ws, "dst") == [
        "00001.jpg", "00002.jpg", "00003.jpg"]
    with pytest.raises(WorkspaceError, match="already denoised"):  # the old record's factor is kept
        denoise.run(ws, denoise.DenoiseSettings(factor=9))
    assert _run_all(ws, marker) == counts  # and once more, from the new records


def make_partial(ws: Workspace) -> None:
    """Edit the fixture's old records (simple formats) as runs killed part-way would have left them."""
    state = ws.state_dir("dst")
    # denoise killed after 2 of 3 frames
    d = json.loads((state / "denoise.json").read_text())
    (state / "denoise.json").write_text(json.dumps({**d, "done": 2, "completed": False}))
    # extract killed after its first frame: the later frames' faces were not written
    (state / "extract_done.txt").write_text("00001.jpg\n")
    (state / "debug_done.txt").write_text("00001.jpg\n")
    e = json.loads((state / "extract.json").read_text())
    (state / "extract.json").write_text(json.dumps({**e, "completed": False}))
    for name in ("00002_0.jpg", "00003_0.jpg"):
        (ws.aligned_dir("dst") / name).unlink()
    # merge killed after 00001 (in merge.json) and 00003 (journaled since); 00002 never finished
    m = json.loads((state / "merge.json").read_text())
    fp3 = m["frames"].pop("00003")
    del m["frames"]["00002"]
    (state / "merge.json").write_text(json.dumps(m))
    (state / "merge_done.txt").write_text(f"00003 {fp3}\n")


# What facelab before step records reported for the same partial workspace (run by hand with its code).
PARTIAL_COUNTS = {"denoise": (1, 2), "extract": (2, 1), "merge": (1, 2)}


def test_old_records_of_killed_runs_resume_where_they_stopped(old_ws, marker):
    ws = old_ws
    make_partial(ws)
    counts = _run_all(ws, marker)
    assert (counts["denoise"]["denoised"], counts["denoise"]["resumed_after"]) == PARTIAL_COUNTS["denoise"]
    assert (counts["extract"]["frames"], counts["extract"]["skipped (already done)"]) == PARTIAL_COUNTS["extract"]
    assert (counts["merge"]["merged"], counts["merge"]["skipped"]) == PARTIAL_COUNTS["merge"]
    assert counts["video"]["frames"] == 3  # the merged frames are newer than the result: made again
    assert len(ws.aligned_paths("dst")) == 3 and sorted(extract.done_frames(ws, "dst")) == [
        "00001.jpg", "00002.jpg", "00003.jpg"]
