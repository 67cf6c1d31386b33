"""Parts shared by DeepFaceLab's four classic models (``h64``, ``h128``, ``df``, ``liaef128``).

::

    face (N,3,R,R) -> Encoder -> (N, 8e, R/16, R/16) -> inter (dense bottleneck) -> (N, C, R/8, R/8)
                   -> Decoder -> face (N,3,R,R) sigmoid  +  mask (N,1,R,R) sigmoid

The four differ in face type, sizes, whether the decoder has residual blocks,
and (LIAEF) how the bottleneck and decoders are wired; each registered name
has its own file that states just that. Sizes are named as in ``quick``:

- ``ae_dims``: length of the bottleneck vector (what must describe pose,
  expression and light);
- ``e_dims``: encoder channels at the first level, doubled at each of 4 levels;
- ``d_dims``: decoder channels at the last (full-size) level, x2 per level up;
- ``d_mask_dims``: the same for the mask branch, kept small because a mask is
  a smooth blob and needs far less capacity than the face.

For ``h64``/``h128`` the config also carries ``lightweight`` (the smaller dims
of DeepFaceLab's "lighter autoencoder"). DeepFaceLab's pixel-loss question is
the trainer's ``pixel_loss`` option in facelab (:mod:`facelab.train.options`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from facelab.errors import SettingsError
from facelab.models.base import SharedInterModel
from facelab.models.layers import DenseBottleneck, Downscale, ResidualBlock, Upscale

DIM_RANGES = {"ae_dims": (4, 1024), "e_dims": (2, 256), "d_dims": (2, 256), "d_mask_dims": (1, 256)}


def resolve_config(name: str, face_type: str, given: dict[str, Any], defaults: dict[str, int]) -> dict[str, Any]:
    """Fill the ``None`` entries of ``given`` from ``defaults``, check ranges, return a JSON-able config.

    ``face_type`` is fixed per model: the aligned faces it is trained on must be
    cut the same way at merge time, so another type is an error, not a hint.
    """
    if given.get("face_type") not in (None, face_type):
        raise SettingsError(f"{name}: face_type {given['face_type']!r} is not allowed", f"{name} works on {face_type} faces only")
    cfg: dict[str, Any] = {k: (defaults[k] if given.get(k) is None else given[k]) for k in defaults}
    r = cfg["resolution"]
    if int(r) != r or r % 16 or not 16 <= r <= 512:
        raise SettingsError(f"{name}: resolution {r} is not allowed", "use a multiple of 16 from 16 to 512")
    for key, (lo, hi) in DIM_RANGES.items():
        if key in cfg and not (int(cfg[key]) == cfg[key] and lo <= cfg[key] <= hi):
            raise SettingsError(f"{name}: {key}={cfg[key]} is out of range", f"use an integer {lo}..{hi}")
    cfg = {k: int(v) for k, v in cfg.items()}
    cfg["face_type"] = face_type
    if "lightweight" in given:
        cfg["lightweight"] = bool(given["lightweight"])
    return cfg


class Encoder(nn.Sequential):
    """``(N, 3, R, R) -> (N, 8 * e_dims, R/16, R/16)``: four 5x5 stride-2 convolutions."""

    def __init__(self, e_dims: int) -> None:
        e = e_dims
        super().__init__(Downscale(3, e), Downscale(e, e * 2), Downscale(e * 2, e * 4), Downscale(e * 4, e * 8))


class Decoder(nn.Module):
    """``(N, c_in, R/8, R/8)`` -> face ``(N, 3, R, R)`` and mask ``(N, 1, R, R)``, both in ``[0, 1]``.

    With ``res_blocks`` each face level is followed by a residual block (DF):
    more depth at the same resolution sharpens details for little extra memory.
    The mask branch is a separate, thin chain so that learning the mask does
    not compete with the face for channels.
    """

    def __init__(self, c_in: int, d_dims: int, d_mask_dims: int, res_blocks: bool = False) -> None:
        super().__init__()
        d, m = d_dims, d_mask_dims
        face: list[nn.Module] = []
        for c_prev, c in ((c_in, d * 4), (d * 4, d * 2), (d * 2, d)):
            face.append(Upscale(c_prev, c))
            if res_blocks:
                face.append(ResidualBlock(c))
        self.face = nn.Sequential(*face, nn.Conv2d(d, 3, 5, padding=2))
        self.mask = nn.Sequential(
            Upscale(c_in, m * 4), Upscale(m * 4, m * 2), Upscale(m * 2, m), nn.Conv2d(m, 1, 5, padding=2),
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.face(z)), torch.sigmoid(self.mask(z))


class TwoDecoderAE(SharedInterModel):
    """Shared encoder + bottleneck, one decoder per identity (H64, H128, DF).

    Subclasses call :meth:`build` with a config from :func:`resolve_config`.
    """

    config: dict[str, Any]
    TRAINING_QUESTIONS = ("pixel_loss",)

    def build(self, config: dict[str, Any], res_blocks: bool) -> None:
        self.config = config
        c = config
        side = c["resolution"] // 16
        self.encoder = Encoder(c["e_dims"])
        self.inter = DenseBottleneck(c["e_dims"] * 8 * side * side, c["ae_dims"], side, c["ae_dims"])
        self.decoder_src = Decoder(c["ae_dims"], c["d_dims"], c["d_mask_dims"], res_blocks)
        self.decoder_dst = Decoder(c["ae_dims"], c["d_dims"], c["d_mask_dims"], res_blocks)


class HalfFaceAE(TwoDecoderAE):
    """H64 / H128: a half-face two-decoder autoencoder; subclasses give the sizes.

    Half face = the area from eyebrows to chin: the least background and hair,
    so the network spends all its capacity on the features that make identity.
    """

    DEFAULTS: ClassVar[dict[str, int]]
    LIGHTWEIGHT: ClassVar[dict[str, int]]

    def __init__(self, resolution: int | None = None, lightweight: bool = False, ae_dims: int | None = None,
                 e_dims: int | None = None, d_dims: int | None = None, d_mask_dims: int | None = None,
                 face_type: str | None = None) -> None:
        super().__init__()
        # explicit dims win over the lightweight preset, so a saved config rebuilds the same network
        defaults = {**self.DEFAULTS, **(self.LIGHTWEIGHT if lightweight else {})}
        given = {"resolution": resolution, "ae_dims": ae_dims, "e_dims": e_dims, "d_dims": d_dims, "d_mask_dims": d_mask_dims,
                 "lightweight": lightweight, "face_type": face_type}
        self.build(resolve_config(self.architecture, "half", given, defaults), res_blocks=False)  # type: ignore[attr-defined]
