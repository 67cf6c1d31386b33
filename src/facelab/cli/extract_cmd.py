"""CLI command: extract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cli import FaceTypeOpt, Side, app, current_workspace, on_interrupt, report
from facelab.identity import DEFAULT_THRESHOLD

# options that shape the faces: left out, they keep the values of the existing extraction
_FACE_OPTIONS = ("face_type", "size", "jpeg_quality", "max_faces", "min_score", "accurate", "smooth", "reference", "reference_threshold")


@app.command("extract")
def extract_cmd(
    ctx: typer.Context,
    side: Annotated[Side, typer.Argument(help="src or dst")],
    face_type: Annotated[FaceTypeOpt, typer.Option("--face-type", help="How much of the head to keep.")] = FaceTypeOpt.full,
    size: Annotated[int, typer.Option(help="Aligned face size in pixels.")] = 512,
    jpeg_quality: Annotated[int, typer.Option("--jpeg-quality", help="JPEG quality 1-100.")] = 90,
    max_faces: Annotated[int, typer.Option("--max-faces", help="Keep at most N faces per frame (largest first); 0 = all.")] = 0,
    min_score: Annotated[float, typer.Option("--min-score", help="Detector confidence threshold.")] = 0.7,
    accurate: Annotated[bool, typer.Option("--accurate/--no-accurate", help="Second landmark pass on the aligned crop, averaged over jittered boxes (less shake).")] = True,
    smooth: Annotated[bool, typer.Option("--smooth/--no-smooth", help="Smooth landmarks over time (for dst); never across scene cuts.")] = False,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Photo of the person, or a folder of their aligned faces: keep only their faces.")] = None,
    reference_threshold: Annotated[float, typer.Option("--reference-threshold", help="Identity distance below which a face counts as the reference person.")] = DEFAULT_THRESHOLD,
    device: Annotated[str, typer.Option("--device", help="Where the face detector runs: auto (the best GPU if ONNX Runtime has CUDA, else the CPU), cpu, cuda or cuda:N. Landmarks always run on the CPU.")] = "auto",
    debug: Annotated[bool, typer.Option("--debug/--no-debug", help="Write aligned_debug/<frame>.jpg with box, landmarks, hull and crop (drawn from the faces for frames already extracted).")] = False,
    manual_fix: Annotated[bool, typer.Option("--manual-fix", help="After extracting, list the frames without a face for manual extraction.")] = False,
    redo_deleted_debug: Annotated[bool, typer.Option("--redo-deleted-debug", help="Instead of extracting, extract again the frames whose aligned_debug image you deleted, with the options given (e.g. a lower --min-score); old faces are replaced, never just deleted.")] = False,
    force: Annotated[bool, typer.Option(help="Delete the aligned faces and extract again.")] = False,
) -> None:
    """Detect, landmark and align every face into data_<side>/aligned (options: docs/extraction.md).

    Face options you leave out keep the values the existing faces were extracted with, so a resumed run, --debug, --manual-fix or --redo-deleted-debug need not repeat them.
    """
    from facelab.stages import extract

    ws = current_workspace()
    given = {name for name in _FACE_OPTIONS if _given(ctx, name)}
    values = {
        "face_type": face_type.value, "size": size, "jpeg_quality": jpeg_quality, "max_faces": max_faces, "min_score": min_score,
        "accurate": accurate, "smooth": smooth, "reference": str(reference) if reference else "", "reference_threshold": reference_threshold,
    }
    values.update({k: v for k, v in extract.recorded_settings(ws, side.value).items() if k in _FACE_OPTIONS and k not in given})
    settings = extract.ExtractSettings(**values, debug=debug, device=device)

    with on_interrupt(lambda: _kept(ws, side.value, redo_deleted_debug)):
        if redo_deleted_debug:
            report(extract.redo_deleted_debug(ws, side.value, settings))
        else:
            report(extract.run(ws, side.value, settings, force=force))
    if manual_fix:
        frames = extract.manual_todo(ws, side.value, no_face=True)
        todo = ws.manual_todo_path(side.value)
        typer.echo(f"{len(frames)} frame(s) await manual extraction (listed in {todo}):")
        for name in frames:
            typer.echo(f"  {name}")


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or through the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _kept(ws, side: str, redo: bool) -> str:
    """What an interrupted extraction leaves behind, and how to go on."""
    if redo:
        return ("interrupted: the frames re-extracted so far have their new faces and debug images, the others keep their old faces; "
                f"run `facelab extract {side} --redo-deleted-debug` again (with the same options) to continue")
    from facelab.stages import extract

    done = len(extract.done_frames(ws, side))
    return (f"interrupted: {done} of {len(ws.frame_paths(side))} frames of data_{side} are extracted and their "
            f"{len(ws.aligned_paths(side))} faces are kept in {ws.aligned_dir(side)}; "
            f"run `facelab extract {side}` again to continue from there (options you leave out keep the values used so far)")
