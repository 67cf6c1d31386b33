"""Every option of `facelab train-enhancer`, declared once (see :mod:`facelab.options`).

They are the fields of :class:`facelab.stages.enhance.EnhanceSettings` (which
re-exports :data:`OPTIONS`); the command's flags, the checks and the table in
``docs/enhancer.md`` come from here. This module imports no PyTorch, so the
CLI can build the command without loading it.

``None`` in a field means "not given": a run then takes the value saved with
the enhancer (``saved``: ``input_size``, ``batch_size``; ``fixed``: the
architecture, ``scale``, ``channels``, ``blocks``), else :data:`DEFAULTS`.
"""

from __future__ import annotations

from facelab.options import Option

DEFAULTS = {"scale": 2, "input_size": 128, "batch_size": 8, "channels": 48, "blocks": 6}
"""The value of a None-means-saved option for a new enhancer."""

_MINUTES = "use a number of minutes greater than 0"

OPTIONS: tuple[Option, ...] = (
    # a folder name: checked by EnhanceSettings (no path, no leading dot), which Option.check cannot say
    Option("name", str, "enhancer",
           "Enhancer folder name under model/ (default: enhancer); give it to `merge --enhancer`.",
           hint="use letters, digits, '-' or '_'", doc="Folder under `model/`; the name you give to `merge --enhancer`."),
    Option("scale", int, None, "Upscaling factor, 2 or 4 (first run only; default 2).", choices=(2, 4), fixed=True,
           hint="use 2 or 4", shown_default=str(DEFAULTS["scale"]), doc="Upscaling factor."),
    Option("input_size", int, None, "Face size it enhances: the swap model's resolution, 16..512 (saved; default 128).",
           flags=("--input-size",), lo=16, hi=512, multiple_of=8, saved=True, shown_default=str(DEFAULTS["input_size"]),
           doc="Face side it enhances, 16..512, a multiple of 8: the swap model's resolution."),
    Option("minutes", float, None, "Train for this many minutes (this run).", lo=0, lo_open=True, hint=_MINUTES, metavar="M",
           doc="Wall-clock budget of this run."),
    Option("iterations", int, None, "Train until this total iteration.", flags=("--iterations", "--target-iteration"),
           lo=1, hi=100_000_000, hint="use a whole number from 1 to 100000000, or leave it unset",
           doc="Total iteration to train up to. With neither budget: until Ctrl+C."),
    Option("batch_size", int, None, "Faces per iteration, 1..512 (saved; default 8).", flags=("--batch-size",), lo=1, hi=512,
           saved=True, shown_default=str(DEFAULTS["batch_size"]), metavar="B", doc="Faces per iteration, 1..512."),
    # checked by EnhanceSettings with facelab.device.resolve_device: which devices exist is known only at run time
    Option("device", str, "auto", "auto (default), cpu, cuda, cuda:N or mps.", metavar="D",
           doc="`auto`, `cpu`, `cuda`, `cuda:N`, `mps`."),
    Option("seed", int, 0, "Random seed for the initial weights and the batches (default 0).", lo=0, hi=2**63 - 1,
           hint="use a whole number >= 0",
           doc="Initial weights and batches (a resumed run sees the same batches an uninterrupted one would)."),
    Option("save_every_minutes", float, 15.0, "Minutes between saves (default 15).", flags=("--save-every",), lo=0,
           lo_open=True, hint=_MINUTES, metavar="M", doc="Minutes between saves."),
    Option("preview_every_minutes", float, 2.0, "Minutes between previews (default 2).", flags=("--preview-every",), lo=0,
           lo_open=True, hint=_MINUTES, metavar="M", doc="Minutes between previews."),
    Option("channels", int, None, "Feature channels, 4..256 (first run only; default 48).", lo=4, hi=256, fixed=True,
           shown_default=str(DEFAULTS["channels"]), doc="Network width, 4..256."),
    Option("blocks", int, None, "Residual blocks, 0..32 (first run only; default 6).", lo=0, hi=32, fixed=True,
           shown_default=str(DEFAULTS["blocks"]), doc="Network depth, 0..32."),
    # a registered enhancer (facelab.enhance.list_enhancers, which loads PyTorch): checked by EnhanceSettings.
    # Not a flag of `facelab train-enhancer` (srnet is the only one): Python only, see CLI_OPTIONS.
    Option("model", str, "srnet", "Registered enhancer architecture (facelab.enhance.list_enhancers()).",
           hint="see facelab.enhance.list_enhancers()"),
)
"""Every field of :class:`facelab.stages.enhance.EnhanceSettings`."""

CLI_OPTIONS = tuple(o for o in OPTIONS if o.name != "model")
"""The flags of `facelab train-enhancer`: every option but ``model`` (Python only)."""

ARCHITECTURE = tuple(o.name for o in OPTIONS if o.fixed)
"""Fixed at the first run; saved in the enhancer's ``config.json``."""
