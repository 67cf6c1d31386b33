"""``sae``: DeepFaceLab's SAE, the flexible model (with DeepFaceLab 2's SAEHD archi letters).

::

    df:   face -> encoder -> inter ─┬ decoder_src -> face + mask
                                    └ decoder_dst -> face + mask
    liae: face -> encoder ┬ inter_ab ────────────┐
                          └ inter_b (dst only) ──┴ cat -> decoder -> face + mask
          (the wiring of ``liaef128``: see :mod:`facelab.models.liaef128`)
    vg:   df with a deeper, VGG-style encoder (two convolutions per level)

``archi`` may end in a dash and DeepFaceLab-2 letters, e.g. ``"df-ud"``:

- ``u``: the bottleneck code (the ``ae_dims`` vector) is pixel-normalised to
  unit RMS per sample: keeps the code's scale fixed, which steadies training
  and lets src and dst codes overlap better;
- ``d``: the encoder reads the full-size face, but the bottleneck map and the
  decoder body work at half the resolution and the last convolution predicts
  4x the channels, turned into a 2x larger image by depth-to-space (pixel
  shuffle): about the decoder cost of a half-size model for a full-size output;
- ``t``: one more down/up level (deeper, smaller bottleneck map).

Options (keyword arguments; every one is stored in :attr:`SAE.config`, so
``create_model("sae", **model.config)`` rebuilds the same network):

==================== ==================================================================
resolution           output size, multiple of 16. DeepFaceLab's range is 64-512
                     (:data:`USER_RANGES`); 16..512 is accepted so tests can run tiny.
                     With ``d`` and/or ``t`` the size must also split evenly:
                     ``resolution / 2**(4 + d + t) >= 1``.
face_type            half, mid, full (default), whole, head: how faces are cut.
learn_mask           default True. False: no mask branch; masks returned are ones.
archi                df (default), liae, vg, with optional ``-[u][d][t]``.
ae_dims              bottleneck length (DeepFaceLab 32-1024, default 256).
e_dims               encoder channels per level unit (DeepFaceLab 21-85, default 64).
d_dims               decoder channels per level unit (DeepFaceLab 10-85, default 64).
d_mask_dims          mask-branch channels (default 22).
d_res_blocks         bool or count: residual blocks after each decoder level (default 0).
lightweight_encoder  fewer channels in the deeper encoder levels.
multiscale_decoder   the decoder also predicts faces and masks at 1/2 and 1/4 of
                     the resolution (see :meth:`SAE.forward_scales`).
==================== ==================================================================

DeepFaceLab's SAE also asked for options that steer training, not the network
(pixel loss, remove gray border, face and background style power, optimizer
mode): in facelab they are the trainer's options (:mod:`facelab.train.options`),
for any model. Optimizer mode 3 sets ``recompute_activations``: the encoder
stages, bottleneck and decoder levels then recompute their activations in the
backward pass (``torch.utils.checkpoint``).

Lower bounds of the dims are wider than DeepFaceLab's (:data:`DIM_RANGES`) so
tiny test networks can be built; a front end that prompts the user should
offer :data:`USER_RANGES`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from facelab.errors import SettingsError
from facelab.models import register_model
from facelab.models.base import SwapModel
from facelab.models.layers import (
    SLOPE,
    DenseBottleneck,
    Downscale,
    ResidualBlock,
    Upscale,
)

FACE_TYPES = ("half", "mid", "full", "whole", "head")
ARCHIS = ("df", "liae", "vg")
ARCHI_LETTERS = "udt"
# accepted by the network (wide, so tests can build tiny models)
DIM_RANGES = {"ae_dims": (4, 1024), "e_dims": (2, 256), "d_dims": (2, 256), "d_mask_dims": (1, 256)}
# what DeepFaceLab offers the user
USER_RANGES = {"resolution": (64, 512), "ae_dims": (32, 1024), "e_dims": (21, 85), "d_dims": (10, 85), "d_mask_dims": (1, 85)}
DEFAULTS: dict[str, Any] = {
    "resolution": 128, "face_type": "full", "learn_mask": True, "archi": "df", "ae_dims": 256, "e_dims": 64,
    "d_dims": 64, "d_mask_dims": 22, "d_res_blocks": 0, "lightweight_encoder": False, "multiscale_decoder": False,
}


def parse_archi(archi: str) -> tuple[str, str]:
    """``"liae-ud"`` -> ``("liae", "ud")``; a bad base or letter is a :class:`SettingsError`."""
    if not isinstance(archi, str):
        raise SettingsError(f"sae: archi {archi!r} is not allowed", "use df, liae or vg, optionally with -u, -d, -t letters")
    base, _, letters = archi.partition("-")
    bad = base not in ARCHIS or ("-" in archi and not letters) or any(c not in ARCHI_LETTERS for c in letters) \
        or len(set(letters)) != len(letters)
    if bad:
        raise SettingsError(f"sae: archi {archi!r} is not allowed",
                            "use df, liae or vg, optionally followed by a dash and letters from u, d, t (e.g. df-ud)")
    return base, "".join(c for c in ARCHI_LETTERS if c in letters)


def _int_in(cfg: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not lo <= v <= hi:
        raise SettingsError(f"sae: {key}={v!r} is out of range", f"use an integer {lo}..{hi}")
    return int(v)


def resolve_sae_config(given: dict[str, Any]) -> dict[str, Any]:
    """Fill ``None`` entries from :data:`DEFAULTS`, check every option, return a JSON-able config."""
    cfg = {k: (DEFAULTS[k] if given.get(k) is None else given[k]) for k in DEFAULTS}
    if cfg["face_type"] not in FACE_TYPES:
        raise SettingsError(f"sae: face_type {cfg['face_type']!r} is not allowed", f"use one of {', '.join(FACE_TYPES)}")
    base, letters = parse_archi(cfg["archi"])
    cfg["archi"] = base + ("-" + letters if letters else "")
    r = cfg["resolution"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or int(r) != r or r % 16 or not 16 <= r <= 512:
        raise SettingsError(f"sae: resolution {r!r} is not allowed", "use a multiple of 16 from 64 to 512")
    cfg["resolution"] = r = int(r)
    levels = 4 + ("d" in letters) + ("t" in letters)
    if r % 2 ** levels:
        raise SettingsError(f"sae: resolution {r} is not allowed with archi {cfg['archi']!r}",
                            f"use a multiple of {2 ** levels} (each of the d and t letters halves the smallest map)")
    for key, (lo, hi) in DIM_RANGES.items():
        cfg[key] = _int_in(cfg, key, lo, hi)
    rb = cfg["d_res_blocks"]
    cfg["d_res_blocks"] = int(rb) if isinstance(rb, bool) else _int_in(cfg, "d_res_blocks", 0, 8)
    for key in ("learn_mask", "lightweight_encoder", "multiscale_decoder"):
        if not isinstance(cfg[key], (bool, int)) or cfg[key] not in (0, 1):
            raise SettingsError(f"sae: {key}={cfg[key]!r} is not allowed", "use true or false")
        cfg[key] = bool(cfg[key])
    return cfg


class SAEEncoder(nn.Module):
    """``(N, 3, B, B) -> (N, C, B / 2**levels, ...)``; ``vgg`` adds a 3x3 conv before each downscale."""

    def __init__(self, e_dims: int, levels: int, vgg: bool, lightweight: bool) -> None:
        super().__init__()
        mults = [min(2 ** i, 4 if lightweight else 8) for i in range(levels)]
        stages: list[nn.Module] = []
        c_prev = 3
        for m in mults:
            c = e_dims * m
            if vgg:
                stages.append(nn.Sequential(nn.Conv2d(c_prev, c, 3, padding=1), nn.LeakyReLU(SLOPE), Downscale(c, c)))
            else:
                stages.append(Downscale(c_prev, c))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        self.out_ch = c_prev


class Inter(DenseBottleneck):
    """The dense bottleneck, optionally pixel-normalising its ``ae_dims`` code (archi letter ``u``)."""

    def __init__(self, in_features: int, dims: int, side: int, out_ch: int, norm: bool) -> None:
        super().__init__(in_features, dims, side, out_ch)
        self.norm = norm

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features -> ``(N, ae_dims)`` code (unit RMS per sample with ``u``)."""
        z = self.fc1(torch.flatten(x, 1))
        return z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8) if self.norm else z


class Branch(nn.Module):
    """A chain of upscales (+ residual blocks) ending in a ``out_ch`` prediction, pre-sigmoid.

    With ``shuffle`` (archi ``d``) the last conv predicts ``4 * out_ch`` channels and a pixel
    shuffle doubles the size. ``heads`` maps a level index to a 3x3 conv predicting ``out_ch``
    at that level's size (the multiscale decoder).
    """

    def __init__(self, c_in: int, width: int, ups: int, res_blocks: int, out_ch: int, shuffle: bool,
                 head_levels: tuple[int, ...]) -> None:
        super().__init__()
        levels: list[nn.Module] = []
        c_prev = c_in
        # SAEHD's widths: 8, 4, 2 x d_dims over the last three levels (capped at 8x for the 't' level)
        self.widths = [width * min(2 ** (ups - i), 8) for i in range(ups)]
        for c in self.widths:
            levels.append(nn.Sequential(Upscale(c_prev, c), *[ResidualBlock(c) for _ in range(res_blocks)]))
            c_prev = c
        self.levels = nn.ModuleList(levels)
        self.out = nn.Sequential(nn.Conv2d(c_prev, out_ch * (4 if shuffle else 1), 5, padding=2),
                                 *([nn.PixelShuffle(2)] if shuffle else []))
        self.head_levels = head_levels
        self.heads = nn.ModuleList(nn.Conv2d(self.widths[i], out_ch, 3, padding=1) for i in head_levels)


class SAEDecoder(nn.Module):
    """Code map -> face and mask logits: lists ``[full, 1/2, 1/4]`` (only ``[full]`` without multiscale)."""

    def __init__(self, c_in: int, d_dims: int, d_mask_dims: int, ups: int, res_blocks: int, shuffle: bool,
                 learn_mask: bool, multiscale: bool) -> None:
        super().__init__()
        # level sizes, last = body size; output is 2x body with shuffle. Heads at output/2 and output/4.
        last = ups - 1
        heads = ((last, last - 1) if shuffle else (last - 1, last - 2)) if multiscale else ()
        self.face = Branch(c_in, d_dims, ups, res_blocks, 3, shuffle, heads)
        self.mask = Branch(c_in, d_mask_dims, ups, 0, 1, shuffle, heads) if learn_mask else None


@register_model("sae")
class SAE(SwapModel):
    RECOMPUTES = True
    TRAINING_QUESTIONS = ("remove_gray_border", "eyes_mouth_priority", "uniform_yaw", "color_transfer", "gan_power",
                          "true_face_power", "identity_power", "face_style_power", "bg_style_power", "optimizer_mode",
                          "pixel_loss")
    resolve_config = staticmethod(resolve_sae_config)  # normalises a config (df-du -> df-ud) and checks it

    def __init__(self, resolution: int | None = None, face_type: str | None = None, learn_mask: bool | None = None,
                 archi: str | None = None, ae_dims: int | None = None, e_dims: int | None = None,
                 d_dims: int | None = None, d_mask_dims: int | None = None, d_res_blocks: bool | int | None = None,
                 lightweight_encoder: bool | None = None, multiscale_decoder: bool | None = None) -> None:
        super().__init__()
        given = dict(locals())
        self.config = c = resolve_sae_config(given)
        base, letters = parse_archi(c["archi"])
        self.base, self.letters = base, letters
        self.body_res = c["resolution"] // (2 if "d" in letters else 1)
        down = 4 + ("t" in letters)
        # the encoder sees the full-size face; with "d" the inter makes a half-size map for the decoder body
        enc_side, side = c["resolution"] // 2 ** down, self.body_res // 2 ** down
        self.encoder = SAEEncoder(c["e_dims"], down, base == "vg", c["lightweight_encoder"])
        flat = self.encoder.out_ch * enc_side * enc_side
        inter_ch = c["ae_dims"]

        def inter() -> Inter:
            return Inter(flat, c["ae_dims"], side, inter_ch, "u" in letters)

        def decoder(c_in: int) -> SAEDecoder:
            return SAEDecoder(c_in, c["d_dims"], c["d_mask_dims"], down - 1, c["d_res_blocks"], "d" in letters,
                              c["learn_mask"], c["multiscale_decoder"])

        if base == "liae":
            self.inter_ab, self.inter_b = inter(), inter()
            self.decoder = decoder(2 * inter_ch)
        else:
            self.inter = inter()
            self.decoder_src, self.decoder_dst = decoder(inter_ch), decoder(inter_ch)

    # ---- running pieces (checkpointed while training in optimizer mode 3)

    def _run(self, fn, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.recompute_activations and torch.is_grad_enabled():
            return checkpoint(fn, x, use_reentrant=False)
        return fn(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.encoder.stages:
            x = self._run(stage, x)
        return x

    def _branch(self, branch: Branch | None, z: torch.Tensor) -> list[torch.Tensor]:
        if branch is None:  # no mask branch: masks are ones at every scale
            r = self.config["resolution"]
            n = 3 if self.config["multiscale_decoder"] else 1
            return [z.new_ones(len(z), 1, r >> i, r >> i) for i in range(n)]
        outs, extra = [], {}
        for i, level in enumerate(branch.levels):
            z = self._run(level, z)
            if i in branch.head_levels:
                extra[i] = branch.heads[branch.head_levels.index(i)](z)
        outs.append(torch.sigmoid(self._run(branch.out, z)))
        outs += [torch.sigmoid(extra[i]) for i in branch.head_levels]
        return outs

    def decode(self, decoder: SAEDecoder, z: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Code map -> ``[(face, mask)]`` per scale, full size first."""
        return list(zip(self._branch(decoder.face, z), self._branch(decoder.mask, z)))

    def code(self, x: torch.Tensor, inter: str = "inter") -> torch.Tensor:
        """Faces -> the ``(N, ae_dims)`` bottleneck code of one inter (``inter``, ``inter_ab`` or ``inter_b``)."""
        return getattr(self, inter).code(self.encode(x))

    # ---- the model interface

    @property
    def shares_code(self) -> bool:
        """df archis: src and dst share ``inter``, whose codes true-face training compares."""
        return self.base == "df"

    def forward_scales(self, src: torch.Tensor, dst: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """Like :meth:`forward`, one ``(src_face, src_mask, dst_face, dst_mask)`` per scale:
        full size, then (with ``multiscale_decoder``) 1/2 and 1/4 size, for extra trainer losses."""
        return self.train_outputs(src, dst)["scales"]

    def train_outputs(self, src: torch.Tensor, dst: torch.Tensor, codes: bool = False, swap: bool = False) -> dict:
        """Everything the trainer may need from one encoder pass over both batches.

        Returns a dict with ``scales`` (as :meth:`forward_scales`), with ``codes`` also ``src_code`` and
        ``dst_code`` (the ``(N, ae_dims)`` codes of ``inter``, or of ``inter_ab`` for liae: what true-face
        training compares), and with ``swap`` also ``swap``: the dst batch decoded as src, ``(face, mask)``
        at full size (what the style losses compare with dst).
        """
        n = len(src)
        e = self.encode(torch.cat([src, dst]))  # one encoder pass over both halves
        out: dict = {}
        if self.base == "liae":
            c = self._run(self.inter_ab.code, e)
            ab = self._run(self.inter_ab.expand, c)
            # src never goes through inter_b: that keeps inter_b dst-specific (as liaef128)
            code = torch.cat([torch.cat([ab[:n], ab[:n]], 1), torch.cat([self._run(self.inter_b, e[n:]), ab[n:]], 1)])
            scales = self.decode(self.decoder, code)
            out["scales"] = [(f[:n], m[:n], f[n:], m[n:]) for f, m in scales]
            if swap:
                out["swap"] = self.decode(self.decoder, torch.cat([ab[n:], ab[n:]], 1))[0]
        else:
            c = self._run(self.inter.code, e)
            z = self._run(self.inter.expand, c)
            s, d = self.decode(self.decoder_src, z[:n]), self.decode(self.decoder_dst, z[n:])
            out["scales"] = [(*a, *b) for a, b in zip(s, d)]
            if swap:
                out["swap"] = self.decode(self.decoder_src, z[n:])[0]
        if codes:
            out["src_code"], out["dst_code"] = c[:n], c[n:]
        return out

    def forward(self, src: torch.Tensor, dst: torch.Tensor):
        """Reconstruct each side: ``(src_face, src_mask, dst_face, dst_mask)`` at full size."""
        return self.forward_scales(src, dst)[0]

    def swap(self, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dst faces ``(N, 3, R, R)`` -> src-looking faces ``(N, 3, R, R)`` and masks ``(N, 1, R, R)``."""
        e = self.encode(dst)
        if self.base == "liae":
            ab = self.inter_ab(e)
            return self.decode(self.decoder, torch.cat([ab, ab], 1))[0]
        return self.decode(self.decoder_src, self.inter(e))[0]

    def reconstruct(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encode(x)
        if self.base == "liae":
            ab = self.inter_ab(e)
            return self.decode(self.decoder, torch.cat([self.inter_b(e) if side == "dst" else ab, ab], 1))[0]
        return self.decode(self.decoder_src if side == "src" else self.decoder_dst, self.inter(e))[0]
