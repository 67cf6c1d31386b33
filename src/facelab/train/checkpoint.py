"""Model folders: save and load a trained model without pickle.

::

    model/<name>/
      config.json            {"format_version", "model", "config" (architecture), "options"}
      weights.safetensors    model parameters and buffers
      optimizer.safetensors  Adam state tensors; param groups and the key map in the metadata
      state.json             iteration, loss history, elapsed seconds, options, save id (written last)
      <extra>.safetensors    optional training parts beside the model (adversarial: the GAN and
                             true-face discriminators and their optimizers), same save id
      preview.jpg            latest preview;  previews/<iteration>.jpg  history

Saving writes every file under a temporary name, fsyncs it, then renames, with
``state.json`` last. Each save has a random ``save_id`` stored in the metadata
of both ``.safetensors`` files and in ``state.json``; loading checks they agree,
so a save interrupted between two renames is reported, never half-used.
``config.json`` is authoritative for the architecture on resume.

Kinds: a folder may also hold a face enhancer (:mod:`facelab.enhance`);
``config.json`` then has ``"kind": "enhancer"`` (taken from ``model.kind``;
absent means a face-swap model). Loading checks the kind first, so one is never
used as the other (:class:`WrongKindError`); enhancers load with
``load_checkpoint(..., factory=create_enhancer, kind="enhancer")``.

Crash safety: the temporary files are all written and fsynced first, then a
small commit record ``.<prefix>commit.json`` naming them is written atomically;
only then are they renamed into place. A save killed before the record exists
leaves the old files untouched (the stray temporaries are removed next time); a
save killed after it is rolled forward by the next load or save. So a folder
always loads as either the last completed save or the one in progress.

A ``prefix`` (e.g. ``gpu1_``) is put in front of every file name, so several
GPUs can train variants in one folder (``gpu1_weights.safetensors`` ...).

Backups: :func:`backup_checkpoint` copies the model files into
``backups/<prefix><YYYYMMDD-HHMMSS>/`` and keeps the newest N; a model that
fails to load names the newest backup in the error's hint.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save

from facelab.errors import FacelabError, ModelError
from facelab.fileio import write_error
from facelab.models import create_model

FORMAT_VERSION = 1
SWAP = "swap"  # the kind of a folder whose config.json names none
CONFIG, WEIGHTS, OPTIMIZER, STATE, PREVIEW, PREVIEWS = (
    "config.json", "weights.safetensors", "optimizer.safetensors", "state.json", "preview.jpg", "previews")


BACKUPS = "backups"


def _commit_record(folder: Path, prefix: str) -> Path:
    return folder / f".{prefix}commit.json"


def recover(model_dir: str | Path, prefix: str = "") -> None:
    """Finish a save that was killed after its commit record was written; drop stray temporaries of one that was not."""
    folder = Path(model_dir)
    record = _commit_record(folder, prefix)
    if record.is_file():
        try:
            pairs = json.loads(record.read_text("utf-8"))["files"]
        except (ValueError, KeyError, UnicodeDecodeError):
            pairs = []  # written atomically, so this cannot happen short of disk damage
        for tmp, final in pairs:
            if (folder / tmp).is_file():
                os.replace(folder / tmp, folder / final)
        _fsync_dir(folder)
        record.unlink()
    names = {prefix + n for n in (CONFIG, WEIGHTS, OPTIMIZER, STATE)} | {record.name}
    for stray in folder.glob(".*.tmp") if folder.is_dir() else []:
        m = re.fullmatch(r"\.(.+)\.\d+\.tmp", stray.name)
        if m and m.group(1) in names:
            stray.unlink(missing_ok=True)


def _write_tmp(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a disk that filled up mid-write keeps no part of it
        raise
    return tmp


def _disk_error(error: OSError, folder: Path, what: str, size: int) -> FacelabError | None:
    """The user error for a failed write into a model folder (disk full, read-only ...), naming the folder and
    the space the write needs; None when the user cannot fix it."""
    found = write_error(error, folder)
    if found is None:
        return None
    return FacelabError(f"{found.message} ({what} needs {size / 2**20:.0f} MiB there)", found.hint)


def save_bytes(*states: Any, optimizer: torch.optim.Optimizer | None = None) -> int:
    """About the bytes one save writes: the tensors in ``states`` (state dicts, nested) and, for
    ``optimizer``, Adam's two float32 moments per trainable parameter (its state before the first step)."""
    def size(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            return x.numel() * x.element_size()
        values = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
        return sum(size(v) for v in values)

    moments = sum(p.numel() * 4 for g in optimizer.param_groups for p in g["params"] if p.requires_grad) if optimizer else 0
    return sum(size(s) for s in states) + 2 * moments


def require_free_space(model_dir: Path, one: int, what: str = "the model", backup: bool = False) -> None:
    """Refuse to start a training when the disk of ``model_dir`` cannot hold its first save of ``one`` bytes
    (written beside the last one until it is complete) and, with ``backup``, the backup due after it, rather
    than fail there after minutes of training."""
    need = one * (2 if backup else 1)
    folder = next(p for p in (model_dir, *model_dir.parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise FacelabError(
            f"not enough free disk for {what}: {free / 2**20:.0f} MiB free in {folder}, and a save needs about "
            f"{one / 2**20:.0f} MiB" + (" plus as much again for the backup due" if backup else ""),
            "free some space" + (", or train with --backups 0" if backup else "") + "; nothing was changed")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")


# --- optimizer state <-> flat tensors ----------------------------------------


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten ``optimizer.state_dict()`` into ``{"state.<param>.<key>": tensor}`` and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    meta = {"param_groups": sd["param_groups"], "scalars": scalars, "class": type(optimizer).__name__}
    return tensors, meta


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_tensors`: a ``state_dict`` for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, d in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(d)
    return {"state": state, "param_groups": meta["param_groups"]}


# --- save / load ---------------------------------------------------------------


@dataclass
class Checkpoint:
    """A loaded model folder."""

    model: torch.nn.Module
    architecture: str  # the registered name it was built by (config.json's "model")
    config: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"tensors": {...}, "meta": {...}}


def save_checkpoint(model_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    options: dict[str, Any], state: dict[str, Any], prefix: str = "",
                    extras: dict[str, dict[str, Any]] | None = None) -> None:
    """Write a model folder atomically (see module docstring); ``state`` gets a fresh ``save_id``.

    ``extras`` maps a name (``adversarial``) to ``{"tensors": {name: tensor}, "meta": JSON-able dict}``,
    written to ``<name>.safetensors`` in the same commit."""
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder, prefix)
    save_id = secrets.token_hex(8)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files = [(WEIGHTS, save(weights, metadata={"save_id": save_id, "model": model.architecture}))]
    if optimizer is not None:
        tensors, meta = optimizer_to_tensors(optimizer)
        files.append((OPTIMIZER, save(tensors, metadata={"save_id": save_id, "optimizer": json.dumps(meta)})))
    for name, part in (extras or {}).items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in part["tensors"].items()}
        files.append((name + ".safetensors", save(tensors, metadata={"save_id": save_id, "meta": json.dumps(part.get("meta", {}))})))
    config = {"format_version": FORMAT_VERSION, "model": model.architecture, "config": model.config, "options": options}
    if getattr(model, "kind", SWAP) != SWAP:
        config["kind"] = model.kind
    files.append((CONFIG, _json_bytes(config)))
    files.append((STATE, _json_bytes({**state, "save_id": save_id, "options": options,
                                      "has_optimizer": optimizer is not None, "extras": sorted(extras or {})})))
    tmps: list[tuple[Path, Path]] = []
    record = _commit_record(folder, prefix)
    try:
        for name, data in files:
            tmps.append((_write_tmp(folder / (prefix + name), data), folder / (prefix + name)))
        # the commit point: once this record exists the save is complete (recover() finishes the renames)
        os.replace(_write_tmp(record, _json_bytes({"files": [[t.name, f.name] for t, f in tmps]})), record)
    except BaseException as e:
        for tmp, _ in tmps:  # not committed: the saved model stays as it was, and no part of this one is left
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and (err := _disk_error(e, folder, "the model's save", sum(len(d) for _, d in files))):
            raise err from e
        raise
    _fsync_dir(folder)
    for tmp, final in tmps:  # state.json is last in the list
        os.replace(tmp, final)
    _fsync_dir(folder)
    record.unlink()


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing", "train the model first (`facelab train`), or pick another --name")
    try:
        d = json.loads(path.read_text("utf-8"))
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        return d
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"model file {path} is corrupt: {e}", "restore it from a backup, or delete the model folder to start over") from e


MOVED_TO_OPTIONS = ("pixel_loss", "remove_gray_border", "face_style_power", "bg_style_power", "optimizer_mode")
"""Training options facelab before 2026-12-05 kept in a swap model's architecture config; read from there into
the saved options (a value saved under "options" wins), so those models load and train on unchanged."""


def read_config(model_dir: str | Path, prefix: str = "") -> dict[str, Any]:
    """``config.json`` of a model folder (architecture, model name, options); the training keys older facelab kept
    in the architecture config are moved into the options (:data:`MOVED_TO_OPTIONS`)."""
    path = Path(model_dir) / (prefix + CONFIG)
    cfg = _read_json(path)
    for key in ("model", "config"):
        if key not in cfg:
            raise ModelError(f"{path} has no {key!r}", "restore it from a backup, or delete the model folder to start over")
    if int(cfg.get("format_version", 1)) > FORMAT_VERSION:
        raise ModelError(f"{path} is from a newer facelab", "upgrade facelab")
    if cfg.get("kind", SWAP) == SWAP and isinstance(cfg["config"], dict) and isinstance(cfg.get("options", {}), dict):
        moved = {k: cfg["config"].pop(k) for k in MOVED_TO_OPTIONS if k in cfg["config"]}
        cfg["options"] = {**moved, **cfg.get("options", {})}
    return cfg


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing", "restore it from a backup, or delete the model folder to start over")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"model file {path} is corrupt: {e}", "restore it from a backup, or delete the model folder to start over") from e


class WrongKindError(ModelError):
    """The folder holds another kind of model (an enhancer where a face-swap model was asked for, or the reverse)."""


_KIND_NAMES = {SWAP: "face-swap model", "enhancer": "face enhancer", "segmenter": "face segmenter"}
_KIND_HINTS = {
    SWAP: "give --enhancer the name of a folder made by `facelab train-enhancer`",
    "enhancer": "use it as `facelab merge --enhancer {name}`; pick a face-swap model (made by `facelab train`) with --name",
    "segmenter": "it is used by `facelab seg apply` and the merge's segmentation masks; pick a face-swap model with --name",
}


def check_kind(cfg: dict[str, Any], folder: Path, kind: str) -> None:
    """Raise :class:`WrongKindError` unless ``config.json`` (read as ``cfg``) describes a model of ``kind``."""
    found = str(cfg.get("kind", SWAP))
    if found != kind:
        raise WrongKindError(
            f"{folder} holds a {_KIND_NAMES.get(found, found)} ({cfg.get('model')!r}), not a {_KIND_NAMES.get(kind, kind)}",
            _KIND_HINTS.get(found, "pick another folder").format(name=folder.name))


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu", with_optimizer: bool = True,
                    prefix: str = "", factory: Callable[..., torch.nn.Module] | None = None,
                    kind: str = SWAP) -> Checkpoint:
    """Load a model folder strictly; any missing, corrupt or mismatched file raises :class:`ModelError` naming it
    (and, where one exists, the newest backup to restore).

    ``factory(name, **config)`` builds the network (default :func:`facelab.models.create_model`); ``kind`` is
    the kind of model expected (``"swap"`` or ``"enhancer"``): a folder of another kind raises
    :class:`WrongKindError` before anything else is read."""
    folder = Path(model_dir)
    try:
        if folder.is_dir():
            recover(folder, prefix)
        return _load(folder, device, with_optimizer, prefix, factory or create_model, kind)
    except ModelError as e:
        newest = newest_backup(folder, prefix)
        if newest is None or isinstance(e, WrongKindError):
            raise
        raise ModelError(e.message, f"restore the newest backup: copy {newest}/* into {folder}") from e


def _load(folder: Path, device: str | torch.device, with_optimizer: bool, prefix: str,
          factory: Callable[..., torch.nn.Module] = create_model, kind: str = SWAP) -> Checkpoint:
    CONFIG_, WEIGHTS_, OPTIMIZER_, STATE_ = (prefix + n for n in (CONFIG, WEIGHTS, OPTIMIZER, STATE))
    cfg = read_config(folder, prefix)
    check_kind(cfg, folder, kind)
    state = _read_json(folder / STATE_)
    try:
        model = factory(cfg["model"], **cfg["config"])
    except (TypeError, ValueError) as e:
        raise ModelError(f"{folder / CONFIG_} describes an invalid {cfg['model']!r} model: {e}", "restore it from a backup") from e
    weights, meta = _load_tensors(folder / WEIGHTS_)
    if meta.get("save_id") != state.get("save_id"):
        raise ModelError(f"{folder / WEIGHTS_} does not belong to {folder / STATE_} (a save was interrupted)",
                         "restore the folder from a backup, or delete it to start over")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{folder / WEIGHTS_} does not fit the architecture in {folder / CONFIG_}: {str(e).splitlines()[0]}",
                         "restore the folder from a backup, or delete it to start over") from e
    model.to(device)
    opt_state = None
    if with_optimizer and state.get("has_optimizer", True):
        tensors, ometa = _load_tensors(folder / OPTIMIZER_)
        if ometa.get("save_id") != state.get("save_id"):
            raise ModelError(f"{folder / OPTIMIZER_} does not belong to {folder / STATE_} (a save was interrupted)",
                             "restore the folder from a backup, or delete it to start over")
        try:
            opt_state = optimizer_from_tensors(tensors, json.loads(ometa["optimizer"]))
        except (KeyError, ValueError) as e:
            raise ModelError(f"{folder / OPTIMIZER_} has a malformed key map: {e}", "delete it to restart the optimizer") from e
    extras = {}
    for name in state.get("extras", []):
        path = folder / f"{prefix}{name}.safetensors"
        tensors, emeta = _load_tensors(path)
        if emeta.get("save_id") != state.get("save_id"):
            raise ModelError(f"{path} does not belong to {folder / STATE_} (a save was interrupted)",
                             "restore the folder from a backup, or delete the file to restart that part")
        extras[name] = {"tensors": {k: v.to(device) for k, v in tensors.items()}, "meta": json.loads(emeta.get("meta", "{}"))}
    return Checkpoint(model, cfg["model"], cfg["config"], cfg.get("options", {}), state, opt_state, extras)


def model_variants(model_dir: str | Path) -> list[int | None]:
    """The models saved in one folder: ``None`` for the plain one (``config.json``), ``N`` for one trained
    with ``--gpu N`` (``gpuN_config.json``); the plain one first, then by GPU index. Empty when there is none."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    found: list[int | None] = [None] if (folder / CONFIG).is_file() else []
    indices = sorted(int(m.group(1)) for p in folder.iterdir() if (m := re.fullmatch(r"gpu(\d+)_" + re.escape(CONFIG), p.name)))
    return found + indices


def save_id(model_dir: str | Path, prefix: str = "") -> str | None:
    """The random id of the model's last save (a retrained model has another), or ``None`` if the
    folder holds no readable training state."""
    try:
        state = json.loads((Path(model_dir) / (prefix + STATE)).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state.get("save_id") if isinstance(state, dict) else None


def variant_prefix(gpu: int | None) -> str:
    """File name prefix of a model variant: ``""`` or ``"gpu<N>_"`` (as ``facelab train --gpu N`` writes)."""
    return "" if gpu is None else f"gpu{gpu}_"


# --- backups ---------------------------------------------------------------------


def list_backups(model_dir: str | Path, prefix: str = "") -> list[Path]:
    """Backup folders of a model (for this ``prefix``), oldest first."""
    root = Path(model_dir) / BACKUPS
    pattern = re.compile(re.escape(prefix) + r"\d{8}-\d{6}(-\d+)?")
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and pattern.fullmatch(p.name)]
    return sorted(found, key=_backup_key)


def _backup_key(p: Path) -> tuple[str, int]:
    m = re.search(r"(\d{8}-\d{6})(?:-(\d+))?$", p.name)
    return (m.group(1), int(m.group(2) or 0)) if m else ("", 0)


def newest_backup(model_dir: str | Path, prefix: str = "") -> Path | None:
    found = list_backups(model_dir, prefix)
    return found[-1] if found else None


def backup_age_seconds(model_dir: str | Path, prefix: str = "") -> float | None:
    """Seconds since the newest backup was made, or None without one."""
    newest = newest_backup(model_dir, prefix)
    return None if newest is None else max(0.0, time.time() - newest.stat().st_mtime)


def backup_checkpoint(model_dir: str | Path, keep: int = 3, prefix: str = "") -> Path | None:
    """Copy the model files into ``backups/<prefix><timestamp>/`` and delete all but the newest ``keep`` backups.

    The copy is made in a hidden folder and renamed when complete, so a backup folder is always whole.
    Returns the new folder (None if ``keep`` is 0).
    """
    if keep <= 0:
        return None
    folder = Path(model_dir)
    root = folder / BACKUPS
    root.mkdir(parents=True, exist_ok=True)
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
    same = [_backup_key(p)[1] for p in list_backups(folder, prefix) if _backup_key(p)[0] == stamp[len(prefix):]]
    name = f"{stamp}-{max(same) + 1}" if same else stamp  # several in one second: numbered, in order
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    extra_files = [f"{name}.safetensors" for name in _read_json(folder / (prefix + STATE)).get("extras", [])] \
        if (folder / (prefix + STATE)).is_file() else []
    sources = [folder / (prefix + base) for base in (CONFIG, WEIGHTS, OPTIMIZER, STATE, *extra_files)
               if (folder / (prefix + base)).is_file()]
    try:
        tmp.mkdir()
        for source in sources:
            shutil.copyfile(source, tmp / source.name)
        os.replace(tmp, root / name)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a half-made backup would only hold the space the user must free
        if err := _disk_error(e, root, "a backup of the model", sum(p.stat().st_size for p in sources)):
            raise err from e
        raise
    _fsync_dir(root)
    for old in list_backups(folder, prefix)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return root / name


# --- inference -------------------------------------------------------------------
