"""The workflow steps the UI runs as jobs: for each, its form (from the same option declarations as the CLI
command, read off the command itself) and how its values become a stage call.

Options that take a file path (``--config``, ``--reference``, ``--pretrain`` ...) are left out of the forms: the
UI never takes a path from the browser (see :mod:`facelab.ui.files`); use the command line for those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab import jobs
from facelab.errors import SettingsError
from facelab.options import Option, form_fields, given
from facelab.provenance.marker import Marker
from facelab.workspace import Workspace

Run = Callable[[Workspace, "str | None", dict[str, Any], jobs.Job, Callable[[str], None], Marker], "facelab.stages.Summary | None"]


@dataclass(frozen=True)
class Step:
    """A step the Workspace page offers: the CLI command it mirrors, whether it takes a side, and how it runs."""

    name: str
    title: str
    sides: tuple[str, ...]  # () for a step without a side
    run: Run
    leave_out: tuple[str, ...] = ()  # flags of the command the UI does not offer (besides paths)
    first: tuple[Option, ...] = ()  # fields before the command's options (its positional arguments)

    def options(self) -> tuple[Option, ...]:
        """The command's declared options the form shows."""
        from typer.main import get_command

        from facelab.cli import app

        declared = get_command(app).commands[self.name].callback.options
        return self.first + tuple(o for o in declared if o.kind is not Path and not o.hidden and o.name not in self.leave_out)

    def form(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "sides": list(self.sides), "fields": form_fields(self.options())}

    def values(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The form's values, checked against the declarations (unknown keys refused, empty ones dropped)."""
        return checked_values(self.options(), raw, self.name, f"{self.name}.")


def _frames(ws, side, v, job, log, marker):
    from facelab.stages import frames

    return frames.run(ws, side, frames.FramesSettings(**given(frames.OPTIONS, _none(frames.OPTIONS, v))),
                      force=bool(v.get("force")), job=job)


def _none(options, values):  # every declared key, None where not given (what `given` expects)
    return {o.name: values.get(o.name) for o in options}


def _extract(ws, side, v, job, log, marker):
    from facelab.stages import extract

    return extract.run(ws, side, extract.ExtractSettings(**given(extract.OPTIONS, _none(extract.OPTIONS, v))),
                       force=bool(v.get("force")), job=job)


def _sort(ws, side, v, job, log, marker):
    from facelab.stages import sort

    return sort.run(ws, side, sort.SortSettings(**given(sort.OPTIONS, _none(sort.OPTIONS, v))), job=job)


def _train(ws, side, v, job, log, marker):
    from facelab.stages import train
    from facelab.train import options

    kwargs = given(options.TRAINER, _none(options.TRAINER, v))
    if kwargs.get("iterations") == 0:
        kwargs["iterations"], kwargs["no_target"] = None, True
    arch = tuple((o.name, v[o.name]) for o in options.ARCHITECTURE if v.get(o.name) is not None)
    return train.run(ws, train.TrainSettings(**kwargs, architecture=arch), log=log, marker=marker, job=job)


def _merge(ws, side, v, job, log, marker):
    from facelab.merge import options
    from facelab.stages import merge

    settings = given(options.SETTINGS, _none(options.SETTINGS, v))
    plan, only = merge.plan_from_options(ws, settings, frames=v.get("frames"), clear_ranges=bool(v.get("clear_ranges")))
    run = {o.name: v.get(o.name, o.default) for o in options.RUN}
    return merge.run(ws, run["name"] or "quick", plan, device=run["device"] or "auto", force=bool(run["force"]), only=only,
                     batch_size=run["batch_size"] or 8, gpu=run["gpu"], marker=marker, job=job)


def _video(ws, side, v, job, log, marker):
    from facelab.stages import video

    return video.run(ws, video.VideoSettings(**given(video.OPTIONS, _none(video.OPTIONS, v))), force=bool(v.get("force")),
                     marker=marker, job=job)


def _eval(ws, side, v, job, log, marker):
    from facelab.stages import eval as evaluation

    fields = {o.name for o in evaluation.OPTIONS} & set(v)
    settings = evaluation.EvalSettings(**{k: v[k] for k in fields}, progress=False)
    summary, _ = evaluation.run(ws, settings, marker=marker, job=job)
    return summary


def _denoise(ws, side, v, job, log, marker):
    from facelab.stages import denoise

    return denoise.run(ws, denoise.DenoiseSettings(**given(denoise.OPTIONS, _none(denoise.OPTIONS, v))),
                       force=bool(v.get("force")), job=job)


def _export(ws, side, v, job, log, marker):
    from facelab.errors import WorkspaceError
    from facelab.stages import export

    name = str(v.get("model") or "quick")
    # model_dir refuses all but a plain name; checked here too because export.run would try a missing name as a
    # path (relative to the server's folder): the UI never takes a path from the browser
    if not ws.model_dir(name).is_dir():
        raise WorkspaceError(f"no model {name!r} under {ws.model_root}", "give the name of a folder under model/ (the "
                             "Training page lists them)")
    return export.run(ws, name, export.ExportSettings(**given(export.OPTIONS, _none(export.OPTIONS, v))), job=job)


EXPORT_MODEL = Option("model", str, "quick", "Model to export: a folder under model/ (a face-swap model, or a segmenter "
                      "such as segmenter); the file is written beside it, model/<name>.dfm.", metavar="NAME",
                      flags=("MODEL",))  # the command's positional argument, as `facelab export MODEL` spells it

STEPS: dict[str, Step] = {s.name: s for s in (
    Step("frames", "Frames", ("src", "dst"), _frames),
    Step("denoise", "Denoise dst frames", ("dst",), _denoise),
    Step("extract", "Extract faces", ("src", "dst"), _extract,
         leave_out=("manual", "manual_fix", "redo_deleted_debug", "import_from")),
    Step("sort", "Sort faces", ("src", "dst"), _sort),
    Step("train", "Train", (), _train),
    Step("merge", "Merge", (), _merge, leave_out=("preview", "model")),
    Step("video", "Video", (), _video),
    Step("eval", "Evaluate", (), _eval, leave_out=("model",)),
    Step("export", "Export", (), _export, first=(EXPORT_MODEL,)),
)}
"""The steps in workflow order."""


def checked_values(options: tuple[Option, ...] | list[Option], raw: dict[str, Any], what: str, where: str) -> dict[str, Any]:
    """A form's values checked against ``options`` (unknown keys refused, empty ones dropped, a whole number
    given for a float option taken as that number); errors name ``what`` / ``where`` + the key."""
    by = {o.name: o for o in options}
    unknown = sorted(set(raw) - set(by))
    if unknown:
        raise SettingsError(f"{what}: unknown option(s) {', '.join(unknown)}", f"known: {', '.join(by)}")
    out = {}
    for key, value in raw.items():
        if value is None or value == "":
            continue
        o = by[key]
        if o.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = o.check(value, where)
    return out
