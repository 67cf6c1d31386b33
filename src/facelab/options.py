"""One declaration per option: type, default, range, help, first-run question and docs text.

A step's options are a tuple of :class:`Option`. Everything that shows or checks
an option reads it from there, so they cannot drift apart:

- the CLI's flags (:func:`typer_parameters`, turned into a command's signature),
- validation of a settings dataclass (:meth:`Option.check`),
- the keys a ``--config`` TOML file may hold (:func:`schema`, also the form
  description a browser UI renders),
- the first-run questions (:meth:`Option.parse` turns a typed answer into a value),
- the option tables in ``docs/`` (:func:`markdown_table`, written by
  ``tools/gen_option_docs.py``; a test fails when a table is out of date).

``None`` as a value means "not given": the step then uses the value saved with
the model (``saved``) or the option's default.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from facelab.errors import SettingsError

_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}


@dataclass(frozen=True)
class Option:
    """One option of a step.

    Attributes:
        name: the settings field and TOML key (``batch_size``).
        kind: ``bool``, ``int``, ``float``, ``str`` or ``Path``.
        default: the value when neither given nor saved (None: none, or decided at run time, see ``shown_default``).
        help: one line for ``--help`` and the UI's tooltip.
        flags: the CLI spellings, first the canonical one (``("--flip/--no-flip",)``, ``("--iterations",
            "--target-iteration")``); default ``--<name with dashes>``.
        lo, hi: inclusive range of a number (``lo_open`` / ``hi_open``: that end itself excluded).
        multiple_of: a whole number must be a multiple of this.
        choices: allowed values: strings, or whole numbers of an ``int`` option (``(2, 4)``).
        fixed: fixed at a model's first run (an architecture option).
        saved: saved with the model; a later run without it takes the saved value.
        question: the first-run question's text (None: not asked).
        explain: what ``?`` prints at the question (default ``help``).
        doc: the docs table's text (default ``help``).
        shown_default: the default as the docs and questions show it, where ``default`` cannot say it
            (``"the model's"``).
        hint: what to do when a value is refused (default: the range in words).
        group: docs table and ``--help`` panel the option belongs to.
        models: architecture options only: the models that take it (None: every model).
        cli_only: a flag only (not a settings field, e.g. ``--config``).
        metavar: the value's name in the docs tables (default from the kind: N, P, NAME, DIR).
        hidden: a flag kept for old scripts, left out of ``--help`` and the docs.
        required: a flag that must be given (no default; the docs show "required").
    """

    name: str
    kind: type
    default: Any = None
    help: str = ""
    flags: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    multiple_of: int | None = None
    choices: tuple[Any, ...] | None = None
    fixed: bool = False
    saved: bool = False
    question: str | None = None
    explain: str | None = None
    doc: str | None = None
    shown_default: str | None = None
    hint: str | None = None
    group: str = ""
    models: tuple[str, ...] | None = None
    cli_only: bool = False
    metavar: str | None = None
    hidden: bool = False
    required: bool = False

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    def range_text(self) -> str:
        """The allowed values in words: ``a whole number from 1 to 512``."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind is bool:
            return "true or false"
        what = "a whole number" if self.kind is int else "a number"
        if self.multiple_of:
            what = f"a multiple of {self.multiple_of}"
        if self.lo is not None and self.hi is not None:
            return (f"{what} from {'above ' if self.lo_open else ''}{_num(self.lo)} to {'below ' if self.hi_open else ''}"
                    f"{_num(self.hi)}")
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        return what

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` if it is allowed (None always is: not given), else :class:`SettingsError` naming the key
        (after ``where``, e.g. ``"frames."``)."""
        if value is None:
            return value
        name, hint = where + self.name, self.hint or f"use {self.range_text()}"
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{name}: {value!r} is not true or false", "use true or false")
            return value
        if self.kind in (str, Path):
            if not isinstance(value, (str, Path)) or (self.choices and value not in self.choices):
                raise SettingsError(f"{name}: {value!r} is not allowed" if not self.choices else
                                    f"{name}: {value!r} is not one of {', '.join(map(str, self.choices))}", hint)
            return value
        numeric = (int,) if self.kind is int else (int, float)
        ok = isinstance(value, numeric) and not isinstance(value, bool) and math.isfinite(value)
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        if ok and self.multiple_of:
            ok = value % self.multiple_of == 0
        if ok and self.choices:
            ok = value in self.choices
        if not ok:
            raise SettingsError(f"{name}: {value!r} is not one of {', '.join(map(str, self.choices))}" if self.choices else
                                f"{name}: {value!r} is out of range", hint)
        return value

    def parse(self, text: str) -> Any:
        """A typed answer (first-run question, a form field) as a checked value; ``ValueError`` saying why not."""
        t = text.strip()
        if self.kind is bool:
            low = t.lower()
            if low in ("y", "yes", "1", "true", "on"):
                return True
            if low in ("n", "no", "0", "false", "off"):
                return False
            raise ValueError("answer y or n")
        value: Any = t if self.kind in (str, Path) else self.kind(t)
        try:
            return self.check(value)
        except SettingsError as e:
            if self.kind in (int, float) and self.lo is not None and self.hi is not None:  # short, at a prompt
                raise ValueError(f"use {_num(self.lo)}..{_num(self.hi)}"
                                 + (f", a multiple of {self.multiple_of}" if self.multiple_of else "")) from None
            raise ValueError(e.hint or str(e)) from None


def _num(v: float) -> str:
    return f"{v:g}"


def rename_field(settings: Any, old: str, new: str, value: Any) -> None:
    """Set field ``new`` of a frozen settings object from the old keyword ``old`` (an ``InitVar``), with a
    ``DeprecationWarning``: old scripts keep working and are told the new name."""
    import warnings

    if value is not None:
        warnings.warn(f"{type(settings).__name__}({old}=...) is deprecated: use {new}=", DeprecationWarning, stacklevel=4)
        object.__setattr__(settings, new, value)


def by_name(options: Iterable[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}


def given(options: Iterable[Option], values: dict[str, Any]) -> dict[str, Any]:
    """The values of ``options`` that were given (not None), e.g. a command's keywords for its settings class."""
    return {o.name: values[o.name] for o in options if values[o.name] is not None}


def typer_parameters(options: Iterable[Option], types: dict[str, Any] | None = None) -> list[inspect.Parameter]:
    """Keyword parameters for a Typer command, one per option, each defaulting to None (not given); a ``required``
    one has no default. ``types`` (option name -> type) replaces an option's kind on the command line, e.g. an
    ``Enum`` of its choices, so Typer lists and checks them."""
    import typer

    params = []
    for o in options:
        kind = (types or {}).get(o.name, str if o.kind is Path and not o.cli_only else o.kind)
        info = typer.Option(*o.cli_flags, help=o.help, rich_help_panel=o.group or None, hidden=o.hidden)
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=inspect.Parameter.empty if o.required else None,
                                        annotation=Annotated[kind if o.required else kind | None, info]))
    return params


def command(options: Iterable[Option], body: Callable[..., None], doc: str,
            arguments: Iterable[inspect.Parameter] = (), more: Iterable[inspect.Parameter] = (),
            types: dict[str, Any] | None = None) -> Callable[..., None]:
    """A function taking one keyword per option (what Typer registers), calling ``body(**given)``;
    ``arguments`` are positional parameters (Typer ``Argument``s) placed before the options, ``more`` hand-made
    keyword parameters placed after them (a flag an :class:`Option` cannot type, e.g. one taking two paths),
    ``types`` as for :func:`typer_parameters`."""
    options = tuple(options)
    params = [*arguments, *typer_parameters(options, types), *more]

    def run(**given: Any) -> None:
        body(**given)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__doc__ = doc
    run.options = tuple(options)  # type: ignore[attr-defined]  # what the command was made from (tests, the UI)
    return run


def schema(options: Iterable[Option]) -> dict[str, Any]:
    """JSON-schema-like description of the options: the keys a TOML file may hold, and a UI form's fields."""
    props = {}
    for o in options:
        if o.cli_only:
            continue
        p: dict[str, Any] = {"type": _KINDS[o.kind], "description": o.help, "default": o.default,
                             "fixed_at_first_run": o.fixed, "saved_with_model": o.saved}
        if o.lo is not None:
            p["exclusiveMinimum" if o.lo_open else "minimum"] = o.lo
        for key, v in (("multipleOf", o.multiple_of), ("enum", list(o.choices) if o.choices else None)):
            if v is not None:
                p[key] = v
        if o.hi is not None:
            p["exclusiveMaximum" if o.hi_open else "maximum"] = o.hi
        if o.models is not None:
            p["models"] = list(o.models)
        if o.question:
            p["question"] = o.question
        props[o.name] = p
    return {"type": "object", "additionalProperties": False, "properties": props}


def form_fields(options: Iterable[Option]) -> list[dict[str, Any]]:
    """A form's fields, one per option (run flags included, hidden ones left out): name, kind, default, help, range,
    choices, group and the CLI flag, JSON-able: what the browser UI renders its forms from."""
    out = []
    for o in options:
        if o.hidden:
            continue
        out.append({"name": o.name, "kind": _KINDS[o.kind], "default": o.default, "help": o.help, "flag": o.cli_flags[0],
                    "choices": list(o.choices) if o.choices else None, "min": o.lo, "max": o.hi, "min_open": o.lo_open,
                    "max_open": o.hi_open, "multiple_of": o.multiple_of, "required": o.required, "group": o.group,
                    "shown_default": default_text(o).replace("`", ""), "fixed": o.fixed, "saved": o.saved})
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def default_text(o: Option) -> str:
    if o.required:
        return "required"
    if o.shown_default is not None:
        return o.shown_default
    if o.kind is bool:
        return "on" if o.default else "off"
    return "none" if o.default is None else f"`{o.default}`" if o.kind is str else _num(o.default)


def markdown_table(options: Iterable[Option], models: Callable[[str], Iterable[str]] | None = None) -> str:
    """The docs table of ``options`` (less the hidden ones): flags, default (marked *saved* / fixed at the first
    run), what it does; with ``models`` (option name -> the models that take it) also a Models column."""
    head = "| Option | Models | Default | What it does |\n| --- | --- | --- | --- |" if models else \
        "| Option | Default | What it does |\n| --- | --- | --- |"
    rows = [head]
    for o in options:
        if o.hidden:
            continue
        flags = ", ".join(f"`{f}{'' if o.kind is bool else ' ' + _metavar(o)}`" for f in o.cli_flags)
        default = default_text(o) + (" (*saved*)" if o.saved else "") + (" (fixed at the first run)" if o.fixed else "")
        cells = [flags] + ([", ".join(models(o.name))] if models else []) + [default, o.doc or o.help]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def _metavar(o: Option) -> str:
    if o.metavar:
        return o.metavar
    if o.choices:
        return "|".join(map(str, o.choices)) if len(o.choices) <= 4 else "MODE"
    return {int: "N", float: "P", str: "NAME", Path: "DIR"}[o.kind]


def replace_table(text: str, key: str, table: str) -> str:
    """``text`` with the block between ``<!-- options:KEY -->`` and ``<!-- /options:KEY -->`` set to ``table``."""
    start, end = f"<!-- options:{key} -->", f"<!-- /options:{key} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {start} ... {end} block")
    return text[: i + len(start)] + "\n" + table + "\n" + text[j:]
