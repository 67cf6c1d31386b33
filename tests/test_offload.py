"""OffloadAdam (SAE optimizer mode 2): same numbers as torch.optim.Adam, state on the CPU, interchangeable checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load, save
from torch import nn
from torch.nn import functional as F

from facelab.train.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from facelab.train.offload import FusedAdam, OffloadAdam, make_adam

RTOL, ATOL = 1e-5, 1e-6
HYPER = {"lr": 1e-3, "betas": (0.5, 0.999)}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 3, 2, stride=2))


def _batches(n: int, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(4, 3, 16, 16, generator=g).to(device), torch.rand(4, 3, 16, 16, generator=g).to(device))
            for _ in range(n)]


def _train(model: nn.Module, opt: torch.optim.Optimizer, batches) -> None:
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()


def _assert_same(model_a, opt_a, model_b, opt_b) -> None:
    for (name, a), b in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), rtol=RTOL, atol=ATOL, msg=name)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for pid in sa:
        assert sa[pid].keys() == sb[pid].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for k in sa[pid]:
            torch.testing.assert_close(sa[pid][k].cpu(), sb[pid][k].cpu(), rtol=RTOL, atol=ATOL, msg=f"{pid}.{k}")


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_matches_adam_on_cpu(weight_decay):
    ref, off = _net(), _net()
    opt_ref = torch.optim.Adam(ref.parameters(), weight_decay=weight_decay, **HYPER)
    opt_off = OffloadAdam(off.parameters(), weight_decay=weight_decay, **HYPER)
    batches = _batches(10)
    _train(ref, opt_ref, batches)
    _train(off, opt_off, batches)
    _assert_same(ref, opt_ref, off, opt_off)
    assert any(not torch.equal(a, b) for a, b in zip(_net().parameters(), off.parameters()))  # it did train


def test_device_path_matches_adam(monkeypatch):
    """The copy-to-host / update / copy-back path of device parameters, driven with CPU parameters
    (the CUDA test below runs it for real where a GPU exists)."""
    monkeypatch.setattr("facelab.train.offload._is_host", lambda p: False)
    ref, off = _net(), _net()
    opt_ref = torch.optim.Adam(ref.parameters(), weight_decay=0.01, **HYPER)
    opt_off = OffloadAdam(off.parameters(), weight_decay=0.01, **HYPER)
    batches = _batches(10)
    _train(ref, opt_ref, batches)
    _train(off, opt_off, batches)
    _assert_same(ref, opt_ref, off, opt_off)


def test_step_leaves_gradients_alone(monkeypatch):
    for host in (True, False):
        monkeypatch.setattr("facelab.train.offload._is_host", lambda p, host=host: host)
        model = _net()
        opt = OffloadAdam(model.parameters(), weight_decay=0.01, **HYPER)
        x, y = _batches(1)[0]
        F.mse_loss(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_state_is_on_cpu_and_shaped_like_adams():
    ref, off = _net(), _net()
    opt_ref, opt_off = torch.optim.Adam(ref.parameters(), **HYPER), OffloadAdam(off.parameters(), **HYPER)
    _train(ref, opt_ref, _batches(1))
    _train(off, opt_off, _batches(1))
    for p in off.parameters():
        st = opt_off.state[p]
        assert st["step"].device.type == "cpu" and st["step"].dtype == torch.float32 and st["step"].ndim == 0
        for k in ("exp_avg", "exp_avg_sq"):
            assert st[k].device.type == "cpu" and st[k].shape == p.shape and st[k].dtype == p.dtype
    sd_ref, sd_off = opt_ref.state_dict(), opt_off.state_dict()
    assert [set(g) for g in sd_ref["param_groups"]] == [set(g) for g in sd_off["param_groups"]]
    assert sd_off["param_groups"][0]["betas"] == (0.5, 0.999)


def test_params_without_grad_are_left_alone():
    model = _net()
    frozen = model[0].weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    opt = OffloadAdam(model.parameters(), **HYPER)
    _train(model, opt, _batches(2))
    assert torch.equal(frozen, before) and frozen not in opt.state


def _checkpoint_round_trip(opt: torch.optim.Optimizer) -> dict:
    """Through the model folder's code path: flat tensors in safetensors bytes, the rest as JSON."""
    tensors, meta = optimizer_to_tensors(opt)
    return optimizer_from_tensors(load(save(tensors)), json.loads(json.dumps(meta)))


def test_checkpoint_round_trip_resumes_identically():
    batches = _batches(10)
    straight = _net()
    opt_straight = OffloadAdam(straight.parameters(), **HYPER)
    _train(straight, opt_straight, batches)

    first = _net()
    opt_first = OffloadAdam(first.parameters(), **HYPER)
    _train(first, opt_first, batches[:5])
    sd = _checkpoint_round_trip(opt_first)
    resumed = _net()
    resumed.load_state_dict(first.state_dict())
    opt_resumed = OffloadAdam(resumed.parameters(), lr=0.5)  # the loaded groups override these
    opt_resumed.load_state_dict(sd)
    assert opt_resumed.param_groups[0]["lr"] == HYPER["lr"]
    for st in opt_resumed.state.values():
        assert all(t.device.type == "cpu" for t in st.values()) and st["step"].dtype == torch.float32
    _train(resumed, opt_resumed, batches[5:])
    _assert_same(straight, opt_straight, resumed, opt_resumed)


def _resumed(first_cls, second_cls, layout=torch.contiguous_format):
    """Eight steps straight with the plain kernel, and four with ``first_cls`` then four more with ``second_cls``
    after a checkpoint round trip, the weights in ``layout``."""
    batches = _batches(8)
    net = lambda: _net().to(memory_format=layout)  # noqa: E731
    straight = net()
    opt_straight = torch.optim.Adam(straight.parameters(), **HYPER)
    _train(straight, opt_straight, batches)
    first = net()
    opt_first = first_cls(first.parameters(), **HYPER)
    _train(first, opt_first, batches[:4])
    second = net()
    second.load_state_dict(first.state_dict())
    opt_second = second_cls(second.parameters(), **HYPER)
    opt_second.load_state_dict(_checkpoint_round_trip(opt_first))
    _train(second, opt_second, batches[4:])
    return straight, opt_straight, second, opt_second


@pytest.mark.parametrize("first_cls, second_cls", [
    (torch.optim.Adam, OffloadAdam), (OffloadAdam, torch.optim.Adam),
    # every model saved before the fused kernel continues under it, and its checkpoints load into the others
    (torch.optim.Adam, FusedAdam), (OffloadAdam, FusedAdam), (FusedAdam, OffloadAdam), (FusedAdam, torch.optim.Adam)])
def test_state_dict_loads_across_classes(first_cls, second_cls):
    straight, opt_straight, second, opt_second = _resumed(first_cls, second_cls)
    _assert_same(straight, opt_straight, second, opt_second)
    if second_cls is not torch.optim.Adam:  # ours keep their own kernel whatever the state dict says (torch's takes it)
        assert all(g["fused"] is (True if second_cls is FusedAdam else None) for g in opt_second.param_groups)


def test_load_does_not_share_memory_with_the_state_dict():
    model = _net()
    opt = OffloadAdam(model.parameters(), **HYPER)
    _train(model, opt, _batches(1))
    sd = opt.state_dict()
    fresh = OffloadAdam(_net().parameters(), **HYPER)
    fresh.load_state_dict(sd)
    kept = sd["state"][0]["exp_avg"].clone()
    _train(model, opt, _batches(1))  # changes opt's tensors, which sd refers to
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], kept, rtol=0, atol=0)


def test_load_refuses_what_it_cannot_continue():
    model = _net()
    ams = torch.optim.Adam(model.parameters(), amsgrad=True, **HYPER)
    _train(model, ams, _batches(1))
    with pytest.raises(ValueError, match="amsgrad"):
        OffloadAdam(_net().parameters(), **HYPER).load_state_dict(ams.state_dict())

    opt = OffloadAdam(model.parameters(), **HYPER)
    _train(model, opt, _batches(1))
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"exp_avg has shape \(3,\)"):
        OffloadAdam(_net().parameters(), **HYPER).load_state_dict(sd)

    with pytest.raises(ValueError, match="parameter group"):  # from the base class: a different model
        OffloadAdam(nn.Linear(2, 2).parameters(), **HYPER).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -0.1}, "lr must be >= 0, got -0.1"),
    ({"betas": (1.0, 0.999)}, r"betas\[0\] must be in \[0, 1\), got 1.0"),
    ({"betas": (0.5, -0.2)}, r"betas\[1\] must be in \[0, 1\), got -0.2"),
    ({"betas": (0.5,)}, r"betas must be a pair"),
    ({"eps": -1.0}, "eps must be >= 0, got -1.0"),
    ({"weight_decay": -1e-4}, "weight_decay must be >= 0, got -0.0001"),
    ({"lr": "fast"}, "lr must be a real number, got 'fast'"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OffloadAdam(_net().parameters(), **{**HYPER, **kwargs})


def test_make_adam():
    opt = make_adam(_net().parameters(), 1e-3, (0.5, 0.999), offload=False)
    assert type(opt) is FusedAdam and opt.param_groups[0]["fused"] is True  # CPU parameters: the fused kernel
    opt = make_adam(_net().parameters(), 1e-3, [0, 0.999], offload=True)  # integer beta, as JSON may give it
    assert isinstance(opt, OffloadAdam) and opt.param_groups[0]["betas"] == (0.0, 0.999)
    assert type(make_adam(_net().parameters(), 1e-3, [0, 0.999])) is FusedAdam
    with pytest.raises(ValueError, match="-1"):
        make_adam(_net().parameters(), -1, (0.5, 0.999), offload=False)


def test_fused_adam_matches_adam():
    ref, fused = _net(), _net()
    opt_ref, opt_fused = torch.optim.Adam(ref.parameters(), **HYPER), FusedAdam(fused.parameters(), **HYPER)
    batches = _batches(10)
    _train(ref, opt_ref, batches)
    _train(fused, opt_fused, batches)
    _assert_same(ref, opt_ref, fused, opt_fused)


def test_fused_adam_resumes_channels_last_weights():
    """The trainers keep convolution weights channels_last; a checkpoint gives the moments back contiguous,
    and the fused kernel must still pair each weight with its own moments (it did not: drift of 1.8e-3)."""
    straight, _, second, _ = _resumed(FusedAdam, FusedAdam, torch.channels_last)
    for a, b in zip(straight.parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def test_fused_adam_falls_back_where_there_is_no_fused_kernel():
    ints = [torch.zeros(3, dtype=torch.int64)]  # not floating point: no fused kernel (nor training), but it builds
    assert FusedAdam(ints, **HYPER).param_groups[0]["fused"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_params_keep_pinned_state_on_cpu_and_match_adam():
    ref, off = _net().cuda(), _net().cuda()
    opt_ref, opt_off = torch.optim.Adam(ref.parameters(), **HYPER), OffloadAdam(off.parameters(), **HYPER)
    batches = _batches(10, "cuda")
    _train(ref, opt_ref, batches)
    _train(off, opt_off, batches)
    torch.cuda.synchronize()
    _assert_same(ref, opt_ref, off, opt_off)
    for p in off.parameters():
        assert p.is_cuda
        st = opt_off.state[p]
        assert st["step"].device.type == "cpu"
        assert all(st[k].device.type == "cpu" and st[k].is_pinned() for k in ("exp_avg", "exp_avg_sq"))
    # a GPU Adam checkpoint loads straight into host memory
    fresh = OffloadAdam(_net().cuda().parameters(), **HYPER)
    fresh.load_state_dict(opt_ref.state_dict())
    assert all(st["exp_avg"].is_pinned() and st["exp_avg_sq"].is_pinned() for st in fresh.state.values())
