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
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch

from facelab.device import resolve_device
from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.models import create_model, list_models
from facelab.stages import Summary
from facelab.train.checkpoint import CONFIG, WEIGHTS, load_checkpoint, read_config, save_checkpoint
from facelab.train.dataset import FaceDataset
from facelab.train.loop import TrainOptions, make_optimizer, train
from facelab.workspace import Workspace

DEFAULT_BATCH_SIZE = TrainOptions.batch_size


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

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise SettingsError(f"model: unknown model {self.model!r}", f"known models: {', '.join(list_models())}")
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name or self.name.startswith(".")):
            raise SettingsError(f"name: {self.name!r} is not a valid folder name", "use letters, digits, '-' or '_'")
        if self.iterations is not None and not (isinstance(self.iterations, int) and 1 <= self.iterations <= 100_000_000):
            raise SettingsError(f"iterations: {self.iterations!r} is out of range", "use a whole number from 1 to 100000000, or leave it unset")
        for key in ("minutes", "save_every_minutes", "preview_every_minutes"):
            v = getattr(self, key)
            if v is None and key == "minutes":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SettingsError(f"{key}: {v!r} is out of range", "use a number of minutes greater than 0")
        if self.batch_size is not None and not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 512):
            raise SettingsError(f"batch_size: {self.batch_size!r} is out of range", "use a whole number from 1 to 512")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SettingsError(f"seed: {self.seed!r} is out of range", "use a whole number >= 0")
        resolve_device(self.device)

    @property
    def model_name(self) -> str:
        return self.name or self.model


def run(ws: Workspace, settings: TrainSettings, log: Callable[[str], None] = print) -> Summary:
    t0 = time.monotonic()
    ws.require_exists()
    src_paths, dst_paths = ws.require_aligned("src"), ws.require_aligned("dst")
    device = resolve_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    model_dir = ws.model_dir(settings.model_name)
    warnings: list[str] = []

    resumed = (model_dir / CONFIG).is_file() or (model_dir / WEIGHTS).is_file()
    if resumed:
        saved = read_config(model_dir)
        if saved["model"] != settings.model:
            raise SettingsError(
                f"model: {model_dir} holds a {saved['model']!r} model, not {settings.model!r}",
                f"use --model {saved['model']} to continue it, or --name <other> for a new model")
        ckpt = load_checkpoint(model_dir, device)
        model, state, saved_opts = ckpt.model, ckpt.state, ckpt.options
    else:
        torch.manual_seed(settings.seed)
        model, state, saved_opts = create_model(settings.model).to(device), {}, {}

    opts = TrainOptions(
        batch_size=settings.batch_size or int(saved_opts.get("batch_size", DEFAULT_BATCH_SIZE)),
        save_every_minutes=settings.save_every_minutes,
        preview_every_minutes=settings.preview_every_minutes,
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
    src, dst = FaceDataset(src_paths, resolution, face_type), FaceDataset(dst_paths, resolution, face_type)
    for side, ds in (("src", src), ("dst", dst)):
        if ds.mismatched:
            warnings.append(f"{ds.mismatched} {side} faces are not {face_type!r} faces; the model trains on them as they are")
    log(f"{'resuming' if resumed else 'new'} {settings.model} model {model_dir.name!r} at iteration {state.get('iteration', 0)}"
        f" on {device}, batch size {opts.batch_size}")

    options = {**opts.to_dict(), "device": settings.device, "seed": settings.seed}
    save = lambda st: save_checkpoint(model_dir, model, optimizer, options, {k: v for k, v in st.items() if k != "stopped"})  # noqa: E731
    try:
        state = train(model, optimizer, src, dst, model_dir, opts, state, device, settings.iterations, settings.minutes,
                      settings.seed, save=save, log=log)
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
