"""``quick``: a small full-face autoencoder for first results in minutes (DeepFaceLab's Quick96 idea).

::

    src face ┐                                   ┌ decoder_src -> BGR face (sigmoid) + mask (sigmoid)
             ├ encoder -> inter (dense bottleneck)┤
    dst face ┘                                   └ decoder_dst -> BGR face (sigmoid) + mask (sigmoid)

One encoder and one bottleneck are shared by both identities, so they learn a
common description of pose, expression and light; each decoder learns to paint
one person. Swapping = encode a dst face, decode it with the src decoder.

Shapes: input ``(N, 3, R, R)`` float32 BGR in ``[0, 1]``; outputs faces
``(N, 3, R, R)`` and masks ``(N, 1, R, R)`` in ``[0, 1]``. ``R`` must be a
multiple of 16 (four halvings in the encoder; 32 with ``double_res``).

The defaults (64 px, small dims) are chosen to learn a recognisable face on
two CPU cores in about five minutes. Measured on 2 cores, batch 8, real faces:
d_dims 32 -> 145 ms/it, d_dims 16 -> 75 ms/it, with the same loss per
iteration over the first thousand, so the smaller decoder learns twice as fast
per second; 96 px costs ~3x more per step. The decoders dominate the cost
(the encoder works on ever smaller maps). See ``benchmarks/bench_train.py``.

A new ``quick`` model trains without random warp, with expression matching at 0.05 and with its gradient norm
clipped to 1 (``TRAINING_DEFAULTS``;
:mod:`facelab.train.expression_match`); its eyes-and-mouth priority, when
turned on, weighs 10 instead of 30 (``EYES_MOUTH_WEIGHT``; figures in docs/quality.md, 2026-12-06, session 19).
Measured with ``benchmarks/bench_quality.py`` on three pairs, 5 minutes on 2
cores, warp (as fixed on 2026-12-04) -> none: sharpness ratio 0.43 -> 0.47,
0.53 -> 0.56, 0.57 -> 0.62; pose error 8.6 -> 6.8, 2.1 -> 1.8, 2.2 -> 1.4 deg;
mouth correlation 0.86 -> 0.91, 0.82 -> 0.82, 0.02 -> 0.67; the warp was better
only on jitter (1.00 against 1.04 on average) and on the demo's identity
(0.43 against 0.45). Its remap also costs CPU (4,200 -> 4,900 iterations).

``double_res`` (DeepFaceLab's ``d`` letter, off by default) paints the face at
``resolution`` from a network body at half of it: one narrow stride-2 level
(``e_dims / 2`` channels) before the encoder, and one narrow level
(``d_dims / 2`` channels, ``d_mask_dims / 2`` for the mask) after each decoder.
``resolution`` must then be a multiple of 32. Measured on 2 AVX2 cores in
float32, batch 8 (``benchmarks/bench_models.py``): 64 px 204 ms/step, 128 px
710, 128 px double 362, 96 px double 204. In ``benchmarks/bench_quality.py``
(2026-12-05) it made the swap sharper (demo 0.42 -> 0.47 at 96 px after 5
minutes) but learned the mouth later (mouth correlation -0.12 against +0.81;
+0.85 against +0.89 after 10 minutes), so it is not the default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from facelab.errors import SettingsError
from facelab.models import register_model
from facelab.models.base import SharedInterModel
from facelab.models.layers import DenseBottleneck, Downscale, ResidualBlock, Upscale

DEFAULT_CONFIG: dict[str, Any] = {
    "resolution": 64,
    "face_type": "full",
    "ae_dims": 128,  # bottleneck vector
    "e_dims": 32,  # encoder channels at the first level (x2 per level)
    "d_dims": 16,  # decoder channels at the last level (x2 per level up)
    "d_mask_dims": 8,  # mask decoder channels at the last level
}


class Encoder(nn.Sequential):
    """Face ``(N, 3, R, R)`` -> ``(N, 8 * e_dims, R / 16, R / 16)``; with ``double_res`` one narrow
    stride-2 level first (``e_dims / 2`` channels at full size), so the rest works at ``R / 2`` and the
    output is ``R / 32`` wide."""

    def __init__(self, e_dims: int, double_res: bool = False) -> None:
        top = max(e_dims // 2, 4)
        first = [Downscale(3, top)] if double_res else []
        super().__init__(
            *first,
            Downscale(top if double_res else 3, e_dims),
            Downscale(e_dims, e_dims * 2),
            Downscale(e_dims * 2, e_dims * 4),
            Downscale(e_dims * 4, e_dims * 8),
        )


class Decoder(nn.Module):
    """Bottleneck map ``(N, C, R/8, R/8)`` (``R/16`` with ``double_res``) -> face ``(N, 3, R, R)`` and mask
    ``(N, 1, R, R)``."""

    def __init__(self, c_in: int, d_dims: int, d_mask_dims: int, double_res: bool = False) -> None:
        super().__init__()
        d, m = d_dims, d_mask_dims
        # double_res: one more, narrow level (half the channels) paints the full-size face
        d_top, m_top = (max(d // 2, 4), max(m // 2, 2)) if double_res else (d, m)
        top_face = [Upscale(d, d_top), ResidualBlock(d_top)] if double_res else []
        top_mask = [Upscale(m, m_top)] if double_res else []
        self.face = nn.Sequential(
            Upscale(c_in, d * 4), ResidualBlock(d * 4),
            Upscale(d * 4, d * 2), ResidualBlock(d * 2),
            Upscale(d * 2, d), ResidualBlock(d),
            *top_face,
            nn.Conv2d(d_top, 3, 3, padding=1),
        )
        self.mask = nn.Sequential(
            Upscale(c_in, m * 4), Upscale(m * 4, m * 2), Upscale(m * 2, m), *top_mask,
            nn.Conv2d(m_top, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.face(z)), torch.sigmoid(self.mask(z))


@register_model("quick")
class Quick(SharedInterModel):
    # Random warp off: at the budgets this model is for, the swap is sharper and follows dst's pose and mouth
    # better without it. Measured 2026-12-04 (benchmarks/bench_quality.py, 5 min on 2 cores, three pairs).
    # Expression matching on at 0.05: without it the swap's mouth depends on the seed and the pair (mouth
    # correlation -0.58..0.89 over eight runs on three pairs, mean 0.57); with it 0.70..0.91 (mean 0.80), the
    # demo's pose 1.2-3.8 deg better on four seeds, at a cost on the seeds that already followed the mouth.
    # Measured 2026-12-07 (docs/quality.md, session 21).
    # Gradient clipping (norm 1) on: it fires on about 1 % of steps, the early loss spikes (6 % of the first
    # hundred), and over nine paired runs (three pairs, three seeds, 2,000 iterations) it rescued the mouth of
    # the two pyfeat-grid seeds that had lost it (0.46 -> 0.66, 0.30 -> 0.78) and moved the rest within
    # their noise (sharpness +0.006, identity -0.005, pose -0.09 deg on average). It costs 1.1 ms of a ~95 ms
    # step. Measured 2026-12-07 (docs/quality.md, session 26).
    TRAINING_DEFAULTS = {"random_warp": False, "expression_power": 0.05, "clip_grad": True}
    # Eyes and mouth priority (off by default) at a third of the usual weight: at 30 it cost franck-grid its
    # mouth (0.89 -> 0.34 on one seed); at 10 franck-grid kept it, the demo's pose was 0.4 deg better than at
    # 30, and the demo's bad-mouth seeds were rescued as well. Measured 2026-12-06 (docs/quality.md, session 19).
    EYES_MOUTH_WEIGHT = 10.0
    # Under about 1,800 iterations the swap has not settled: at 919-1,026 iterations (5 minutes of a float32 CPU)
    # the mouth opened a third as wide as dst's or moved against it on 5 of 9 runs (three pairs, three seeds) and
    # franck-grid showed dst's face on 19-29 % of frames on two seeds; at 1,848-2,042 every run showed src on
    # every frame and the demo's and franck-grid's mouths met their target. Measured 2026-12-08 (docs/quality.md).
    SETTLED_ITERATIONS = 1800

    @staticmethod
    def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
        """The config as a model built from it stores it: ``double_res`` only when on, so the configs (and save
        ids) of models made before the option existed are unchanged and ``--no-double-res`` on them is no change."""
        out = dict(config)
        if not out.get("double_res"):
            out.pop("double_res", None)
        return out

    def __init__(self, resolution: int = 64, face_type: str = "full", ae_dims: int = 128, e_dims: int = 32,
                 d_dims: int = 16, d_mask_dims: int = 8, double_res: bool = False) -> None:
        super().__init__()
        double_res = bool(double_res)
        if resolution % 16 or not 16 <= resolution <= 512:
            raise SettingsError(f"quick: resolution {resolution} is not allowed", "use a multiple of 16 from 16 to 512")
        if double_res and resolution % 32:
            raise SettingsError(f"quick: resolution {resolution} is not allowed with double_res",
                                "use a multiple of 32 (double_res adds a fifth halving)")
        for key, value, lo, hi in (("ae_dims", ae_dims, 4, 1024), ("e_dims", e_dims, 2, 256),
                                   ("d_dims", d_dims, 2, 256), ("d_mask_dims", d_mask_dims, 1, 256)):
            if not lo <= int(value) <= hi:
                raise SettingsError(f"quick: {key}={value} is out of range", f"use {lo}..{hi}")
        self.config = self.resolve_config({
            "resolution": int(resolution), "face_type": str(face_type), "ae_dims": int(ae_dims), "e_dims": int(e_dims),
            "d_dims": int(d_dims), "d_mask_dims": int(d_mask_dims), "double_res": double_res})
        side = resolution // (32 if double_res else 16)
        self.encoder = Encoder(e_dims, double_res)
        self.inter = DenseBottleneck(e_dims * 8 * side * side, ae_dims, side, ae_dims)
        self.decoder_src = Decoder(ae_dims, d_dims, d_mask_dims, double_res)
        self.decoder_dst = Decoder(ae_dims, d_dims, d_mask_dims, double_res)
