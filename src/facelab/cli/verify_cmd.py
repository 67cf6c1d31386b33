"""CLI command `facelab verify`: which synthetic-media marks do files carry."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import app, console
from facelab.errors import FacelabError
from facelab.options import Option, command


def _print(line: str) -> None:
    console.print(line, highlight=False, markup=False)  # file names and tags may contain [brackets]


def _show(path: Path, report) -> None:
    _print(f"{path}: {'MARKED as synthetic' if report.marked else 'NOT MARKED (no watermark, no synthetic manifest, no labels)'}")
    wm = report.watermark
    if wm is None:
        _print("  watermark: not checked")
    else:
        relation = ">=" if wm.found else "<"
        frames = f"{wm.frames} frame{'s' if wm.frames != 1 else ''}"
        _print(f"  watermark: {'found' if wm.found else 'not found'} (score {wm.score:.1f} {relation} threshold {wm.threshold:g}, {frames})")
    m = report.manifest
    if m.found:
        parts = ["valid" if m.valid else "INVALID", "synthetic" if m.synthetic else "not declared synthetic"]
        if m.generator:
            parts.append(f"generator {m.generator}")
        if m.signer:
            parts.append(f"signer {m.signer}")
        _print(f"  C2PA manifest: {', '.join(parts)}")
    else:
        _print("  C2PA manifest: none")
    for problem in m.problems:
        _print(f"    problem: {problem}")
    for note in m.notes:
        _print(f"    note: {note}")
    if report.tags:
        _print(f"  labels ({'synthetic' if report.synthetic_tags else 'not synthetic'}):")
        for key, value in report.tags.items():
            _print(f"    {key}: {value}")
    else:
        _print("  labels: none")
    for note in report.notes:
        _print(f"  note: {note}")


OPTIONS = (Option("max_seconds", float, None, "Videos: look for the watermark in the first N seconds only.", lo=0,
                  lo_open=True, metavar="N", cli_only=True),)
"""`facelab verify`'s flags (it has no settings class)."""


def _verify(files: list[Path], max_seconds: float | None = None) -> None:
    """Check files for facelab's marks: watermark, signed C2PA manifest, metadata labels.

    Exit status: 0 when every file carries at least one mark, 1 when any file carries none,
    2 when a file is missing or cannot be read.
    """
    from facelab.provenance.verify import verify_file

    max_seconds = OPTIONS[0].check(max_seconds, "verify.")
    for path in files:
        if not path.is_file():
            raise FacelabError(f"{path} {'is not a file' if path.exists() else 'does not exist'}",
                               "give the paths of image, video or exported model files")
    unmarked, failed = 0, []
    for i, path in enumerate(files):
        if i:
            _print("")
        try:
            report = verify_file(path, max_seconds=max_seconds)
        except FacelabError as e:
            failed.append(path)
            _print(f"{path}: cannot be checked: {e}")
            continue
        _show(path, report)
        unmarked += not report.marked
    if failed:
        raise FacelabError(f"{len(failed)} of {len(files)} files could not be checked ({', '.join(map(str, failed))})",
                           "give readable image, video or exported model files")
    if unmarked:
        if len(files) > 1:
            _print(f"\n{unmarked} of {len(files)} files carry no mark")
        raise typer.Exit(1)


_FILES = inspect.Parameter("files", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           annotation=Annotated[list[Path], typer.Argument(
                               help="Images, videos or exported models (.dfm, .onnx) to check.", show_default=False)])
app.command("verify")(command(OPTIONS, _verify, _verify.__doc__ or "", arguments=[_FILES]))
