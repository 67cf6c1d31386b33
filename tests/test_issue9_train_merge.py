"""Issue 9, train and merge options that did not do what their help said: optimizer mode 3 offloads, the
target iteration is saved, the first-run questions and dims ranges, GPU-indexed models in merge, negative
mask blur, denoise of faceless frames, and the merge help."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facelab.errors import FacelabError, SettingsError
from facelab.workspace import Workspace

SAE_TINY = (("resolution", 32), ("ae_dims", 16), ("e_dims", 4), ("d_dims", 4), ("d_mask_dims", 2))
QUICK_TINY = (("resolution", 32),)


def _quiet(_s: str) -> None:
    pass


@pytest.fixture()
def ws(sample_faces_ws, tmp_path) -> Workspace:
    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _options(ws: Workspace, name: str, prefix: str = "") -> dict:
    return json.loads((ws.model_dir(name) / f"{prefix}config.json").read_text())["options"]


def _iteration(ws: Workspace, name: str, prefix: str = "") -> int:
    return json.loads((ws.model_dir(name) / f"{prefix}state.json").read_text())["iteration"]


# --- point 11: optimizer mode 3 = mode 2 (offloaded optimizer state) + recomputation -------------------


def test_optimizer_mode_3_offloads_the_optimizer_state_and_recomputes(ws, monkeypatch):
    from facelab.models import sae
    from facelab.stages import train
    from facelab.train.offload import OffloadAdam

    made, recomputed = [], []
    real_make, real_checkpoint = train.make_optimizer, sae.checkpoint

    def spy_make(*a, **kw):
        made.append(real_make(*a, **kw))
        return made[-1]

    def spy_checkpoint(*a, **kw):
        recomputed.append(1)
        return real_checkpoint(*a, **kw)

    monkeypatch.setattr(train, "make_optimizer", spy_make)
    monkeypatch.setattr(sae, "checkpoint", spy_checkpoint)
    for mode, offloaded in ((1, False), (2, True), (3, True)):
        made.clear()
        recomputed.clear()
        train.run(ws, train.TrainSettings(model="sae", name=f"m{mode}", iterations=2, batch_size=2, device="cpu",
                                          architecture=(*SAE_TINY, ("optimizer_mode", mode))), log=_quiet)
        assert isinstance(made[0], OffloadAdam) is offloaded, mode
        assert bool(recomputed) is (mode == 3), mode
        # the state is Adam's, in system memory, and was updated
        states = list(made[0].state.values())
        assert states and all(s["exp_avg"].device.type == "cpu" and int(s["step"]) == 2 for s in states)
    # a mode-1 model continued in mode 3 keeps its optimizer state (same state dict structure)
    made.clear()
    train.run(ws, train.TrainSettings(model="sae", name="m1", iterations=3, batch_size=2, device="cpu",
                                      architecture=(("optimizer_mode", 3),)), log=_quiet)
    assert isinstance(made[0], OffloadAdam) and all(int(s["step"]) == 3 for s in made[0].state.values())


# --- point 12: the target iteration is saved with the model ---------------------------------------------


def test_target_iteration_is_saved_honoured_changed_and_removed(ws):
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.stages import train

    def run(**kw):
        return train.run(ws, train.TrainSettings(model="quick", batch_size=2, device="cpu", architecture=QUICK_TINY, **kw),
                         log=_quiet)

    run(iterations=2)
    assert _iteration(ws, "quick") == 2 and _options(ws, "quick")["target_iteration"] == 2
    # no flag: the saved target holds (before, this trained on for the whole 6 s)
    s = run(minutes=0.1)
    assert s.counts["iteration"] == 2 and _options(ws, "quick")["target_iteration"] == 2
    # the flag changes it, and the new target is saved
    run(iterations=3)
    assert _iteration(ws, "quick") == 3 and _options(ws, "quick")["target_iteration"] == 3
    # --iterations 0 removes it: training goes on past 3 (for the minutes given)
    r = CliRunner().invoke(app, ["-w", str(ws.root), "train", "--model", "quick", "--iterations", "0", "--minutes", "0.03",
                                 "--device", "cpu", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert _iteration(ws, "quick") > 3 and _options(ws, "quick")["target_iteration"] is None
    with pytest.raises(SettingsError, match="no_target"):
        train.TrainSettings(iterations=5, no_target=True)
