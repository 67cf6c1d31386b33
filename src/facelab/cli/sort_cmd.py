"""CLI command: sort (face-set sorting)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from facelab.cli import Side, app, current_workspace, renamed_flag, report
from facelab.faceset.sort import METHODS

SortBy = Enum("SortBy", {name.replace("-", "_"): name for name in METHODS}, type=str)  # type: ignore[misc]


@app.command("sort", help="Sort the aligned faces of a side (renames files so a file browser shows the new order).\n\nMethods: "
                 + "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + ".")
def sort_cmd(
    side: Annotated[Side, typer.Argument(help="src or dst")],
    by: Annotated[SortBy, typer.Option("--by", help="Sort method.")] = SortBy["blur"],  # type: ignore[valid-type]
    target: Annotated[int, typer.Option("--target", help="final: number of faces to keep (the rest go to aligned_trash).")] = 2000,
    reference: Annotated[Path | None, typer.Option("--reference", help="identity: an image of the person or one of their aligned faces.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker threads; 0 = all cores (default).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", hidden=True, help="Old spelling of --workers (deprecated).")] = None,
) -> None:
    from facelab.stages import sort

    settings = sort.SortSettings(by=by.value, target=target, reference=reference, workers=renamed_flag("--threads", "--workers", threads, workers, 0))
    report(sort.run(current_workspace(), side.value, settings))
