"""Recovery from a training run that blows up.

Adam at a high learning rate can, thousands of iterations in, take one step
that throws the weights into a state the loss never leaves: measured
2026-12-04, ``quick`` at 128 px (lr 5e-4, bfloat16) went from a face loss of
0.011 to 0.37 at iteration ~7,400 and stayed there for the next 6,500
iterations, while its saves overwrote the good weights with a face-less
model. :class:`DivergenceGuard` watches the loss, keeps the last good weights
and optimizer state in memory, and when the loss jumps it puts them back and
halves the learning rate (kept in the model's ``state.json`` as ``lr_scale``,
so a resumed run keeps it).
"""

from __future__ import annotations

import math
from collections import deque

import torch

JUMP = 3.0
"""A loss this many times the recent typical loss counts as a jump..."""
PATIENCE = 3
"""...when this many consecutive checks see it (one check per loss-history point: 10 iterations)."""
REFERENCE = 20
"""Checks whose median is the recent typical loss."""
SNAPSHOT_EVERY = 50
"""Checks between copies of the good weights (500 iterations)."""


def _copy(state_dict: dict) -> dict:
    out = {}
    for k, v in state_dict.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().to("cpu", copy=True)
        elif isinstance(v, dict):
            out[k] = _copy(v)
        elif isinstance(v, list):
            out[k] = [_copy(x) if isinstance(x, dict) else x for x in v]
        else:
            out[k] = v
    return out


class DivergenceGuard:
    """Call :meth:`check` with each mean face loss (src + dst over ``HISTORY_EVERY`` iterations); it returns a
    message when it restored the last good weights, else ``None``.

    Args:
        model: the trained module (its ``state_dict`` is copied).
        optimizer: its optimizer (state and learning rates are copied and restored together).
        state: the training state dict; ``state["lr_scale"]`` records the learning-rate cuts.
    """

    def __init__(self, model: torch.nn.Module, optimizer, state: dict) -> None:
        self.model, self.optimizer, self.state = model, optimizer, state
        self.recent: deque[float] = deque(maxlen=REFERENCE)
        self.high = 0
        self.checks = 0
        self.good: tuple[int, dict, dict] | None = None

    def _snapshot(self, iteration: int) -> None:
        self.good = (iteration, _copy(self.model.state_dict()), _copy(self.optimizer.state_dict()))

    def check(self, iteration: int, loss: float) -> str | None:
        self.checks += 1
        typical = sorted(self.recent)[len(self.recent) // 2] if len(self.recent) == REFERENCE else None
        jumped = not math.isfinite(loss) or (typical is not None and loss > JUMP * typical)
        if not jumped:
            self.high = 0
            self.recent.append(loss)
            if self.good is None or self.checks % SNAPSHOT_EVERY == 0:
                self._snapshot(iteration)
            return None
        self.high += 1
        if self.high < PATIENCE and math.isfinite(loss):
            return None  # one bad batch is not a blow-up
        if self.good is None:
            return None
        at, weights, optim = self.good
        lrs = [group["lr"] * 0.5 for group in self.optimizer.param_groups]
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(optim)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        scale = float(self.state.get("lr_scale", 1.0)) * 0.5
        self.state["lr_scale"] = scale
        self.high = 0
        self.recent.clear()
        return (f"[iter {iteration}] loss jumped to {loss:.4f} (typical {typical if typical is not None else float('nan'):.4f}): "
                f"restored the weights of iteration {at} and halved the learning rate "
                f"(now x{scale:g} of --lr; kept when the model resumes)")
