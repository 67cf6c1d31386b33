"""``facelab export``: a trained swap model (or the segmenter) as one ``.dfm`` / ``.onnx`` file for real-time players.

A segmenter folder (``model/segmenter``, ``facelab seg train``) exports as a mask model: ``in_face:0``
float32 ``[N, R, R, 3]`` BGR in [0, 1] -> ``out_mask:0`` ``[N, R, R, 1]`` in [0, 1].


Reads the model folder (``model/<name>`` of the workspace, or any model folder
given by its path), writes one file (layout and metadata: :mod:`facelab.export.onnx`,
docs/export.md) through a temporary name, so a failed export leaves nothing
half-written. The default file sits beside the model folder:
``<folder>[_gpuN][_fp16].<format>``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from facelab import jobs
from facelab.errors import WorkspaceError
from facelab.options import Option
from facelab.stages import Summary
from facelab.workspace import Workspace, is_folder_name

# where DeepFaceLive's face aligner (68-point face markers) cuts what each of our face types was trained on:
# (face coverage, y offset); x offset 0. Derived in docs/export.md ("Crop settings in the players").
DEEPFACELIVE_CROP = {"half": (1.1, 0.06), "mid": (1.3, 0.10), "full": (1.5, 0.16), "whole": (1.9, 0.06), "head": (2.5, 0.0)}


@dataclass(frozen=True)
class ExportSettings:
    """``format``: ``dfm`` or ``onnx`` (the same graph; the name is what players look for); ``out``: the file to
    write (None: beside the model folder); ``fp16``: float16 weights and arithmetic, float32 input and output;
    ``gpu``: the model trained with ``facelab train --gpu N``. Declared in :data:`OPTIONS`."""

    format: str = "dfm"
    out: Path | None = None
    fp16: bool = False
    gpu: int | None = None

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name), "export.")
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))


OPTIONS = (
    Option("format", str, "dfm", "dfm (DeepFaceLive, FaceFusion) or onnx: the same ONNX graph under either name.",
           choices=("dfm", "onnx"), metavar="dfm|onnx"),
    Option("out", Path, None, "File to write (default: beside the model folder, <model>.<format>).", metavar="FILE",
           shown_default="`model/<name>.dfm`"),
    Option("fp16", bool, False, "Float16 weights and arithmetic (half the file; input and output stay float32).",
           flags=("--fp16/--no-fp16",)),
    Option("gpu", int, None, "Export the model trained with `facelab train --gpu INDEX` (files gpuINDEX_*).", lo=0,
           metavar="INDEX"),
)


def model_folder(ws: Workspace, model: str | Path, gpu: int | None = None) -> tuple[Path, str, list[str]]:
    """The model folder, file prefix and warnings for ``model``: a model name under the workspace's ``model/``
    (as ``facelab merge --name``), else a path to a model folder."""
    from facelab.merge.sources import resolve_model_dir

    name = str(model)
    if is_folder_name(name) and ws.model_dir(name).is_dir():
        return resolve_model_dir(ws.model_dir(name), gpu)
    if Path(name).is_dir():
        return resolve_model_dir(Path(name), gpu)
    raise WorkspaceError(f"no model {name!r}: neither a folder under {ws.model_root} nor a model folder",
                         "give a model name (as `facelab merge --name`, e.g. quick) or the path of a model folder")


def default_out(folder: Path, prefix: str, settings: ExportSettings) -> Path:
    """``<folder>[_gpuN][_fp16].<format>`` beside the model folder."""
    variant = f"_{prefix.rstrip('_')}" if prefix else ""
    return folder.parent / f"{folder.name}{variant}{'_fp16' if settings.fp16 else ''}.{settings.format}"


def _export_segmenter(folder: Path, out: Path, settings: ExportSettings, start: float) -> Summary:
    """The segmenter (``facelab seg train``) as a mask model: ``in_face:0`` -> ``out_mask:0``."""
    from facelab.export.onnx import export_mask_model
    from facelab.seg.model import KIND, saved_segmenter
    from facelab.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder, "cpu", with_optimizer=False, factory=saved_segmenter, kind=KIND)
    net = ckpt.model
    done = export_mask_model(net, net.resolution, out, fp16=settings.fp16,
                             metadata={"facelab.architecture": ckpt.architecture, "facelab.face_type": net.face_type,
                                       "facelab.config": json.dumps(net.config, sort_keys=True),
                                       "facelab.save_id": ckpt.state.get("save_id", "")})
    return Summary(step="export", counts={"resolution": done.resolution, "megabytes": round(done.bytes / 1e6, 2)},
                   seconds=time.perf_counter() - start, outputs=[str(done.path)],
                   warnings=[f"a face segmenter: in_face:0 ({net.face_type} faces, {done.resolution} px, BGR 0..1) -> out_mask:0"])


@jobs.step
def run(ws: Workspace, model: str | Path, settings: ExportSettings = ExportSettings()) -> Summary:
    """Export ``model`` (a model name under ``ws``'s ``model/``, or a model folder's path) as one file.

    Returns a :class:`Summary` with counts ``resolution``, ``morph`` (1 when the file takes ``morph_value``)
    and ``megabytes``; ``outputs`` is the file; warnings say how to set the players' crop.

    Raises:
        WorkspaceError: no such model; ModelError: the folder cannot be loaded; FacelabError: the file cannot
        be written there (its folder is missing, or read-only, or it is a folder).
    """
    import torch

    from facelab.export import export_swap_model
    from facelab.export.onnx import check_out_path
    from facelab.train.checkpoint import load_checkpoint, read_config

    start = time.perf_counter()
    folder, prefix, warnings = model_folder(ws, model, settings.gpu)
    out = check_out_path(settings.out if settings.out is not None else default_out(folder, prefix, settings), settings.format)
    if read_config(folder, prefix).get("kind") == "segmenter":
        return _export_segmenter(folder, out, settings, start)
    ckpt = load_checkpoint(folder, torch.device("cpu"), with_optimizer=False, prefix=prefix)
    done = export_swap_model(ckpt.model, out, fp16=settings.fp16, save_id=ckpt.state.get("save_id"))
    face_type = str(ckpt.model.config["face_type"])
    coverage, y_offset = DEEPFACELIVE_CROP.get(face_type, (None, None))
    if coverage is not None:
        warnings.append(f"DeepFaceLive: set the face aligner to face coverage {coverage}, y offset {y_offset}, resolution "
                        f"{done.resolution} ({face_type} face, 68-point face marker; docs/export.md)")
    if face_type != "whole":
        warnings.append(f"FaceFusion's deep swapper cuts whole faces: this {face_type}-face model will not line up there "
                        "(train a whole-face model for FaceFusion)")
    return Summary(step="export", counts={"resolution": done.resolution, "morph": int(done.morph),
                                          "megabytes": round(done.bytes / 1e6, 2)},
                   seconds=time.perf_counter() - start, outputs=[str(done.path)], warnings=warnings)
