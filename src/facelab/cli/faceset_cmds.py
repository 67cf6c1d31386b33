"""CLI commands: faceset utilities (``facelab faceset <command>``).

Each command's flags are generated from its declarations, ``facelab.stages.faceset.OPTIONS[command]``."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from facelab.cli import FaceTypeOpt, Side, SideGroup, app, console, current_workspace, report
from facelab.options import command
from facelab.stages import faceset

faceset_app = typer.Typer(
    cls=SideGroup,
    help="Face-set utilities: debug images, names, pack, resize, metadata, coverage, DeepFaceLab import/export.",
    no_args_is_help=True,
)
app.add_typer(faceset_app, name="faceset")

_TYPES = {"face_type": FaceTypeOpt, "to": Side}
"""Options typed as an Enum of their declared choices on the command line, so Typer lists and checks them."""


def _argument(name: str, kind: type, help: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[kind, typer.Argument(help=help)])


_SIDE = _argument("side", Side, "src or dst")


def _values(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Each option of command ``name``: the value given (an Enum's value), else its declared default."""
    return {o.name: o.default if given[o.name] is None else
            given[o.name].value if isinstance(given[o.name], Enum) else given[o.name] for o in faceset.OPTIONS[name]}


def _debug_landmarks(side: Side, **given) -> None:
    """Write <name>_debug.jpg beside each aligned face: landmarks, hull and face-type frame drawn."""
    report(faceset.debug_landmarks(current_workspace(), side.value, **_values("debug-landmarks", given)))


def _recover_names(side: Side, **given) -> None:
    """Give the aligned faces their original file names back (undo sorting)."""
    report(faceset.recover_names(current_workspace(), side.value, **_values("recover-names", given)))


def _pack(side: Side, **given) -> None:
    """Pack the aligned faces into one file data_<side>/aligned.faceset (checked, then the loose files are removed)."""
    report(faceset.pack(current_workspace(), side.value, **_values("pack", given)))


def _unpack(side: Side, **given) -> None:
    """Restore the aligned faces from data_<side>/aligned.faceset (byte-identical)."""
    report(faceset.unpack(current_workspace(), side.value, **_values("unpack", given)))


def _resize(side: Side, **given) -> None:
    """Cut every face again from its frame at a new size / face type."""
    v = _values("resize", given)
    report(faceset.resize(current_workspace(), side.value, v["size"], v["face_type"], v["quality"]))


def _save_meta(side: Side) -> None:
    """Save the metadata of every face to data_<side>/aligned/meta.json (before editing faces in another program)."""
    report(faceset.save_meta(current_workspace(), side.value))


def _restore_meta(side: Side) -> None:
    """Write the metadata saved by save-meta back into the (edited) faces."""
    report(faceset.restore_meta(current_workspace(), side.value))


def _to_jpg(folder: Path, **given) -> None:
    """Convert aligned PNG faces to JPG, keeping their metadata."""
    if str(folder) in ("src", "dst") and not folder.exists():
        folder = current_workspace().aligned_dir(str(folder))
    report(faceset.to_jpg(folder, **_values("to-jpg", given)))


def _coverage() -> None:
    """Compare yaw/pitch and brightness of src against dst; writes workspace/coverage.png."""
    summary, text = faceset.coverage(current_workspace())
    console.print(text, highlight=False, markup=False)
    report(summary)


def _import_dfl(folder: Path, **given) -> None:
    """Import a DeepFaceLab face set (its metadata is read without executing anything)."""
    report(faceset.import_dfl(current_workspace(), folder, _values("import-dfl", given)["to"]))


def _export_dfl(side: Side, folder: Path, **given) -> None:
    """Write the aligned faces in DeepFaceLab's format (JPEG + pickled metadata) for training in DeepFaceLab."""
    report(faceset.export_dfl(current_workspace(), side.value, folder, _values("export-dfl", given)["quality"]))


def _register() -> None:
    """The subcommands, in ``faceset.OPTIONS``' order: a body and its positional arguments each."""
    bodies = {
        "debug-landmarks": (_debug_landmarks, [_SIDE]),
        "recover-names": (_recover_names, [_SIDE]),
        "pack": (_pack, [_SIDE]),
        "unpack": (_unpack, [_SIDE]),
        "resize": (_resize, [_SIDE]),
        "save-meta": (_save_meta, [_SIDE]),
        "restore-meta": (_restore_meta, [_SIDE]),
        "to-jpg": (_to_jpg, [_argument("folder", Path, "Folder of aligned faces, or src/dst for that side's aligned folder.")]),
        "coverage": (_coverage, []),
        "import-dfl": (_import_dfl, [_argument("folder", Path, "A DeepFaceLab aligned folder (JPEG faces).")]),
        "export-dfl": (_export_dfl, [_SIDE, _argument("folder", Path, "Output folder.")]),
    }
    for name, options in faceset.OPTIONS.items():
        body, arguments = bodies[name]
        faceset_app.command(name)(command(options, body, body.__doc__ or "", arguments=arguments, types=_TYPES))


_register()
