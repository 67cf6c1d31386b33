"""Model registry: every architecture registers itself under a name.

    @register_model("quick")
    class Quick(nn.Module): ...

    model = create_model("quick", resolution=64)

A model class takes its architecture as keyword arguments and exposes them
back as ``model.config`` (a plain JSON-able dict), so a checkpoint can rebuild
exactly the same network with ``create_model(name, **config)``. Every model
takes and returns ``(N, 3, H, W) float32`` BGR tensors in ``[0, 1]`` and has:

- ``forward(src, dst) -> (src_face, src_mask, dst_face, dst_mask)`` for training
  (each side reconstructed by its own decoder; masks are ``(N, 1, H, W)``);
- ``swap(dst) -> (face, mask)``: dst encoded, decoded as src.

Registration happens on import of the module that defines the model; the
built-in modules are listed in :data:`MODELS` (no scanning of the file system).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facelab.registry import Registry

MODELS = Registry("model", ("facelab.models.quick", "facelab.models.h64", "facelab.models.h128", "facelab.models.df",
                            "facelab.models.liaef128", "facelab.models.sae"))
list_models = MODELS.names


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: make ``create_model(name, ...)`` build this class (and set ``cls.architecture``)."""

    def wrap(cls: type) -> type:
        cls.architecture = name  # type: ignore[attr-defined]
        return MODELS.register(name)(cls)

    return wrap


def create_model(name: str, **config: Any):
    """Build a registered model from its architecture config (unknown keys are an error)."""
    return MODELS.create(name, **config)
