"""Losses for face autoencoders.

- :func:`dssim`: structural dissimilarity ``(1 - SSIM) / 2`` with an 11 px
  Gaussian window (sigma 1.5), computed on the 'valid' region like
  ``tf.image.ssim``; 0 for identical images, at most 1.
- :func:`face_loss`: DSSIM + MSE of the masked face (DeepFaceLab weights both
  by 10; the ratio is what matters, we keep them at 1:1 for readable numbers).
  The window stays 11 px at every size, where DeepFaceLab scales it to the
  face (resolution / 11.6): at 64 px a 5 px window, the mean of 5 and 11 px,
  or an added Laplacian-pyramid L1 all gave the same swap sharpness after
  3,000 iterations (docs/quality.md, 2026-12-06).
- :func:`mask_loss`: MSE between the learned mask and the landmark-hull mask.

All take ``(N, C, H, W)`` float tensors in ``[0, 1]``.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

C1 = 0.01**2
C2 = 0.03**2


@functools.lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, channels: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(dtype)
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous().to(device)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image: ``(N, C, H, W)`` x2 -> ``(N,)``; H and W must be >= ``window``."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim: expected two equal (N, C, H, W) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"ssim: images {tuple(a.shape[-2:])} are smaller than the {window} px window")
    c = a.shape[1]
    w = _gaussian_window(window, sigma, c, str(a.device), a.dtype)
    # means and (co)variances of all five maps in one grouped convolution
    stack = torch.cat([a, b, a * a, b * b, a * b], 1)
    mu_a, mu_b, aa, bb, ab = F.conv2d(stack, w.repeat(5, 1, 1, 1), groups=5 * c).split(c, 1)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return s.flatten(1).mean(1)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each ``k x k`` window (``k`` odd), over the part inside the image at the edges: what
    ``F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)`` gives, as one convolution, which on a CPU
    runs about 4x as fast (a batch of eight 64 px masks: 0.55 against 2.3 ms; the trainer needs two a step)."""
    n, c, h, w = x.shape
    ones = x.new_ones(1, 1, k, k)
    sums = F.conv2d(x.reshape(n * c, 1, h, w), ones, padding=k // 2)
    counts = F.conv2d(x.new_ones(1, 1, h, w), ones, padding=k // 2)
    return (sums / counts).reshape(n, c, h, w)


def dssim(a: torch.Tensor, b: torch.Tensor, window: int = 11) -> torch.Tensor:
    """``(1 - SSIM) / 2`` averaged over the batch: a scalar tensor in ``[0, 1]``."""
    return ((1 - ssim(a, b, window)) / 2).mean()


def face_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, pixel: bool = False) -> torch.Tensor:
    """DSSIM + MSE between ``pred * mask`` and ``target * mask`` (``mask`` is ``(N, 1, H, W)``);
    with ``pixel`` (the models' ``pixel_loss`` option) plain MSE.

    Masking makes the decoder spend its capacity on the face, not the background.
    """
    p, t = pred * mask, target * mask
    if pixel:
        return F.mse_loss(p, t)
    return dssim(p, t) + F.mse_loss(p, t)


def mask_loss(pred_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred_mask, target_mask)


def style_loss(a: torch.Tensor, b: torch.Tensor, blur: int | None = None) -> torch.Tensor:
    """Squared difference of per-channel means and standard deviations of ``a`` and ``b`` (after a box blur of
    ``blur`` px, default 1/16 of the side, so only colour and light are compared, not detail): 0 when the
    two have the same colour statistics."""
    k = blur if blur is not None else max(3, a.shape[-1] // 16) | 1
    a, b = (box_mean(x, k) for x in (a, b))
    return F.mse_loss(a.mean((2, 3)), b.mean((2, 3))) + F.mse_loss(a.std((2, 3)), b.std((2, 3)))
