"""CLI commands: faceset utilities (``facelab faceset <command>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import FaceTypeOpt, Side, app, console, current_workspace, report

faceset_app = typer.Typer(
    help="Face-set utilities: debug images, names, pack, resize, metadata, coverage, DeepFaceLab import/export.",
    no_args_is_help=True,
)
app.add_typer(faceset_app, name="faceset")

SideArg = Annotated[Side, typer.Argument(help="src or dst")]


@faceset_app.command("debug-landmarks")
def debug_landmarks_cmd(
    side: SideArg,
    remove: Annotated[bool, typer.Option("--remove", help="Delete the *_debug.jpg images instead.")] = False,
) -> None:
    """Write <name>_debug.jpg beside each aligned face: landmarks, hull and face-type frame drawn."""
    from facelab.stages import faceset

    report(faceset.debug_landmarks(current_workspace(), side.value, remove))


@faceset_app.command("recover-names")
def recover_names_cmd(
    side: SideArg,
    include_trash: Annotated[bool, typer.Option("--include-trash", help="Also bring faces back from aligned_trash.")] = False,
) -> None:
    """Give the aligned faces their original file names back (undo sorting)."""
    from facelab.stages import faceset

    report(faceset.recover_names(current_workspace(), side.value, include_trash))


@faceset_app.command("pack")
def pack_cmd(
    side: SideArg,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the loose face files.")] = False,
) -> None:
    """Pack the aligned faces into one file data_<side>/aligned.faceset (checked, then the loose files are removed)."""
    from facelab.stages import faceset

    report(faceset.pack(current_workspace(), side.value, keep))


@faceset_app.command("unpack")
def unpack_cmd(
    side: SideArg,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the pack file.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace faces of the same name.")] = False,
) -> None:
    """Restore the aligned faces from data_<side>/aligned.faceset (byte-identical)."""
    from facelab.stages import faceset

    report(faceset.unpack(current_workspace(), side.value, keep, overwrite))


@faceset_app.command("resize")
def resize_cmd(
    side: SideArg,
    size: Annotated[int, typer.Option("--size", help="New face size in pixels.")],
    face_type: Annotated[FaceTypeOpt | None, typer.Option("--face-type", help="New face type (default: keep).")] = None,
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality 1..100.")] = 95,
) -> None:
    """Cut every face again from its frame at a new size / face type."""
    from facelab.stages import faceset

    report(faceset.resize(current_workspace(), side.value, size, face_type.value if face_type else None, quality))


@faceset_app.command("save-meta")
def save_meta_cmd(side: SideArg) -> None:
    """Save the metadata of every face to data_<side>/aligned/meta.json (before editing faces in another program)."""
    from facelab.stages import faceset

    report(faceset.save_meta(current_workspace(), side.value))


@faceset_app.command("restore-meta")
def restore_meta_cmd(side: SideArg) -> None:
    """Write the metadata saved by save-meta back into the (edited) faces."""
    from facelab.stages import faceset

    report(faceset.restore_meta(current_workspace(), side.value))


@faceset_app.command("to-jpg")
def to_jpg_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of aligned faces, or src/dst for that side's aligned folder.")],
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality 1..100.")] = 95,
) -> None:
    """Convert aligned PNG faces to JPG, keeping their metadata."""
    from facelab.stages import faceset

    if str(folder) in ("src", "dst") and not folder.exists():
        folder = current_workspace().aligned_dir(str(folder))
    report(faceset.to_jpg(folder, quality))


@faceset_app.command("coverage")
def coverage_cmd() -> None:
    """Compare yaw/pitch and brightness of src against dst; writes workspace/coverage.png."""
    from facelab.stages import faceset

    summary, text = faceset.coverage(current_workspace())
    console.print(text, highlight=False, markup=False)
    report(summary)


@faceset_app.command("import-dfl")
def import_dfl_cmd(
    folder: Annotated[Path, typer.Argument(help="A DeepFaceLab aligned folder (JPEG faces).")],
    to: Annotated[Side, typer.Option("--to", help="Side to import into.")] = Side.src,
) -> None:
    """Import a DeepFaceLab face set (its metadata is read without executing anything)."""
    from facelab.stages import faceset

    report(faceset.import_dfl(current_workspace(), folder, to.value))


@faceset_app.command("export-dfl")
def export_dfl_cmd(
    side: SideArg,
    folder: Annotated[Path, typer.Argument(help="Output folder.")],
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality for PNG faces, 1..100.")] = 95,
) -> None:
    """Write the aligned faces in DeepFaceLab's format (JPEG + pickled metadata) for training in DeepFaceLab."""
    from facelab.stages import faceset

    report(faceset.export_dfl(current_workspace(), side.value, folder, quality))
