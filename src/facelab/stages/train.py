"""`facelab train`: train (or continue training) a face-swap model on the workspace's aligned faces.

The model lives in ``model/<name>/`` (see :mod:`facelab.train.checkpoint`). If
that folder holds a model, training resumes from it: its ``config.json`` is
authoritative for the architecture, and the iteration count continues.

Budgets:
  - ``iterations`` is a *total* target, as in DeepFaceLab's "target iteration":
    a model at iteration 3000 run with ``iterations=5000`` trains 2000 more;
    one already past the target stops at once.
  - ``minutes`` is wall-clock time for *this* run.
  - With both, whichever comes first; with neither, until Ctrl+C.
Ctrl+C saves and returns normally.

Options (see docs/training.md): flip, src_scale, sort_by_yaw, preview_history
and backups are saved with the model; left unset (None) on a later run they
take the saved value, set they override it. ``gpu`` trains on ``cuda:<gpu>``
and prefixes the model files with ``gpu<gpu>_``. Every save also makes a
backup into ``backups/`` when the newest one is older than
``backup_every_minutes`` (hourly), keeping the newest ``backups``.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from facelab.device import resolve_device
from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.models import MODELS, create_model, list_models
from facelab.stages import Summary
from facelab.train.augment import AugmentOptions
from facelab.train.checkpoint import (
    CONFIG,
    WEIGHTS,
    backup_age_seconds,
    backup_checkpoint,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from facelab.train.dataset import FaceDataset
from facelab.train.loop import TrainOptions, make_optimizer, train
from facelab.workspace import Workspace

DEFAULT_BATCH_SIZE = TrainOptions.batch_size
# defaults of the options saved with a model (None in TrainSettings = the saved value, else these)
OPTION_DEFAULTS = {"flip": True, "src_scale": 0.0, "sort_by_yaw": False, "preview_history": False, "backups": 3,
                   "random_warp": True, "clip_grad": False, "lr_dropout": 0.0}


@dataclass(frozen=True)
class TrainSettings:
    """Settings of `facelab train`.

    Attributes:
        model: registered model name (``facelab.models.list_models()``).
        name: model folder name under ``model/``; defaults to ``model``.
        iterations: total iteration to train up to (1..100,000,000), or None.
        minutes: wall-clock minutes for this run (> 0), or None.
        batch_size: faces per side per step (1..512); None = the saved value on resume, else 8.
        device: "auto" (best CUDA GPU by memory, else Apple mps, else cpu), "cpu", "cuda", "cuda:N" or "mps".
        save_every_minutes: minutes between saves (> 0).
        preview_every_minutes: minutes between preview images (> 0).
        seed: random seed for initial weights and sampling (>= 0).
        flip: random mirror flip in augmentation; None = saved value, else True.
        src_scale: percent scale of src faces in augmentation (-30..30); None = saved, else 0.
        sort_by_yaw: feed src faces whose yaw is near the sampled dst faces'; None = saved, else False.
        preview_history: keep ``previews/preview_<iteration>.jpg`` at each preview; None = saved, else False.
        backups: rotating backups to keep (0..100, 0 = none); None = saved, else 3.
        backup_every_minutes: minutes between backups (> 0), default 60.
        gpu: CUDA device index; trains on ``cuda:<gpu>`` with model files prefixed ``gpu<gpu>_``.
    """

    model: str = "quick"
    name: str | None = None
    iterations: int | None = None
    minutes: float | None = None
    batch_size: int | None = None
    device: str = "auto"
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0
    seed: int = 0
    flip: bool | None = None
    src_scale: float | None = None
    random_warp: bool | None = None
    clip_grad: bool | None = None
    lr_dropout: float | None = None
    sort_by_yaw: bool | None = None
    preview_history: bool | None = None
    backups: int | None = None
    backup_every_minutes: float = 60.0
    gpu: int | None = None
    # architecture options: used when a model is created, fixed after that
    architecture: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise SettingsError(f"model: unknown model {self.model!r}", f"known models: {', '.join(list_models())}")
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name or self.name.startswith(".")):
            raise SettingsError(f"name: {self.name!r} is not a valid folder name", "use letters, digits, '-' or '_'")
        if self.iterations is not None and not (isinstance(self.iterations, int) and 1 <= self.iterations <= 100_000_000):
            raise SettingsError(f"iterations: {self.iterations!r} is out of range", "use a whole number from 1 to 100000000, or leave it unset")
        for key in ("minutes", "save_every_minutes", "preview_every_minutes", "backup_every_minutes"):
            v = getattr(self, key)
            if v is None and key == "minutes":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SettingsError(f"{key}: {v!r} is out of range", "use a number of minutes greater than 0")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 512):
            raise SettingsError(f"batch_size: {self.batch_size!r} is out of range", "use a whole number from 1 to 512")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SettingsError(f"seed: {self.seed!r} is out of range", "use a whole number >= 0")
        if self.lr_dropout is not None and not (isinstance(self.lr_dropout, (int, float)) and not isinstance(self.lr_dropout, bool)
                                                and 0 <= self.lr_dropout < 1):
            raise SettingsError(f"lr_dropout: {self.lr_dropout!r} is out of range", "use a share from 0 (off) to below 1, e.g. 0.3")
        for key in ("flip", "sort_by_yaw", "preview_history", "random_warp", "clip_grad"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), bool):
                raise SettingsError(f"{key}: {getattr(self, key)!r} is not true or false", "use true or false")
        if self.src_scale is not None and not (isinstance(self.src_scale, (int, float)) and not isinstance(self.src_scale, bool)
                                               and -30 <= self.src_scale <= 30):
            raise SettingsError(f"src_scale: {self.src_scale!r} is out of range", "use a percentage from -30 to 30")
        if self.backups is not None and not (isinstance(self.backups, int) and 0 <= self.backups <= 100):
            raise SettingsError(f"backups: {self.backups!r} is out of range", "use a whole number from 0 to 100 (0 = no backups)")
        if self.gpu is not None:
            if not isinstance(self.gpu, int) or isinstance(self.gpu, bool) or self.gpu < 0:
                raise SettingsError(f"gpu: {self.gpu!r} is not a GPU index", "use 0, 1, ...")
            if self.device not in ("auto", f"cuda:{self.gpu}"):
                raise SettingsError(f"gpu: --gpu {self.gpu} conflicts with device {self.device!r}", "give only one of them")
        resolve_device(self.resolved_device)

    @property
    def resolved_device(self) -> str:
        return f"cuda:{self.gpu}" if self.gpu is not None else self.device

    @property
    def prefix(self) -> str:
        """Model file name prefix: ``gpu<N>_`` with ``gpu``, else empty."""
        return f"gpu{self.gpu}_" if self.gpu is not None else ""

    @property
    def model_name(self) -> str:
        return self.name or self.model


def run(ws: Workspace, settings: TrainSettings, log: Callable[[str], None] = print) -> Summary:
    t0 = time.monotonic()
    ws.require_exists()
    src_paths, dst_paths = ws.require_aligned("src"), ws.require_aligned("dst")
    device = resolve_device(settings.resolved_device)
    prefix = settings.prefix
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    model_dir = ws.model_dir(settings.model_name)
    warnings: list[str] = []

    resumed = (model_dir / (prefix + CONFIG)).is_file() or (model_dir / (prefix + WEIGHTS)).is_file()
    if resumed:
        saved = read_config(model_dir, prefix)
        if saved["model"] != settings.model:
            raise SettingsError(
                f"model: {model_dir} holds a {saved['model']!r} model, not {settings.model!r}",
                f"use --model {saved['model']} to continue it, or --name <other> for a new model")
        ckpt = load_checkpoint(model_dir, device, prefix=prefix)
        model, state, saved_opts = ckpt.model, ckpt.state, ckpt.options
        changed = {k: v for k, v in settings.architecture if model.config.get(k) != v}
        if changed:
            raise SettingsError(
                f"{model_dir.name}: architecture options are fixed at the first run ({', '.join(f'{k}={v}' for k, v in changed.items())} asked, "
                f"{', '.join(f'{k}={model.config.get(k)}' for k in changed)} saved)",
                "leave them out to continue this model, or use --name <other> for a new one")
    else:
        torch.manual_seed(settings.seed)
        accepted = inspect.signature(MODELS.get(settings.model)).parameters
        unknown = [k for k, _ in settings.architecture if k not in accepted]
        if unknown:
            raise SettingsError(f"model {settings.model!r} has no option {', '.join(unknown)}",
                                f"its architecture options are: {', '.join(k for k in accepted if k != 'face_type')}")
        model, state, saved_opts = create_model(settings.model, **dict(settings.architecture)).to(device), {}, {}

    # saved options apply unless this run sets them
    chosen = {k: getattr(settings, k) if getattr(settings, k) is not None else saved_opts.get(k, default)
              for k, default in OPTION_DEFAULTS.items()}
    opts = TrainOptions(
        batch_size=settings.batch_size or int(saved_opts.get("batch_size", DEFAULT_BATCH_SIZE)),
        save_every_minutes=settings.save_every_minutes,
        preview_every_minutes=settings.preview_every_minutes,
        sort_by_yaw=bool(chosen["sort_by_yaw"]),
        preview_history=bool(chosen["preview_history"]),
        clip_grad=bool(chosen["clip_grad"]),
        lr_dropout=float(chosen["lr_dropout"]),
    )
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, opts)
    if resumed and ckpt.optimizer_state is not None:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError) as e:
            raise ModelError(f"{model_dir / 'optimizer.safetensors'} does not fit the model: {e}", "delete it to restart the optimizer") from e
        for group in optimizer.param_groups:  # options may change between runs
            group["lr"], group["betas"] = opts.lr, tuple(opts.betas)

    resolution, face_type = model.config["resolution"], model.config["face_type"]
    log(f"loading faces at {resolution} px: src {len(src_paths)}, dst {len(dst_paths)}")
    flip = bool(chosen["flip"])
    warp = bool(chosen["random_warp"])
    src = FaceDataset(src_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp, scale_bias=float(chosen["src_scale"]) / 100))
    dst = FaceDataset(dst_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp))
    for side, ds in (("src", src), ("dst", dst)):
        if ds.recropped:
            log(f"{side}: re-cut {ds.recropped} faces to the model's face type {face_type!r}")
        if ds.outside:
            warnings.append(f"{ds.outside} {side} faces are cut tighter than {face_type!r}: their {face_type!r} crop reaches"
                            f" outside the aligned image and the border is filled in; extract with --face-type {face_type} for a clean set")
    log(f"{'resuming' if resumed else 'new'} {settings.model} model {model_dir.name!r} at iteration {state.get('iteration', 0)}"
        f" on {device}, batch size {opts.batch_size}")

    options = {**opts.to_dict(), **chosen, "device": settings.resolved_device, "seed": settings.seed}

    def save(st: dict) -> None:
        save_checkpoint(model_dir, model, optimizer, options, {k: v for k, v in st.items() if k != "stopped"}, prefix=prefix)
        age = backup_age_seconds(model_dir, prefix)
        if chosen["backups"] and (age is None or age >= settings.backup_every_minutes * 60):
            backup = backup_checkpoint(model_dir, int(chosen["backups"]), prefix)
            log(f"backup: {backup}")

    try:
        state = train(model, optimizer, src, dst, model_dir, opts, state, device, settings.iterations, settings.minutes,
                      settings.seed, save=save, log=log, prefix=prefix)
    except torch.OutOfMemoryError as e:
        raise FacelabError(f"out of {device.type.upper()} memory at batch size {opts.batch_size}",
                           f"reduce --batch-size (try {max(1, opts.batch_size // 2)}), or train on another --device") from e

    history = state["loss_history"]
    counts: dict[str, float] = {"iteration": state["iteration"]}
    if history:
        counts["src_loss"], counts["dst_loss"] = history[-1][1], history[-1][2]
    if state.get("stopped") == "interrupted":
        warnings.append("training was interrupted; the model was saved and continues from here next time")
    return Summary(step="train", counts=counts, seconds=time.monotonic() - t0, outputs=[str(model_dir)], warnings=warnings)
