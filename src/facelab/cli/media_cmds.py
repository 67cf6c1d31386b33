"""CLI commands for video: frames, video, cut, denoise."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from facelab.cli import Side, app, current_workspace, output_marker, report
from facelab.options import Option, command


_FORCE = {
    "frames": Option("force", bool, False, "Redo frames already extracted.", flags=("--force/--no-force",), cli_only=True),
    "video": Option("force", bool, False, "Write the result again even if it is up to date.", flags=("--force/--no-force",),
                    cli_only=True),
    "denoise": Option("force", bool, False, "Denoise again although already done (frames are changed in place).",
                      flags=("--force/--no-force",), cli_only=True),
}
_VIDEO_FILE = Option("video", Path, None, "Video file to decode, anywhere (default: the workspace's data_<side>.*).",
                     flags=("--video",), cli_only=True, metavar="FILE")


def _side(help: str) -> inspect.Parameter:
    return inspect.Parameter("side", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[Side, typer.Argument(help=help)])


def _given(options, given: dict) -> dict:
    return {o.name: given[o.name] for o in options if given[o.name] is not None}


def _frames(side: Side, **given) -> None:
    """Decode data_src.* / data_dst.* (or --video FILE) into numbered frames in data_<side>/ (each frame's time is recorded)."""
    from facelab.cli import on_interrupt
    from facelab.stages import frames

    ws = current_workspace()
    settings = frames.FramesSettings(**_given(frames.OPTIONS, given))
    with on_interrupt(lambda: frames.interrupted_message(ws, side.value)):
        report(frames.run(ws, side.value, settings, force=bool(given["force"]), video=given["video"]))


def _video(**given) -> None:
    """Write result.<ext> from data_dst/merged with data_dst's frame timing and audio."""
    from facelab.stages import video

    settings = video.VideoSettings(**_given(video.OPTIONS, given))
    report(video.run(current_workspace(), settings, force=bool(given["force"]), marker=output_marker()))


def _denoise(side: Side, **given) -> None:
    """Denoise the extracted dst frames in place (temporal non-local means); resumable."""
    from facelab.errors import SettingsError
    from facelab.stages import denoise

    if side.value != "dst":
        raise SettingsError("only dst frames can be denoised", "run `facelab denoise dst`")
    report(denoise.run(current_workspace(), denoise.DenoiseSettings(**_given(denoise.OPTIONS, given)),
                       force=bool(given["force"])))


def _register() -> None:
    """The commands, their flags generated from the settings' declarations (``OPTIONS`` beside each settings class)."""
    from facelab.stages import denoise, frames, video

    app.command("frames")(command(frames.OPTIONS + (_FORCE["frames"], _VIDEO_FILE), _frames, _frames.__doc__ or "",
                                  arguments=[_side("src or dst")]))
    app.command("video")(command(video.OPTIONS + (_FORCE["video"],), _video, _video.__doc__ or ""))
    app.command("denoise")(command(denoise.OPTIONS + (_FORCE["denoise"],), _denoise, _denoise.__doc__ or "",
                                   arguments=[_side("dst (only dst frames can be denoised)")]))


_register()


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
