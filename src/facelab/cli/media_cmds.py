"""CLI commands for video: frames, video, cut, denoise."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cli import FrameFormat, Side, app, current_workspace, output_marker, report


class VideoFormat(str, Enum):
    mp4 = "mp4"
    avi = "avi"
    mp4_lossless = "mp4-lossless"
    mov_alpha = "mov-alpha"


@app.command("frames")
def frames_cmd(
    side: Annotated[Side, typer.Argument(help="src or dst")],
    fps: Annotated[Optional[float], typer.Option(help="Frames per second to keep (default: every frame; dst always keeps every frame).")] = None,
    format: Annotated[FrameFormat, typer.Option("--format", help="Frame image format.")] = FrameFormat.png,
    force: Annotated[bool, typer.Option(help="Redo frames already extracted.")] = False,
    video: Annotated[Optional[Path], typer.Option("--video", help="Video file to decode, anywhere (default: the workspace's data_<side>.*).")] = None,
) -> None:
    """Decode data_src.* / data_dst.* (or --video FILE) into numbered frames in data_<side>/ (each frame's time is recorded)."""
    from facelab.cli import on_interrupt
    from facelab.stages import frames

    ws = current_workspace()
    with on_interrupt(lambda: frames.interrupted_message(ws, side.value)):
        report(frames.run(ws, side.value, frames.FramesSettings(fps=fps, format=format.value), force=force, video=video))


@app.command("video")
def video_cmd(
    format: Annotated[VideoFormat, typer.Option("--format", help="mp4 (H.264), avi (MPEG-4), mp4-lossless (RGB H.264 qp 0), mov-alpha (QuickTime RLE with the merge mask as alpha).")] = VideoFormat.mp4,
    bitrate: Annotated[Optional[str], typer.Option(help="Video bitrate in megabits/s as in DeepFaceLab, e.g. 8 (8M and 800k also work; default: quality-based, CRF 18). Ignored by lossless formats.")] = None,
    mask_video: Annotated[bool, typer.Option("--mask-video", help="Also write result_mask.<ext> from data_dst/merged_mask.")] = False,
    force: Annotated[bool, typer.Option(help="Write the result again even if it is up to date.")] = False,
) -> None:
    """Write result.<ext> from data_dst/merged with data_dst's frame timing and audio."""
    from facelab.stages import video

    settings = video.VideoSettings(bitrate=bitrate, format=format.value, mask_video=mask_video)
    report(video.run(current_workspace(), settings, force=force, marker=output_marker()))


@app.command("cut")
def cut_cmd(
    video: Annotated[Path, typer.Argument(help="Video file to cut (left untouched).")],
    from_: Annotated[str, typer.Option("--from", help="Start time HH:MM:SS.mmm (or seconds).")],
    to: Annotated[str, typer.Option("--to", help="End time HH:MM:SS.mmm (or seconds), exclusive.")],
    audio_track: Annotated[int, typer.Option("--audio-track", help="Audio track to keep, by index among the audio tracks.")] = 0,
    bitrate: Annotated[Optional[str], typer.Option(help="Video bitrate in megabits/s as in DeepFaceLab, e.g. 8 (8M and 800k also work; default: quality-based, CRF 18).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing <name>_cut.<ext>.")] = False,
) -> None:
    """Cut VIDEO from --from to --to into <name>_cut.<ext> beside it (frame-exact, re-encoded)."""
    from facelab.stages import cut

    report(cut.run(video, cut.CutSettings(from_, to, audio_track, bitrate), force=force))


@app.command("denoise")
def denoise_cmd(
    side: Annotated[Side, typer.Argument(help="dst (only dst frames can be denoised)")],
    factor: Annotated[int, typer.Option(help="Strength 1-20.", min=1, max=20)] = 5,
    force: Annotated[bool, typer.Option(help="Denoise again although already done (frames are changed in place).")] = False,
) -> None:
    """Denoise the extracted dst frames in place (temporal non-local means); resumable."""
    from facelab.errors import SettingsError
    from facelab.stages import denoise

    if side.value != "dst":
        raise SettingsError("only dst frames can be denoised", "run `facelab denoise dst`")
    report(denoise.run(current_workspace(), denoise.DenoiseSettings(factor=factor), force=force))
