"""Command line: each command parses its flags, builds the step's settings and calls one stage.

Errors a user can fix (:class:`facelab.errors.FacelabError`, and an ``OSError``
such as a full disk, a read-only workspace or a denied permission, see
:func:`facelab.fileio.write_error`) are printed as one line with a hint and exit
with status 2; anything else is a bug and keeps its traceback. Ctrl+C prints
what was kept and how to continue, and exits with status 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape

from facelab import __version__
from facelab.errors import FacelabError
from facelab.options import Option, command, given
from facelab.stages import Summary
from facelab.workspace import Workspace

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

# `facelab --help` lists the workflow steps in the order they are run, then the tools
COMMAND_ORDER = ("workspace", "frames", "extract", "seg", "train", "merge", "video", "export", "eval", "demo", "verify", "train-enhancer",
                 "cut", "denoise", "sort", "faceset", "ui")


class Interrupted(Exception):
    """Ctrl+C during a command, with what was kept and how to continue (printed by :func:`main`, exit 130).

    Not a ``KeyboardInterrupt``: click turns that into a silent exit 130 before
    :func:`main` could say anything.
    """

    def __init__(self, message: str = "interrupted: finished work is kept; run the same command again to continue") -> None:
        super().__init__(message)
        self.message = message


@contextmanager
def on_interrupt(kept: Callable[[], str]) -> Iterator[None]:
    """Turn Ctrl+C inside the block into :class:`Interrupted` with ``kept()`` as the message."""
    try:
        yield
    except KeyboardInterrupt:
        try:
            message = kept()
        except Exception:  # noqa: BLE001 - the message is a courtesy; never hide the interrupt behind a bug in it
            message = Interrupted().message
        raise Interrupted(message) from None


def side_flag_as_argument(cmd, args: list[str]) -> list[str]:
    """``--side src`` (``--side=src``) taken as the side argument of a command that takes it as one (``facelab
    frames src``): ``facelab seg`` spells it ``--side``, and a user who learnt one way types it everywhere."""
    if cmd is None or not any(p.name == "side" and p.param_type_name == "argument" for p in cmd.params):
        return args
    out: list[str] = []
    rest = iter(args)
    for a in rest:
        if a == "--":  # what follows is arguments only
            out += [a, *rest]
        elif a == "--side":
            out += [v for v in (next(rest, None),) if v is not None]  # no value: click says the side is missing
        else:
            out.append(a.removeprefix("--side=") if a.startswith("--side=") else a)
    return out


class SideGroup(TyperGroup):
    """A command group whose commands' side argument may also be given as ``--side`` (:func:`side_flag_as_argument`)."""

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        return name, cmd, side_flag_as_argument(cmd, rest)


class _OrderedGroup(SideGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx):
        # every command: Ctrl+C reaches main() (a command may have raised a more precise Interrupted already)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None


app = typer.Typer(
    name="facelab",
    cls=_OrderedGroup,
    help="Face replacement for video (DeepFaceLab workflow). Every output is marked as synthetic.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Side(str, Enum):
    src = "src"
    dst = "dst"


class FaceTypeOpt(str, Enum):
    half = "half"
    mid = "mid"
    full = "full"
    whole = "whole"
    head = "head"


_state: dict[str, Workspace] = {}


def current_workspace() -> Workspace:
    return _state["ws"]


def output_marker():
    """The :class:`facelab.provenance.Marker` every command that writes media gives its stage: it signs
    with the local key in ``$FACELAB_HOME/keys`` (default ``~/.facelab/keys``), made on the first
    signature. The CLI is the one place that chooses that folder; the stages only use the marker."""
    from facelab.provenance import default_marker

    return default_marker()


def renamed_flag(old: str, new: str, old_value, new_value, default):
    """The value of an option that was renamed: ``new`` wins; ``old`` still works (scripts use it) with a
    deprecation message on stderr; both with different values is an error."""
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None and new_value != old_value:
        raise FacelabError(f"{old} {old_value} and {new} {new_value} name the same setting", f"give only {new}")
    err_console.print(f"[yellow]warning:[/yellow] {old} is deprecated here: use {new} (the same setting; {old} keeps working)",
                      highlight=False)
    return old_value


def report(summary: Summary) -> None:
    ws = _state.get("ws")
    while ws is not None and ws.notices:  # what the workspace changed by itself on the way (e.g. unpacked a face set)
        console.print(f"note: {escape(ws.notices.pop(0))}", highlight=False)
    console.print(summary.line(), highlight=False, markup=False)
    for w in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"facelab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    workspace: Annotated[Path, typer.Option("-w", "--workspace", help="Workspace folder.")] = Path("workspace"),
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    _state["ws"] = Workspace(workspace)


WORKSPACE_RUN = (
    Option("clear", bool, False, "Delete everything in the workspace except data_src.*/data_dst.*", flags=("--clear",),
           cli_only=True),
    Option("yes", bool, False, "Do not ask before clearing.", flags=("--yes", "-y"), cli_only=True),
)
"""`facelab workspace`'s flags."""


def _workspace(clear: bool | None = None, yes: bool | None = None) -> None:
    """Create the workspace folder layout (or clear it)."""
    ws = current_workspace()
    if clear:
        ws.require_exists()
        if not yes:
            if not sys.stdin.isatty():
                raise FacelabError(f"refusing to clear {ws.root} without confirmation", "add --yes")
            typer.confirm(f"Delete everything in {ws.root} except the input videos?", abort=True)
        removed = ws.clear()
        console.print(f"cleared {ws.root} ({removed} entries removed)")
        return
    made = ws.create()
    console.print(f"workspace {ws.root}: {len(made)} folders created" if made else f"workspace {ws.root} is ready")
    console.print("next: put your videos there as data_src.mp4 and data_dst.mp4, then run `facelab frames src`")


app.command("workspace")(command(WORKSPACE_RUN, _workspace, _workspace.__doc__ or ""))


DEMO_RUN = (
    Option("force", bool, False, "Start over: delete the demo's earlier frames, faces, model and result (asks first).",
           flags=("--force/--no-force",), cli_only=True),
    Option("yes", bool, False, "With --force: do not ask before deleting.", flags=("--yes", "-y"), cli_only=True),
)
"""`facelab demo`'s run-only flags (its settings: :data:`facelab.stages.demo.OPTIONS`)."""


def _demo(**values) -> None:
    """Run the whole workflow on the sample clips shipped with facelab, in a workspace of its own.

    The workspace (-w, default ./workspace) must be new, empty or an earlier demo's; one with
    other files or videos is refused and left untouched. Run again, the demo continues."""
    from facelab.stages import demo

    ws = current_workspace()
    force, yes = bool(values["force"]), bool(values["yes"])
    # starting over deletes the demo's earlier work: ask first (a workspace not the demo's is refused right here)
    if force and demo.check_workspace(ws) and not yes:
        if not sys.stdin.isatty():
            raise FacelabError(f"refusing to delete the earlier demo in {ws.root} without confirmation",
                               "add --yes to start over, or leave out --force to continue it")
        typer.confirm(f"Delete the demo's frames, faces, model and result in {ws.root} and start over?", abort=True)
    result = demo.run(ws, **given(demo.OPTIONS, values), force=force, report=report,
                      log=lambda s: console.print(s, highlight=False, markup=False), marker=output_marker())
    console.print(f"\n[bold green]done:[/bold green] {escape(str(result))}", highlight=False)


def _register_demo() -> None:
    from facelab.stages import demo

    app.command("demo")(command(demo.OPTIONS + DEMO_RUN, _demo, _demo.__doc__ or ""))


_register_demo()


# the other commands live in their own modules and register themselves on `app`
from facelab.cli import media_cmds, extract_cmd, train_cmd, sort_cmd, faceset_cmds  # noqa: E402,F401
from facelab.cli import merge_cmd, verify_cmd  # noqa: E402,F401
from facelab.cli import enhance_cmd  # noqa: E402,F401
from facelab.cli import eval_cmd  # noqa: E402,F401
from facelab.cli import ui_cmd  # noqa: E402,F401
from facelab.cli import seg_cmd  # noqa: E402,F401
from facelab.cli import export_cmd  # noqa: E402,F401


def _print_error(e: FacelabError) -> None:
    # one line: what is wrong, then in brackets what to do
    err_console.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings facelab raises for the user (e.g. a key folder it tightened) as one line, not a source location."""
    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)


def main() -> None:
    import warnings

    from facelab import jobs
    from facelab.progress import Bars

    warnings.showwarning = _show_warning
    bars = Bars(skip=("train",))  # every step's progress arrives as job events; training prints its own log lines
    job = jobs.Job()


    def ws_jobs() -> Path | None:  # known once the command line is parsed
        ws = _state.get("ws")
        return ws.jobs_dir if ws is not None and ws.root.is_dir() else None

    # a status file in the workspace lets `facelab ui` show (and cancel) this step
    status = jobs.StatusFile(ws_jobs, next((a for a in sys.argv[1:] if a in COMMAND_ORDER), ""), sys.argv[1:], job.cancel)
    job.on_event = lambda event: (bars(event), status(event))
    try:
        with jobs.running(job):
            app()
    except FacelabError as e:
        _print_error(e)
        raise SystemExit(2) from None
    except OSError as e:
        # a full disk, a read-only workspace, a denied permission: the user can fix these
        from facelab.fileio import write_error  # not at the top: it loads OpenCV, and --help should be quick

        user_error = write_error(e)
        if user_error is None:
            raise  # anything else is a bug: keep the traceback
        _print_error(user_error)
        raise SystemExit(2) from None
    except Interrupted as e:
        err_console.print(escape(e.message), highlight=False)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        err_console.print(Interrupted().message, highlight=False, markup=False)
        raise SystemExit(130) from None
    finally:
        bars.close()
        status.close()


if __name__ == "__main__":
    main()
