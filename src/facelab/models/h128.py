"""``h128``: DeepFaceLab's H128, the half-face two-decoder autoencoder of ``h64`` at 128 px.

Architecture and forward/swap: see :class:`facelab.models.classic.HalfFaceAE`.
Twice the side means four times the pixels (and decoder FLOPs) for visibly
sharper eyes and teeth. ``lightweight`` halves every width.
"""

from __future__ import annotations

from typing import ClassVar

from facelab.models import register_model
from facelab.models.classic import HalfFaceAE


@register_model("h128")
class H128(HalfFaceAE):
    DEFAULTS: ClassVar[dict[str, int]] = {"resolution": 128, "ae_dims": 512, "e_dims": 64, "d_dims": 64, "d_mask_dims": 16}
    LIGHTWEIGHT: ClassVar[dict[str, int]] = {"ae_dims": 256, "e_dims": 32, "d_dims": 32, "d_mask_dims": 8}
