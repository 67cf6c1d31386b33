"""CLI command: sort (face-set sorting); its flags are the declarations beside SortSettings."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from facelab.cli import Side, app, current_workspace, renamed_flag, report
from facelab.faceset.sort import METHODS
from facelab.options import Option, command, given
from facelab.stages.sort import OPTIONS

DEPRECATED_THREADS = Option("threads", int, None, "Old spelling of --workers (deprecated).", cli_only=True, hidden=True)
_HELP = ("Sort the aligned faces of a side (renames files so a file browser shows the new order).\n\nMethods: "
         + "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()) + ".")


def _sort(side: Side, **values: Any) -> None:
    from facelab.stages import sort

    values["workers"] = renamed_flag("--threads", "--workers", values["threads"], values["workers"], None)
    report(sort.run(current_workspace(), side.value, sort.SortSettings(**given(OPTIONS, values))))


_SIDE = inspect.Parameter("side", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[Side, typer.Argument(help="src or dst")])
app.command("sort")(command(OPTIONS + (DEPRECATED_THREADS,), _sort, _HELP, arguments=[_SIDE]))
