"""CLI command: export (a trained model as one .dfm / .onnx file for DeepFaceLive, FaceFusion and `merge --onnx`)."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from facelab.cli import app, current_workspace, report
from facelab.options import command
from facelab.stages.export import OPTIONS

_MODEL = inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
    str, typer.Argument(help="Model name under the workspace's model/ (as `merge --name`), or a model folder's path.")])


def _export(model: str, **given) -> None:
    """Write a trained model as one file real-time players load (DeepFaceLive, FaceFusion): MODEL.dfm beside the model folder. The file says in its metadata that it makes synthetic faces."""
    from facelab.stages import export

    settings = export.ExportSettings(**{o.name: given[o.name] for o in OPTIONS if given[o.name] is not None})
    report(export.run(current_workspace(), model, settings))


app.command("export")(command(OPTIONS, _export, _export.__doc__ or "", arguments=[_MODEL]))
