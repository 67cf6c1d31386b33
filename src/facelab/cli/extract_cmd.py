"""CLI command: extract."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from facelab.cli import Side, app, current_workspace, on_interrupt, report
from facelab.options import Option, command
from facelab.stages.extract import OPTIONS, RUN_ONLY

ACTIONS = (
    Option("manual_fix", bool, False, "After extracting, list the frames without a face for manual extraction.",
           flags=("--manual-fix",), cli_only=True,
           doc="after extracting, list frames with no face for manual extraction"),
    Option("redo_deleted_debug", bool, False, "Instead of extracting, extract again the frames whose aligned_debug image you "
                                              "deleted, with the options given (e.g. a lower --min-score); old faces are "
                                              "replaced, never just deleted.", flags=("--redo-deleted-debug",), cli_only=True,
           doc="instead of extracting, extract again the frames whose debug image you deleted, with the options given (below)"),
    Option("force", bool, False, "Delete the aligned faces and extract again.", flags=("--force/--no-force",), cli_only=True),
)


def _extract(side: Side, **given: Any) -> None:
    """Detect, landmark and align every face into data_<side>/aligned (options: docs/extraction.md).

    Face options you leave out keep the values the existing faces were extracted with, so a resumed run, --debug, --manual-fix or --redo-deleted-debug need not repeat them.
    """
    from facelab.stages import extract

    ws = current_workspace()
    values = {o.name: o.default for o in OPTIONS}
    recorded = extract.recorded_settings(ws, side.value)
    values.update({k: v for k, v in recorded.items() if k in values and k not in RUN_ONLY})
    values.update({o.name: str(given[o.name]) if isinstance(given[o.name], Path) else given[o.name]
                   for o in OPTIONS if given[o.name] is not None})
    settings = extract.ExtractSettings(**values)
    redo = bool(given["redo_deleted_debug"])

    with on_interrupt(lambda: _kept(ws, side.value, redo)):
        if redo:
            report(extract.redo_deleted_debug(ws, side.value, settings))
        else:
            report(extract.run(ws, side.value, settings, force=bool(given["force"])))
    if given["manual_fix"]:
        frames = extract.manual_todo(ws, side.value, no_face=True)
        todo = ws.manual_todo_path(side.value)
        typer.echo(f"{len(frames)} frame(s) await manual extraction (listed in {todo}):")
        for name in frames:
            typer.echo(f"  {name}")


_SIDE = inspect.Parameter("side", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[Side, typer.Argument(help="src or dst")])
# every flag comes from the declarations beside ExtractSettings (facelab.stages.extract.OPTIONS)
app.command("extract")(command(OPTIONS + ACTIONS, _extract, _extract.__doc__ or "", arguments=[_SIDE]))


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
