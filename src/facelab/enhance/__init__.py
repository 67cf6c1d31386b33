"""Face enhancers: super resolution for the predicted faces of a merge.

A face-swap model paints faces at its own, small resolution (64-256 px). An
enhancer upscales them by ``k`` (2 or 4) before they are pasted into the
frame. No pretrained enhancer can be shipped, so the user trains one on the
src face set (``facelab train-enhancer``): it learns what sharp src faces look
like, which is exactly what the swapped faces should look like.

Every enhancer registers itself under a name::

    @register_enhancer("srnet")
    class SRNet(nn.Module): ...

    net = create_enhancer("srnet", scale=2)

An enhancer class takes its architecture as keyword arguments and exposes them
back as ``net.config`` (a JSON-able dict with at least ``scale``), so a model
folder can rebuild it with ``create_enhancer(name, **config)``. It maps
``(N, 3, R, R)`` float32 BGR in ``[0, 1]`` to ``(N, 3, k*R, k*R)`` (about
``[0, 1]``; clamp for display). ``net.kind == "enhancer"`` is written into the
folder's ``config.json``, so a face-swap model and an enhancer are never
mistaken for each other.

The built-in modules are listed in :data:`ENHANCERS` (no scanning of the file
system). Loading a trained one: :func:`facelab.enhance.inference.load_enhancer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facelab.registry import Registry

ENHANCERS = Registry("enhancer", ("facelab.enhance.srnet",))
list_enhancers = ENHANCERS.names
KIND = "enhancer"


def register_enhancer(name: str) -> Callable[[type], type]:
    """Class decorator: make ``create_enhancer(name, ...)`` build this class (sets ``architecture`` and ``kind``)."""

    def wrap(cls: type) -> type:
        cls.architecture = name  # type: ignore[attr-defined]
        cls.kind = KIND  # type: ignore[attr-defined]
        return ENHANCERS.register(name)(cls)

    return wrap


def create_enhancer(name: str, **config: Any):
    """Build a registered enhancer from its architecture config (unknown keys are an error)."""
    return ENHANCERS.create(name, **config)


def load_enhancer(model_dir, device: str = "cpu"):
    """Load a trained enhancer folder for inference; see :func:`facelab.enhance.inference.load_enhancer`."""
    from facelab.enhance.inference import load_enhancer as _load

    return _load(model_dir, device)
