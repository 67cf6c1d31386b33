"""Steps as jobs (issue 11, point 5): a stage cancelled halfway through its job keeps its work, and run again
it ends with the same result as a run that was never interrupted; its progress comes as events."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from facelab import jobs
from facelab.workspace import Workspace


class CancelAfter(jobs.CancelToken):
    """A token that reads as set from its ``n + 1``-th look on: a cancel at a known point of a step."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks, self.n = 0, n

    @property
    def cancelled(self) -> bool:
        self.looks += 1
        return self.looks > self.n

    def check(self) -> None:
        if self.cancelled:
            raise jobs.Cancelled()


def _copy(ws: Workspace, to) -> Workspace:
    shutil.copytree(ws.root, to)
    return Workspace(to)


def test_train_cancelled_halfway_resumes_to_the_weights_of_an_uninterrupted_run(sample_faces_ws, tmp_path, marker):
    from facelab.stages.train import TrainSettings, run

    settings = TrainSettings(iterations=12, batch_size=2, device="cpu", seed=3)
    whole = _copy(sample_faces_ws, tmp_path / "whole")
    run(whole, settings, log=lambda s: None, marker=marker)

    halves = _copy(sample_faces_ws, tmp_path / "halves")
    events: list[jobs.Event] = []
    job = jobs.Job(on_event=events.append, cancel=CancelAfter(5))
    first = run(halves, settings, log=lambda s: None, marker=marker, job=job)
    assert first.counts["iteration"] == 5 and any("interrupted" in w for w in first.warnings)
    previews = [e for e in events if e.preview is not None]
    assert previews and previews[-1].preview.is_file() and previews[-1].done == 5 and previews[-1].total == 12
    second = run(halves, settings, log=lambda s: None, marker=marker)
    assert second.counts["iteration"] == 12

    a = load_file(str(whole.model_dir("quick") / "weights.safetensors"))
    b = load_file(str(halves.model_dir("quick") / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _faces(ws: Workspace, side: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in ws.aligned_paths(side)}


def test_extract_cancelled_halfway_resumes_to_the_faces_of_an_uninterrupted_run(ws, tmp_path):
    from facelab.stages import extract

    settings = extract.ExtractSettings(size=128)
    for p in ws.aligned_paths("dst"):  # frames only: both runs extract from scratch
        p.unlink()
    shutil.rmtree(ws.state_dir("dst"), ignore_errors=True)
    whole = _copy(ws, tmp_path / "whole")
    extract.run(whole, "dst", settings)

    events: list[jobs.Event] = []
    job = jobs.Job(on_event=events.append, cancel=CancelAfter(12), min_interval=0)
    with pytest.raises(jobs.Cancelled):
        extract.run(ws, "dst", settings, job=job)
    kept = len(ws.aligned_paths("dst"))
    assert 0 < kept < len(whole.aligned_paths("dst"))
    assert events[-1].step == "extract dst" and events[-1].done == 12 and events[-1].total == 30  # stopped after 12
    again = extract.run(ws, "dst", settings)  # the frame being written when the cancel came may be redone
    assert 11 <= again.counts["skipped (already done)"] <= 12
    assert _faces(ws, "dst") == _faces(whole, "dst")


def test_merge_cancelled_halfway_resumes_to_the_frames_of_an_uninterrupted_run(ws, tmp_path, marker):
    import cv2
    import numpy as np

    from facelab.merge.compose import MergeSettings
    from facelab.stages import merge

    class Mirror:
        resolution, face_type = 64, "full"

        def predict(self, batch):
            return np.ascontiguousarray(batch[:, :, ::-1]), np.ones(batch.shape[:3], np.float32)

    whole = _copy(ws, tmp_path / "whole")
    merge.run(whole, "m", MergeSettings(), predictor=Mirror(), marker=marker)
    job = jobs.Job(cancel=CancelAfter(8))
    with pytest.raises(jobs.Cancelled):
        merge.run(ws, "m", MergeSettings(), predictor=Mirror(), marker=marker, job=job)
    finished = len(list(ws.merged_dir.glob("*.png")))
    assert 0 < finished < 30
    again = merge.run(ws, "m", MergeSettings(), predictor=Mirror(), marker=marker)
    # frames still being written on the worker threads when the cancel came are merged again
    assert 0 < again.counts["skipped"] <= finished and again.counts["skipped"] + again.counts["merged"] == 30
    pixels = lambda w: {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED).tobytes() for p in sorted(w.merged_dir.glob("*.png"))}
    assert pixels(ws) == pixels(whole)
