"""`facelab seg train|apply|remove|fetch|labels`: the trainable face segmenter (DeepFaceLab's XSeg).

- ``train``: train (or continue) the segmenter in ``model/<name>/`` on the faces
  of both sides: drawn polygons where there are some, the landmark hull
  elsewhere (``pseudo_labels``; see :mod:`facelab.seg.data`). Resumes like every
  facelab model; ``iterations`` is a total, ``minutes`` this run's budget.
- ``apply``: write the segmenter's mask into every face file of a side
  (:mod:`facelab.seg.store`); faces already masked by the same weights are skipped.
  Training a swap model then uses these masks in place of the hull.
- ``remove``: take the applied masks out again (the drawn polygons stay).
- ``fetch``: copy the faces that have drawn polygons to ``aligned_xseg/``.
- ``labels``: count the drawn polygons, or (``remove``) delete them after saving
  them to a backup file in the side's state folder.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab import jobs
from facelab.errors import FaceFileError, ModelError, SettingsError
from facelab.faceimage import image_from_bytes, read_face, read_record, record_from_bytes, rewrite_record
from facelab.fileio import atomic_write_bytes
from facelab.masks.polygons import polygons_of, with_polygons
from facelab.pipeline import prefetch
from facelab.progress import track
from facelab.provenance.marker import Marker, require_marker
from facelab.seg.options import DEFAULTS, OPTIONS
from facelab.stages import Summary
from facelab.workspace import Workspace, check_folder_name

PREVIEW_FACES = 4  # faces per preview row (training, src, dst)
MAX_PSEUDO_FACES = 3000  # unlabelled faces trained on at most (about 0.8 GB of faces and targets at 256 px)
EVAL_FACES = 32  # labelled faces measured at the end of a training run
LABELS_ONLY_HINT = 20  # drawn labels from which the log suggests finishing with --labels-only


def sides(side: str) -> tuple[str, ...]:
    if side not in ("src", "dst", "both"):
        raise SettingsError(f"side: {side!r} is not one of src, dst, both", "use src, dst or both")
    return ("src", "dst") if side == "both" else (side,)


def _check(command: str, values: dict) -> None:
    for option in OPTIONS[command]:
        option.check(values[option.name], f"seg {command}: ")
    name = values.get("name")
    if name is not None:
        check_folder_name(name, f"seg {command}: name")


@dataclass(frozen=True)
class SegTrainSettings:
    """Settings of `facelab seg train`, each declared in ``OPTIONS["train"]`` (:mod:`facelab.seg.options`)."""

    name: str = "segmenter"
    minutes: float | None = None
    iterations: int | None = None
    side: str = "both"
    pseudo_labels: bool = True
    iou_loss: bool = False
    resolution: int | None = None
    face_type: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    seed: int = 0
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0

    def __post_init__(self) -> None:
        from facelab.device import resolve_device

        _check("train", self.__dict__)
        resolve_device(self.device)


def _face_paths(ws: Workspace, side: str) -> dict[str, list[Path]]:
    """The face files to train on per side; with ``both``, a side without faces is left out (an error only
    when neither has any)."""
    if side != "both":
        return {side: ws.require_aligned(side)}
    found = {s: ws.aligned_paths(s) or (ws.require_aligned(s) if ws.pack_path(s).is_file() else []) for s in ("src", "dst")}
    found = {s: p for s, p in found.items() if p}
    if not found:
        ws.require_aligned("src")  # raises, saying what to run
    return found


def _majority_face_type(paths: list[Path]) -> str:
    counts = Counter()
    for p in paths[:: max(1, len(paths) // 50)]:  # a sample is enough
        try:
            counts[read_record(p).face_type] += 1
        except FaceFileError:
            continue
    return counts.most_common(1)[0][0] if counts else "full"


def _spread_unlabelled(paths: list[Path]) -> tuple[list[Path], int]:
    """Every face with drawn polygons, and at most :data:`MAX_PSEUDO_FACES` of the others (evenly spread, so
    every part of a sorted or frame-ordered set is there); how many were left out. Unreadable files stay in
    (loading names them)."""
    others = []
    labelled = []
    for p in paths:
        try:
            (labelled if polygons_of(read_record(p)) else others).append(p)
        except FaceFileError:
            others.append(p)
    if len(others) <= MAX_PSEUDO_FACES:
        return paths, 0
    keep = np.linspace(0, len(others) - 1, MAX_PSEUDO_FACES).round().astype(int)
    return labelled + [others[i] for i in keep], len(others) - MAX_PSEUDO_FACES


def _build(settings: SegTrainSettings, model_dir: Path, paths: list[Path], device):
    """The segmenter (new or resumed), its state, saved options and the optimizer state to restore."""
    import torch

    from facelab.seg.model import KIND, create_segmenter, saved_segmenter
    from facelab.train.checkpoint import CONFIG, WEIGHTS, load_checkpoint

    if not ((model_dir / CONFIG).is_file() or (model_dir / WEIGHTS).is_file()):
        torch.manual_seed(settings.seed)
        net = create_segmenter(resolution=settings.resolution or DEFAULTS["resolution"],
                               face_type=settings.face_type or _majority_face_type(paths))
        return net.to(device), {}, {}, None
    ckpt = load_checkpoint(model_dir, device, factory=saved_segmenter, kind=KIND)
    changed = [k for k in ("resolution", "face_type") if getattr(settings, k) is not None and getattr(settings, k) != ckpt.config[k]]
    if changed:
        raise SettingsError(
            f"{', '.join(f'{k}: {getattr(settings, k)} asked, {ckpt.config[k]} saved' for k in changed)} "
            f"(model/{model_dir.name} is fixed at its first run)",
            "leave it out to continue this segmenter, or use --name <other> for a new one")
    return ckpt.model, ckpt.state, ckpt.options, ckpt.optimizer_state


def _preview_rows(data, by_side: dict[str, list[Path]], face_type: str, resolution: int) -> dict[str, np.ndarray]:
    """The preview's groups: labelled training faces (if any), then src and dst faces, a few fixed ones each."""
    from facelab.seg.data import cut_face

    def pick(items: list, k: int = PREVIEW_FACES) -> list:
        return [items[i] for i in np.linspace(0, len(items) - 1, min(k, len(items))).round().astype(int)] if items else []

    rows = {}
    labelled = np.flatnonzero(data.labelled)
    if len(labelled):
        rows["training faces (drawn labels)"] = data.faces[pick(list(labelled))]
    for side, paths in by_side.items():
        faces = []
        for p in pick(paths):
            try:
                image, record = read_face(p)
            except FaceFileError:
                continue
            faces.append(cut_face(image, record, face_type, resolution)[0])
        if faces:
            rows[f"{side} faces"] = np.stack(faces)
    return rows


@jobs.step
def train(ws: Workspace, settings: SegTrainSettings = SegTrainSettings(), log: Callable[[str], None] = print, *,
          marker: Marker | None = None) -> Summary:
    """Train (or continue) the segmenter; see the module docstring."""
    import torch

    from facelab.device import cpu_threads, resolve_device
    from facelab.seg.data import load_faces
    from facelab.seg.training import EVAL_BATCH, SegLoopOptions, SegTask, iou, make_optimizer, predict
    from facelab.train import runner
    from facelab.train.checkpoint import require_free_space, save_bytes, save_checkpoint

    marker = require_marker(marker, "seg train")  # it marks the previews
    t0 = time.monotonic()
    ws.require_exists()
    by_side = _face_paths(ws, settings.side)
    paths = [p for ps in by_side.values() for p in ps]
    device = resolve_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    model_dir = ws.model_dir(settings.name)
    net, state, saved, opt_state = _build(settings, model_dir, paths, device)
    r, face_type = net.resolution, net.face_type
    batch_size = settings.batch_size or int(saved.get("batch_size", DEFAULTS["batch_size"]))

    # data: every labelled face, and (pseudo-labels) at most MAX_PSEUDO_FACES others spread over the set
    warnings: list[str] = []
    if settings.pseudo_labels:
        paths, left_out = _spread_unlabelled(paths)
        if left_out:
            warnings.append(f"{left_out} faces without labels were left out (at most {MAX_PSEUDO_FACES} hull pseudo-labels,"
                            " spread over the set, keep the memory bounded)")
    log(f"loading {len(paths)} faces at {r} px ({face_type})")
    data = load_faces(paths, face_type, r)
    warnings += [f"skipped (not trained on): {m}" for m in data.skipped]
    n_labelled = int(data.labelled.sum())
    if not settings.pseudo_labels:
        if not n_labelled:
            raise SettingsError("seg train --labels-only: none of the faces has drawn polygons",
                                "draw some in `facelab ui` (Mask editor), import a DeepFaceLab set with polygons, "
                                "or train with pseudo-labels (leave --labels-only out)")
        data = data.subset(np.flatnonzero(data.labelled))
    elif not n_labelled:
        warnings.append("no face has drawn polygons: the segmenter learns the landmark hull (plus synthetic occluders); "
                        "draw polygons on the faces it gets wrong and train again")
    elif n_labelled >= LABELS_ONLY_HINT:
        log(f"{n_labelled} faces have drawn labels: when this run's masks look right, a run with --labels-only on top "
            "fits the drawn convention better than the landmark hull's pseudo-labels (docs/segmentation.md, Measured)")

    optimizer = make_optimizer(net)
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as e:
            raise ModelError(f"{model_dir / 'optimizer.safetensors'} does not fit the segmenter: {e}",
                             "delete it to restart the optimizer") from e
    require_free_space(model_dir, save_bytes(net.state_dict(), optimizer=optimizer), "the segmenter")
    opts = SegLoopOptions(batch_size=batch_size, seed=settings.seed)
    options = {"batch_size": batch_size, "seed": settings.seed, "device": settings.device, "side": settings.side,
               "pseudo_labels": settings.pseudo_labels, "iou_loss": settings.iou_loss}
    log(f"{'resuming' if state else 'new'} segmenter {model_dir.name!r} ({r} px, {face_type}) at iteration "
        f"{state.get('iteration', 0)} on {device}: {len(data)} faces, {n_labelled} with drawn labels"
        f"{f' ({len(data.occluders)} occluders cut out, pasted over other faces)' if data.occluders else ''}, batch size {batch_size}"
        f"{', loss: cross entropy + Lovász hinge' if settings.iou_loss else ''}")

    def save(st: dict) -> None:
        save_checkpoint(model_dir, net, optimizer, options, {k: v for k, v in st.items() if k != "stopped"})

    schedule = runner.Schedule(settings.iterations, settings.minutes, settings.save_every_minutes,
                               settings.preview_every_minutes)
    task = SegTask(net, optimizer, data, _preview_rows(data, by_side, face_type, r), model_dir, opts, device, marker,
                   iou_loss=settings.iou_loss)
    try:
        state = runner.run(task, state, schedule, save=save, log=log)
    except torch.OutOfMemoryError as e:
        raise SettingsError(f"out of {device.type.upper()} memory at batch size {batch_size} ({r} px)",
                            f"reduce --batch-size (try {max(1, batch_size // 2)}) or train with --device cpu") from e

    counts: dict[str, float] = {"iteration": state["iteration"], "faces": len(data), "labelled": n_labelled}
    if state["loss_history"]:
        counts["loss"] = round(state["loss_history"][-1][1], 5)
    labelled = np.flatnonzero(data.labelled)[:EVAL_FACES]
    if len(labelled):  # how well it fits the drawn labels (training faces: an upper bound, not a test)
        probs = predict(net, data.faces[labelled], device, EVAL_BATCH)
        counts["label_iou"] = round(float(np.mean([iou(p, data.target(i)) for p, i in zip(probs, labelled)])), 4)
    if state.get("stopped") == "interrupted":
        warnings.append("training was interrupted; the segmenter was saved and continues from here next time")
    return Summary(step="seg train", counts=counts, seconds=time.monotonic() - t0, outputs=[str(model_dir)], warnings=warnings)


def _segmenter_dir(ws: Workspace, name: str) -> Path:
    from facelab.train.checkpoint import CONFIG

    folder = ws.model_dir(name)
    if not (folder / CONFIG).is_file():
        raise SettingsError(f"no segmenter {name!r} in {ws.model_root}", "train one first: `facelab seg train`")
    return folder


def _load_batch(paths: list[Path], runner, force: bool) -> tuple[list, list[str], int]:
    """Faces of ``paths`` read and cut for the segmenter: ``[(path, record, cut face, matrix, reduce)]``, the
    messages of the faces that could not be read, and how many were skipped (masked by these weights
    already, unless ``force``). Each file is read once; a face much bigger than the segmenter's input is
    decoded at a half, quarter or eighth of its size (:func:`facelab.faceimage.image_from_bytes`)."""
    from facelab.seg.store import mask_info

    loaded, errors, skipped = [], [], 0
    for p in paths:
        try:
            try:
                data = p.read_bytes()
            except OSError as e:
                raise FaceFileError(f"cannot read face file {p}: {e.strerror}") from None
            record = record_from_bytes(data, str(p))
            info = mask_info(record)
            if info and info.get("model") == runner.model_id and not force:
                skipped += 1
                continue
            k = runner.reduction_for(record)
            image = image_from_bytes(data, record, str(p), k)
        except FaceFileError as e:
            errors.append(e.message)
            continue
        loaded.append((p, record, *runner.cut(image, record, k), k))
    return loaded, errors, skipped


def _write_batch(loaded: list, probs: np.ndarray, runner) -> int:
    """Each face's mask, back in its own pixels (at the size it was read), into its file (atomic: a kill
    leaves the old record or the new)."""
    from facelab.seg.model import uncertainty
    from facelab.seg.store import with_mask

    for (p, record, _face, mat, k), prob in zip(loaded, probs):
        mask = runner.back_to_face(prob, mat, int(record.size), k)
        rewrite_record(p, with_mask(record, mask, runner.model_id, runner.face_type, uncertainty=round(uncertainty(prob), 4)))
    return len(loaded)


@jobs.step
def apply(ws: Workspace, side: str = "both", name: str = "segmenter", device: str = "auto", batch_size: int = 16,
          force: bool = False, flip_average: bool = False) -> Summary:
    """Write the segmenter's mask into every face file of ``side`` (skipping faces masked by these weights, in
    the same ``flip_average`` mode)."""
    from facelab.device import resolve_device
    from facelab.seg.model import load_segmenter

    _check("apply", {"name": name, "side": side, "device": device, "batch_size": batch_size, "force": force,
                     "flip_average": flip_average})
    t0 = time.monotonic()
    ws.require_exists()
    runner_ = load_segmenter(_segmenter_dir(ws, name), resolve_device(device), flip_average)
    counts = {"applied": 0, "skipped (already applied)": 0, "unreadable": 0}
    warnings = []
    for s in sides(side):
        paths = ws.require_aligned(s)
        batches = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        # reading and cutting the next batch, and writing the last one, overlap the network on the current one
        with ThreadPoolExecutor(2) as pool:
            writes = []
            for _, (loaded, errors, skipped) in track(prefetch(lambda b: _load_batch(b, runner_, force), batches, pool, 2),
                                                      len(batches), f"seg apply {s}"):
                counts["unreadable"] += len(errors)
                counts["skipped (already applied)"] += skipped
                warnings.extend(f"{s}: not masked: {e}" for e in errors)
                if loaded:
                    probs = runner_.predict(np.stack([x[2] for x in loaded]))
                    writes.append(pool.submit(_write_batch, loaded, probs, runner_))
            for w in writes:
                counts["applied"] += w.result()
    return Summary(step="seg apply", counts=counts, seconds=time.monotonic() - t0,
                   outputs=[str(ws.aligned_dir(s)) for s in sides(side)], warnings=warnings)


@jobs.step
def remove(ws: Workspace, side: str = "both") -> Summary:
    """Take the applied segmenter masks out of the face files of ``side`` (drawn polygons stay)."""
    from facelab.seg.store import remove_mask_file

    _check("remove", {"side": side})
    t0 = time.monotonic()
    ws.require_exists()
    counts = {"removed": 0, "had none": 0}
    for s in sides(side):
        paths = ws.require_aligned(s)
        for p in track(paths, len(paths), f"seg remove {s}"):
            counts["removed" if remove_mask_file(p) else "had none"] += 1
    return Summary(step="seg remove", counts=counts, seconds=time.monotonic() - t0)


def _labelled(ws: Workspace, side: str) -> list[tuple[Path, object]]:
    out = []
    for p in ws.require_aligned(side):
        try:
            record = read_record(p)
        except FaceFileError:
            continue
        if polygons_of(record):
            out.append((p, record))
    return out


@jobs.step
def fetch(ws: Workspace, side: str = "both", to: str | Path | None = None) -> Summary:
    """Copy the faces with drawn polygons to ``aligned_xseg/`` of their side (or to ``to``)."""
    _check("fetch", {"side": side, "to": None if to is None else str(to)})
    t0 = time.monotonic()
    ws.require_exists()
    counts, outputs = {"copied": 0}, []
    for s in sides(side):
        folder = Path(to) if to is not None else ws.xseg_dir(s)
        folder.mkdir(parents=True, exist_ok=True)
        for p, _ in _labelled(ws, s):
            name = p.name if to is None or len(sides(side)) == 1 else f"{s}_{p.name}"
            shutil.copy2(p, folder / name)
            counts["copied"] += 1
        outputs.append(str(folder))
    return Summary(step="seg fetch", counts=counts, seconds=time.monotonic() - t0, outputs=outputs)


@jobs.step
def labels(ws: Workspace, side: str = "both", remove: bool = False) -> Summary:
    """Count the faces with drawn polygons; with ``remove``, delete the polygons after saving them to
    ``data_<side>/.facelab/removed_labels-<time>.json`` (face file name -> polygons), so nothing drawn is lost."""
    _check("labels", {"side": side, "remove": remove})
    t0 = time.monotonic()
    ws.require_exists()
    counts: dict[str, float] = {}
    outputs = []
    for s in sides(side):
        found = _labelled(ws, s)
        counts[f"{s} labelled faces"] = len(found)
        counts[f"{s} polygons"] = sum(len(polygons_of(r)) for _, r in found)
        if remove and found:
            backup = ws.state_file(s, f"removed_labels-{time.strftime('%Y%m%d-%H%M%S')}.json")
            backup.parent.mkdir(parents=True, exist_ok=True)
            doc = {p.name: [poly.to_json() for poly in polygons_of(r)] for p, r in found}
            atomic_write_bytes(backup, json.dumps(doc, indent=1).encode())  # first the backup, then the faces
            for p, r in found:
                rewrite_record(p, with_polygons(r, []))
            outputs.append(str(backup))
    return Summary(step="seg labels", counts=counts, seconds=time.monotonic() - t0, outputs=outputs)
