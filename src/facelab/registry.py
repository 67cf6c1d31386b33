"""One small registry class, used once per kind of swappable part.

Each kind (detectors, landmark models, training models) owns one
:class:`Registry`. Parts register themselves with a decorator when their module
is imported; the registry imports the built-in modules it is told about on
first use (no scanning of the file system).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from facelab.errors import SettingsError


class Registry:
    """Name -> class (or factory) for one kind of part.

    Args:
        kind: what the parts are, for error messages ("detector", "model", ...).
        builtin: modules that register the built-in parts when imported.
    """

    def __init__(self, kind: str, builtin: tuple[str, ...]) -> None:
        self.kind = kind
        self._builtin = builtin
        self._loaded = False
        self._parts: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Class decorator: make ``create(name, ...)`` build the class."""

        def wrap(cls: Any) -> Any:
            if name in self._parts and self._parts[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered by {self._parts[name]!r}")
            self._parts[name] = cls
            return cls

        return wrap

    def _load(self) -> None:
        if not self._loaded:
            for module in self._builtin:
                importlib.import_module(module)
            self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._parts)

    def get(self, name: str) -> Callable[..., Any]:
        """The registered class; :class:`SettingsError` listing the known names otherwise."""
        self._load()
        if name not in self._parts:
            raise SettingsError(f"unknown {self.kind} {name!r}", f"use one of: {', '.join(sorted(self._parts))}")
        return self._parts[name]

    def create(self, name: str, **options: Any) -> Any:
        return self.get(name)(**options)
