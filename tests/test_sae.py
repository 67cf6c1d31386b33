"""SAE: archi variants and letters, options, validation, activation recompute, multiscale outputs.

Generic shape/gradient/rebuild/learning checks at the tiny size are in ``tests/test_models.py``.
"""

from __future__ import annotations

import pytest
import torch

from facelab.errors import SettingsError
from facelab.models import create_model, list_models

TINY = {"ae_dims": 16, "e_dims": 4, "d_dims": 4, "d_mask_dims": 2}
ARCHIS = ("df", "liae", "vg", "df-ud", "liae-ud", "df-t")


def tiny(archi: str = "df", resolution: int = 32, **extra):
    torch.manual_seed(0)
    return create_model("sae", resolution=resolution, archi=archi, **TINY, **extra)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_sae_is_registered_with_its_defaults():
    assert "sae" in list_models()
    cfg = create_model("sae", **TINY).config
    assert cfg["resolution"] == 128 and cfg["face_type"] == "full" and cfg["archi"] == "df"
    assert cfg["learn_mask"] is True
    # DeepFaceLab's SAE training questions are trainer options in facelab, not part of the architecture
    assert not {"optimizer_mode", "pixel_loss", "face_style_power", "bg_style_power", "remove_gray_border"} & set(cfg)


@pytest.mark.parametrize("archi", ARCHIS)
def test_archi_shapes_and_finite_gradients(archi):
    model = tiny(archi)
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32)
    s_face, s_mask, d_face, d_mask = model(src, dst)
    assert s_face.shape == (2, 3, 32, 32) and s_mask.shape == (2, 1, 32, 32)
    assert d_face.shape == (3, 3, 32, 32) and d_mask.shape == (3, 1, 32, 32)
    assert all(0 <= t.min() and t.max() <= 1 for t in (s_face, s_mask, d_face, d_mask))
    (s_face.mean() + s_mask.mean() + d_face.mean() + d_mask.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    face, mask = model.swap(dst)
    assert face.shape == (3, 3, 32, 32) and mask.shape == (3, 1, 32, 32)


def test_d_letter_runs_the_decoder_body_at_half_resolution():
    model = tiny("df-ud", resolution=64)
    assert model.body_res == 32
    seen = []
    model.decoder_src.face.levels[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
    face, _ = model.swap(torch.rand(1, 3, 64, 64))
    assert seen == [32] and face.shape[-1] == 64
    assert isinstance(model.decoder_src.face.out[-1], torch.nn.PixelShuffle)
    # without "d" the last body level is full size
    plain = tiny("df", resolution=64)
    plain.decoder_src.face.levels[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
    plain.swap(torch.rand(1, 3, 64, 64))
    assert seen[-1] == 64


def test_t_letter_adds_a_level():
    assert len(tiny("df-t").encoder.stages) == len(tiny("df").encoder.stages) + 1 == 5
    assert len(tiny("df-t").decoder_src.face.levels) == 4


def test_vg_encoder_is_deeper():
    convs = lambda m: sum(isinstance(x, torch.nn.Conv2d) for x in m.encoder.modules())
    assert convs(tiny("vg")) == 2 * convs(tiny("df"))


@pytest.mark.parametrize("archi, plain_archi, inter", [
    ("df-u", "df", "inter"), ("liae-ud", "liae-d", "inter_ab"), ("liae-ud", "liae-d", "inter_b")])
def test_u_letter_gives_unit_rms_codes(archi, plain_archi, inter):
    model = tiny(archi)
    code = model.code(torch.rand(4, 3, 32, 32) * 3, inter)
    assert code.shape == (4, 16)
    assert torch.allclose(code.pow(2).mean(1), torch.ones(4), atol=1e-3)
    plain = tiny(plain_archi).code(torch.rand(4, 3, 32, 32) * 3, inter)
    assert not torch.allclose(plain.pow(2).mean(1), torch.ones(4), atol=1e-2)


@pytest.mark.parametrize("archi", ["df", "liae"])
def test_without_learn_mask_masks_are_ones_and_the_branch_is_gone(archi):
    with_mask, without = tiny(archi), tiny(archi, learn_mask=False)
    assert n_params(without) < n_params(with_mask)
    _, s_mask, _, d_mask = without(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert torch.equal(s_mask, torch.ones(2, 1, 32, 32)) and torch.equal(d_mask, torch.ones(2, 1, 32, 32))
    assert torch.equal(without.swap(torch.rand(1, 3, 32, 32))[1], torch.ones(1, 1, 32, 32))


def test_lightweight_encoder_has_fewer_parameters():
    assert n_params(tiny(lightweight_encoder=True).encoder) < n_params(tiny().encoder)


def test_res_blocks_bool_or_count():
    assert tiny(d_res_blocks=True).config["d_res_blocks"] == 1
    assert n_params(tiny(d_res_blocks=2)) > n_params(tiny(d_res_blocks=True)) > n_params(tiny())


@pytest.mark.parametrize("key, value", [
    ("resolution", 40), ("resolution", 1024), ("resolution", 8),
    ("face_type", "quarter"), ("archi", "xyz"), ("archi", "df-q"), ("archi", "df-"), ("ae_dims", 2000),
    ("e_dims", 0), ("d_dims", 1000), ("d_mask_dims", 0), ("d_res_blocks", -1),
    ("learn_mask", "yes"), ("multiscale_decoder", 2),
])
def test_bad_values_name_the_option(key, value):
    with pytest.raises(SettingsError, match=key) as e:
        create_model("sae", **{**TINY, key: value})
    assert e.value.hint


def test_resolution_must_split_into_the_archi_levels():
    tiny("df-ud", resolution=32)  # 32 / 2**5
    with pytest.raises(SettingsError, match="resolution") as e:
        tiny("df-dt", resolution=32)  # 32 / 2**6 does not split
    assert "64" in e.value.hint


def test_options_are_stored_and_config_rebuilds_identical_outputs():
    model = tiny("liae-ud", face_type="head", multiscale_decoder=True, d_res_blocks=1).eval()
    cfg = model.config
    assert cfg["face_type"] == "head" and model.face_type == "head" and cfg["multiscale_decoder"] is True
    import json

    again = create_model("sae", **json.loads(json.dumps(cfg))).eval()
    assert again.config == cfg
    again.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x, x), again(x, x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("archi", ["df-ud", "liae"])
def test_optimizer_mode_3_recomputes_with_the_same_outputs_and_gradients(archi):
    m1 = tiny(archi, multiscale_decoder=True).train()
    m3 = tiny(archi, multiscale_decoder=True).train()
    m3.recompute_activations = True  # what the trainer's optimizer mode 3 sets
    m3.load_state_dict(m1.state_dict())
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    calls = []
    import torch.utils.checkpoint as cp

    original = cp.checkpoint

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    import facelab.models.sae as sae_mod

    sae_mod.checkpoint, saved = counting, sae_mod.checkpoint
    try:
        outs = [[t for scale in m.forward_scales(src, dst) for t in scale] for m in (m1, m3)]
    finally:
        sae_mod.checkpoint = saved
    assert calls  # mode 3 really went through torch.utils.checkpoint
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-6)
    for m, out in zip((m1, m3), outs):
        sum(t.square().mean() for t in out).backward()
    for (name, p1), p3 in zip(m1.named_parameters(), m3.parameters()):
        assert torch.allclose(p1.grad, p3.grad, atol=1e-6, rtol=1e-5), name


@pytest.mark.parametrize("archi", ["df", "df-ud", "liae-ud"])
def test_multiscale_decoder_extra_outputs(archi):
    model = tiny(archi, resolution=64, multiscale_decoder=True)
    src, dst = torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64)
    scales = model.forward_scales(src, dst)
    assert len(scales) == 3
    for (s_face, s_mask, d_face, d_mask), r in zip(scales, (64, 32, 16)):
        assert s_face.shape == (2, 3, r, r) and s_mask.shape == (2, 1, r, r)
        assert d_face.shape == (3, 3, r, r) and d_mask.shape == (3, 1, r, r)
    torch.manual_seed(1)
    full = model(src, dst)
    assert all(torch.equal(a, b) for a, b in zip(full, scales[0]))
    sum(t.mean() for sc in scales[1:] for t in sc).backward()  # extra heads are trainable
    decoder = model.decoder if archi.startswith("liae") else model.decoder_src
    assert len(decoder.face.heads) == 2 and all(h.weight.grad is not None for h in decoder.face.heads)
    # without the option there is only the full scale, and no extra heads
    assert len(tiny(archi, resolution=64).forward_scales(src, dst)) == 1
    no_mask = tiny(archi, resolution=64, multiscale_decoder=True, learn_mask=False).forward_scales(src, dst)
    assert [sc[1].shape[-1] for sc in no_mask] == [64, 32, 16]
