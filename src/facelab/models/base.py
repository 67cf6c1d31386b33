"""What every face-swap model shares: its config and the two facts merge needs from it."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class SwapModel(nn.Module):
    """Base class: subclasses set ``self.config`` (a JSON-able dict with at least
    ``resolution`` and ``face_type``) and implement ``forward(src, dst)`` and ``swap(dst)``.

    ``TRAINING_DEFAULTS`` overrides, for a new model of this kind, the defaults of the training options saved
    with a model (:data:`facelab.stages.train.OPTION_DEFAULTS`); a resumed model keeps its saved values.

    ``TRAINING_QUESTIONS``: the training options DeepFaceLab asked at a new model of this kind, in its order
    (``facelab train`` in a terminal asks them after the architecture).

    ``RECOMPUTES``: the model can recompute activations in the backward pass instead of keeping them (the
    trainer's optimizer mode 3 sets ``recompute_activations``), trading about 30 % speed for memory."""

    config: dict
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {}
    TRAINING_QUESTIONS: ClassVar[tuple[str, ...]] = ()
    RECOMPUTES: ClassVar[bool] = False
    recompute_activations: bool = False

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def face_type(self) -> str:
        return self.config["face_type"]
