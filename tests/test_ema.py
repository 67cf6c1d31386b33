"""The moving average of a network's weights (facelab.train.ema)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facelab.train.ema import WeightAverage, use_average


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_average_starts_at_the_weights_then_follows_with_the_warm_up_weight():
    net = _net()
    avg = WeightAverage(net, decay=0.99)
    w0 = net[0].weight.detach().clone()
    assert torch.equal(avg.tensors["0.weight"], w0) and avg.updates == 0
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    avg.update(net)  # first update: decay' = min(0.99, 1/10) = 0.1, so 90 % of the way to the new weights
    assert torch.allclose(avg.tensors["0.weight"], w0 + 0.9, atol=1e-6)
    assert avg.tensors["1.num_batches_tracked"].item() == 7 and avg.updates == 1
    for _ in range(2000):  # later updates use the full decay: the average converges on steady weights
        avg.update(net)
    assert torch.allclose(avg.tensors["0.weight"], net[0].weight, atol=1e-5)
    assert not torch.equal(net[0].weight, w0)  # the network itself is never changed by the average


def test_a_saved_average_continues_and_a_foreign_one_restarts():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net[0].weight.mul_(2)
    avg.update(net)
    back = WeightAverage(net, decay=0.9, saved=avg.to_extra())
    assert back.updates == 1 and torch.equal(back.tensors["0.weight"], avg.tensors["0.weight"])
    other = WeightAverage(net, decay=0.9, saved={"tensors": {"x": torch.zeros(1)}, "meta": {"updates": 5}})
    assert other.updates == 0 and torch.equal(other.tensors["0.weight"], net[0].weight)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def test_use_average_puts_the_averaged_weights_in_and_leaves_old_folders_alone():
    net, avg = _net(), None
    avg = WeightAverage(net)
    with torch.no_grad():
        avg.tensors["0.weight"].fill_(0.5)
    copy = avg.averaged(net)
    assert torch.all(copy[0].weight == 0.5) and not torch.all(net[0].weight == 0.5)
    before = net[0].weight.detach().clone()
    assert torch.equal(use_average(net, {})[0].weight, before)  # no average saved: the weights as they are
    assert torch.all(use_average(net, {"ema": avg.to_extra()})[0].weight == 0.5)
