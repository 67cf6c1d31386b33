"""CLI command `facelab eval`: measure a finished merge (docs/eval.md), or compare two eval results.

Its flags are the declarations beside EvalSettings, plus the run-only ``--compare`` and the old ``--model``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from facelab.cli import app, console, current_workspace, output_marker, renamed_flag, report
from facelab.options import Option, command, given
from facelab.stages.eval import OPTIONS

DEPRECATED_MODEL = Option("model", str, None, "Old spelling of --name (deprecated).", cli_only=True, hidden=True)
COMPARE = Option("compare", Path, None, "Print two eval JSON files side by side (A B) with the differences; measures nothing.",
                 flags=("--compare",), cli_only=True, metavar="A.json B.json", shown_default="",
                 doc="print a table: metric, A, B, B-A and which run is better; measures nothing")
# an Option has one value: --compare's two paths are a hand-made parameter, its flag and help from COMPARE
_COMPARE = inspect.Parameter(COMPARE.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[tuple[Path, Path] | None, typer.Option(*COMPARE.cli_flags, help=COMPARE.help)])


def _eval(**values: Any) -> None:
    """Measure a finished merge against its dst frames: sharpness, expression, head pose, identity, mouth and eye
    motion, jitter, background, seam and colour; targets and definitions in docs/eval.md.

    Prints one summary line (then warnings, including the targets missed); --json and --html save the details."""
    compare = values["compare"]
    if compare is not None:
        from facelab.eval.report import compare as compare_docs
        from facelab.eval.report import load_json

        a, b = (load_json(p) for p in compare)
        console.print(f"A: {compare[0]}\nB: {compare[1]}", highlight=False, markup=False)
        for line in compare_docs(a, b):
            console.print(line, highlight=False, markup=False)
        return
    from facelab.stages.eval import EvalSettings, run

    values["name"] = renamed_flag("--model", "--name", values["model"], values["name"], None)
    summary, _ = run(current_workspace(), EvalSettings(**given(OPTIONS, values)), marker=output_marker())
    report(summary)


app.command("eval")(command(OPTIONS + (DEPRECATED_MODEL,), _eval, _eval.__doc__ or "", more=[_COMPARE]))
