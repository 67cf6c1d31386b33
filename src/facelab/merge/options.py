"""Every setting of `facelab merge`, declared once (see :mod:`facelab.options`).

:data:`SETTINGS` are the fields of :class:`facelab.merge.compose.MergeSettings`
(what a frame looks like: saved in the step record, settable per frame range
and in a ``--config`` file); :data:`RUN` are the flags of one run (which model,
which frames, where it runs). The CLI flags, the checks of ``MergeSettings``,
the TOML keys and the tables in ``docs/merge.md`` come from here.
"""

from __future__ import annotations

from pathlib import Path

from facelab.color import COLOR_TRANSFERS
from facelab.merge.modes import DEFAULT_MODE, MERGE_MODES
from facelab.options import Option

COLORS = ("none", *COLOR_TRANSFERS, *(f"{name}-m" for name in COLOR_TRANSFERS))
_MODE_HELP = ", ".join(f"{n} (default)" if n == DEFAULT_MODE else n for n in MERGE_MODES) + "."
_MASKED_COLORS = ", ".join(f"{n}-m (default)" if n == "rct" else f"{n}-m" for n in COLOR_TRANSFERS)
_RUN, _MASK, _COLOR = "Options", "Face and mask", "Colour, detail and output"

SETTINGS: tuple[Option, ...] = (
    Option("mode", str, DEFAULT_MODE, _MODE_HELP, choices=tuple(MERGE_MODES), group=_RUN, metavar="MODE",
           doc="how the face goes into the frame: see Modes below"),
    Option("mask", str, "learned*dst", "learned, learned-dst, dst, predicted, segmentation-prd, segmentation-dst, or a product such as "
                                "learned*dst (default).",
           group=_MASK, metavar="MASK", shown_default="`learned*dst`", doc="which mask: see Masks above"),
    Option("erode", int, 0, "Shrink (+) or grow (-) the mask, -200..200 (pixels of a 512 px face).", lo=-200, hi=200,
           group=_MASK, doc="shrink (+) or grow (-) the mask, in pixels of a 512 px face whatever the model's size"),
    Option("blur", int, 0, "Widen (+) or narrow (-) the mask's soft edge, -200..200, added to the default feather of 32 "
                           "(pixels of a 512 px face); -32 or less: a hard edge. Default 0.", lo=-200, hi=200, group=_MASK,
           doc="added to the default soft edge of 32 (same unit): `--blur 40` makes the edge 72 wide, `--blur -20` 12, "
               "and -32 or less a hard edge"),
    Option("face_scale", int, 0, "Scale the face about its centre, -50..50 percent.", flags=("--face-scale",), lo=-50,
           hi=50, group=_MASK, doc="scale the face and its mask by P percent about the centre of the dst face"),
    Option("color", str, "rct-m", f"Colour transfer to the dst face: none, {', '.join(COLOR_TRANSFERS)} (measured over the "
                                  f"whole face squares), or their -m variants measured inside the mask only: {_MASKED_COLORS}.",
           choices=COLORS, group=_COLOR, metavar="MODE", shown_default="`rct-m`",
           doc="colour transfer of the predicted face toward the dst face: `none`, `rct` (Reinhard: Lab mean and spread; "
               "the colour spread is narrowed to dst's but never widened, so a blurred early swap's faint shading does "
               "not turn into teal or green patches), `lct` (linear, colour covariance), `mkl` (Monge-Kantorovitch "
               "linear), `idt` (iterative distribution transfer), `sot` (sliced optimal transport), all from "
               "`facelab.color` (training's `--color-transfer` uses the same). Plain names measure the whole aligned "
               "squares; `-m` variants (`rct-m` (default), `lct-m`, `mkl-m`, `idt-m`, `sot-m`) only inside the face "
               "mask, so the background cannot pull the face's colour"),
    Option("hist_threshold", int, 238, "hist-match modes: 0..255 (default 238).", flags=("--hist-threshold",), lo=0, hi=255,
           group=_COLOR, doc="hist-match modes: below 255 the face is matched into the dst face's darker N/255 of "
                             "values, leaving out its brightest highlights (DeepFaceLab's meaning); 255 is plain "
                             "histogram matching"),
    Option("masked_hist", bool, True, "hist-match measured inside the mask (default on).",
           flags=("--masked-hist/--no-masked-hist",), group=_COLOR, doc="hist-match inside the mask only"),
    Option("seamless_hist", bool, False, "seamless: hist-match the face first.", flags=("--seamless-hist/--no-seamless-hist",),
           group=_COLOR, doc="hist-match the face before the seamless blend: the same as mode `seamless-hist-match`"),
    Option("degrade_color", int, 0, "0..100: reduce the face's colour precision toward the video's.", flags=("--degrade-color",),
           lo=0, hi=100, group=_COLOR, doc="0..100: blend the face toward a 3-bit-per-channel copy, to match a low-quality video"),
    Option("bicubic_degrade", int, 0, "0..100: soften the face by bicubic down- and up-scaling.", flags=("--bicubic-degrade",),
           lo=0, hi=100, group=_COLOR, doc="0..100: shrink the face by up to 4x bicubically and back, so a sharp swap "
                                           "matches a soft video"),
    Option("sharpen", int, 0, "-100..100: sharpen (+) or blur (-) the face.", lo=-100, hi=100, group=_COLOR,
           doc="-100..100: positive sharpens (unsharp mask), negative blurs the face"),
    Option("motion_blur", int, 0, "0..100: blur the face along its motion between frames.", flags=("--motion-blur",), lo=0,
           hi=100, group=_COLOR, doc="0..100: blur the face along its motion between the previous and next frame (from "
                                     "the faces' landmarks)"),
    Option("denoise_frame", int, 0, "0..500: denoise every frame, with or without a face, before merging (0 = off).",
           flags=("--denoise-frame",), lo=0, hi=500, group=_COLOR,
           doc="0..500: median-filter the whole frame (one 5x5 pass per 100) before merging; frames without a face are "
               "filtered too, so the clip does not flicker between filtered and raw frames"),
    Option("alpha", bool, False, "Write RGBA PNG frames (alpha = the mask).", flags=("--alpha/--no-alpha",), group=_COLOR,
           doc="write RGBA PNG frames whose alpha is the mask"),
    Option("enhancer", str, None, "Enhance the face with this face enhancer, DeepFaceLab's super resolution (facelab "
                                  "train-enhancer --name NAME).", flags=("--enhancer",), group=_COLOR, metavar="NAME",
           doc="DeepFaceLab's super resolution: enhance the predicted face with an enhancer trained by `facelab "
               "train-enhancer --name NAME` (see [enhancer.md](enhancer.md)) before blending. `--super-resolution NAME`, "
               "its old spelling, still works"),
    Option("suppress_jitter", bool, True, "Steady the face's colour and light from frame to frame (default on).",
           flags=("--suppress-jitter/--no-suppress-jitter",), group=_COLOR,
           doc="steady the face's coarse colour and light from frame to frame (see below); `--no-suppress-jitter` "
               "turns it off"),
)

RUN: tuple[Option, ...] = (
    Option("name", str, "quick", "Model folder name under model/ (default quick).", group=_RUN, cli_only=True),
    Option("config", Path, None, "TOML file: settings as keys; per-range settings in 'ranges' tables with frames = "
                                 "FIRST-LAST (docs/merge.md).", flags=("--config",), group=_RUN, cli_only=True, metavar="FILE"),
    Option("frames", str, None, "Apply these settings to frames FIRST-LAST only (kept for later runs) and render just those.",
           group=_RUN, cli_only=True, metavar="FIRST-LAST"),
    Option("clear_ranges", bool, False, "Forget per-range settings of earlier runs.", flags=("--clear-ranges",), group=_RUN,
           cli_only=True),
    Option("preview", int, None, "Merge only frame N into data_dst/merged_preview/ (with a side-by-side).", lo=1,
           group=_RUN, cli_only=True),
    Option("batch_size", int, 8, "Faces per model call, over consecutive frames (1..256).", flags=("--batch-size",), lo=1,
           hi=256, group=_RUN, cli_only=True),
    Option("device", str, "auto", "auto, cpu, cuda, cuda:N or mps.", group=_RUN, cli_only=True, metavar="D"),
    Option("gpu", int, None, "Use the model trained with `facelab train --gpu INDEX` (files gpuINDEX_*); asked in a terminal "
                             "when the folder holds several. It runs on --device.", lo=0, group=_RUN, cli_only=True,
           metavar="INDEX"),
    Option("force", bool, False, "Render every frame again.", flags=("--force/--no-force",), group=_RUN, cli_only=True),
)
ONNX_RUN: tuple[Option, ...] = (
    Option("onnx", Path, None, "Merge with an exported model file (facelab export, or a DeepFaceLive .dfm) instead of "
                               "the model folder --name.", flags=("--onnx",), group=_RUN, cli_only=True, metavar="FILE",
           doc="merge with an exported `.dfm` / `.onnx` file (`facelab export`, or a DeepFaceLive model) run by "
               "onnxruntime instead of the model folder; frames made with another file or model render again"),
    Option("face_type", str, None, "With --onnx: the face type of a file without facelab metadata (DeepFaceLive's "
                                   "models: whole).", flags=("--face-type",), group=_RUN, cli_only=True,
           choices=("half", "mid", "full", "whole", "head"), metavar="TYPE",
           doc="with `--onnx`: the face type of a file facelab did not write (DeepFaceLive's and FaceFusion's models "
               "are `whole`); facelab's files carry theirs"),
)
"""`facelab merge`'s flags for an exported model file (CLI only: the UI merges with model folders)."""
DEPRECATED_SUPER_RESOLUTION = Option("super_resolution", str, None, "Old spelling of --enhancer (deprecated).",
                                     flags=("--super-resolution",), cli_only=True, hidden=True)
RENAMED_SETTINGS = {"super_resolution": "enhancer"}
"""Old merge setting keys -> their names now (settings files and step records written before the rename)."""
DEPRECATED_MODEL = Option("model", str, None, "Old spelling of --name (deprecated: in train, --model is the architecture).",
                          cli_only=True, hidden=True)


def groups() -> dict[str, tuple[Option, ...]]:
    out: dict[str, list[Option]] = {}
    for o in SETTINGS:
        out.setdefault(o.group, []).append(o)
    return {k: tuple(v) for k, v in out.items()}
