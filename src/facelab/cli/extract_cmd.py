"""CLI command: extract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cli import FaceTypeOpt, Side, app, current_workspace, report
from facelab.identity import DEFAULT_THRESHOLD


@app.command("extract")
def extract_cmd(
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
    debug: Annotated[bool, typer.Option("--debug/--no-debug", help="Write aligned_debug/<frame>.jpg with box, landmarks, hull and crop.")] = False,
    manual_fix: Annotated[bool, typer.Option("--manual-fix", help="After extracting, list the frames without a face for manual extraction.")] = False,
    redo_deleted_debug: Annotated[bool, typer.Option("--redo-deleted-debug", help="Do not extract: list frames whose aligned_debug image you deleted for manual extraction and delete their faces.")] = False,
    force: Annotated[bool, typer.Option(help="Delete the aligned faces and extract again.")] = False,
) -> None:
    """Detect, landmark and align every face into data_<side>/aligned (options: docs/extraction.md)."""
    from facelab.stages import extract

    ws = current_workspace()
    if not redo_deleted_debug:
        settings = extract.ExtractSettings(
            face_type=face_type.value, size=size, jpeg_quality=jpeg_quality, max_faces=max_faces, min_score=min_score, debug=debug,
            accurate=accurate, smooth=smooth, reference=str(reference) if reference else "", reference_threshold=reference_threshold,
        )
        report(extract.run(ws, side.value, settings, force=force))
    if manual_fix or redo_deleted_debug:
        frames = extract.manual_todo(ws, side.value, no_face=manual_fix, deleted_debug=redo_deleted_debug)
        todo = ws.state_dir(side.value) / "manual_todo.json"
        typer.echo(f"{len(frames)} frame(s) await manual extraction (listed in {todo}):")
        for name in frames:
            typer.echo(f"  {name}")
