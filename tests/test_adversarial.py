"""GAN power and true face power: discriminators, losses, the trainer, save/load."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from facelab.errors import SettingsError
from facelab.faceimage import read_face
from facelab.train.adversarial import (
    AdversarialTrainer,
    CodeDiscriminator,
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
    split_state,
)


@pytest.mark.parametrize("r", [32, 64, 128])
def test_patch_discriminator_shapes_and_finite_gradients(r):
    torch.manual_seed(0)
    d = PatchDiscriminator(r, width=8)
    x = torch.rand(2, 3, r, r, requires_grad=True)
    out = d(x)
    assert out.shape == (2, 1, d.grid, d.grid) and d.grid >= 2
    assert r // 8 <= d.receptive_field <= r // 3 or r < 64  # about R/8..R/4 at the sizes in use
    out.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_patch_grid_is_about_16_at_real_sizes():
    for r in (64, 128, 256, 512):
        d = PatchDiscriminator(r, width=1)
        assert d(torch.rand(1, 3, r, r)).shape[-2:] == (16, 16)
        assert r / 8 <= d.receptive_field <= r / 4


def test_code_discriminator_shape_and_gradients():
    d = CodeDiscriminator(16, width=32)
    z = torch.randn(5, 16, requires_grad=True)
    out = d(z)
    assert out.shape == (5, 1)
    out.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        PatchDiscriminator(32, width=4)(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        CodeDiscriminator(16)(torch.rand(2, 8))
    for r in (40, 0, 1024, 64.0):
        with pytest.raises(ValueError, match="resolution"):
            PatchDiscriminator(r)


def test_losses_match_hand_computed_values():
    zero = torch.zeros(3, 1, 4, 4)
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    # -log(sigmoid(2)) - log(1 - sigmoid(-1)); generator: -log(sigmoid(-1))
    assert discriminator_loss(real, fake).item() == pytest.approx(math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)))
    assert generator_loss(fake).item() == pytest.approx(math.log1p(math.e))
    assert torch.isfinite(generator_loss(torch.tensor([-1e4]))) and torch.isfinite(discriminator_loss(
        torch.tensor([-1e4]), torch.tensor([1e4])))


@pytest.mark.parametrize("kwargs, name", [
    ({"gan_power": -0.1}, "gan_power"), ({"gan_power": 10.5}, "gan_power"), ({"gan_power": float("nan")}, "gan_power"),
    ({"gan_power": "0.1"}, "gan_power"), ({"gan_power": True}, "gan_power"),
    ({"true_face_power": 1.5}, "true_face_power"), ({"true_face_power": -1}, "true_face_power"),
])
def test_bad_powers_raise_naming_the_option_and_range(kwargs, name):
    with pytest.raises(ValueError, match=name) as e:
        AdversarialTrainer(32, 16, **kwargs)
    assert isinstance(e.value, SettingsError) and "from 0 to" in str(e.value)


def test_only_the_enabled_parts_are_built():
    assert not AdversarialTrainer(32, 16, 0.0, 0.0).enabled
    both = AdversarialTrainer(32, 16, 10, 1.0, patch_width=4, code_width=8)
    assert both.patch is not None and both.code is not None
    gan = AdversarialTrainer(32, 16, 0.1, 0, patch_width=4)
    assert gan.patch is not None and gan.code is None and gan.code_opt is None
    tf = AdversarialTrainer(32, 16, 0, 0.01, code_width=8)
    assert tf.patch is None and tf.code is not None


def _faces(ws, side: str, n: int, size: int) -> np.ndarray:
    paths = ws.aligned_paths(side)[:n]
    return np.stack([cv2.resize(read_face(p)[0], (size, size), interpolation=cv2.INTER_AREA) for p in paths])


def _nchw(faces: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255


@pytest.fixture
def one_thread():
    """Run torch on one thread: with other jobs on the cores, this 40-step loop took 20 s on two
    threads (they wait on each other) and under 2 s on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_patch_discriminator_learns_real_faces_from_blurred_copies(sample_faces_ws, one_thread):
    torch.manual_seed(0)
    faces = _faces(sample_faces_ws, "src", 16, 64)
    real = _nchw(faces)
    fake = _nchw(np.stack([cv2.GaussianBlur(f, (0, 0), 2) for f in faces]))
    # a higher lr than the default 2e-4 so the test needs only 40 steps
    adv = AdversarialTrainer(64, 16, gan_power=0.1, patch_width=32, lr=1e-3)
    per_face = lambda x: adv.patch(x).mean((1, 2, 3))
    with torch.no_grad():
        gap0 = (per_face(real) - per_face(fake)).mean().item()
    losses = [adv.discriminator_step(real[:12], fake[:12], None, None) for _ in range(40)]
    assert set(losses[-1]) == {"d_patch"}
    d_loss = [d["d_patch"] for d in losses]
    # the loss itself is noisy at this lr (the logits' common offset swings); its trend is not
    assert np.mean(d_loss[-10:]) < np.mean(d_loss[:10]) - 0.05, d_loss  # starts at chance, 2 log 2 = 1.386
    with torch.no_grad():  # judged on 4 faces it did not train on
        r, f = per_face(real[12:]), per_face(fake[12:])
    gap = (r.mean() - f.mean()).item()
    # seeds 0-5 gave 0.38-0.74 on an AVX2 CPU (0.63-0.85 for seeds 0-3 on an AVX-512 one); untrained: about 1e-3
    assert gap > 0.2 and gap > 10 * abs(gap0), (gap, gap0)
    assert r.min() > f.max()  # every held-out real face scores above every blurred one


def test_code_discriminator_separates_two_gaussian_clouds():
    torch.manual_seed(0)
    adv = AdversarialTrainer(32, 16, 0, true_face_power=0.01, code_width=32, lr=1e-3)  # 60 steps, not thousands
    shift = torch.zeros(16)
    shift[:4] = 1.0  # means 4 apart: the best possible accuracy is Phi(2) = 0.977
    for _ in range(60):
        src, dst = torch.randn(32, 16) + shift, torch.randn(32, 16) - shift
        losses = adv.discriminator_step(None, None, src, dst)
    assert set(losses) == {"d_code"} and losses["d_code"] < 1.0  # 1.386 at chance
    with torch.no_grad():
        src, dst = torch.randn(256, 16) + shift, torch.randn(256, 16) - shift
        r, f = adv.code(src), adv.code(dst)
    accuracy = ((r > 0).float().mean() + (f < 0).float().mean()).item() / 2
    assert accuracy > 0.9 and r.mean() - f.mean() > 1.0


def test_generator_terms_zero_when_off():
    adv = AdversarialTrainer(32, 16, 0, 0)
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    t = adv.generator_terms(pred, torch.randn(2, 16), torch.randn(2, 16))
    assert t.shape == () and t.item() == 0.0
    assert adv.generator_terms(None, None, None).item() == 0.0
    assert adv.discriminator_step(None, None, None, None) == {}


def test_generator_terms_reach_the_generator_but_not_the_discriminators():
    torch.manual_seed(0)
    adv = AdversarialTrainer(32, 16, gan_power=0.1, true_face_power=0.01, patch_width=4, code_width=8)
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    s_code, d_code = torch.randn(2, 16, requires_grad=True), torch.randn(2, 16, requires_grad=True)
    t = adv.generator_terms(pred, s_code, d_code)
    with torch.no_grad():
        expected = 0.1 * generator_loss(adv.patch(pred)) + 0.01 * generator_loss(adv.code(d_code))
    assert t.item() == pytest.approx(expected.item(), rel=1e-5)
    t.backward()
    for g in (pred.grad, d_code.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert s_code.grad is None
    assert all(p.grad is None for net in (adv.patch, adv.code) for p in net.parameters())
    assert all(p.requires_grad for net in (adv.patch, adv.code) for p in net.parameters())
    with pytest.raises(ValueError, match="src_pred"):
        adv.generator_terms(None, s_code, d_code)


def test_one_sae_step_with_both_terms_trains_encoder_and_decoder():
    from facelab.models import create_model

    torch.manual_seed(0)
    model = create_model("sae", resolution=32, archi="df", ae_dims=16, e_dims=4, d_dims=4, d_mask_dims=2)
    adv = AdversarialTrainer(32, model.config["ae_dims"], 0.1, 0.01, patch_width=4, code_width=8)
    src, dst = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    s_face, s_mask, _, _ = model(src, dst)
    s_code, d_code = model.code(src), model.code(dst)
    adv.generator_terms(s_face * s_mask, s_code, d_code).backward()
    for part in (model.encoder, model.inter, model.decoder_src):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in model.decoder_dst.parameters())
    out = adv.discriminator_step(src, (s_face * s_mask).detach(), s_code.detach(), d_code.detach())
    assert set(out) == {"d_patch", "d_code"}


def test_discriminator_step_moves_only_the_discriminators_and_detaches():
    torch.manual_seed(0)
    adv = AdversarialTrainer(32, 16, 1.0, 0.5, patch_width=4, code_width=8)
    before = [p.detach().clone() for net in (adv.patch, adv.code) for p in net.parameters()]
    pred = torch.rand(2, 3, 32, 32, requires_grad=True)
    d_code = torch.randn(2, 16, requires_grad=True)
    out = adv.discriminator_step(torch.rand(2, 3, 32, 32), pred * 1, torch.randn(2, 16), d_code * 1)
    assert set(out) == {"d_patch", "d_code"} and all(math.isfinite(v) for v in out.values())
    after = [p.detach() for net in (adv.patch, adv.code) for p in net.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert pred.grad is None and d_code.grad is None


def test_state_dict_round_trip_is_exact_and_pickle_free():
    torch.manual_seed(0)
    kw = {"patch_width": 4, "code_width": 8}
    adv = AdversarialTrainer(32, 16, 0.1, 0.01, **kw)
    for _ in range(3):
        adv.discriminator_step(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.randn(2, 16),
                               torch.randn(2, 16))
    sd = adv.state_dict()
    tensors, rest = split_state(sd)
    assert any(k.startswith("patch.") for k in tensors) and any(k.startswith("patch_opt.") for k in tensors)
    assert any(k.startswith("code.") for k in tensors) and any(k.startswith("code_opt.") for k in tensors)
    rest = json.loads(json.dumps(rest))  # only JSON-able values besides tensors, and they survive JSON
    assert rest["adversarial"]["gan_power"] == 0.1
    # as the lead will store it: safetensors bytes + JSON metadata
    from safetensors.torch import load, save

    restored = {**load(save(tensors)), **rest}
    torch.manual_seed(1)
    other = AdversarialTrainer(32, 16, 0.2, 0.01, **kw)
    assert other.load_state_dict(restored) == ["patch", "code"]
    assert other.gan_power == 0.2  # powers are options of this run, not restored
    x, z = torch.rand(3, 3, 32, 32), torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(adv.patch(x), other.patch(x)) and torch.equal(adv.code(z), other.code(z))
    # one more identical step on both: the optimizer state came back too
    for a in (adv, other):
        a.discriminator_step(x, x.flip(0), z, z.flip(0))
    for p, q in zip(adv.patch.parameters(), other.patch.parameters()):
        assert torch.equal(p, q)


def test_load_state_dict_rejects_other_sizes_and_tolerates_new_parts():
    sd = AdversarialTrainer(32, 16, 0.1, 0, patch_width=4).state_dict()
    with pytest.raises(ValueError, match="patch_width"):
        AdversarialTrainer(32, 16, 0.1, 0, patch_width=8).load_state_dict(sd)
    with pytest.raises(ValueError, match="resolution"):
        AdversarialTrainer(64, 16, 0.1, 0, patch_width=4).load_state_dict(sd)
    # true face turned on after the save: the code discriminator starts fresh
    assert AdversarialTrainer(32, 16, 0.1, 0.01, patch_width=4, code_width=8).load_state_dict(sd) == ["patch"]
    assert AdversarialTrainer(32, 16, 0, 0).load_state_dict(sd) == []
    with pytest.raises(ValueError, match="adversarial"):
        AdversarialTrainer(32, 16, 0.1, 0).load_state_dict({})
