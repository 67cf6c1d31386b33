"""CLI command: train-enhancer (the face enhancer behind `facelab merge --super-resolution NAME`)."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab.cli import app, console, current_workspace, output_marker, report


@app.command("train-enhancer")
def train_enhancer_cmd(
    name: Annotated[str, typer.Option(help="Enhancer folder name under model/; give it to `merge --super-resolution`.")] = "enhancer",
    scale: Annotated[int | None, typer.Option(help="Upscaling factor, 2 or 4 (first run only; default 2).")] = None,
    input_size: Annotated[int | None, typer.Option("--input-size", help="Face size it enhances: the swap model's resolution, 16..512 (saved; default 128).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Train for this many minutes (this run).")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "--target-iteration", help="Train until this total iteration.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Faces per iteration, 1..512 (saved; default 8).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    channels: Annotated[int | None, typer.Option(help="Feature channels, 4..256 (first run only; default 48).")] = None,
    blocks: Annotated[int | None, typer.Option(help="Residual blocks, 0..32 (first run only; default 6).")] = None,
    save_every: Annotated[float | None, typer.Option("--save-every", help="Minutes between saves (default 15).")] = None,
    preview_every: Annotated[float | None, typer.Option("--preview-every", help="Minutes between previews (default 2).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the initial weights and the batches.")] = 0,
) -> None:
    """Train (or continue) a face enhancer on the src faces, for `facelab merge --super-resolution NAME`. Ctrl+C saves and stops."""
    from facelab.stages import enhance

    kwargs = {"name": name, "scale": scale, "input_size": input_size, "minutes": minutes, "iterations": iterations,
              "batch_size": batch_size, "device": device, "channels": channels, "blocks": blocks,
              "save_every_minutes": save_every, "preview_every_minutes": preview_every, "seed": seed}
    settings = enhance.EnhanceSettings(**{k: v for k, v in kwargs.items() if v is not None})
    report(enhance.run(current_workspace(), settings, log=lambda s: console.print(s, highlight=False, markup=False),
                       marker=output_marker()))
