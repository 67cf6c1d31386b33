"""CLI command: train."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from facelab.cli import app, console, current_workspace, report


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option(help="Model architecture (quick).")] = "quick",
    name: Annotated[Optional[str], typer.Option(help="Model folder name under model/ (default: the model name).")] = None,
    iterations: Annotated[Optional[int], typer.Option(help="Train until this total iteration.")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Train for this many minutes (this run).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Faces per side per iteration.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Train (or continue training) a model on the src and dst face sets. Ctrl+C saves and stops."""
    from facelab.stages import train

    kwargs = {"model": model, "name": name, "iterations": iterations, "minutes": minutes, "device": device}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    settings = train.TrainSettings(**kwargs)
    report(train.run(current_workspace(), settings, log=lambda s: console.print(s, highlight=False, markup=False)))
