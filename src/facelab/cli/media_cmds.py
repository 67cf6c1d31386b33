"""CLI commands for video: frames, video, cut, denoise."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import Side, app, current_workspace, output_marker, report
from facelab.options import Option, command
from facelab.options import given as _given


_FORCE = {
    "frames": Option("force", bool, False, "Redo frames already extracted.", flags=("--force/--no-force",), cli_only=True),
    "video": Option("force", bool, False, "Write the result again even if it is up to date.", flags=("--force/--no-force",),
                    cli_only=True),
    "denoise": Option("force", bool, False, "Denoise again although already done (frames are changed in place).",
                      flags=("--force/--no-force",), cli_only=True),
    "cut": Option("force", bool, False, "Overwrite an existing <name>_cut.<ext>.", flags=("--force/--no-force",), cli_only=True,
                  doc="overwrite an existing `<name>_cut.<ext>`"),
}
_VIDEO_FILE = Option("video", Path, None, "Video file to decode, anywhere (default: the workspace's data_<side>.*).",
                     flags=("--video",), cli_only=True, metavar="FILE")


def _side(help: str) -> inspect.Parameter:
    return inspect.Parameter("side", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[Side, typer.Argument(help=help)])


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


def _cut(video: Path, **values) -> None:
    """Cut VIDEO from --from to --to into <name>_cut.<ext> beside it (frame-exact, re-encoded)."""
    from facelab.stages import cut

    report(cut.run(video, cut.CutSettings(**_given(cut.OPTIONS, values)), force=bool(values["force"])))


def _register() -> None:
    """The commands, their flags generated from the settings' declarations (``OPTIONS`` beside each settings class)."""
    from facelab.stages import cut, denoise, frames, video

    app.command("frames")(command(frames.OPTIONS + (_FORCE["frames"], _VIDEO_FILE), _frames, _frames.__doc__ or "",
                                  arguments=[_side("src or dst")]))
    app.command("video")(command(video.OPTIONS + (_FORCE["video"],), _video, _video.__doc__ or ""))
    app.command("denoise")(command(denoise.OPTIONS + (_FORCE["denoise"],), _denoise, _denoise.__doc__ or "",
                                   arguments=[_side("dst (only dst frames can be denoised)")]))
    video_file = inspect.Parameter("video", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   annotation=Annotated[Path, typer.Argument(help="Video file to cut (left untouched).")])
    app.command("cut")(command(cut.OPTIONS + (_FORCE["cut"],), _cut, _cut.__doc__ or "", arguments=[video_file]))


_register()
