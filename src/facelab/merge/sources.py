"""What a merge reads from a workspace besides the frames: the model, enhancers, and each frame's faces.

Shared by the merge stage (:mod:`facelab.stages.merge`) and the interactive merger's
:class:`facelab.merge.session.MergeSession`, so both pick the same model variant, group
the same face records per frame and measure the same face motion.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from facelab.device import resolve_device
from facelab.errors import FaceFileError, ModelError, SettingsError, WorkspaceError
from facelab.faceimage import FaceRecord, read_record
from facelab.landmarks.smooth import linked
from facelab.workspace import Workspace


def frame_number(stem: str) -> int | None:
    """The number of a frame file's stem (``"00012"`` -> 12), or None for a name that is not a number."""
    return int(stem) if stem.isdigit() else None


def group_records(aligned: list[Path]) -> tuple[dict[str, list[FaceRecord]], list[str]]:
    """Face records by ``source_filename``, each list sorted by face index; plus warnings."""
    groups: dict[str, list[FaceRecord]] = defaultdict(list)
    bad: list[str] = []
    for path in aligned:
        try:
            rec = read_record(path)
        except FaceFileError:
            bad.append(path.name)
            continue
        groups[rec.source_filename].append(rec)
    for recs in groups.values():
        recs.sort(key=lambda r: r.face_index)
    warnings = []
    if bad:
        warnings.append(f"{len(bad)} aligned file(s) without valid face metadata were ignored (e.g. {bad[0]})")
    return dict(groups), warnings


def motions(recs: list[FaceRecord], number: int | None, by_number: dict[int, list[FaceRecord]]) -> list[tuple[float, float] | None]:
    """Per face: its landmark centre's motion in pixels per frame, from the same face in the previous and
    next frames (one side if the other has none); None without. The same face is the nearest one that
    continues it (:func:`facelab.landmarks.smooth.linked`): a face on the other side of a scene cut, or
    another person, is not motion, and blurring by it smeared the faces at every cut."""
    out: list[tuple[float, float] | None] = []
    for rec in recs:
        points = np.asarray(rec.source_landmarks, np.float64)
        here = points.mean(0)
        near = []
        for step in (-1, 1):
            others = [np.asarray(r.source_landmarks, np.float64) for r in by_number.get(number + step, [])] \
                if number is not None else []
            moves = [(other.mean(0) - here) * step for other in others
                     if (linked(other, points) if step < 0 else linked(points, other))]
            if moves:
                near.append(min(moves, key=lambda v: float(np.hypot(*v))))
        out.append(tuple(np.mean(near, 0)) if near else None)
    return out


def model_id(ws: Workspace, name: str, prefix: str = "") -> str | None:
    """The model's save id: a retrained model of the same name renders again."""
    from facelab.train.checkpoint import save_id

    return save_id(ws.model_dir(name), prefix)


def _show_variant(gpu: int | None) -> str:
    return "the plain model (no --gpu)" if gpu is None else f"--gpu {gpu} (files gpu{gpu}_*)"


def resolve_model(ws: Workspace, name: str, gpu: int | None = None) -> tuple[Path, str, list[str]]:
    """The folder, file prefix and warnings of the model a merge uses.

    A folder may hold a plain model (``config.json``, trained without ``--gpu``) and variants trained with
    ``facelab train --gpu N`` (``gpuN_config.json``). ``gpu`` picks variant N. Without it: the plain model
    if there is one (a warning names the variants), else the only variant; several variants and no plain
    one raise :class:`ModelError` listing them."""
    model_dir = ws.model_dir(name)
    if not model_dir.is_dir():
        raise WorkspaceError(f"no model {name!r} in {ws.model_root}", "run `facelab train` first")
    return resolve_model_dir(model_dir, gpu)


def resolve_model_dir(model_dir: Path, gpu: int | None = None) -> tuple[Path, str, list[str]]:
    """:func:`resolve_model` for a model folder given by its path (``facelab export PATH``)."""
    from facelab.train.checkpoint import model_variants, variant_prefix

    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0):
        raise SettingsError(f"gpu: {gpu!r} is not a GPU index", "use 0, 1, ...")
    variants = model_variants(model_dir)
    listed = ", ".join(_show_variant(v) for v in variants)
    if gpu is not None:
        if gpu not in variants:
            raise ModelError(f"{model_dir} holds no model trained with --gpu {gpu} (no gpu{gpu}_config.json)",
                             f"it holds: {listed}" if variants else "train one with `facelab train --gpu N`")
        return model_dir, variant_prefix(gpu), []
    if None in variants or not variants:  # the plain model (or none: loading says what is missing)
        others = [v for v in variants if v is not None]
        warnings = [f"{model_dir} also holds models trained with --gpu {', '.join(map(str, others))}: "
                    f"merge --gpu N uses one of them"] if others else []
        return model_dir, "", warnings
    if len(variants) == 1:
        return model_dir, variant_prefix(variants[0]), []
    raise ModelError(f"{model_dir} holds {len(variants)} models trained on different GPUs ({listed}) and none was chosen",
                     "pick one with " + " or ".join(f"--gpu {v}" for v in variants))


def load_enhancer(ws: Workspace, name: str | None, device: str):
    """The enhancer ``model/<name>`` loaded on ``device`` (see :func:`facelab.enhance.load_enhancer`), or None
    for no name; :class:`WorkspaceError` when there is no such folder."""
    if name is None:
        return None
    from facelab.enhance import load_enhancer as load

    folder = ws.model_dir(name)
    if not folder.is_dir():
        raise WorkspaceError(f"no enhancer {name!r} in {ws.model_root}", f"train one: facelab train-enhancer --name {name}")
    return load(folder, str(resolve_device(device)))


def load_segmenter(ws: Workspace, device: str):
    """The workspace's trained segmenter (``model/segmenter``, :func:`facelab.seg.model.load_segmenter`) on
    ``device``; :class:`WorkspaceError` when none was trained."""
    from facelab.seg.model import DEFAULT_NAME, load_segmenter as load
    from facelab.train.checkpoint import CONFIG

    folder = ws.model_dir(DEFAULT_NAME)
    if not (folder / CONFIG).is_file():
        raise WorkspaceError(f"the merge mask asks for the segmenter, but there is none in {folder}",
                             "train one with `facelab seg train`, or choose a mask without segmentation-*")
    return load(folder, str(resolve_device(device)))
