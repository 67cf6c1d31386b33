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
