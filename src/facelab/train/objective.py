"""What one training step minimises: the face, mask and optional extra losses of both sides.

The base objective of every model (:func:`facelab.train.losses.face_loss` on
the hull-masked face plus the mask loss) is extended by the SAE-era options
(DeepFaceLab's names in brackets):

- ``eyes_mouth_priority``: an extra L1 term on the eyes, brows and mouth, the
  details a viewer judges a face by and a blurry average face loses first.
- ``remove_gray_border``: pixels that lay outside the frame the face was cut
  from (filled in when a face is cut at the frame edge) drop out of the loss,
  so the model does not learn to paint the fill.
- multiscale decoder: the 1/2 and 1/4 size outputs of a model built with
  ``multiscale_decoder`` are trained against downscaled targets (weights 1/2,
  1/4), which makes the coarse structure converge sooner.
- ``face_style_power`` / ``bg_style_power`` (0-100): the dst face decoded as
  src (the swap) is pulled towards dst's colour statistics inside the face
  (a style loss) and towards dst's pixels outside it, as DeepFaceLab's SAE did
  to fit the swap to the scene's lighting.
- ``gan_power`` (0-10) and ``true_face_power`` (0-1, df archi): adversarial
  terms from :class:`facelab.train.adversarial.AdversarialTrainer`: a patch
  discriminator for sharper src faces, and a code discriminator that makes dst
  codes look like src codes (the swap leans further to the src identity).

Inputs are ``(N, C, H, W) float32`` tensors in ``[0, 1]`` (masks ``C = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from facelab.train.losses import box_mean, dssim, face_loss, mask_loss, style_loss

EYES_MOUTH_WEIGHT = 30.0
"""Weight of the eyes-and-mouth L1 term (~ DeepFaceLab's 300 against its 10x DSSIM/MSE weights; the regions are
~5 % of the face). A model may set its own (:attr:`facelab.models.base.SwapModel.EYES_MOUTH_WEIGHT`)."""


@dataclass(frozen=True)
class LossOptions:
    mask_weight: float = 1.0
    pixel_loss: bool = False
    eyes_mouth_priority: bool = False
    eyes_mouth_weight: float = EYES_MOUTH_WEIGHT
    remove_gray_border: bool = False
    face_style_power: float = 0.0
    bg_style_power: float = 0.0


@dataclass
class SideBatch:
    """One side's batch on the device: warped inputs, targets, hull masks, and (optional) eyes+mouth and
    inside-the-frame masks."""

    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor
    eyes_mouth: torch.Tensor | None = None
    in_frame: torch.Tensor | None = None


def soft_mask(mask: torch.Tensor) -> torch.Tensor:
    """Blur and widen the hull mask a little so the loss also covers the face's edge."""
    k = max(3, mask.shape[-1] // 16) | 1
    return (box_mean(mask, k) * 2).clamp_(0, 1)


def _down(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else F.adaptive_avg_pool2d(x, size)


def _side_loss(face: torch.Tensor, mask: torch.Tensor, b: SideBatch, opts: LossOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(face loss, mask loss) of one side at the prediction's scale."""
    size = face.shape[-1]
    tgt, hull = _down(b.targets, size), _down(b.masks, size)
    weight = soft_mask(hull)
    if opts.remove_gray_border and b.in_frame is not None:
        weight = weight * (_down(b.in_frame, size) > 0.5)
    loss = face_loss(face, tgt, weight, opts.pixel_loss)
    if opts.eyes_mouth_priority and b.eyes_mouth is not None:
        em = _down(b.eyes_mouth, size)
        loss = loss + opts.eyes_mouth_weight * (face * em - tgt * em).abs().mean()
    return loss, mask_loss(mask, hull)


def wants(model, opts: LossOptions, adversarial=None) -> dict[str, bool]:
    """Which optional model outputs this objective needs."""
    return {"codes": adversarial is not None and adversarial.true_face_power > 0,
            "swap": opts.face_style_power > 0 or opts.bg_style_power > 0}


def model_outputs(model, src: torch.Tensor, dst: torch.Tensor, codes: bool = False, swap: bool = False) -> dict:
    """``model.train_outputs`` (every :class:`facelab.models.base.SwapModel` has it), else, for a bare module,
    its plain forward as one scale."""
    if hasattr(model, "train_outputs"):
        return model.train_outputs(src, dst, codes=codes, swap=swap)
    return {"scales": [model(src, dst)]}


def compute(out: dict, src: SideBatch, dst: SideBatch, opts: LossOptions, adversarial=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total loss to minimise, and the full-size (src, dst) face losses to report, from ``out``
    (:func:`model_outputs`)."""
    total = src.inputs.new_zeros(())
    src_report = dst_report = None
    for k, (s_face, s_mask, d_face, d_mask) in enumerate(out["scales"]):
        w = 0.5 ** k  # full size 1, then 1/2, 1/4
        s_face, s_mask, d_face, d_mask = (t.float() for t in (s_face, s_mask, d_face, d_mask))
        s_loss, s_mloss = _side_loss(s_face, s_mask, src, opts)
        d_loss, d_mloss = _side_loss(d_face, d_mask, dst, opts)
        total = total + w * (s_loss + d_loss + opts.mask_weight * (s_mloss + d_mloss))
        if k == 0:
            src_report, dst_report = s_loss, d_loss
    if "swap" in out:
        swap_face = out["swap"][0].float()
        m = soft_mask(dst.masks)
        if opts.face_style_power > 0:
            total = total + 10 * opts.face_style_power / 100 * style_loss(swap_face * m, dst.targets * m)
        if opts.bg_style_power > 0:
            bg_swap, bg_dst = swap_face * (1 - m), dst.targets * (1 - m)
            total = total + opts.bg_style_power / 100 * (dssim(bg_swap, bg_dst) + F.mse_loss(bg_swap, bg_dst))
    if adversarial is not None:
        s_face = out["scales"][0][0].float()
        m = soft_mask(src.masks)
        fake = s_face * m + src.targets * (1 - m)  # the discriminator judges the face, not the background
        total = total + adversarial.generator_terms(fake, out.get("src_code"), out.get("dst_code"))
    return total, src_report, dst_report
