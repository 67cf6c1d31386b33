"""The segmenter: a U-Net that tells face pixels from everything else (DeepFaceLab's XSeg role).

Input ``(N, 3, R, R) float32`` BGR faces in ``[0, 1]`` (any face type, ``R`` a
multiple of 64); output ``(N, 1, R, R)`` logits (``sigmoid`` gives the face
probability). The layout follows the shape of XSeg, written anew:

- an encoder of six stages, each two 3x3 convolutions with batch norm and
  leaky ReLU, then an anti-aliased downsample (a fixed binomial blur before the
  stride-2 subsample, so a face shifted by a pixel gives the same mask);
- a dense bottleneck on the ``R/64`` square: the one place where every pixel
  sees the whole face, which is what lets the network decide that a hand on the
  chin is *not* chin, however skin-coloured it is;
- a decoder that upsamples and adds each encoder stage's features (skip
  connections) so edges stay sharp at full resolution.

Channels are narrow at full resolution and wide deep down: the cost of a
convolution grows with pixels x channels^2, so 8 and 16 channels at 256 and
128 px keep the full-resolution stages cheap (1.02 GFLOP a face: apply runs on
CPUs), while the deep stages and the bottleneck hold most of the 10.5 M
parameters (XSeg: about 17.6 M, at several times the cost per face).

Two choices are there for speed on CPUs, measured on 2 cores at 256 px
(``benchmarks/bench_seg.py``): the skip connections *add* the encoder's features
to the upsampled ones (``skips="add"``) instead of concatenating them, which
halves the decoder's convolutions and saves the copy; and the blur pads with
zeros inside the convolution (``pad="zero"``) instead of a separate
edge-replicating pad. Together: 69 -> 104 faces/s for the bare network at batch 16. Segmenters
saved before these options existed load with the old choices (``"concat"``,
``"replicate"``; see :func:`facelab.seg.model.saved_segmenter`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_RESOLUTION = 256
STAGES = 6  # encoder stages; the bottleneck square is R / 2**STAGES
SKIPS = ("add", "concat")  # how the decoder joins an encoder stage's features
PADS = ("zero", "replicate")  # how the anti-aliasing blur treats the border


def _conv(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True)]


class _Block(nn.Module):
    """One or two 3x3 convolutions, each with batch norm and leaky ReLU."""

    def __init__(self, cin: int, cout: int, depth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(cin, cout), *(_conv(cout, cout) if depth > 1 else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BlurDown(nn.Module):
    """Anti-aliased 2x downsample: a fixed 3x3 binomial blur per channel, then a stride-2 subsample."""

    def __init__(self, channels: int, pad: str = "zero") -> None:
        super().__init__()
        if pad not in PADS:
            raise ValueError(f"BlurDown: pad must be one of {PADS}, got {pad!r}")
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).contiguous(), persistent=False)
        self.channels = channels
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == "replicate":
            x = F.pad(x, (1, 1, 1, 1), mode="replicate")
            return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=self.channels)
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=self.channels)


class Segmenter(nn.Module):
    """Face segmentation U-Net (see the module docstring).

    Args:
        resolution: face side ``R`` it is trained at (a multiple of 64).
        face_type: the face type of the faces it is trained on (faces of another type are re-cut to it).
        channels: channels of the six encoder stages, full resolution first.
        bottleneck: width of the dense layer on the ``R/64`` square.
        shallow: how many of the first (full-resolution) stages have one convolution instead of two.
        skips: ``"add"`` (encoder features added to the upsampled ones) or ``"concat"`` (joined as channels).
        pad: the blur's border, ``"zero"`` or ``"replicate"``.
    """

    def __init__(self, resolution: int = DEFAULT_RESOLUTION, face_type: str = "whole",
                 channels: tuple[int, ...] | list[int] = (8, 16, 32, 64, 128, 256), bottleneck: int = 1024,
                 shallow: int = 2, skips: str = "add", pad: str = "zero") -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if resolution % 2**STAGES or resolution < 2**STAGES:
            raise ValueError(f"segmenter resolution must be a multiple of {2**STAGES}, got {resolution}")
        if len(channels) != STAGES:
            raise ValueError(f"segmenter channels: expected {STAGES} stages, got {len(channels)}")
        if skips not in SKIPS:
            raise ValueError(f"segmenter skips must be one of {SKIPS}, got {skips!r}")
        self.config: dict[str, Any] = {"resolution": int(resolution), "face_type": str(face_type),
                                       "channels": list(channels), "bottleneck": int(bottleneck), "shallow": int(shallow),
                                       "skips": skips, "pad": pad}
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        cin = 3
        for i, c in enumerate(channels):
            self.encoder.append(_Block(cin, c, 1 if i < shallow else 2))
            self.down.append(BlurDown(c, pad))
            cin = c
        side = resolution // 2**STAGES
        flat = channels[-1] * side * side
        self.side = side
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, bottleneck), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Linear(bottleneck, flat), nn.LeakyReLU(0.1, inplace=True))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        cin = channels[-1]
        for i, c in reversed(list(enumerate(channels))):
            # 1x1 at the low resolution, then nearest upsampling: the cheap way up; the block after it mixes
            self.up.append(nn.Sequential(*_conv(cin, c, 1), nn.Upsample(scale_factor=2, mode="nearest")))
            self.decoder.append(_Block(2 * c if skips == "concat" else c, c, 1))
            cin = c
        self.head = nn.Conv2d(channels[0], 1, 1)
        self.concat = skips == "concat"

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def face_type(self) -> str:
        return self.config["face_type"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, R, R)`` BGR ``[0, 1]`` -> ``(N, 1, R, R)`` logits."""
        x = x * 2 - 1
        skips = []
        for block, down in zip(self.encoder, self.down):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.dense(x).view(x.shape[0], -1, self.side, self.side)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], 1) if self.concat else up(x) + skip)
        return self.head(x)
