"""``df``: DeepFaceLab's DF, a full-face two-decoder autoencoder at 128 px.

::

    src face ┐                                     ┌ decoder_src (+ residual blocks) -> face + mask
             ├ encoder -> inter (dense bottleneck) ┤
    dst face ┘                                     └ decoder_dst (+ residual blocks) -> face + mask

Same wiring as ``h128`` (see :class:`facelab.models.classic.TwoDecoderAE`),
but on full faces (forehead to chin, cheeks included), so the swap covers the
whole face, and with a residual block after each decoder level: a full face
has more area to paint, and the extra depth at each size sharpens it at little
memory cost. Widths follow DeepFaceLab's per-channel sizes (42).
"""

from __future__ import annotations

from facelab.models import register_model
from facelab.models.classic import TwoDecoderAE, resolve_config

DEFAULTS = {"resolution": 128, "ae_dims": 512, "e_dims": 42, "d_dims": 42, "d_mask_dims": 16}


@register_model("df")
class DF(TwoDecoderAE):
    def __init__(self, resolution: int | None = None, ae_dims: int | None = None, e_dims: int | None = None,
                 d_dims: int | None = None, d_mask_dims: int | None = None, face_type: str | None = None) -> None:
        super().__init__()
        given = {"resolution": resolution, "ae_dims": ae_dims, "e_dims": e_dims, "d_dims": d_dims, "d_mask_dims": d_mask_dims,
                 "face_type": face_type}
        self.build(resolve_config("df", "full", given, DEFAULTS), res_blocks=True)
