"""First-run questions for `facelab train`, as DeepFaceLab asked them.

Only in an interactive terminal, only for a model folder that does not exist
yet, and only for options not given as flags. Enter takes the default, ``?``
prints the option's help. Without a terminal the defaults apply silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facelab.errors import SettingsError


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    default: Any
    help: str
    parse: Callable[[str], Any]


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("y", "yes", "1", "true", "on"):
        return True
    if t in ("n", "no", "0", "false", "off"):
        return False
    raise ValueError("answer y or n")


def parse_optional_int(text: str) -> int | None:
    t = text.strip().lower()
    return None if t in ("", "none", "0") else int(t)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return "none" if value is None else str(value)


def ask_all(questions: list[Question], read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> dict[str, Any]:
    """Ask each question until the answer parses; return ``{key: value}``."""
    answers: dict[str, Any] = {}
    for q in questions:
        while True:
            reply = read(f"{q.text} [{_show(q.default)}] (? for help): ").strip()
            if reply == "?":
                write(q.help)
                continue
            if reply == "":
                answers[q.key] = q.default
                break
            try:
                answers[q.key] = q.parse(reply)
                break
            except (ValueError, SettingsError) as e:
                write(f"  not a valid answer: {e}")
    return answers


def train_questions(model_params: set[str], model_defaults: dict[str, Any]) -> list[Question]:
    """Questions for a new model: trainer options, then the architecture options the model has."""
    qs = [
        Question("batch_size", "Batch size", 8, "Faces per side per iteration. Larger learns smoother but needs more memory.", int),
        Question("iterations", "Target iteration", None, "Stop at this total iteration (none: train until Ctrl+C or --minutes).", parse_optional_int),
        Question("flip", "Random flip", True, "Mirror faces at random: more poses from few faces (turn off for asymmetric faces).", parse_bool),
        Question("src_scale", "Src face scale modifier %", 0.0, "Scale src faces by -30..30 percent to match dst face sizes.", float),
        Question("sort_by_yaw", "Feed src faces sorted by yaw", False, "Pair each dst face with src faces of a similar head turn.", parse_bool),
        Question("preview_history", "Write preview history", False, "Keep every preview in model/<name>/previews, not only the latest.", parse_bool),
        Question("backups", "Hourly backups to keep", 3, "Copies of the model kept in model/<name>/backups (0 = none).", int),
    ]
    if "resolution" in model_params:
        qs.append(Question("resolution", "Resolution", model_defaults.get("resolution"), "Face size in pixels the model works at (multiple of 16). Fixed after the first run.", int))
    if "lightweight" in model_params:
        qs.append(Question("lightweight", "Lightweight autoencoder", False, "Smaller encoder and decoders: faster, less detail. Fixed after the first run.", parse_bool))
    if "pixel_loss" in model_params:
        qs.append(Question("pixel_loss", "Use pixel loss", False, "Pixel MSE instead of DSSIM: sharper colours, can be less stable. Fixed after the first run.", parse_bool))
    return qs
