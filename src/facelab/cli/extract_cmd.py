"""CLI command: extract."""

from __future__ import annotations

from typing import Annotated

import typer

from facelab.cli import FaceTypeOpt, Side, app, current_workspace, report


@app.command("extract")
def extract_cmd(
    side: Annotated[Side, typer.Argument(help="src or dst")],
    face_type: Annotated[FaceTypeOpt, typer.Option("--face-type", help="How much of the head to keep.")] = FaceTypeOpt.full,
    size: Annotated[int, typer.Option(help="Aligned face size in pixels.")] = 512,
    jpeg_quality: Annotated[int, typer.Option("--jpeg-quality", help="JPEG quality 1-100.")] = 90,
    max_faces: Annotated[int, typer.Option("--max-faces", help="Keep at most N faces per frame (largest first); 0 = all.")] = 0,
    min_score: Annotated[float, typer.Option("--min-score", help="Detector confidence threshold.")] = 0.7,
    debug: Annotated[bool, typer.Option("--debug/--no-debug", help="Write aligned_debug/<frame>.jpg with box, landmarks, hull and crop.")] = False,
    force: Annotated[bool, typer.Option(help="Delete the aligned faces and extract again.")] = False,
) -> None:
    """Detect, landmark and align every face into data_<side>/aligned."""
    from facelab.stages import extract

    settings = extract.ExtractSettings(face_type=face_type.value, size=size, jpeg_quality=jpeg_quality, max_faces=max_faces, min_score=min_score, debug=debug)
    report(extract.run(current_workspace(), side.value, settings, force=force))
