"""Adam whose moment estimates live in system memory: DeepFaceLab's SAE "optimizer mode 2" (and 3).

Adam keeps two tensors per parameter (``exp_avg`` and ``exp_avg_sq``), so with
the gradients the optimizer needs three times the parameters' memory besides
the parameters themselves. Keeping the moments on the CPU frees two of those
three on the GPU, which is what lets DeepFaceLab train a network about twice
as large on the same card. The price is a copy of every gradient to the host
and of every update back to the device each step, plus the update math on the
CPU: a step is slower, so use it only when the model would not fit otherwise.

:class:`OffloadAdam` does exactly the arithmetic of ``torch.optim.Adam``
(no amsgrad, no maximize, L2 ``weight_decay`` added to the gradient), and its
``state_dict`` has the same structure, so a checkpoint of either loads into
the other (switching optimizer mode on resume keeps the training state).
:func:`make_adam` picks one of the two. Where everything stays on the device it returns
:class:`FusedAdam`: ``torch.optim.Adam`` with its fused kernel wherever torch has one for the parameters'
device (CPU and CUDA), which on 2 CPU cores takes the step of ``quick``'s 3.8 M parameters from 10-13 to
2-5 ms (of a ~100 ms training step; docs/performance.md) and agrees with the plain kernel to 1.5e-8 after 20 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from itertools import chain
from numbers import Real
from typing import Any

import torch

# Param-group flags of torch.optim.Adam, stored with our fixed values so that the state dicts of both
# optimizers have the same keys. The first three change the math: a state dict that turns them on is refused.
_MATH_FLAGS = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}
# These only choose how torch's Adam runs its kernels; they mean nothing here and are reset on load.
_RUNTIME_FLAGS = {"foreach": None, "capturable": False, "differentiable": False, "fused": None}
_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")


def _check_hyper(lr: Any, betas: Any, eps: Any, weight_decay: Any) -> tuple[float, tuple[float, float], float, float]:
    """Validate Adam's hyper-parameters and return them as Python floats (tensor values are refused)."""
    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
            raise ValueError(f"OffloadAdam: {name} must be a real number, got {value!r}")
        return float(value)

    lr = number("lr", lr)
    if lr < 0:
        raise ValueError(f"OffloadAdam: lr must be >= 0, got {lr}")
    eps = number("eps", eps)
    if eps < 0:
        raise ValueError(f"OffloadAdam: eps must be >= 0, got {eps}")
    weight_decay = number("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"OffloadAdam: weight_decay must be >= 0, got {weight_decay}")
    try:
        b = tuple(betas)
    except TypeError:
        b = ()
    if len(b) != 2:
        raise ValueError(f"OffloadAdam: betas must be a pair (beta1, beta2), got {betas!r}")
    b = (number("betas[0]", b[0]), number("betas[1]", b[1]))
    for i, beta in enumerate(b):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"OffloadAdam: betas[{i}] must be in [0, 1), got {beta}")
    return lr, b, eps, weight_decay


def _is_host(p: torch.Tensor) -> bool:
    """Whether ``p`` is updated in place (it lives in system memory); tests swap this to drive the device path."""
    return p.device.type == "cpu"


def _host_zeros(p: torch.Tensor) -> torch.Tensor:
    # pinned memory makes the host<->device copies of a CUDA parameter asynchronous DMA transfers
    return torch.zeros(p.shape, dtype=p.dtype, device="cpu", pin_memory=p.is_cuda)


class OffloadAdam(torch.optim.Optimizer):
    """``torch.optim.Adam`` with ``exp_avg`` and ``exp_avg_sq`` kept on the CPU.

    Args:
        params: parameters (or param-group dicts) on any device; CPU parameters are updated in place
            with no copies, CUDA ones get pinned host state so the transfers can overlap.
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)``, each in ``[0, 1)``.
        eps: added to the denominator, ``>= 0``.
        weight_decay: L2 penalty added to the gradient (as ``torch.optim.Adam``, not AdamW), ``>= 0``.

    State per parameter, as ``torch.optim.Adam`` keeps it: ``step`` (a float32 scalar tensor on the CPU),
    ``exp_avg`` and ``exp_avg_sq`` (the parameter's shape and dtype, on the CPU).

    Raises:
        ValueError: a hyper-parameter out of range, naming it and the value.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        lr, betas, eps, weight_decay = _check_hyper(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    **_MATH_FLAGS, **_RUNTIME_FLAGS}
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # state dicts from older torch versions may lack some flags
            for key, value in {**_MATH_FLAGS, **_RUNTIME_FLAGS}.items():
                group.setdefault(key, value)

    # --- the update ---------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step for every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        if any(group[k] for k in _MATH_FLAGS):
            raise ValueError(f"OffloadAdam: {', '.join(k for k in _MATH_FLAGS if group[k])} is not supported")

        # 1. gradients to the host: enqueue every copy, then wait once per device
        grads: list[torch.Tensor] = []
        waits: set[torch.device] = set()
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("OffloadAdam does not support sparse gradients; use torch.optim.SparseAdam")
            if p.is_complex():
                raise RuntimeError("OffloadAdam does not support complex parameters; use torch.optim.Adam")
            g = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)  # on the device: no param copy
            if not _is_host(p):
                host = torch.empty(p.shape, dtype=g.dtype, device="cpu", pin_memory=p.is_cuda)
                host.copy_(g, non_blocking=p.is_cuda)
                if p.is_cuda:
                    waits.add(p.device)
                g = host
            grads.append(g)
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = _host_zeros(p)
                state["exp_avg_sq"] = _host_zeros(p)
        for device in waits:
            torch.cuda.current_stream(device).synchronize()

        # 2. the moments and the denominator on the host, in torch.optim.Adam's order of operations
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        for s in steps:
            s += 1
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_sizes = [-(lr / (1 - beta1 ** n)) for n in counts]
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])
        torch._foreach_add_(denoms, eps)

        # 3. apply: CPU parameters in place; device parameters get the update computed on the host
        #    (into the gradient's pinned buffer, no longer needed) and copied back
        on_cpu = [i for i, p in enumerate(params) if _is_host(p)]
        on_dev = [i for i, p in enumerate(params) if not _is_host(p)]
        if on_cpu:
            torch._foreach_addcdiv_([params[i] for i in on_cpu], [exp_avgs[i] for i in on_cpu],
                                    [denoms[i] for i in on_cpu], [step_sizes[i] for i in on_cpu])
        if on_dev:
            deltas = [grads[i] for i in on_dev]
            torch._foreach_zero_(deltas)  # 0 + a*b/c: the same rounding as addcdiv into the parameter
            torch._foreach_addcdiv_(deltas, [exp_avgs[i] for i in on_dev], [denoms[i] for i in on_dev],
                                    [step_sizes[i] for i in on_dev])
            for i, delta in zip(on_dev, deltas):
                p = params[i]
                p.add_(delta.to(p.device, non_blocking=p.is_cuda))

    # --- checkpoints ------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of ``torch.optim.Adam``, keeping the moments on the CPU.

        ``torch.optim.Optimizer.load_state_dict`` would first copy every state tensor to its parameter's
        device, briefly needing on the GPU the memory this optimizer exists to save. So the base class
        loads only the param groups (its checks of group and parameter counts included) and the
        per-parameter state is placed on the host here. Load-state-dict hooks see the state dict without
        its ``state``.

        Raises:
            ValueError: the groups do not match, amsgrad/maximize/decoupled_weight_decay are on, or a
                parameter's state lacks a key or has the wrong shape.
        """
        for i, group in enumerate(state_dict["param_groups"]):
            on = [k for k in _MATH_FLAGS if group.get(k)]
            if on:
                raise ValueError(f"OffloadAdam: param group {i} of the state dict uses {', '.join(on)}, "
                                 "which OffloadAdam does not implement")
            _check_hyper(group["lr"], group["betas"], group["eps"], group["weight_decay"])
        saved_state = state_dict["state"]
        super().load_state_dict({**state_dict, "state": {}})
        for group in self.param_groups:
            group.update(_RUNTIME_FLAGS)
            group["betas"] = tuple(float(b) for b in group["betas"])
        id_map = dict(zip(chain.from_iterable(g["params"] for g in state_dict["param_groups"]),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        for key, value in saved_state.items():
            if key in id_map:
                self.state[id_map[key]] = self._host_state(id_map[key], value, key)
            else:
                self.state[key] = value  # as the base class does: state not tied to a parameter is kept as is

    @staticmethod
    def _host_state(p: torch.Tensor, saved: dict[str, Any], key: Any) -> dict[str, torch.Tensor]:
        missing = [k for k in _STATE_KEYS if k not in saved]
        if missing:
            raise ValueError(f"OffloadAdam: state of parameter {key} lacks {missing} (has {sorted(saved)})")
        state = {"step": torch.tensor(float(saved["step"]), dtype=torch.float32)}
        for name in ("exp_avg", "exp_avg_sq"):
            t = saved[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"OffloadAdam: state of parameter {key}: {name} has shape {tuple(t.shape)}, "
                                 f"the parameter {tuple(p.shape)}")
            host = _host_zeros(p)
            host.copy_(t.detach())  # a copy: the optimizer never shares memory with the dict it was given
            state[name] = host
        return state


FUSED_DEVICES = ("cpu", "cuda")
"""Device types whose fused Adam kernel :class:`FusedAdam` uses (torch has more; these are the ones tested)."""


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` that runs its fused kernel (one pass over each parameter instead of a dozen
    elementwise ops) when every parameter is a floating-point tensor on a device of :data:`FUSED_DEVICES`,
    and its default kernel otherwise. The arithmetic is Adam's either way, so state dicts load across
    both (and :class:`OffloadAdam`); a loaded state dict does not change which kernel runs."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        params = list(params)
        tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        fused = bool(tensors) and all(p.device.type in FUSED_DEVICES and torch.is_floating_point(p) for p in tensors)
        super().__init__(params, lr=lr, betas=betas, fused=fused or None)
        self._kernel = {"fused": fused or None, "foreach": None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a checkpoint written by the other kernel must not switch this one
            group.update(self._kernel)
            for p in group["params"]:
                state = self.state.get(p, {})
                for key, value in state.items():
                    if not isinstance(value, torch.Tensor):
                        continue
                    if key == "step":
                        if self._kernel["fused"]:  # the fused kernel counts steps on the parameter's device
                            state[key] = value.to(p.device, torch.float32)
                    elif value.shape == p.shape and value.stride() != p.stride():
                        # The fused kernel walks a parameter and its moments in memory order, so they must share
                        # a layout: moments read back contiguous for a channels_last weight (every trainer's
                        # convolutions) would be paired with the wrong elements, and a resumed run would drift.
                        state[key] = torch.empty_like(p).copy_(value)


def make_adam(params: Iterable[Any], lr: float, betas: tuple[float, float], offload: bool = False) -> torch.optim.Optimizer:
    """:class:`FusedAdam` or, with ``offload`` (SAE optimizer modes 2 and 3), :class:`OffloadAdam`.

    ``lr`` and ``betas`` are converted to floats first: torch's Adam refuses integer betas such as ``(0, 0.999)``
    read back from JSON.
    """
    lr, betas, _, _ = _check_hyper(lr, betas, 1e-8, 0.0)
    if offload:
        return OffloadAdam(params, lr=lr, betas=betas)
    return FusedAdam(params, lr=lr, betas=betas)
