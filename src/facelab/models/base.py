"""What every face-swap model shares: its config and the two facts merge needs from it."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class SwapModel(nn.Module):
    """Base class: subclasses set ``self.config`` (a JSON-able dict with at least
    ``resolution`` and ``face_type``) and implement ``forward(src, dst)`` and ``swap(dst)``.

    ``TRAINING_DEFAULTS`` overrides, for a new model of this kind, the defaults of the training options saved
    with a model (:data:`facelab.stages.train.OPTION_DEFAULTS`); a resumed model keeps its saved values.

    ``TRAINING_QUESTIONS``: the training options DeepFaceLab asked at a new model of this kind, in its order
    (``facelab train`` in a terminal asks them after the architecture).

    ``EYES_MOUTH_WEIGHT``: the weight of the eyes-and-mouth term when ``eyes_mouth_priority`` is on
    (``None``: :data:`facelab.train.objective.EYES_MOUTH_WEIGHT`, unless a model was measured to want another).

    ``RECOMPUTES``: the model can recompute activations in the backward pass instead of keeping them (the
    trainer's optimizer mode 3 sets ``recompute_activations``), trading about 30 % speed for memory.

    ``SETTLED_ITERATIONS``: the iterations a new model of this kind was measured to need before its swap
    settles (the mouth follows dst's, every frame shows src); ``facelab train`` ending under it says so
    (``None``: not measured).

    :meth:`train_outputs` is what the trainer calls; models override it to give more from one pass."""

    config: dict
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {}
    TRAINING_QUESTIONS: ClassVar[tuple[str, ...]] = ()
    EYES_MOUTH_WEIGHT: ClassVar[float | None] = None
    RECOMPUTES: ClassVar[bool] = False
    SETTLED_ITERATIONS: ClassVar[int | None] = None
    recompute_activations: bool = False

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def face_type(self) -> str:
        return self.config["face_type"]

    @property
    def shares_code(self) -> bool:
        """Whether src and dst pass through one bottleneck whose ``(N, ae_dims)`` code :meth:`train_outputs`
        returns (and a ``code(faces)`` method gives): what true-face training (a discriminator pulling dst codes
        towards src codes) and expression matching need (``stages.train.check_shared_code`` refuses both
        where it is False)."""
        return False

    def train_outputs(self, src: torch.Tensor, dst: torch.Tensor, codes: bool = False, swap: bool = False) -> dict:
        """What the trainer needs from one step: ``scales``, a list of ``(src_face, src_mask, dst_face, dst_mask)``
        (full size first); with ``swap`` also ``swap``, the dst batch decoded as src ``(face, mask)`` (what the
        style losses compare with dst); with ``codes`` also ``src_code`` and ``dst_code`` (only where
        :attr:`shares_code`)."""
        if codes:
            raise ValueError(f"{type(self).__name__} has no shared code for true-face training")
        out: dict = {"scales": [self(src, dst)]}
        if swap:
            out["swap"] = self.swap(dst)
        return out


class SharedInterModel(SwapModel):
    """Encoder -> one ``inter`` (:class:`facelab.models.layers.DenseBottleneck`) -> a decoder per identity
    (``decoder_src``, ``decoder_dst``; each code map -> ``(face, mask)``): quick, H64, H128, DF.

    Subclasses build ``encoder``, ``inter``, ``decoder_src`` and ``decoder_dst``. Swapping = encode a dst
    face, decode it with the src decoder: the shared code carries pose, expression and light, the decoder
    paints the identity."""

    encoder: nn.Module
    inter: nn.Module
    decoder_src: nn.Module
    decoder_dst: nn.Module

    @property
    def shares_code(self) -> bool:
        return True

    def forward(self, src: torch.Tensor, dst: torch.Tensor):
        """Reconstruct each side with its own decoder: ``(src_face, src_mask, dst_face, dst_mask)``."""
        return self.train_outputs(src, dst)["scales"][0]

    def train_outputs(self, src: torch.Tensor, dst: torch.Tensor, codes: bool = False, swap: bool = False) -> dict:
        n = len(src)
        # one encoder pass over both halves: better use of the cores than two small passes
        c = self.inter.code(self.encoder(torch.cat([src, dst])))
        z = self.inter.expand(c)
        out: dict = {"scales": [(*self.decoder_src(z[:n]), *self.decoder_dst(z[n:]))]}
        if swap:
            out["swap"] = self.decoder_src(z[n:])
        if codes:
            out["src_code"], out["dst_code"] = c[:n], c[n:]
        return out

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """Faces ``(N, 3, R, R)`` -> their ``(N, ae_dims)`` bottleneck codes (what the decoders are fed, expanded)."""
        return self.inter.code(self.encoder(x))

    def swap(self, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dst faces ``(N, 3, R, R)`` -> src-looking faces ``(N, 3, R, R)`` and masks ``(N, 1, R, R)``."""
        return self.decoder_src(self.inter(self.encoder(dst)))

    def reconstruct(self, x: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.decoder_src if side == "src" else self.decoder_dst
        return decoder(self.inter(self.encoder(x)))
