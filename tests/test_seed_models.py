"""DeepFaceLab's classic models (h64, h128, df, liaef128): what is specific to each.

Shapes, gradients and config rebuild of every registered model are covered by
``tests/test_models.py``; here: face types, options, LIAEF's wiring, swap
decoders, checkpoint round trips, and learning on real faces.
"""

from __future__ import annotations

import pytest
import torch

from facelab.errors import SettingsError
from facelab.models import create_model, list_models

SEED_MODELS = ("h64", "h128", "df", "liaef128")
# tiny but not degenerate: enough width that a few dozen steps visibly learn
SMALL = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 2}


def small(name: str, **extra):
    return create_model(name, **SMALL, **extra)


def test_all_seed_models_are_registered():
    assert set(SEED_MODELS) <= set(list_models())


@pytest.mark.parametrize("name, face_type, resolution", [
    ("h64", "half", 64), ("h128", "half", 128), ("df", "full", 128), ("liaef128", "full", 128)])
def test_default_face_type_and_resolution(name, face_type, resolution):
    model = create_model(name)
    assert model.config["face_type"] == face_type and model.face_type == face_type
    assert model.config["resolution"] == resolution == model.resolution
    assert "pixel_loss" not in model.config  # a trainer option in facelab, not part of the architecture
    # the default dims are written out, so the config alone rebuilds the network
    assert {"ae_dims", "e_dims", "d_dims", "d_mask_dims"} <= set(model.config)


@pytest.mark.parametrize("name", SEED_MODELS)
def test_the_config_rebuilds_the_model(name):
    model = small(name)
    assert create_model(name, **model.config).config == model.config


@pytest.mark.parametrize("name", SEED_MODELS)
def test_other_face_type_is_refused(name):
    other = "full" if name.startswith("h") else "half"
    with pytest.raises(SettingsError, match="face_type"):
        create_model(name, face_type=other)


@pytest.mark.parametrize("name", SEED_MODELS)
def test_bad_sizes_are_refused(name):
    with pytest.raises(SettingsError, match="resolution"):
        create_model(name, resolution=72)
    with pytest.raises(SettingsError, match="d_dims"):
        create_model(name, d_dims=0)


@pytest.mark.parametrize("name", ["h64", "h128"])
def test_lightweight_has_fewer_parameters(name):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    full, light = create_model(name), create_model(name, lightweight=True)
    assert light.config["lightweight"] is True and full.config["lightweight"] is False
    assert count(light) < 0.5 * count(full)
    assert light.config["ae_dims"] < full.config["ae_dims"]
    # a saved lightweight config rebuilds the same shapes
    again = create_model(name, **light.config)
    assert [p.shape for p in again.parameters()] == [p.shape for p in light.parameters()]


@pytest.mark.parametrize("name", ["df", "liaef128"])
def test_df_and_liaef_have_no_lightweight_option(name):
    with pytest.raises(TypeError):
        create_model(name, lightweight=True)


@pytest.mark.parametrize("name", ["h64", "h128", "df"])
def test_swap_uses_the_src_decoder(name):
    torch.manual_seed(0)
    model = small(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        face, mask = model.swap(x)
        s_face, s_mask, d_face, _ = model(x, x)
    assert torch.allclose(face, s_face, atol=1e-6) and torch.allclose(mask, s_mask, atol=1e-6)
    assert not torch.allclose(face, d_face)


def test_liaef_has_one_decoder_and_two_inters():
    model = small("liaef128")
    children = dict(model.named_children())
    assert set(children) == {"encoder", "inter_ab", "inter_b", "decoder"}


def test_liaef_swap_code_uses_inter_ab_only():
    torch.manual_seed(0)
    model = small("liaef128").eval()
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        s_before, _, d_before, _ = model(src, dst)
        swap_before, _ = model.swap(dst)
        for p in model.inter_b.parameters():
            p.zero_()
        s_after, _, d_after, _ = model(src, dst)
        swap_after, swap_mask = model.swap(dst)
        # swap of dst == decoding dst's inter_ab code twice, i.e. dst encoded "as a src face"
        as_src, as_src_mask, _, _ = model(dst, dst)
    assert not torch.allclose(d_before, d_after)  # dst reconstruction goes through inter_b
    assert torch.equal(s_before, s_after)  # src reconstruction does not
    assert torch.equal(swap_before, swap_after)  # nor does the swap
    assert torch.allclose(swap_after, as_src, atol=1e-6) and torch.allclose(swap_mask, as_src_mask, atol=1e-6)


def test_liaef_gradients_of_src_loss_never_reach_inter_b():
    torch.manual_seed(0)
    model = small("liaef128")
    s, sm, _, _ = model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    (s.mean() + sm.mean()).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.inter_b.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.inter_ab.parameters())


@pytest.mark.parametrize("name", SEED_MODELS)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    from facelab.train.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = small(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    s, _, d, _ = model(src, dst)
    ((s - src).square().mean() + (d - dst).square().mean()).backward()
    opt.step()  # trained weights and a non-empty optimizer state
    save_checkpoint(tmp_path / name, model, opt, {"batch_size": 2}, {"iteration": 1})
    ckpt = load_checkpoint(tmp_path / name)
    assert ckpt.model.config == model.config and type(ckpt.model) is type(model)
    model.eval()
    ckpt.model.eval()
    with torch.no_grad():
        for a, b in zip(model(src, dst) + model.swap(dst), ckpt.model(src, dst) + ckpt.model.swap(dst)):
            assert torch.equal(a, b)


# loss falling on real faces is checked for every registered model in tests/test_models.py
