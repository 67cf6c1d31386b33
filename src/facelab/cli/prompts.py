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


def int_in(lo: int, hi: int, multiple: int = 1) -> Callable[[str], int]:
    """A parser of whole numbers ``lo..hi`` (and multiples of ``multiple``); others raise ``ValueError`` saying so."""
    def parse(text: str) -> int:
        v = int(text)
        if not lo <= v <= hi or v % multiple:
            raise ValueError(f"use {lo}..{hi}" + (f", a multiple of {multiple}" if multiple > 1 else ""))
        return v
    return parse


def parse_gpu(count: int) -> Callable[[str], int | None]:
    """``"none"`` -> None (the best GPU, plain file names); ``"0"``..``"count-1"`` -> that index."""
    def parse(text: str) -> int | None:
        t = text.strip().lower()
        return None if t == "none" else int_in(0, count - 1)(t)
    return parse


def parse_res_blocks(text: str) -> int:
    """Residual blocks per decoder level: y (1, DeepFaceLab's yes), n (0) or a count 0..8."""
    t = text.strip().lower()
    if t in ("y", "yes", "n", "no"):
        return int(parse_bool(t))
    return int_in(0, 8)(t)


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


RESOLUTION_RANGE = (16, 512)
"""What every model's network accepts (multiples of 16); ``sae`` offers DeepFaceLab's 64..512 (``USER_RANGES``)."""


def _ask(name: str, default: Any, parse: Callable[[str], Any] | None = None, text: str | None = None,
         explain: str | None = None) -> Question:
    """The question of option ``name`` as declared in :mod:`facelab.train.options` (text, '?' help, parser)."""
    from facelab.options import by_name
    from facelab.train import options

    o = by_name(options.ALL)[name]
    return Question(name, text or o.question or o.name, default, explain or o.explain or o.help, parse or o.parse)


def train_questions(model_params: set[str], model_defaults: dict[str, Any], gpu_count: int = 0,
                    training: tuple[str, ...] = ()) -> list[Question]:
    """Questions for a new model: the GPU (with more than one), trainer options, then the architecture options
    the model has, then the training options DeepFaceLab asked for that model (``training``: the model class's
    ``TRAINING_QUESTIONS``), in DeepFaceLab's order. ``gpu_count``: CUDA devices present
    (``torch.cuda.device_count()``)."""
    from facelab.train.options import SAVED_DEFAULTS

    qs = []
    if gpu_count > 1:  # DeepFaceLab's "Which GPU idx to choose?"
        qs.append(Question("gpu", f"Which GPU idx to choose (0..{gpu_count - 1}, none = the one with most memory)", None,
                           "Train on this CUDA GPU; the model's files get the prefix gpu<idx>_ so each GPU can train its own "
                           "variant in one folder (merge --gpu <idx> picks it).", parse_gpu(gpu_count)))
    qs += [_ask("batch_size", 8), _ask("iterations", None, parse_optional_int)]
    qs += [_ask(k, SAVED_DEFAULTS[k]) for k in ("flip", "src_scale", "sort_by_yaw", "preview_history", "backups")]
    sae = "archi" in model_params
    if sae:
        from facelab.models.sae import DEFAULTS, USER_RANGES
    if "resolution" in model_params:
        lo, hi = USER_RANGES["resolution"] if sae else RESOLUTION_RANGE
        default = model_defaults.get("resolution")
        if sae and default is None:
            default = DEFAULTS["resolution"]
        qs.append(_ask("resolution", default, int_in(lo, hi, 16), text=f"Resolution ({lo}-{hi})",
                       explain=f"Face size in pixels the model works at: a multiple of 16 from {lo} to {hi}. Fixed after the first run."))
    if "lightweight" in model_params:
        qs.append(_ask("lightweight", False))
    if "double_res" in model_params:  # quick
        qs.append(_ask("double_res", False))
    if sae:  # DeepFaceLab's SAE/SAEHD questions, with their defaults
        qs += [_ask(k, DEFAULTS[k]) for k in ("face_type", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims")]
        qs.append(_ask("d_res_blocks", DEFAULTS["d_res_blocks"], parse_res_blocks))
        qs += [_ask(k, DEFAULTS[k]) for k in ("learn_mask", "lightweight_encoder", "multiscale_decoder")]
    qs += [_ask(k, SAVED_DEFAULTS[k]) for k in training]
    return qs


def ask_gpu(choices: list[int], read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> int | None:
    """DeepFaceLab's "Which GPU idx to choose?" for a model folder holding several models trained with
    ``--gpu N`` (``gpuN_*`` files): one of ``choices``, or None when there is nothing to choose."""
    if not choices:
        return None

    def parse(text: str) -> int:
        v = int(text)
        if v not in choices:
            raise ValueError(f"use one of {', '.join(map(str, choices))}")
        return v

    q = Question("gpu", f"Which GPU idx to choose ({', '.join(map(str, choices))})", choices[0],
                 "The model folder holds one model per GPU it was trained on (facelab train --gpu N): use this one.", parse)
    return ask_all([q], read, write)["gpu"]
