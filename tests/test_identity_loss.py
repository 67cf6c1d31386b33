"""dlib's face descriptor in torch, and the identity loss built on it (real faces from the shipped clips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelab.identity import face_chip
from facelab.faceimage import read_face
from facelab.identity_net import CHIP_SIZE, ModelFileError, chip_matrix, load_face_descriptor_net, read_dlib_descriptor_file


@pytest.fixture(scope="module")
def net():
    return load_face_descriptor_net()


def _chips(paths):
    out = []
    for p in paths:
        image, rec = read_face(p)
        out.append(face_chip(image, np.asarray(rec.landmarks)))
    return np.stack(out)


def _embed(net, chips: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255).numpy()


def test_torch_descriptor_equals_dlibs_on_real_faces(net, sample_faces_ws):
    paths = sample_faces_ws.aligned_paths("src")[:3] + sample_faces_ws.aligned_paths("dst")[:3]
    chips = _chips(paths)
    ours = _embed(net, chips)
    import dlib
    import face_recognition_models

    dlib_net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    theirs = np.stack([np.asarray(dlib_net.compute_face_descriptor(np.ascontiguousarray(c)), np.float32) for c in chips])
    assert np.abs(ours - theirs).max() < 1e-4
    # and it still tells the two people apart: same person < 0.6 < other person
    d = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    assert d[:3, :3].max() < 0.6 < d[:3, 3:].min()


def test_descriptor_is_differentiable_and_frozen(net, sample_faces_ws):
    chips = torch.from_numpy(_chips(sample_faces_ws.aligned_paths("src")[:2])).permute(0, 3, 1, 2).float() / 255
    chips.requires_grad_(True)
    net(chips).norm(dim=1).sum().backward()
    assert chips.grad is not None and chips.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.parameters())


def test_chip_matrix_cuts_the_chip_dlib_cuts(net, sample_faces_ws):
    import cv2

    for p in sample_faces_ws.aligned_paths("dst")[:3]:
        image, rec = read_face(p)
        theirs = face_chip(image, np.asarray(rec.landmarks))
        ours = cv2.warpAffine(np.ascontiguousarray(image[..., ::-1]), chip_matrix(rec.landmarks), (CHIP_SIZE, CHIP_SIZE),
                              flags=cv2.INTER_AREA)
        e = _embed(net, np.stack([ours, theirs]))
        assert np.linalg.norm(e[0] - e[1]) < 0.1  # same face, as good as dlib's own chip (other person: > 0.6)


def test_a_damaged_model_file_is_refused(tmp_path):
    import face_recognition_models

    data = open(face_recognition_models.face_recognition_model_location(), "rb").read()
    for name, damaged in (("truncated", data[: len(data) // 2]), ("other", data[:2] + b"\x05xxxxx" + data[7:]),
                          ("empty", b"")):
        f = tmp_path / f"{name}.dat"
        f.write_bytes(damaged)
        with pytest.raises(ModelFileError):
            read_dlib_descriptor_file(f)


def test_identity_loss_pulls_the_swap_towards_src(sample_faces_ws):
    from facelab.models import create_model
    from facelab.train.dataset import FaceDataset
    from facelab.train.identity_loss import IdentityLoss

    torch.manual_seed(0)
    src_paths = sample_faces_ws.aligned_paths("src")
    dst = FaceDataset(sample_faces_ws.aligned_paths("dst"), 64, "full")
    loss = IdentityLoss(src_paths, dst, power=1.0, device=torch.device("cpu"), seed=3)
    # the measure: dst's own faces are far from src, src's faces (re-cut as the dataset cuts them) are near
    src = FaceDataset(src_paths, 64, "full")
    to = lambda ds: torch.from_numpy(ds.faces[:8]).permute(0, 3, 1, 2).float() / 255
    idx = np.arange(8)
    d_dst = loss.distances(to(dst), idx).mean()
    src_loss = IdentityLoss(src_paths, src, power=1.0, device=torch.device("cpu"))
    d_src = src_loss.distances(to(src), idx).mean()
    assert d_src < 0.5 < d_dst

    # the identity part moves the dst codes (encoder, bottleneck), never a decoder's face (which would learn to
    # paint a pattern that fools the descriptor); the swap's mask learns dst's outline; same faces each step
    model = create_model("quick")
    term = loss(model, iteration=5)
    assert term.ndim == 0 and torch.isfinite(term)
    term.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for part in ("encoder", "inter"):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(part))
    assert all(g is None for n, g in grads.items() if n.startswith(("decoder_dst", "decoder_src.face")))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("decoder_src.mask"))
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert float(loss(model, iteration=5)) == pytest.approx(float(term), rel=1e-5)


def test_training_with_identity_power_saves_the_option(sample_faces_ws, tmp_path, marker):
    import json
    import shutil

    from facelab.stages import train
    from facelab.workspace import Workspace

    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    lines = []
    s = train.run(ws, train.TrainSettings(model="quick", iterations=3, batch_size=2, identity_power=0.5), log=lines.append, marker=marker)
    assert any("identity loss: power 0.5" in line for line in lines)
    options = json.loads((ws.model_dir("quick") / "state.json").read_text())["options"]
    assert options["identity_power"] == 0.5
    # a later run without the flag keeps it
    lines.clear()
    train.run(ws, train.TrainSettings(model="quick", iterations=4), log=lines.append, marker=marker)
    assert any("identity loss: power 0.5" in line for line in lines)
    with pytest.raises(Exception, match="identity_power"):
        train.TrainSettings(model="quick", identity_power=11)
    del s


def test_eval_warns_that_identity_figures_flatter_a_model_trained_for_them(tmp_path):
    import json

    from facelab.stages.eval import _identity_trained
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.create()
    folder = ws.model_dir("quick")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"options": {"identity_power": 0.0}}))
    assert _identity_trained(ws, "quick") == []
    (folder / "state.json").write_text(json.dumps({"options": {"identity_power": 0.2}}))
    (warning,) = _identity_trained(ws, "quick")
    assert "--identity-power 0.2" in warning and "overstate" in warning
    (folder / "state.json").write_text("{broken")
    assert _identity_trained(ws, "quick") == []
