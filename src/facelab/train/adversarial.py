"""Adversarial extras for SAE training: "GAN power" and "true face power" (DeepFaceLab's options).

::

    GAN power:        src_pred -> PatchDiscriminator -> (N, 1, h, w) logits  "patch of a real src face?"
    true face power:  dst_code -> CodeDiscriminator  -> (N, 1) logits        "code of a src face?"

Each discriminator is trained by :meth:`AdversarialTrainer.discriminator_step` to tell real from
fake (real src faces from the model's src reconstructions; src codes from dst codes), and the
model is pushed the other way by the extra loss :meth:`AdversarialTrainer.generator_terms`:

- the patch discriminator judges small patches, so it rewards sharp, plausible skin, hair and eye
  detail that the pixel/DSSIM losses average into blur, without caring about the layout of the face;
- the code discriminator (meant for the ``df`` archi, where src and dst share one ``inter``) makes
  dst codes indistinguishable from src codes, so the src decoder, fed a dst code at merge time, gets
  the kind of input it was trained on and draws more of the src identity.

One step of training with both, as the trainer is meant to be used::

    s_face, s_mask, d_face, d_mask = model(s_in, d_in)
    s_code, d_code = model.code(s_in), model.code(d_in)
    loss = face_losses + adv.generator_terms(s_face * s_m, s_code, d_code)   # masked, as DeepFaceLab did
    loss.backward(); optimizer.step()
    adv.discriminator_step(s_tgt * s_m, (s_face * s_m).detach(), s_code.detach(), d_code.detach())

Tensors are ``(N, 3, R, R)`` float in ``[0, 1]`` (faces) and ``(N, ae_dims)`` float (codes).
Nothing here is pickled: :meth:`AdversarialTrainer.state_dict` is tensors plus JSON-able values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from facelab.errors import SettingsError
from facelab.train.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from facelab.train.offload import make_adam

# 0.2, not the models' 0.1 (layers.SLOPE): the usual discriminator slope; a discriminator's
# gradient must pass back to the generator, so we keep more of the negative side.
D_SLOPE = 0.2
GAN_POWER_RANGE = (0.0, 10.0)  # DeepFaceLab's scale; 0.1 is the typical value
TRUE_FACE_POWER_RANGE = (0.0, 1.0)  # DeepFaceLab's scale; 0.01 is the typical value
FORMAT_VERSION = 1


class AdversarialSettingsError(SettingsError, ValueError):
    """A bad power, resolution or saved state. A :class:`SettingsError` so the CLI prints it cleanly,
    and a :class:`ValueError` for callers that treat it as a plain bad argument."""


def _check_power(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and lo <= value <= hi):
        raise AdversarialSettingsError(f"{name}={value!r} is out of range", f"use a number from {lo:g} to {hi:g}")
    return float(value)


# --- discriminators -------------------------------------------------------------


def patch_levels(resolution: int) -> int:
    """Stride-2 levels of the patch discriminator for faces of side ``resolution``.

    About ``log2(R / 16)``, so the logit map is near 16x16 and each logit sees a patch of
    ``1 + 3 * (2**levels - 1)`` ~= 3R/16 pixels (R/8..R/4; DeepFaceLab 2's default patch size was R/8):
    big enough to judge texture and small features, too small to judge the whole face, which
    the reconstruction losses already handle. Kept within 2..5 so tiny test sizes still have
    some depth and 512 px faces do not grow a huge network.
    """
    return max(2, min(5, round(math.log2(resolution / 16))))


class PatchDiscriminator(nn.Module):
    """Faces ``(N, 3, R, R)`` float in ``[0, 1]`` -> patch logits ``(N, 1, R / 2**levels, R / 2**levels)``.

    ``levels`` (:func:`patch_levels`) 4x4 stride-2 convolutions, channels ``width * 2**i`` capped at
    ``8 * width``, each followed by a leaky ReLU, then a 1x1 conv + leaky ReLU and a 1x1 conv to one
    logit per patch (the 1x1 layers add per-patch capacity without widening the patch).

    No normalisation layers. Batch norm would mix statistics across the separate real and fake
    batches and misbehave at batch sizes of 2-8. Spectral norm (the usual GAN stabiliser) was tried
    and left out: by bounding the network's slope it also bounds how strongly the discriminator can
    react to fine texture, the very thing GAN power is for. On 16 real 64 px faces against blurred
    copies, 40 steps at the default width and lr opened a logit gap of 0.12 with it, 0.26 without.
    The generator is protected instead by the small weight of the term (GAN power, typically 0.1)
    and the non-saturating loss (its gradient per logit is at most 1); DeepFaceLab's patch
    discriminator had no normalisation either.

    Args:
        resolution: face side R, a multiple of 16 from 16 to 512 (64..512 in use; 16..48 for tests).
        width: channels of the first level.
    """

    def __init__(self, resolution: int, width: int = 64) -> None:
        super().__init__()
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution % 16 or not 16 <= resolution <= 512:
            raise AdversarialSettingsError(f"patch discriminator: resolution {resolution!r} is not allowed",
                                           "use a multiple of 16 from 64 to 512")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise AdversarialSettingsError(f"patch discriminator: width {width!r} is not allowed", "use a positive integer")
        self.resolution, self.width = resolution, width
        self.levels = patch_levels(resolution)
        layers: list[nn.Module] = []
        c_prev = 3
        for i in range(self.levels):
            c = width * min(2 ** i, 8)
            layers += [nn.Conv2d(c_prev, c, 4, stride=2, padding=1), nn.LeakyReLU(D_SLOPE)]
            c_prev = c
        layers += [nn.Conv2d(c_prev, c_prev, 1), nn.LeakyReLU(D_SLOPE), nn.Conv2d(c_prev, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.grid = resolution // 2 ** self.levels  # each 4x4/2 conv with padding 1 floors H / 2
        self.receptive_field = 1 + 3 * (2 ** self.levels - 1)  # pixels per logit (the 1x1 layers add none)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        if x.ndim != 4 or x.shape[1:] != (3, r, r):
            raise ValueError(f"PatchDiscriminator: expected (N, 3, {r}, {r}) float faces in [0, 1], got {tuple(x.shape)}")
        return self.net(x * 2 - 1)  # centred input: the first conv needs no learned offset to see dark vs light


class CodeDiscriminator(nn.Module):
    """Codes ``(N, ae_dims)`` float -> logits ``(N, 1)``: "this code came from a src face".

    An MLP ``ae_dims -> width -> width -> 1`` with leaky ReLUs and, as :class:`PatchDiscriminator`,
    no normalisation: a code is one vector per face, so there is nothing to normalise over but the
    batch, and the encoder is protected by the small true-face weight (typically 0.01).
    """

    def __init__(self, ae_dims: int, width: int = 256) -> None:
        super().__init__()
        for name, v in (("ae_dims", ae_dims), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise AdversarialSettingsError(f"code discriminator: {name} {v!r} is not allowed", "use a positive integer")
        self.ae_dims, self.width = ae_dims, width
        self.net = nn.Sequential(nn.Linear(ae_dims, width), nn.LeakyReLU(D_SLOPE), nn.Linear(width, width),
                                 nn.LeakyReLU(D_SLOPE), nn.Linear(width, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.ae_dims:
            raise ValueError(f"CodeDiscriminator: expected (N, {self.ae_dims}) codes, got {tuple(z.shape)}")
        return self.net(z)


# --- losses ---------------------------------------------------------------------
#
# Non-saturating GAN loss as binary cross-entropy on logits. Chosen over
# - the original minimax generator loss log(1 - D(fake)), whose gradient vanishes exactly when the
#   discriminator confidently rejects the fakes (early on, i.e. when the generator needs it most);
# - least squares (LSGAN), which keeps pulling logits toward fixed targets even on the right side and,
#   with an unbounded critic, gives the generator gradients that grow with the critic's error.
# softplus(-x) = -log(sigmoid(x)) is the numerically stable form (no sigmoid then log).
# Every logit counts equally: patches are averaged over the map and the batch.


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(-log sigmoid(real)) + mean(-log sigmoid(-fake))``: a scalar, 2 log 2 ~= 1.386 at chance.

    Logits of any shape (patch maps ``(N, 1, h, w)`` or ``(N, 1)``); real and fake may differ in N.
    """
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(-log sigmoid(fake))``: low when the discriminator takes the fakes for real; a scalar."""
    return F.softplus(-fake_logits.float()).mean()


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Run ``module`` without recording gradients for its parameters (inputs still get theirs).

    Autograd decides at forward time which leaves need a gradient, so the generator's later
    ``loss.backward()`` neither computes nor accumulates discriminator gradients.
    """
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


# --- the trainer ----------------------------------------------------------------


class AdversarialTrainer:
    """The discriminators for GAN power and true face power, with their own Adam optimizers.

    Only the parts with power > 0 are built (``patch`` / ``code`` are ``None`` otherwise).

    Args:
        resolution: face side R of the model (multiple of 16, 16..512).
        ae_dims: code length of the model (``model.config["ae_dims"]``).
        gan_power: 0..10 (DeepFaceLab's scale, typical 0.1): weight of the patch-GAN term.
        true_face_power: 0..1 (DeepFaceLab's scale, typical 0.01): weight of the code term. Meant for
            the ``df`` archi (one shared inter); DeepFaceLab offered it for df only, and the caller
            should do the same.
        device: where the discriminators live (the model's device).
        patch_width, code_width: channel widths of the two discriminators.
        lr, betas: Adam settings of both discriminators. beta1 0.5 (not 0.9): the target a
            discriminator chases moves every step, and a long momentum overshoots it.

    Raises:
        AdversarialSettingsError (a ValueError): a power or size out of range.
    """

    def __init__(self, resolution: int, ae_dims: int, gan_power: float = 0.0, true_face_power: float = 0.0,
                 device: str | torch.device = "cpu", *, patch_width: int = 64, code_width: int = 256,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999)) -> None:
        self.gan_power = _check_power("gan_power", gan_power, *GAN_POWER_RANGE)
        self.true_face_power = _check_power("true_face_power", true_face_power, *TRUE_FACE_POWER_RANGE)
        self.resolution, self.ae_dims = resolution, ae_dims
        self.patch_width, self.code_width = patch_width, code_width
        self.device = torch.device(device)
        self.patch: PatchDiscriminator | None = None
        self.code: CodeDiscriminator | None = None
        self.patch_opt: torch.optim.Optimizer | None = None
        self.code_opt: torch.optim.Optimizer | None = None
        if self.gan_power > 0:
            self.patch = PatchDiscriminator(resolution, patch_width).to(self.device).train()
            self.patch_opt = make_adam(self.patch.parameters(), lr=lr, betas=tuple(betas))
        if self.true_face_power > 0:
            self.code = CodeDiscriminator(ae_dims, code_width).to(self.device).train()
            self.code_opt = make_adam(self.code.parameters(), lr=lr, betas=tuple(betas))

    @property
    def enabled(self) -> bool:
        """True when at least one of the two powers is above 0."""
        return self.patch is not None or self.code is not None

    def generator_terms(self, src_pred: torch.Tensor | None, src_code: torch.Tensor | None,
                        dst_code: torch.Tensor | None) -> torch.Tensor:
        """The extra loss to add to the model's loss before ``backward``: a scalar float32 tensor,
        ``gan_power * generator_loss(patch(src_pred)) + true_face_power * generator_loss(code(dst_code))``.

        Args:
            src_pred: the model's src reconstructions ``(N, 3, R, R)`` in ``[0, 1]``, with their graph
                (ideally masked the same way as the real faces given to :meth:`discriminator_step`).
                May be ``None`` when GAN power is off.
            src_code: ``(N, ae_dims)`` src codes; not part of the generator term (src codes are the
                "real" side), accepted so both sides are passed alike. May be ``None``.
            dst_code: ``(N, ae_dims)`` dst codes, with their graph. May be ``None`` when true face is off.

        The discriminators' own parameters get no gradient from this term. With both powers 0 the
        result is a zero tensor (adding it changes nothing).
        """
        del src_code
        ref = src_pred if src_pred is not None else dst_code
        total = torch.zeros((), device=ref.device if ref is not None else self.device)
        if self.patch is not None:
            if src_pred is None:
                raise ValueError("generator_terms: GAN power is on, so src_pred (N, 3, R, R) is required")
            with _frozen(self.patch):
                # float32 like every loss: under mixed precision the model's outputs are bfloat16/float16
                total = total + self.gan_power * generator_loss(self.patch(src_pred.float()))
        if self.code is not None:
            if dst_code is None:
                raise ValueError("generator_terms: true face power is on, so dst_code (N, ae_dims) is required")
            with _frozen(self.code):
                total = total + self.true_face_power * generator_loss(self.code(dst_code.float()))
        return total

    def discriminator_step(self, src_real: torch.Tensor | None, src_pred_detached: torch.Tensor | None,
                           src_code_detached: torch.Tensor | None,
                           dst_code_detached: torch.Tensor | None) -> dict[str, float]:
        """One Adam step of each built discriminator; returns their losses, e.g. ``{"d_patch": 1.21, "d_code": 1.37}``.

        Patch: real = target src faces ``(N, 3, R, R)`` in ``[0, 1]``, fake = the model's src predictions.
        Code: real = src codes, fake = dst codes, ``(N, ae_dims)``. Inputs are detached here as well, so
        passing tensors that still carry the model's graph does no harm. Inputs of a disabled part may
        be ``None``; with nothing enabled the result is ``{}``.
        """
        out: dict[str, float] = {}
        parts = ((self.patch, self.patch_opt, "d_patch", src_real, src_pred_detached, "src_real / src_pred"),
                 (self.code, self.code_opt, "d_code", src_code_detached, dst_code_detached, "src_code / dst_code"))
        for net, opt, key, real, fake, names in parts:
            if net is None:
                continue
            if real is None or fake is None:
                raise ValueError(f"discriminator_step: {names} are required while {key[2:]} discriminator is on")
            loss = discriminator_loss(net(real.detach()), net(fake.detach()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            out[key] = loss.item()
        return out

    # --- save / load: flat names, tensors + JSON-able values, no pickle

    def state_dict(self) -> dict[str, Any]:
        """A flat dict: tensors (CPU, contiguous) under ``patch.<param>``, ``patch_opt.<key>``,
        ``code.<param>``, ``code_opt.<key>``; JSON-able values under ``adversarial`` (sizes and powers)
        and ``patch_opt_meta`` / ``code_opt_meta`` (Adam's param groups and scalars).

        :func:`split_state` separates the two kinds, e.g. for ``safetensors.torch.save(tensors,
        metadata={"adversarial": json.dumps(rest)})``.
        """
        sd: dict[str, Any] = {"adversarial": {
            "format_version": FORMAT_VERSION, "resolution": self.resolution, "ae_dims": self.ae_dims,
            "patch_width": self.patch_width, "code_width": self.code_width,
            "gan_power": self.gan_power, "true_face_power": self.true_face_power}}
        for name, net, opt in (("patch", self.patch, self.patch_opt), ("code", self.code, self.code_opt)):
            if net is None:
                continue
            sd.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
            tensors, meta = optimizer_to_tensors(opt)
            sd.update({f"{name}_opt.{k}": v for k, v in tensors.items()})
            sd[f"{name}_opt_meta"] = meta
        return sd

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore what :meth:`state_dict` saved; returns the parts loaded (``"patch"``, ``"code"``).

        The powers are not restored (they may change on resume, as in DeepFaceLab). A part that is
        enabled now but absent from ``state`` keeps its fresh weights (the option was just turned on);
        a saved part that is disabled now is ignored.

        Raises:
            AdversarialSettingsError: the saved sizes differ from this trainer's, or a part's tensors
                do not fit its network.
        """
        saved = state.get("adversarial")
        if not isinstance(saved, dict):
            raise AdversarialSettingsError("adversarial state has no 'adversarial' entry",
                                           "pass the dict made by AdversarialTrainer.state_dict()")
        loaded = []
        for name, net, opt, sizes in (("patch", self.patch, self.patch_opt, ("resolution", "patch_width")),
                                      ("code", self.code, self.code_opt, ("ae_dims", "code_width"))):
            weights = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            if net is None or not weights:
                continue
            for key in sizes:
                if saved.get(key) != getattr(self, key):
                    raise AdversarialSettingsError(
                        f"saved {name} discriminator has {key}={saved.get(key)!r}, this trainer {getattr(self, key)!r}",
                        "keep the model's settings, or delete the saved discriminator state to start it afresh")
            try:
                net.load_state_dict(weights, strict=True)
                prefix = f"{name}_opt."
                tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                opt.load_state_dict(optimizer_from_tensors(tensors, state[f"{name}_opt_meta"]))
            except (RuntimeError, KeyError, ValueError) as e:
                raise AdversarialSettingsError(f"saved {name} discriminator state does not fit: {str(e).splitlines()[0]}",
                                               "delete the saved discriminator state to start it afresh") from e
            loaded.append(name)
        return loaded


def split_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split :meth:`AdversarialTrainer.state_dict` into ``(tensors, JSON-able rest)``."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in state.items() if k not in tensors}
