"""Model registry and architectures: shapes, gradients, learning on real faces."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from facelab.errors import SettingsError
from facelab.models import create_model, list_models, register_model

# every registered model at a tiny size: the `tiny_model` fixture of conftest.py


@pytest.fixture(scope="module")
def real_faces(sample_faces_ws):
    """``real_faces(n, size) -> (n, size, size, 3) float32`` aligned real faces of the shipped src clip."""
    import cv2

    paths = sample_faces_ws.aligned_paths("src")

    def load(n: int, size: int) -> np.ndarray:
        return np.stack([cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_AREA) for p in paths[:n]]).astype(np.float32) / 255

    return load


def test_registry_lists_quick():
    assert "quick" in list_models()


def test_unknown_model_names_the_known_ones():
    with pytest.raises(SettingsError) as e:
        create_model("nope")
    assert "quick" in e.value.hint


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError):
        register_model("quick")(type("Other", (torch.nn.Module,), {}))


def test_bad_architecture_setting():
    with pytest.raises(SettingsError, match="resolution"):
        create_model("quick", resolution=50)
    with pytest.raises(SettingsError, match="ae_dims"):
        create_model("quick", ae_dims=0)


@pytest.mark.parametrize("name", list_models())
def test_forward_shapes_and_finite_gradients(name, tiny_model):
    torch.manual_seed(0)
    model = tiny_model(name)
    r = model.config["resolution"]
    src, dst = torch.rand(2, 3, r, r), torch.rand(3, 3, r, r)
    s_face, s_mask, d_face, d_mask = model(src, dst)
    assert s_face.shape == (2, 3, r, r) and s_mask.shape == (2, 1, r, r)
    assert d_face.shape == (3, 3, r, r) and d_mask.shape == (3, 1, r, r)
    for t in (s_face, s_mask, d_face, d_mask):
        assert 0 <= t.min() and t.max() <= 1
    (s_face.mean() + s_mask.mean() + d_face.mean() + d_mask.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    face, mask = model.swap(dst)
    assert face.shape == (3, 3, r, r) and mask.shape == (3, 1, r, r)


@pytest.mark.parametrize("name", list_models())
def test_config_rebuilds_the_same_architecture(name, tiny_model):
    model = tiny_model(name)
    again = create_model(name, **model.config)
    assert again.config == model.config
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_swap_uses_the_src_decoder(tiny_model):
    torch.manual_seed(0)
    model = tiny_model("quick").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        face, mask = model.swap(x)
        _, _, d_face, _ = model(x, x)
        s_face, _, _, _ = model(x, x)
    assert not torch.allclose(face, d_face)
    assert torch.allclose(face, s_face, atol=1e-6)


@pytest.fixture(scope="module")
def faces32(real_faces):
    return torch.from_numpy(real_faces(8, 32)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("name, extra", [(name, {}) for name in list_models()] + [("quick", {"double_res": True})],
                         ids=[*list_models(), "quick-double_res"])
def test_loss_falls_on_real_faces(name, extra, faces32):
    from facelab.train.losses import face_loss

    torch.manual_seed(0)
    model = create_model(name, resolution=32, ae_dims=64, e_dims=8, d_dims=8, d_mask_dims=2, **extra)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    src, dst = faces32[:4], faces32[4:]
    ones = torch.ones(4, 1, 32, 32)
    losses = []
    for _ in range(40):
        s, _, d, _ = model(src, dst)
        loss = face_loss(s, src, ones) + face_loss(d, dst, ones)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


# ---- quick's double_res: the face at twice the size of the network body (DeepFaceLab's "d")


def test_quick_double_res_paints_the_full_size_face_from_a_half_size_body(tiny_model):
    torch.manual_seed(0)
    plain, double = tiny_model("quick", e_dims=8), tiny_model("quick", e_dims=8, double_res=True)
    assert "double_res" not in plain.config  # earlier models' configs (and save ids) are unchanged
    assert double.config["double_res"] is True
    x = torch.rand(2, 3, 32, 32)
    s_face, s_mask, d_face, d_mask = double(x, x)
    assert s_face.shape == d_face.shape == (2, 3, 32, 32) and s_mask.shape == (2, 1, 32, 32)
    # the body works at half size: the bottleneck's map is half as wide as the plain model's
    assert double.inter.side * 2 == plain.inter.side
    # one more level in the encoder and in each decoder branch, all narrower than the body
    assert len(double.encoder) == len(plain.encoder) + 1
    assert double.encoder[0][0].out_channels < double.encoder[1][0].out_channels
    again = create_model("quick", **double.config)
    assert [p.shape for p in again.parameters()] == [p.shape for p in double.parameters()]
    face, mask = double.swap(x)
    assert face.shape == (2, 3, 32, 32) and mask.shape == (2, 1, 32, 32)


def test_quick_double_res_needs_a_multiple_of_32():
    with pytest.raises(SettingsError, match="double_res") as e:
        create_model("quick", resolution=48, double_res=True)
    assert "32" in e.value.hint
    assert create_model("quick", resolution=48).config["resolution"] == 48
