"""What every face-swap model shares: its config and the two facts merge needs from it."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class SwapModel(nn.Module):
    """Base class: subclasses set ``self.config`` (a JSON-able dict with at least
    ``resolution`` and ``face_type``) and implement ``forward(src, dst)`` and ``swap(dst)``.

    ``TRAINING_DEFAULTS`` overrides, for a new model of this kind, the defaults of the training options saved
    with a model (:data:`facelab.stages.train.OPTION_DEFAULTS`); a resumed model keeps its saved values."""

    config: dict
    TRAINING_DEFAULTS: ClassVar[dict[str, Any]] = {}

    @property
    def resolution(self) -> int:
        return self.config["resolution"]

    @property
    def face_type(self) -> str:
        return self.config["face_type"]
