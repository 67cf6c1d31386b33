"""``srnet``: a compact super-resolution CNN for aligned faces.

::

    x (N,3,R,R) ─ conv ─┬─ residual blocks ─ conv ─(+)─ [conv -> 4C, pixel shuffle x2] x log2(k) ─ conv -> 3 ─(+)─ y
                        └────────────── skip ────────┘                                                       │
    x ─────────────────────────────────── bicubic upsampling x k ────────────────────────────────────────────┘

All the heavy work runs at the input resolution; the upsampler is sub-pixel
convolution (no checkerboard from transposed convolution; its kernels start as
ICNR, i.e. every sub-pixel of a shuffle group starts equal). The last
convolution starts at zero, so a new network returns exactly the bicubic
upsampling of its input and learns only the missing detail, which makes
training stable from the first step.

Shapes: input ``(N, 3, R, R)`` float32 BGR in ``[0, 1]``; output
``(N, 3, k*R, k*R)``, about ``[0, 1]`` (not clamped, so the loss keeps its
gradient at the extremes; :class:`facelab.enhance.inference.Enhancer` clamps).
Any ``R`` works (fully convolutional), but the network learns the face scale it
was trained at.

Cost: ``channels**2 * 9 * (2 * blocks + 2)`` multiply-adds per input pixel plus
the upsampler; the defaults (48 channels, 6 blocks) are ~6 GMAC per 128 px face.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from facelab.enhance import register_enhancer
from facelab.errors import SettingsError

SLOPE = 0.1  # leaky ReLU, as in facelab.models.layers


class _Block(nn.Module):
    """``x + conv(lrelu(conv(x)))``: no activation after the sum, so the identity path stays linear (EDSR's finding
    for super resolution; no batch norm, which would shift the colours of single faces)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), SLOPE))


def _icnr_(conv: nn.Conv2d, r: int) -> None:
    """Initialise a conv that feeds ``PixelShuffle(r)`` so the r*r outputs of each group start equal (no checkerboard)."""
    c_out, c_in, kh, kw = conv.weight.shape
    sub = torch.empty(c_out // (r * r), c_in, kh, kw)
    nn.init.kaiming_uniform_(sub, a=math.sqrt(5))  # nn.Conv2d's own default init
    with torch.no_grad():
        conv.weight.copy_(sub.repeat_interleave(r * r, 0))
        conv.bias.zero_()


@register_enhancer("srnet")
class SRNet(nn.Module):
    """Face super resolution by ``scale`` (2 or 4).

    Args:
        scale: upscaling factor ``k``, 2 or 4.
        channels: feature channels (4..256), default 48.
        blocks: residual blocks at the input resolution (0..32), default 6.
    """

    def __init__(self, scale: int = 2, channels: int = 48, blocks: int = 6) -> None:
        super().__init__()
        if isinstance(scale, bool) or scale not in (2, 4):
            raise SettingsError(f"srnet: scale={scale!r} is not allowed", "use 2 or 4")
        for key, value, lo, hi in (("channels", channels, 4, 256), ("blocks", blocks, 0, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise SettingsError(f"srnet: {key}={value!r} is out of range", f"use a whole number {lo}..{hi}")
        self.config = {"scale": int(scale), "channels": int(channels), "blocks": int(blocks)}
        c = channels
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[_Block(c) for _ in range(blocks)], nn.Conv2d(c, c, 3, padding=1))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            conv = nn.Conv2d(c, c * 4, 3, padding=1)
            _icnr_(conv, 2)
            up += [conv, nn.PixelShuffle(2), nn.LeakyReLU(SLOPE)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def scale(self) -> int:
        return self.config["scale"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, R, R)`` float in ``[0, 1]`` -> ``(N, 3, k*R, k*R)``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"srnet: expected (N, 3, R, R) BGR tensors, got {tuple(x.shape)}")
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        f = self.head(x)
        f = f + self.body(f)
        return base + self.tail(self.up(f))
