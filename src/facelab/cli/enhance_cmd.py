"""CLI command: train-enhancer (the face enhancer behind `facelab merge --enhancer NAME`)."""

from __future__ import annotations

from facelab.cli import app, console, current_workspace, output_marker, report
from facelab.enhance.options import CLI_OPTIONS
from facelab.options import command


def _train_enhancer(**given) -> None:
    """Train (or continue) a face enhancer on the src faces, for `facelab merge --enhancer NAME`. Ctrl+C saves and stops."""
    from facelab.stages import enhance

    settings = enhance.EnhanceSettings(**{k: v for k, v in given.items() if v is not None})
    report(enhance.run(current_workspace(), settings, log=lambda s: console.print(s, highlight=False, markup=False),
                       marker=output_marker()))


# the flags are the declarations of facelab.enhance.options (every EnhanceSettings field but `model`)
app.command("train-enhancer")(command(CLI_OPTIONS, _train_enhancer, _train_enhancer.__doc__ or ""))
