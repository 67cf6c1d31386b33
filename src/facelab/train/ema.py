"""An exponential moving average of a network's weights, kept beside training and used for inference.

With a few dozen labels and a constant learning rate, the weights of
consecutive checkpoints scatter around a good solution; their running mean
sits nearer its centre. Each step after the optimizer's::

    average = decay' * average + (1 - decay') * weights,   decay' = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates so far, so a new average follows the weights
closely at first instead of remembering the random initial ones. Buffers are
averaged the same way (batch-norm statistics), integer buffers (batch counts)
copied. It is stored as an extra part of the model folder
(:func:`facelab.train.checkpoint.save_checkpoint`'s ``extras``), so saving,
backups and the interrupted-save checks cover it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

EXTRA = "ema"  # the part's name in a model folder: ema.safetensors


class WeightAverage:
    """The moving average of ``net``'s state dict (see the module docstring).

    ``saved``: an ``{"tensors": ..., "meta": ...}`` part read back from a model folder, to continue; None (a
    new model, or one saved before it had an average) starts from ``net``'s current weights."""

    def __init__(self, net: nn.Module, decay: float = 0.998, saved: dict[str, Any] | None = None) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        state = net.state_dict()
        if saved is not None and set(saved["tensors"]) == set(state):
            src, self.updates = saved["tensors"], int(saved.get("meta", {}).get("updates", 0))
        else:
            src, self.updates = state, 0
        self.tensors = {k: src[k].detach().to(state[k].device, state[k].dtype).clone() for k in state}
        self._float = [k for k, v in self.tensors.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards ``net``'s current weights (call after each optimizer step)."""
        state = net.state_dict()
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_([self.tensors[k] for k in self._float], [state[k].detach() for k in self._float], weight)
        for k, v in self.tensors.items():
            if not v.is_floating_point():
                v.copy_(state[k])
        self.updates += 1

    def to_extra(self) -> dict[str, Any]:
        """The part to save beside the model's weights."""
        return {"tensors": self.tensors, "meta": {"decay": self.decay, "updates": self.updates}}

    def averaged(self, net: nn.Module) -> nn.Module:
        """A copy of ``net`` holding the averaged weights (``net`` itself is untouched)."""
        out = copy.deepcopy(net)
        out.load_state_dict(self.tensors)
        return out


def use_average(net: nn.Module, extras: dict[str, dict[str, Any]]) -> nn.Module:
    """``net`` with the averaged weights of a loaded folder's ``extras`` put in, when it has them (folders saved
    before the average existed keep their weights); returns ``net``."""
    part = extras.get(EXTRA)
    if part is not None:
        net.load_state_dict(part["tensors"])
    return net
