"""CLI commands for video: frames, video (and the video tools)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from facelab.cli import FrameFormat, Side, app, current_workspace, report


@app.command("frames")
def frames_cmd(
    side: Annotated[Side, typer.Argument(help="src or dst")],
    fps: Annotated[Optional[float], typer.Option(help="Frames per second to keep (default: every frame; dst always keeps every frame).")] = None,
    format: Annotated[FrameFormat, typer.Option("--format", help="Frame image format.")] = FrameFormat.png,
    force: Annotated[bool, typer.Option(help="Redo frames already extracted.")] = False,
) -> None:
    """Decode data_src.* / data_dst.* into numbered frames."""
    from facelab.stages import frames

    report(frames.run(current_workspace(), side.value, frames.FramesSettings(fps=fps, format=format.value), force=force))


@app.command("video")
def video_cmd(
    bitrate: Annotated[Optional[str], typer.Option(help="Video bitrate, e.g. 8M (default: quality-based, CRF 18).")] = None,
    force: Annotated[bool, typer.Option(help="Write result.mp4 again even if it is up to date.")] = False,
) -> None:
    """Write result.mp4 from data_dst/merged with data_dst's frame rate and audio."""
    from facelab.stages import video

    report(video.run(current_workspace(), video.VideoSettings(bitrate=bitrate), force=force))
