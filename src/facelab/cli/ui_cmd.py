"""CLI command `facelab ui`: the workflow in a local browser UI (docs/ui.md)."""

from __future__ import annotations

from typing import Any

from facelab.cli import app, console, current_workspace, output_marker
from facelab.options import Option, command

OPTIONS = (
    Option("port", int, 7860, "Port to serve on (the next free one if taken).", lo=1, hi=65535, cli_only=True),
    Option("host", str, "127.0.0.1", "Address to serve on; anything but loopback makes the UI reachable from other "
                                     "machines (a warning is printed).", metavar="ADDR", cli_only=True),
    Option("no_browser", bool, False, "Print the address instead of opening a browser.", flags=("--no-browser",),
           cli_only=True),
)
"""`facelab ui`'s flags."""


def _ui(**given: Any) -> None:
    """Open the workspace in a local browser UI: run steps as jobs, browse face sets, watch training, merge
    interactively. Ctrl+C stops the server."""
    from facelab.ui.server import serve

    values = {o.name: o.check(given[o.name], "ui.") if given[o.name] is not None else o.default for o in OPTIONS}
    ws = current_workspace()
    ws.require_exists()
    serve(ws, marker=output_marker(), host=values["host"], port=values["port"], open_browser=not values["no_browser"],
          say=lambda s: console.print(s, highlight=False, markup=False))


app.command("ui")(command(OPTIONS, _ui, _ui.__doc__ or ""))
