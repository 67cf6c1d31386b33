"""Routes of the UI's pages beyond the core (one module per page, each with ``register(app, state, templates)``)."""

from __future__ import annotations

MODULES: tuple[str, ...] = ("faces", "manual", "masks", "train", "segmenter", "merge")
"""The page modules under :mod:`facelab.ui.routes`, in navigation order."""


def register(app, state, templates) -> None:
    """Add every page module's routes (and its navigation entry) to ``app``."""
    import importlib

    for name in MODULES:
        importlib.import_module(f"facelab.ui.routes.{name}").register(app, state, templates)
    state.pages.sort(key=lambda p: p[1] == "jobs")  # Jobs last in the navigation bar
