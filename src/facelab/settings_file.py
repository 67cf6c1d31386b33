"""Settings from a TOML file (``--config FILE``): plain keys named like the step's options.

Flags on the command line win over the file; the file wins over the defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from facelab.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML settings file; dashes in keys are accepted as underscores (``batch-size``)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist", "check the path given to --config") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"settings file {path} is not valid TOML: {e}", "fix the line it names") from None
    return {k.replace("-", "_"): v for k, v in data.items()}


def check_keys(data: dict[str, Any], allowed: set[str], path: str | Path) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}", f"known settings: {', '.join(sorted(allowed))}")
