"""First-run questions for `facelab train`, as DeepFaceLab asked them.

Only in an interactive terminal, only for a model folder that does not exist
yet, and only for options not given as flags. Enter takes the default, ``?``
prints the option's help. Without a terminal the defaults apply silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facelab.color import COLOR_TRANSFERS
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


def train_questions(model_params: set[str], model_defaults: dict[str, Any], gpu_count: int = 0) -> list[Question]:
    """Questions for a new model: the GPU (with more than one), trainer options, then the architecture options
    the model has. ``gpu_count``: CUDA devices present (``torch.cuda.device_count()``)."""
    qs = []
    if gpu_count > 1:  # DeepFaceLab's "Which GPU idx to choose?"
        qs.append(Question("gpu", f"Which GPU idx to choose (0..{gpu_count - 1}, none = the one with most memory)", None,
                           "Train on this CUDA GPU; the model's files get the prefix gpu<idx>_ so each GPU can train its own "
                           "variant in one folder (merge --gpu <idx> picks it).", parse_gpu(gpu_count)))
    qs += [
        Question("batch_size", "Batch size", 8, "Faces per side per iteration. Larger learns smoother but needs more memory.", int),
        Question("iterations", "Target iteration", None, "Stop at this total iteration (none: train until Ctrl+C or --minutes).", parse_optional_int),
        Question("flip", "Random flip", True, "Mirror faces at random: more poses from few faces (turn off for asymmetric faces).", parse_bool),
        Question("src_scale", "Src face scale modifier %", 0.0, "Scale src faces by -30..30 percent to match dst face sizes.", float),
        Question("sort_by_yaw", "Feed src faces sorted by yaw", False, "Pair each dst face with src faces of a similar head turn.", parse_bool),
        Question("preview_history", "Write preview history", False, "Keep every preview in model/<name>/previews, not only the latest.", parse_bool),
        Question("backups", "Hourly backups to keep", 3, "Copies of the model kept in model/<name>/backups (0 = none).", int),
    ]
    if "resolution" in model_params:
        lo, hi = RESOLUTION_RANGE
        if "archi" in model_params:
            from facelab.models.sae import USER_RANGES

            lo, hi = USER_RANGES["resolution"]
        default = model_defaults.get("resolution")
        if "archi" in model_params and default is None:
            from facelab.models.sae import DEFAULTS

            default = DEFAULTS["resolution"]
        qs.append(Question("resolution", f"Resolution ({lo}-{hi})", default,
                           f"Face size in pixels the model works at: a multiple of 16 from {lo} to {hi}. Fixed after the first run.",
                           int_in(lo, hi, 16)))
    if "lightweight" in model_params:
        qs.append(Question("lightweight", "Lightweight autoencoder", False, "Smaller encoder and decoders: faster, less detail. Fixed after the first run.", parse_bool))
    if "archi" in model_params:  # sae: DeepFaceLab's SAE/SAEHD questions, with their defaults
        from facelab.models.sae import DEFAULTS, USER_RANGES

        def ranged(key: str) -> Callable[[str], int]:
            return int_in(*USER_RANGES[key])

        qs += [
            Question("face_type", "Face type (half, mid, full, whole, head)", DEFAULTS["face_type"], "How much of the head the model sees: half = eyes to mouth, full = whole face, whole = with the forehead, head = with hair. Fixed after the first run.", str),
            Question("archi", "AE architecture (df, liae, vg; -u -d -t letters)", DEFAULTS["archi"], "df: one decoder per person, keeps src's likeness best. liae: shared decoder, blends dst's lighting better. vg: df with a deeper encoder. Letters: u = normalised code, d = double resolution for the cost of half, t = deeper. E.g. df-ud. Fixed after the first run.", str),
            Question("ae_dims", "AutoEncoder dimensions", DEFAULTS["ae_dims"], "Size of the code every face is squeezed through (32-1024): more holds more detail, costs memory. Fixed after the first run.", ranged("ae_dims")),
            Question("e_dims", "Encoder dimensions per channel", DEFAULTS["e_dims"], "Encoder width (21-85). Fixed after the first run.", ranged("e_dims")),
            Question("d_dims", "Decoder dimensions per channel", DEFAULTS["d_dims"], "Decoder width (10-85). Fixed after the first run.", ranged("d_dims")),
            Question("d_mask_dims", "Decoder mask dimensions per channel", DEFAULTS["d_mask_dims"], "Width of the mask branch (1-85). Fixed after the first run.", ranged("d_mask_dims")),
            Question("d_res_blocks", "Residual blocks per decoder level (y/n or 0-8)", DEFAULTS["d_res_blocks"], "Residual blocks after each decoder upscale: sharper detail for more memory and time (y = 1, SAEHD's decoder). Fixed after the first run.", parse_res_blocks),
            Question("learn_mask", "Learn mask", DEFAULTS["learn_mask"], "Predict a face mask beside the face, used by merge's learned mask modes. Fixed after the first run.", parse_bool),
            Question("lightweight_encoder", "Use lightweight encoder", DEFAULTS["lightweight_encoder"], "Fewer channels in the deeper encoder levels: faster and smaller, a little less detail. Fixed after the first run.", parse_bool),
            Question("multiscale_decoder", "Use multiscale decoder", DEFAULTS["multiscale_decoder"], "The decoder also predicts faces at 1/2 and 1/4 size, trained against downscaled targets: can learn faster and sharper. Fixed after the first run.", parse_bool),
            Question("remove_gray_border", "Remove gray border", DEFAULTS["remove_gray_border"], "Leave the fill of faces cut at the frame edge out of the loss, so the model does not learn the gray border. Changeable later.", parse_bool),
            Question("eyes_mouth_priority", "Eyes and mouth priority", False, "Extra loss weight on eyes, brows and mouth: sharper eyes and teeth.", parse_bool),
            Question("uniform_yaw", "Uniform yaw distribution of samples", False, "Train rare head turns (profiles) as often as frontal faces.", parse_bool),
            Question("color_transfer", f"Colour transfer for src samples (none, {', '.join(COLOR_TRANSFERS)})", "none", "Recolour src faces towards random dst faces so the swap fits dst's lighting.", str),
            Question("gan_power", "GAN power", 0.0, "0..10; 0 = off. A patch discriminator sharpens the src faces; turn it on (0.1) only once the faces are sharp.", float),
            Question("true_face_power", "True face power", 0.0, "0..1; 0 = off (df archi only). Makes the swap lean further to the src face; try 0.01.", float),
            Question("identity_power", "Identity power", 0.0, "0..10; 0 = off. Pulls the swap's face descriptor (dlib's) towards src's: a swap that looks more like src. About 30 % fewer iterations per minute on a CPU; games the descriptor early in training (docs/training.md).", float),
            Question("face_style_power", "Face style power", DEFAULTS["face_style_power"], "0-100: pull the swapped face towards dst's colours and light.", float),
            Question("bg_style_power", "Background style power", DEFAULTS["bg_style_power"], "0-100: pull the area around the swapped face towards dst's background.", float),
            Question("optimizer_mode", "Optimizer mode (1, 2, 3)", DEFAULTS["optimizer_mode"], "1: all on the GPU. 2: optimizer state in system memory (a network about twice as large fits). 3: also recompute activations (about 30 % slower, three times as large).", int),
        ]
    if "pixel_loss" in model_params:
        qs.append(Question("pixel_loss", "Use pixel loss", False, "Pixel MSE instead of DSSIM: sharper colours, can be less stable.", parse_bool))
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
