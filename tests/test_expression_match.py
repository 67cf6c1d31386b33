"""Expression matching: dst codes pulled towards the codes of src faces with the same mouth, eyes and pose."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facelab.errors import SettingsError
from facelab.eval import metrics as M
from facelab.train.expression_match import NEIGHBOURS, ExpressionMatch, expression_features, nearest_src


def test_features_are_evals_measures_of_the_stored_landmarks(sample_faces_ws):
    from facelab.faceimage import read_record

    landmarks = np.stack([np.asarray(read_record(p).landmarks) for p in sample_faces_ws.aligned_paths("dst")])
    f = expression_features(landmarks)
    assert f.shape == (len(landmarks), 4) and np.isfinite(f).all()
    assert f[:, 0] == pytest.approx([M.mouth_opening(p) for p in landmarks])
    assert f[:, 1] == pytest.approx([M.eye_opening(p) for p in landmarks])
    assert f[:, 2:] == pytest.approx(np.array([M.head_pose(p)[:2] for p in landmarks]))
    # the GRID speaker talks through the clip: his mouth opens and closes
    assert f[:, 0].max() > 2 * f[:, 0].min()


def test_nearest_src_matches_by_mouth_first_on_a_common_scale():
    # columns: mouth opening, eye opening, yaw, pitch. Yaw is in degrees, 100x the mouth's units: unscaled it
    # would decide every match
    src = np.array([[0.00, 0.3, 0.0, 0.0],
                    [0.20, 0.3, 0.0, 0.0],
                    [0.02, 0.3, 30.0, 0.0],
                    [np.nan, 0.3, 0.0, 0.0],  # no measure: never a match
                    [0.18, 0.3, 25.0, 0.0]])
    dst = np.array([[0.19, 0.3, 1.0, 0.0],
                    [0.01, 0.3, 28.0, 0.0],
                    [0.10, np.nan, 0.0, 0.0]])  # no measure: not matched
    rows, nearest = nearest_src(src, dst, k=2)
    assert rows.tolist() == [0, 1]
    assert nearest[0].tolist() == [1, 4]  # open mouths; the one at its yaw first
    assert nearest[1].tolist() == [2, 0]  # closed mouths; the one at its yaw first
    rows, nearest = nearest_src(src, dst, k=9)
    assert nearest.shape == (2, 4) and 3 not in nearest
    rows, nearest = nearest_src(src[[3]], dst)
    assert len(rows) == 0 and nearest.shape[0] == 0


def test_nearest_src_in_blocks_matches_the_full_table(monkeypatch):
    import facelab.train.expression_match as em

    rng = np.random.default_rng(7)
    src, dst = rng.normal(size=(50, 4)) * [0.05, 0.1, 20, 10], rng.normal(size=(11, 4)) * [0.05, 0.1, 20, 10]
    scale = np.concatenate([src, dst]).std(0)
    full = (((dst / scale * em.WEIGHTS)[:, None] - (src / scale * em.WEIGHTS)[None]) ** 2).sum(-1)
    monkeypatch.setattr(em, "MATCH_BLOCK", 4)  # 11 rows: blocks of 4, 4 and 3
    rows, nearest = nearest_src(src, dst, k=5)
    assert rows.tolist() == list(range(11))
    assert (nearest == np.argsort(full, axis=1)[:, :5]).all()


@pytest.fixture(scope="module")
def sets(sample_faces_ws):
    from facelab.train.dataset import FaceDataset

    return (FaceDataset(sample_faces_ws.aligned_paths("src"), 64, "full"),
            FaceDataset(sample_faces_ws.aligned_paths("dst"), 64, "full"))


def test_the_term_moves_the_dst_codes_and_nothing_else(sets):
    from facelab.models import create_model

    src, dst = sets
    torch.manual_seed(0)
    model = create_model("quick")
    term = ExpressionMatch(src, dst, power=1.0, device=torch.device("cpu"), seed=3)
    assert len(term.rows) == len(dst) and term.nearest.shape == (len(dst), min(NEIGHBOURS, len(src)))
    # the two people differ: their codes are apart, so the term is not zero
    value = term(model, iteration=5)
    assert value.ndim == 0 and float(value.detach()) > 0
    value.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for part in ("encoder", "inter"):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(part))
    assert all(g is None for n, g in grads.items() if n.startswith("decoder"))
    # the faces of a step are a function of (seed, iteration)
    with torch.no_grad():
        assert float(term(model, iteration=5)) == pytest.approx(float(value), rel=1e-5)
        assert float(term(model, iteration=6)) != pytest.approx(float(value), rel=1e-5)
    # a face set matched with itself is its own nearest face: nothing to pull
    same = ExpressionMatch(dst, dst, power=1.0, device=torch.device("cpu"), neighbours=1)
    with torch.no_grad():
        assert float(same(model, iteration=5)) == pytest.approx(0.0, abs=1e-6)


def test_a_model_without_a_shared_code_is_refused(sets):
    from facelab.models import create_model
    from facelab.stages.train import check_shared_code

    on = {"expression_power": 0.5}
    check_shared_code(create_model("quick"), on)
    check_shared_code(create_model("sae", resolution=64, archi="df", ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4), on)
    for model in (create_model("liaef128", resolution=64, ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4),
                  create_model("sae", resolution=64, archi="liae", ae_dims=32, e_dims=8, d_dims=8, d_mask_dims=4)):
        check_shared_code(model, {"expression_power": 0.0})
        with pytest.raises(SettingsError, match="expression_power"):
            check_shared_code(model, on)
        with pytest.raises(SettingsError, match="true_face_power"):
            check_shared_code(model, {"true_face_power": 0.01})


def test_training_with_expression_power_pulls_codes_and_saves_the_option(sample_faces_ws, tmp_path, marker):
    from facelab.stages import train
    from facelab.train.checkpoint import load_checkpoint
    from facelab.train.dataset import FaceDataset
    from facelab.workspace import Workspace

    def distance(ws) -> float:
        """Mean relative distance of the dst codes to their matches' mean code, as the term measures it."""
        model = load_checkpoint(ws.model_dir("quick"), with_optimizer=False).model.eval()
        src, dst = (FaceDataset(ws.aligned_paths(side), 64, "full") for side in ("src", "dst"))
        term = ExpressionMatch(src, dst, power=1.0, device=torch.device("cpu"), faces_per_step=len(dst))
        with torch.no_grad():
            return float(term(model, iteration=0))

    runs = {}
    for power in (0.0, 1.0):
        shutil.copytree(sample_faces_ws.root, tmp_path / f"ws{power}")
        ws = runs[power] = Workspace(tmp_path / f"ws{power}")
        lines = []
        train.run(ws, train.TrainSettings(model="quick", iterations=60, batch_size=4, seed=1, expression_power=power),
                  log=lines.append, marker=marker)
        assert any("expression matching: power 1" in line for line in lines) == bool(power)
        assert json.loads((ws.model_dir("quick") / "state.json").read_text())["options"]["expression_power"] == power
    assert distance(runs[1.0]) < 0.7 * distance(runs[0.0])
    # a later run without the flag keeps the saved power
    lines = []
    train.run(runs[1.0], train.TrainSettings(model="quick", iterations=61), log=lines.append, marker=marker)
    assert any("expression matching: power 1" in line for line in lines)
    with pytest.raises(Exception, match="expression_power"):
        train.TrainSettings(model="quick", expression_power=2)
    # a model that cannot use it says so before any face is loaded
    with pytest.raises(SettingsError, match="expression_power"):
        train.run(runs[0.0], train.TrainSettings(model="liaef128", iterations=1, expression_power=0.5,
                                                   architecture=(("resolution", 64),)),
                  log=lambda _s: None, marker=marker)
