"""What every model gives the trainer (``train_outputs``): the swap the style losses compare with dst, and
the shared code the true-face discriminator judges. Before 2026-12-06 only ``sae`` gave them, so
``--face-style-power`` and ``--bg-style-power`` did nothing on the other models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from facelab.faceimage import read_face
from facelab.models import create_model
from facelab.train.dataset import FaceDataset
from facelab.train.loop import TrainOptions, make_optimizer, train_step
from facelab.train.objective import LossOptions

SMALL = {"resolution": 32, "ae_dims": 16, "e_dims": 4, "d_dims": 4, "d_mask_dims": 2}
MODELS = {  # name -> (registered model, config); shares its bottleneck code between src and dst?
    "quick": ("quick", SMALL, True),
    "h64": ("h64", SMALL, True),
    "df": ("df", SMALL, True),
    "liaef128": ("liaef128", SMALL, False),
    "sae-df": ("sae", {**SMALL, "archi": "df-ud"}, True),
    "sae-liae": ("sae", {**SMALL, "archi": "liae"}, False),
}


def _faces(ws, side: str, n: int = 2) -> torch.Tensor:
    """``n`` real aligned faces of ``side`` at 32 px, ``(n, 3, 32, 32)`` float BGR in [0, 1]."""
    imgs = [cv2.resize(read_face(p)[0], (32, 32), interpolation=cv2.INTER_AREA) for p in ws.aligned_paths(side)[:n]]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def _setup(key: str, ws):
    """Model ``key`` of :data:`MODELS` (seeded, eval mode), and two real src and dst faces."""
    name, config, _ = MODELS[key]
    torch.manual_seed(0)
    return create_model(name, **config).eval(), _faces(ws, "src"), _faces(ws, "dst")


@pytest.mark.parametrize("key", list(MODELS))
def test_train_outputs_match_the_models_own_forward_and_swap(key, sample_faces_ws):
    model, src, dst = _setup(key, sample_faces_ws)
    with torch.no_grad():
        out = model.train_outputs(src, dst, swap=True)
        for got, want in zip(out["scales"][0], model(src, dst)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        swap_face, swap_mask = model.swap(dst)
        torch.testing.assert_close(out["swap"][0], swap_face, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["swap"][1], swap_mask, atol=1e-5, rtol=1e-4)
        # the swap is not dst's own reconstruction: the src decoder painted it
        assert not torch.equal(out["swap"][0], out["scales"][0][2])
    assert model.shares_code is MODELS[key][2]


@pytest.mark.parametrize("key", [k for k, (_, _, shares) in MODELS.items() if shares])
def test_shared_code_models_return_the_bottleneck_codes(key, sample_faces_ws):
    model, src, dst = _setup(key, sample_faces_ws)
    with torch.no_grad():
        out = model.train_outputs(src, dst, codes=True)
        assert out["src_code"].shape == out["dst_code"].shape == (2, SMALL["ae_dims"])
        # a face's code is its own: the same faces on the other side give the same codes
        swapped = model.train_outputs(dst, src, codes=True)
        torch.testing.assert_close(swapped["src_code"], out["dst_code"], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(out["src_code"], out["dst_code"])


def test_a_model_without_a_shared_code_says_so():
    model = create_model("liaef128", **SMALL)
    with pytest.raises(ValueError, match="no shared code"):
        model.train_outputs(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), codes=True)


@pytest.mark.parametrize("name", ["quick", "liaef128"])
def test_face_style_power_changes_the_training_step(name, sample_faces_ws):
    """The style loss reaches the weights: the same step with and without it ends in other src-decoder weights
    (with no swap output, as before 2026-12-06, both steps were identical)."""
    ds_src = FaceDataset(sample_faces_ws.aligned_paths("src")[:4], 32)
    ds_dst = FaceDataset(sample_faces_ws.aligned_paths("dst")[:4], 32)
    s_batch, d_batch = ds_src.sample(2, np.random.default_rng(0)), ds_dst.sample(2, np.random.default_rng(1))
    weights = {}
    for power in (0.0, 10.0):
        torch.manual_seed(0)
        model = create_model(name, **SMALL)
        opt = make_optimizer(model, TrainOptions())
        train_step(model, opt, s_batch, d_batch, torch.device("cpu"), losses=LossOptions(face_style_power=power))
        weights[power] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(weights[0.0], weights[10.0])


def test_quick_trains_with_true_face_and_saves_the_code_discriminator(ws, marker):
    from facelab.stages import train as stage
    from facelab.train.checkpoint import load_checkpoint

    kw = dict(model="quick", batch_size=2, device="cpu", true_face_power=0.01, architecture=(("resolution", 32),))
    stage.run(ws, stage.TrainSettings(iterations=2, **kw), log=lambda s: None, marker=marker)
    folder = ws.model_dir("quick")
    state = json.loads((folder / "state.json").read_text())
    assert state["extras"] == ["adversarial"] and state["options"]["true_face_power"] == 0.01
    tensors = load_checkpoint(folder).extras["adversarial"]["tensors"]
    assert any(k.startswith("code.") for k in tensors) and not any(k.startswith("patch.") for k in tensors)


def test_style_power_on_a_young_model_warns(ws, marker):
    from facelab.stages import train as stage

    kw = dict(model="quick", batch_size=2, device="cpu", architecture=(("resolution", 32),))
    plain = stage.run(ws, stage.TrainSettings(iterations=1, **kw), log=lambda s: None, marker=marker)
    assert not any("style power" in w for w in plain.warnings)
    styled = stage.run(ws, stage.TrainSettings(iterations=2, face_style_power=1.0, **kw), log=lambda s: None, marker=marker)
    assert any("style power on a model at iteration 1" in w and "take the swap over" in w for w in styled.warnings)


def test_a_run_ending_before_the_swap_settles_says_so(ws, marker, monkeypatch):
    from facelab.models.quick import Quick
    from facelab.stages import train as stage

    assert Quick.SETTLED_ITERATIONS == 1800
    monkeypatch.setattr(Quick, "SETTLED_ITERATIONS", 3)
    kw = dict(model="quick", batch_size=2, device="cpu", architecture=(("resolution", 32),))
    young = stage.run(ws, stage.TrainSettings(iterations=2, **kw), log=lambda s: None, marker=marker)
    assert any("quick at iteration 2: its swap settles at about 3" in w and "`facelab train` again" in w for w in young.warnings)
    settled = stage.run(ws, stage.TrainSettings(iterations=3, **kw), log=lambda s: None, marker=marker)
    assert not any("settles" in w for w in settled.warnings)
