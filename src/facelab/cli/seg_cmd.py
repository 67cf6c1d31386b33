"""CLI commands: ``facelab seg train|apply|remove|fetch|labels`` (DeepFaceLab's XSeg train / apply / remove /
fetch / remove labels). Each command's flags are generated from ``facelab.seg.options.OPTIONS[command]``."""

from __future__ import annotations

from typing import Any

import typer

from facelab.cli import app, console, current_workspace, output_marker, report
from facelab.options import command
from facelab.seg.options import OPTIONS

seg_app = typer.Typer(
    help="Trainable face segmentation (DeepFaceLab's XSeg): train the segmenter, apply its masks to the face sets, "
         "remove them, fetch or clear the drawn labels.",
    no_args_is_help=True,
)
app.add_typer(seg_app, name="seg")


def _values(name: str, given: dict[str, Any]) -> dict[str, Any]:
    return {o.name: o.default if given.get(o.name) is None else given[o.name] for o in OPTIONS[name]}


def _log(s: str) -> None:
    console.print(s, highlight=False, markup=False)


def _train(**given) -> None:
    """XSeg train: train (or continue) the segmenter on the faces of both sides. Ctrl+C saves and stops."""
    from facelab.stages import seg

    settings = seg.SegTrainSettings(**{k: v for k, v in given.items() if v is not None})
    report(seg.train(current_workspace(), settings, log=_log, marker=output_marker()))


def _apply(**given) -> None:
    """XSeg apply: write the segmenter's mask into every face file (training then uses it instead of the hull)."""
    from facelab.stages import seg

    report(seg.apply(current_workspace(), **_values("apply", given)))


def _remove(**given) -> None:
    """XSeg remove: take the applied masks out of the face files (the drawn polygons stay)."""
    from facelab.stages import seg

    report(seg.remove(current_workspace(), **_values("remove", given)))


def _fetch(**given) -> None:
    """XSeg fetch: copy the faces with drawn polygons to data_<side>/aligned_xseg."""
    from facelab.stages import seg

    report(seg.fetch(current_workspace(), **_values("fetch", given)))


def _labels(**given) -> None:
    """XSeg labels: count the drawn polygons; --remove deletes them (remove labels), keeping a backup file."""
    from facelab.stages import seg

    report(seg.labels(current_workspace(), **_values("labels", given)))


for _name, _body in (("train", _train), ("apply", _apply), ("remove", _remove), ("fetch", _fetch), ("labels", _labels)):
    seg_app.command(_name)(command(OPTIONS[_name], _body, _body.__doc__ or ""))
