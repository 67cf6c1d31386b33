"""``liaef128``: DeepFaceLab's LIAEF128, full face 128 px, one shared decoder.

::

    face -> encoder -> e ┬ inter_ab(e) ───────────────┐
                         └ inter_b(e)  (dst only) ────┴ cat -> decoder -> face + mask

    src code  = cat(inter_ab(e_src), inter_ab(e_src))
    dst code  = cat(inter_b(e_dst),  inter_ab(e_dst))
    swap code = cat(inter_ab(e_dst), inter_ab(e_dst))   (dst decoded "as src")

There is only one decoder, so identity cannot live in a decoder: it lives in
which bottleneck fills the first half of the code. ``inter_ab`` sees both
people and learns what they share; ``inter_b`` is trained on dst only and adds
what is specific to dst. Swapping drops ``inter_b`` and repeats ``inter_ab``,
giving the src-like half twice, as for a src face. Because the decoder is
shared, the result morphs src toward dst (keeps more of dst's face shape and
lighting) rather than pasting src's face: more stable, less src-like than DF.
"""

from __future__ import annotations

import torch

from facelab.models import register_model
from facelab.models.base import SwapModel
from facelab.models.classic import Decoder, Encoder, resolve_config
from facelab.models.layers import DenseBottleneck

DEFAULTS = {"resolution": 128, "ae_dims": 256, "e_dims": 42, "d_dims": 42, "d_mask_dims": 16}


@register_model("liaef128")
class LIAEF128(SwapModel):
    TRAINING_QUESTIONS = ("pixel_loss",)

    def __init__(self, resolution: int | None = None, ae_dims: int | None = None, e_dims: int | None = None,
                 d_dims: int | None = None, d_mask_dims: int | None = None, face_type: str | None = None) -> None:
        super().__init__()
        given = {"resolution": resolution, "ae_dims": ae_dims, "e_dims": e_dims, "d_dims": d_dims, "d_mask_dims": d_mask_dims,
                 "face_type": face_type}
        self.config = c = resolve_config("liaef128", "full", given, DEFAULTS)
        side = c["resolution"] // 16
        self.encoder = Encoder(c["e_dims"])
        flat = c["e_dims"] * 8 * side * side
        self.inter_ab = DenseBottleneck(flat, c["ae_dims"], side, c["ae_dims"])
        self.inter_b = DenseBottleneck(flat, c["ae_dims"], side, c["ae_dims"])
        # the one decoder paints both people, so it gets DF's residual blocks for the extra work
        self.decoder = Decoder(2 * c["ae_dims"], c["d_dims"], c["d_mask_dims"], res_blocks=True)

    def forward(self, src: torch.Tensor, dst: torch.Tensor):
        """Reconstruct both sides with the one decoder: ``(src_face, src_mask, dst_face, dst_mask)``."""
        n = len(src)
        e = self.encoder(torch.cat([src, dst]))  # one encoder pass over both halves
        ab = self.inter_ab(e)
        # src never goes through inter_b: that is what keeps inter_b dst-specific
        code = torch.cat([torch.cat([ab[:n], ab[:n]], 1), torch.cat([self.inter_b(e[n:]), ab[n:]], 1)])
        face, mask = self.decoder(code)  # one decoder pass for both sides
        return face[:n], mask[:n], face[n:], mask[n:]

    def swap(self, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dst faces ``(N, 3, R, R)`` -> src-looking faces ``(N, 3, R, R)`` and masks ``(N, 1, R, R)``."""
        ab = self.inter_ab(self.encoder(dst))
        return self.decoder(torch.cat([ab, ab], 1))

    def reconstruct(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(x)
        ab = self.inter_ab(e)
        return self.decoder(torch.cat([self.inter_b(e) if side == "dst" else ab, ab], 1))
