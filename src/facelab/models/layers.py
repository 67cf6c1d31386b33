"""Building blocks shared by the face-swap autoencoders.

All blocks map ``(N, C, H, W)`` float tensors to ``(N, C', H', W')`` and use a
leaky ReLU (slope 0.1), as DeepFaceLab's models do: faces have many dark
regions and a plain ReLU lets whole channels die early in training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SLOPE = 0.1


class Downscale(nn.Sequential):
    """Halve H and W: ``conv k x k, stride 2`` then leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2), nn.LeakyReLU(SLOPE))


class Upscale(nn.Sequential):
    """Double H and W by sub-pixel convolution: ``conv 3x3 -> 4*C_out`` channels, then pixel shuffle.

    Pixel shuffle avoids the checkerboard artefacts of transposed convolution.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__(nn.Conv2d(c_in, c_out * 4, kernel, padding=kernel // 2), nn.LeakyReLU(SLOPE), nn.PixelShuffle(2))


class ResidualBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))`` then leaky ReLU; keeps the shape."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(x), SLOPE))
        return F.leaky_relu(x + y, SLOPE)


class DenseBottleneck(nn.Module):
    """Flattened features -> ``dims`` -> a ``(out_ch, side, side)`` map, then one upscale.

    This is the "inter" of DeepFaceLab's models: squeezing the face through a
    small vector forces the shared encoder to describe pose, expression and
    light rather than identity, which each decoder adds back.
    """

    def __init__(self, in_features: int, dims: int, side: int, out_ch: int) -> None:
        super().__init__()
        self.side, self.out_ch = side, out_ch
        self.fc1 = nn.Linear(in_features, dims)
        self.fc2 = nn.Linear(dims, side * side * out_ch)
        self.up = Upscale(out_ch, out_ch)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features -> the ``(N, dims)`` code (what the true-face discriminator judges)."""
        return self.fc1(torch.flatten(x, 1))

    def expand(self, code: torch.Tensor) -> torch.Tensor:
        """``(N, dims)`` code -> the decoder's input map ``(N, out_ch, 2 * side, 2 * side)``."""
        return self.up(self.fc2(code).view(-1, self.out_ch, self.side, self.side))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.code(x))
