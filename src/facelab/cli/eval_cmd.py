"""CLI command `facelab eval`: measure a finished merge (docs/eval.md), or compare two eval results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import app, console, current_workspace, output_marker, renamed_flag, report


@app.command("eval")
def eval_cmd(
    name: Annotated[str | None, typer.Option("--name", help="Model folder name under model/ (for --reconstruction; default quick).")] = None,
    model: Annotated[str | None, typer.Option("--model", hidden=True, help="Old spelling of --name (deprecated).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary, targets and per-frame figures to this JSON file.")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="Write a one-file HTML report (table, curves, worst frames).")] = None,
    source: Annotated[str, typer.Option(help="Output frames: auto (data_dst/merged, else result.mp4), merged or result.")] = "auto",
    reconstruction: Annotated[bool, typer.Option("--reconstruction", help="Also measure SSIM/PSNR of the model's reconstructions of its held-out faces (train --holdout N).")] = False,
    gpu: Annotated[int | None, typer.Option("--gpu", help="With --reconstruction: the model trained with `facelab train --gpu INDEX`.")] = None,
    device: Annotated[str, typer.Option(help="With --reconstruction: auto, cpu, cuda, cuda:N or mps.")] = "auto",
    workers: Annotated[int | None, typer.Option("--workers", help="Processes for identity embeddings (default: one per core, at most 4; 0: none).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compute every identity embedding again (no data_dst/.facelab/eval_embeddings.json).")] = False,
    compare: Annotated[tuple[Path, Path] | None, typer.Option("--compare", help="Print two eval JSON files side by side (A B) with the differences; measures nothing.")] = None,
) -> None:
    """Measure a finished merge against its dst frames: sharpness, expression, head pose, identity, mouth and eye
    motion, jitter, background, seam and colour; targets and definitions in docs/eval.md.

    Prints one summary line (then warnings, including the targets missed); --json and --html save the details."""
    if compare is not None:
        from facelab.eval.report import compare as compare_docs
        from facelab.eval.report import load_json

        a, b = (load_json(p) for p in compare)
        console.print(f"A: {compare[0]}\nB: {compare[1]}", highlight=False, markup=False)
        for line in compare_docs(a, b):
            console.print(line, highlight=False, markup=False)
        return
    from facelab.stages.eval import EvalSettings, run

    settings = EvalSettings(source=source, name=renamed_flag("--model", "--name", model, name, "quick"), reconstruction=reconstruction, gpu=gpu, device=device,
                            workers=workers, cache=not no_cache, json=json_path, html=html_path)
    summary, _ = run(current_workspace(), settings, marker=output_marker())
    report(summary)
