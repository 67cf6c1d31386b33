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
modules are listed in :data:`_MODULES` (no scanning of the file system).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from facelab.errors import SettingsError

_REGISTRY: dict[str, Callable[..., Any]] = {}
_MODULES = ("facelab.models.quick",)
_loaded = False


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: make ``create_model(name, ...)`` build this class."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        cls.model_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, **config: Any):
    """Build a registered model from its architecture config (unknown keys are an error)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise SettingsError(f"unknown model {name!r}", f"known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**config)
