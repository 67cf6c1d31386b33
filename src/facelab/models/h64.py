"""``h64``: DeepFaceLab's H64, a half-face two-decoder autoencoder at 64 px.

Architecture and forward/swap: see :class:`facelab.models.classic.HalfFaceAE`
(shared encoder + dense bottleneck, one decoder with a mask branch per identity).
At 64 px a half face keeps the eyes and mouth large enough to learn quickly,
which is why DeepFaceLab offered it for weak GPUs. ``lightweight`` halves every
width (about a quarter of the parameters and FLOPs); see
``benchmarks/bench_models.py`` for the measured cost.
"""

from __future__ import annotations

from typing import ClassVar

from facelab.models import register_model
from facelab.models.classic import HalfFaceAE


@register_model("h64")
class H64(HalfFaceAE):
    DEFAULTS: ClassVar[dict[str, int]] = {"resolution": 64, "ae_dims": 512, "e_dims": 64, "d_dims": 64, "d_mask_dims": 16}
    LIGHTWEIGHT: ClassVar[dict[str, int]] = {"ae_dims": 256, "e_dims": 32, "d_dims": 32, "d_mask_dims": 8}
