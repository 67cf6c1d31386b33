"""CLI command: merge (every mode and option of DeepFaceLab's merger, per frame range, with a preview)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import app, console, current_workspace, output_marker, renamed_flag, report
from facelab.color import COLOR_TRANSFERS
from facelab.merge.modes import DEFAULT_MODE, MERGE_MODES

# --mode and --color list the one table of modes and of colour transfers (rct-m is MergeSettings' default)
_MODE_HELP = ", ".join(f"{n} (default)" if n == DEFAULT_MODE else n for n in MERGE_MODES) + "."
_MASKED_COLORS = ", ".join(f"{n}-m (default)" if n == "rct" else f"{n}-m" for n in COLOR_TRANSFERS)

_P = "Face and mask"
_C = "Colour, detail and output"


@app.command("merge")
def merge_cmd(
    name: Annotated[str | None, typer.Option("--name", help="Model folder name under model/ (default quick).")] = None,
    model: Annotated[str | None, typer.Option("--model", hidden=True, help="Old spelling of --name (deprecated: in train, --model is the architecture).")] = None,
    mode: Annotated[str | None, typer.Option(help=_MODE_HELP)] = None,
    mask: Annotated[str | None, typer.Option(help="learned, learned-dst, dst, predicted, or a product such as learned*dst (default).", rich_help_panel=_P)] = None,
    erode: Annotated[int | None, typer.Option(help="Shrink (+) or grow (-) the mask, -200..200 (pixels of a 512 px face).", rich_help_panel=_P)] = None,
    blur: Annotated[int | None, typer.Option(help="Widen (+) or narrow (-) the mask's soft edge, -200..200, added to the default feather of 32 (pixels of a 512 px face); -32 or less: a hard edge. Default 0.", rich_help_panel=_P)] = None,
    face_scale: Annotated[int | None, typer.Option("--face-scale", help="Scale the face about its centre, -50..50 percent.", rich_help_panel=_P)] = None,
    color: Annotated[str | None, typer.Option(help=f"Colour transfer to the dst face: none, {', '.join(COLOR_TRANSFERS)} (measured over the whole face squares), or their -m variants measured inside the mask only: {_MASKED_COLORS}.", rich_help_panel=_C)] = None,
    hist_threshold: Annotated[int | None, typer.Option("--hist-threshold", help="hist-match modes: 0..255 (default 238).", rich_help_panel=_C)] = None,
    masked_hist: Annotated[bool | None, typer.Option("--masked-hist/--no-masked-hist", help="hist-match measured inside the mask (default on).", rich_help_panel=_C)] = None,
    seamless_hist: Annotated[bool | None, typer.Option("--seamless-hist/--no-seamless-hist", help="seamless: hist-match the face first.", rich_help_panel=_C)] = None,
    degrade_color: Annotated[int | None, typer.Option("--degrade-color", help="0..100: reduce the face's colour precision toward the video's.", rich_help_panel=_C)] = None,
    bicubic_degrade: Annotated[int | None, typer.Option("--bicubic-degrade", help="0..100: soften the face by bicubic down- and up-scaling.", rich_help_panel=_C)] = None,
    sharpen: Annotated[int | None, typer.Option(help="-100..100: sharpen (+) or blur (-) the face.", rich_help_panel=_C)] = None,
    motion_blur: Annotated[int | None, typer.Option("--motion-blur", help="0..100: blur the face along its motion between frames.", rich_help_panel=_C)] = None,
    denoise_frame: Annotated[int | None, typer.Option("--denoise-frame", help="0..500: denoise every frame, with or without a face, before merging (0 = off).", rich_help_panel=_C)] = None,
    alpha: Annotated[bool | None, typer.Option("--alpha/--no-alpha", help="Write RGBA PNG frames (alpha = the mask).", rich_help_panel=_C)] = None,
    super_resolution: Annotated[str | None, typer.Option("--super-resolution", help="Enhance the face with this enhancer (facelab train-enhancer --name NAME).", rich_help_panel=_C)] = None,
    suppress_jitter: Annotated[bool | None, typer.Option("--suppress-jitter/--no-suppress-jitter", help="Steady the seamless blend's colour from frame to frame.", rich_help_panel=_C)] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file: settings as keys; per-range settings in 'ranges' tables with frames = FIRST-LAST (docs/merge.md).")] = None,
    frames: Annotated[str | None, typer.Option("--frames", help="Apply these settings to frames FIRST-LAST only (kept for later runs) and render just those.")] = None,
    clear_ranges: Annotated[bool, typer.Option("--clear-ranges", help="Forget per-range settings of earlier runs.")] = False,
    preview: Annotated[int | None, typer.Option("--preview", help="Merge only frame N into data_dst/merged_preview/ (with a side-by-side).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Faces per model call, over consecutive frames (1..256).")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    gpu: Annotated[int | None, typer.Option("--gpu", help="Use the model trained with `facelab train --gpu INDEX` (files gpuINDEX_*); asked in a terminal when the folder holds several. It runs on --device.")] = None,
    force: Annotated[bool, typer.Option(help="Render every frame again.")] = False,
) -> None:
    """Put the predicted faces back into every dst frame (data_dst/merged).

    Settings come from the flags, then the --config file, then the defaults; settings given with --frames apply to that range only. Frames already merged with the same model and settings are skipped.
    """
    from facelab.stages import merge

    folder = renamed_flag("--model", "--name", model, name, "quick")

    given = {k: v for k, v in {
        "mode": mode, "mask": mask, "erode": erode, "blur": blur, "face_scale": face_scale, "color": color,
        "hist_threshold": hist_threshold, "masked_hist": masked_hist, "seamless_hist": seamless_hist,
        "degrade_color": degrade_color, "bicubic_degrade": bicubic_degrade, "sharpen": sharpen,
        "motion_blur": motion_blur, "denoise_frame": denoise_frame, "alpha": alpha,
        "super_resolution": super_resolution, "suppress_jitter": suppress_jitter}.items() if v is not None}
    ws = current_workspace()
    plan, only = merge.plan_from_options(ws, given, config=config, frames=frames, clear_ranges=clear_ranges)
    if gpu is None and sys.stdin.isatty():
        from facelab.cli.prompts import ask_gpu

        gpu = ask_gpu(merge.gpu_choices(ws, folder))
    if preview is not None:
        report(merge.preview(ws, folder, plan, preview, device=device, gpu=gpu, marker=output_marker()))
        return
    summary = merge.run(ws, folder, plan, device=device, force=force, only=only, batch_size=batch_size, gpu=gpu,
                        marker=output_marker())
    report(summary)
    if plan.ranges:
        console.print("per-range settings: " + "; ".join(f"{f}: {dict(o)}" for f, o in plan.ranges), highlight=False, markup=False)

