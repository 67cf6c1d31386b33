"""`facelab train`: train (or continue training) a face-swap model on the workspace's aligned faces.

The model lives in ``model/<name>/`` (see :mod:`facelab.train.checkpoint`). If
that folder holds a model, training resumes from it: its ``config.json`` is
authoritative for the architecture, and the iteration count continues.

Budgets:
  - ``iterations`` is a *total* target, as in DeepFaceLab's "target iteration":
    a model at iteration 3000 run with ``iterations=5000`` trains 2000 more;
    one already past the target stops at once. The target is saved with the
    model (``options.target_iteration``): a later run without ``iterations``
    trains up to the saved target, one with it sets a new one, and
    ``no_target`` forgets it.
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
from pathlib import Path

import torch

from facelab import color
from facelab.device import resolve_device
from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.models import MODELS, create_model, list_models
from facelab.stages import Summary
from facelab.train import holdout
from facelab.train.augment import AugmentOptions
from facelab.train.checkpoint import (
    CONFIG,
    SWAP,
    WEIGHTS,
    backup_age_seconds,
    backup_checkpoint,
    check_kind,
    load_checkpoint,
    model_variants,
    read_config,
    save_checkpoint,
)
from facelab.train.dataset import FaceDataset
from facelab.train.loop import TrainOptions, make_optimizer, train
from facelab.workspace import Workspace

DEFAULT_BATCH_SIZE = TrainOptions.batch_size
# defaults of the options saved with a model (None in TrainSettings = the saved value, else these, with the
# model's own TRAINING_DEFAULTS over them)
OPTION_DEFAULTS = {"flip": True, "src_scale": 0.0, "sort_by_yaw": False, "preview_history": False, "backups": 3,
                   "random_warp": True, "clip_grad": False, "lr_dropout": 0.0, "uniform_yaw": False,
                   "eyes_mouth_priority": False, "color_transfer": "none", "gan_power": 0.0, "true_face_power": 0.0,
                   "identity_power": 0.0}
# model config keys that steer training, not the network's shape: changeable on any run
TRAINING_CONFIG_KEYS = ("pixel_loss", "face_style_power", "bg_style_power", "remove_gray_border", "optimizer_mode")
COLOR_TRANSFERS = ("none", *color.COLOR_TRANSFERS)
"""The ``color_transfer`` option's values: none, or a colour transfer of :mod:`facelab.color` (the merge's too)."""


@dataclass(frozen=True)
class TrainSettings:
    """Settings of `facelab train`.

    Attributes:
        model: registered model name (``facelab.models.list_models()``).
        name: model folder name under ``model/``; defaults to ``model``.
        iterations: total iteration to train up to (1..100,000,000), saved with the model; None = the saved
            target (none saved: no target).
        no_target: forget a saved target iteration (train until Ctrl+C or ``minutes``); not with ``iterations``.
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
        uniform_yaw: sample faces evenly over head turn; None = saved, else False.
        eyes_mouth_priority: extra loss weight on eyes, brows and mouth; None = saved, else False.
        color_transfer: recolour src samples towards dst faces: none, rct, lct, mkl, idt, sot; None = saved, else none.
        gan_power: patch-GAN loss weight 0..10 (0 = off; DeepFaceLab's usual 0.1); None = saved, else 0.
        true_face_power: code-discriminator weight 0..1 (sae df archi only; 0 = off, usual 0.01); None = saved, else 0.
        identity_power: weight 0..10 of the identity loss (:mod:`facelab.train.identity_loss`: the swap's dlib face
            descriptor pulled towards src's; 0 = off); None = saved, else 0.
        pretrain: a folder of aligned faces of many people: train both sides on it (pretraining). A later run
            without it ends pretraining: the iteration count and optimizer restart on the workspace's pair.
        workers: threads preparing batches ahead (0..32); None = 0 on CPU, up to 4 on a GPU.
        holdout: faces of each side kept out of training (evenly spaced by file name), chosen when the model is
            created and fixed after that (``holdout.json``), for ``facelab eval --reconstruction``; None = 0 for a
            new model, the saved choice on resume.
        amp: mixed precision. None (default) or True: wherever the hardware runs it natively (CUDA: bfloat16
            where supported, else float16; a CPU with native bfloat16: bfloat16); False: float32 everywhere.
    """

    model: str = "quick"
    name: str | None = None
    iterations: int | None = None
    no_target: bool = False
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
    uniform_yaw: bool | None = None
    eyes_mouth_priority: bool | None = None
    color_transfer: str | None = None
    gan_power: float | None = None
    true_face_power: float | None = None
    identity_power: float | None = None
    pretrain: str | None = None
    workers: int | None = None
    amp: bool | None = None
    holdout: int | None = None
    # architecture options: used when a model is created, fixed after that
    architecture: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise SettingsError(f"model: unknown model {self.model!r}", f"known models: {', '.join(list_models())}")
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name or self.name.startswith(".")):
            raise SettingsError(f"name: {self.name!r} is not a valid folder name", "use letters, digits, '-' or '_'")
        if self.holdout is not None and not (isinstance(self.holdout, int) and 0 <= self.holdout <= holdout.MAX_HOLDOUT):
            raise SettingsError(f"holdout: {self.holdout!r} is out of range", f"use 0..{holdout.MAX_HOLDOUT} faces per side")
        if self.iterations is not None and not (isinstance(self.iterations, int) and 1 <= self.iterations <= 100_000_000):
            raise SettingsError(f"iterations: {self.iterations!r} is out of range", "use a whole number from 1 to 100000000, or leave it unset")
        if not isinstance(self.no_target, bool):
            raise SettingsError(f"no_target: {self.no_target!r} is not true or false", "use true or false")
        if self.no_target and self.iterations is not None:
            raise SettingsError(f"iterations: {self.iterations} conflicts with no_target", "give a target iteration or remove it, not both")
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
        for key, hi in (("gan_power", 10), ("true_face_power", 1), ("identity_power", 10)):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= hi):
                raise SettingsError(f"{key}: {v!r} is out of range", f"use a number from 0 (off) to {hi}")
        if self.color_transfer is not None and self.color_transfer not in COLOR_TRANSFERS:
            raise SettingsError(f"color_transfer: {self.color_transfer!r} is not a colour transfer", f"use one of {', '.join(COLOR_TRANSFERS)}")
        if self.workers is not None and not (isinstance(self.workers, int) and not isinstance(self.workers, bool) and 0 <= self.workers <= 32):
            raise SettingsError(f"workers: {self.workers!r} is out of range", "use a whole number from 0 to 32")
        for key in ("flip", "sort_by_yaw", "preview_history", "random_warp", "clip_grad", "uniform_yaw", "eyes_mouth_priority", "amp"):
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


def offloads_optimizer(config: dict) -> bool:
    """Whether a model config asks for the optimizer state in system memory: SAE optimizer modes 2 and 3
    (3 = mode 2 plus recomputed activations, which the model does itself). On a CPU the state is there
    anyway and :class:`~facelab.train.offload.OffloadAdam` updates in place, as fast as ``torch.optim.Adam``
    (8.5 M parameters: 22 vs 22 ms a step), so the mode picks the same optimizer on every device."""
    return int(config.get("optimizer_mode", 1)) >= 2


def _pretrain_paths(folder: str) -> list:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SettingsError(f"pretrain: {root} is not a folder", "give a folder of aligned faces (facelab extract output)")
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SettingsError(f"pretrain: {root} holds no aligned faces (.jpg/.png)", "extract faces of many people into it first")
    return paths


def _check_fixed(model, settings: TrainSettings, model_dir) -> None:
    """Refuse changed architecture options (compared after normalising, so df-du equals df-ud); apply changed
    training keys of the config (pixel loss, style powers, gray border, optimizer mode)."""
    given = dict(settings.architecture)
    resolve = getattr(type(model), "resolve_config", None)
    merged = resolve({**model.config, **given}) if resolve else {**model.config, **given}
    changed = {k: merged[k] for k in given if k not in TRAINING_CONFIG_KEYS and merged.get(k) != model.config.get(k)}
    if changed:
        raise SettingsError(
            f"{model_dir.name}: architecture options are fixed at the first run ({', '.join(f'{k}={v}' for k, v in changed.items())} asked, "
            f"{', '.join(f'{k}={model.config.get(k)}' for k in changed)} saved)",
            "leave them out to continue this model, or use --name <other> for a new one")
    for k in TRAINING_CONFIG_KEYS:
        if k in given:
            model.config[k] = merged[k]


def _build(settings: TrainSettings, model_dir, prefix: str, device: torch.device):
    """The model (new or resumed), its state, the saved options and the optimizer state to restore."""
    resumed = (model_dir / (prefix + CONFIG)).is_file() or (model_dir / (prefix + WEIGHTS)).is_file()
    if not resumed:
        torch.manual_seed(settings.seed)
        accepted = inspect.signature(MODELS.get(settings.model)).parameters
        unknown = [k for k, _ in settings.architecture if k not in accepted]
        if unknown:
            raise SettingsError(f"model {settings.model!r} has no option {', '.join(unknown)}",
                                f"its architecture options are: {', '.join(k for k in accepted if k != 'face_type')}")
        return create_model(settings.model, **dict(settings.architecture)).to(device), {}, {}, None, False
    saved = read_config(model_dir, prefix)
    check_kind(saved, model_dir, SWAP)  # an enhancer folder is not a face-swap model
    if saved["model"] != settings.model:
        raise SettingsError(
            f"model: {model_dir} holds a {saved['model']!r} model, not {settings.model!r}",
            f"use --model {saved['model']} to continue it, or --name <other> for a new model")
    ckpt = load_checkpoint(model_dir, device, prefix=prefix)
    _check_fixed(ckpt.model, settings, model_dir)
    return ckpt.model, ckpt.state, ckpt.options, ckpt, True


def _hold_out(model_dir: Path, prefix: str, count: int | None, resumed: bool, src_paths: list[Path], dst_paths: list[Path],
              main: bool, say: Callable[[str], None]) -> tuple[list[Path], list[Path]]:
    """The faces to train on, without the model's held-out faces (chosen now for a new model with ``count``)."""
    doc = holdout.load(model_dir, prefix)
    saved = doc["count"] if doc else 0
    if count is not None and count != saved and (resumed or doc):
        raise SettingsError(
            f"holdout: this model keeps {saved} faces per side out of training; it cannot change to {count}",
            "the held-out faces must be ones the model never saw: leave --holdout out, or start a new model with --name")
    if doc is None and count and main:
        model_dir.mkdir(parents=True, exist_ok=True)
        doc = holdout.create(model_dir, {"src": src_paths, "dst": dst_paths}, count, prefix)
    elif doc is None and count:  # other processes of a distributed run pick the same faces (the choice is deterministic)
        doc = {"count": count, "src": [p.name for p in holdout.pick(src_paths, count)],
               "dst": [p.name for p in holdout.pick(dst_paths, count)]}
    (src_train, src_held), (dst_train, dst_held) = holdout.split(src_paths, doc, "src"), holdout.split(dst_paths, doc, "dst")
    if doc:
        say(f"holdout: {len(src_held)} src and {len(dst_held)} dst faces kept out of training ({holdout.FILE})")
    return src_train, dst_train


def run(ws: Workspace, settings: TrainSettings, log: Callable[[str], None] = print) -> Summary:
    from facelab.train import distributed
    from facelab.train.adversarial import AdversarialTrainer, split_state
    from facelab.train.loop import TrainForward
    from facelab.train.objective import LossOptions

    t0 = time.monotonic()
    ws.require_exists()
    dist = distributed.from_env(settings.resolved_device)
    device = dist.device if dist is not None else resolve_device(settings.resolved_device)
    if settings.pretrain:
        src_paths = dst_paths = _pretrain_paths(settings.pretrain)
    else:
        src_paths, dst_paths = ws.require_aligned("src"), ws.require_aligned("dst")
    prefix = settings.prefix
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // (dist.world if dist else 1)))
    model_dir = ws.model_dir(settings.model_name)
    warnings: list[str] = []
    model, state, saved_opts, ckpt, resumed = _build(settings, model_dir, prefix, device)
    others = [v for v in model_variants(model_dir) if v is not None and v != settings.gpu]
    if not resumed and others:
        warnings.append(f"{model_dir} holds models trained with --gpu {', '.join(map(str, others))}; this run started a new "
                        f"one{' for --gpu ' + str(settings.gpu) if settings.gpu is not None else ' without a GPU prefix'}:"
                        f" give --gpu {others[0]} to continue that one instead")
    main = dist is None or dist.is_main
    say = log if main else (lambda _s: None)
    if not settings.pretrain:
        src_paths, dst_paths = _hold_out(model_dir, prefix, settings.holdout, resumed, src_paths, dst_paths, main, say)
    elif settings.holdout:
        warnings.append("holdout: not used while pretraining (it keeps faces of the workspace's pair out)")

    # saved options apply unless this run sets them
    defaults = {**OPTION_DEFAULTS, **type(model).TRAINING_DEFAULTS}
    chosen = {k: getattr(settings, k) if getattr(settings, k) is not None else saved_opts.get(k, default)
              for k, default in defaults.items()}
    cfg = model.config
    if chosen["true_face_power"] and not (settings.model == "sae" and cfg["archi"].startswith("df")):
        raise SettingsError("true_face_power: only the sae model with a df archi has it",
                            "leave it at 0, or train --model sae --archi df (or df-ud, ...)")
    restart = False
    if state.get("pretraining") and not settings.pretrain:
        say(f"pretraining ended at iteration {state.get('iteration', 0)}: continuing on the workspace's faces from iteration 0")
        state = {"pretrained_iterations": state.get("iteration", 0)}
        restart = True
    state["pretraining"] = bool(settings.pretrain)
    # the target iteration is saved with the model: a run without one trains up to the saved target
    saved_target = saved_opts.get("target_iteration")
    if saved_target is not None and (isinstance(saved_target, bool) or not isinstance(saved_target, int) or saved_target < 1):
        warnings.append(f"{model_dir / (prefix + CONFIG)}: target_iteration {saved_target!r} is not a whole number >= 1: ignored")
        saved_target = None
    target = None if settings.no_target else settings.iterations if settings.iterations is not None else saved_target
    if target is not None and settings.iterations is None and state.get("iteration", 0) >= target:
        say(f"iteration {state.get('iteration', 0)} has reached the saved target iteration {target}: give --iterations N"
            " to train further, or --iterations 0 to remove the target")
    pretraining = bool(settings.pretrain)
    workers = settings.workers if settings.workers is not None else (0 if device.type == "cpu" else min(4, os.cpu_count() or 1))
    opts = TrainOptions(
        batch_size=settings.batch_size or int(saved_opts.get("batch_size", DEFAULT_BATCH_SIZE)),
        save_every_minutes=settings.save_every_minutes,
        preview_every_minutes=settings.preview_every_minutes,
        sort_by_yaw=bool(chosen["sort_by_yaw"]) and not pretraining,
        uniform_yaw=bool(chosen["uniform_yaw"]),
        preview_history=bool(chosen["preview_history"]),
        clip_grad=bool(chosen["clip_grad"]),
        lr_dropout=float(chosen["lr_dropout"]),
        color_transfer=None if chosen["color_transfer"] == "none" or pretraining else chosen["color_transfer"],
        workers=workers,
        amp=settings.amp,
        losses=LossOptions(pixel_loss=bool(cfg.get("pixel_loss", False)), eyes_mouth_priority=bool(chosen["eyes_mouth_priority"]),
                           remove_gray_border=bool(cfg.get("remove_gray_border", False)),
                           face_style_power=float(cfg.get("face_style_power", 0.0)), bg_style_power=float(cfg.get("bg_style_power", 0.0))),
    )
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, opts, offload=offloads_optimizer(cfg))
    if resumed and ckpt.optimizer_state is not None and not restart:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError) as e:
            raise ModelError(f"{model_dir / 'optimizer.safetensors'} does not fit the model: {e}", "delete it to restart the optimizer") from e
        for group in optimizer.param_groups:  # options may change between runs; a divergence guard's cuts stay
            group["lr"], group["betas"] = opts.lr * float(state.get("lr_scale", 1.0)), tuple(opts.betas)

    adversarial = None
    gan, true_face = (0.0, 0.0) if pretraining else (float(chosen["gan_power"]), float(chosen["true_face_power"]))
    if gan or true_face:
        adversarial = AdversarialTrainer(cfg["resolution"], int(cfg.get("ae_dims", 0)), gan, true_face, device)
        saved_adv = ckpt.extras.get("adversarial") if resumed and not restart else None
        if saved_adv:
            try:
                adversarial.load_state_dict({**saved_adv["tensors"], **saved_adv["meta"]})
            except ValueError as e:
                raise ModelError(f"{model_dir / (prefix + 'adversarial.safetensors')}: {e}",
                                 "delete that file to start the discriminators afresh") from e
    identity_power = 0.0 if pretraining else float(chosen["identity_power"])
    if identity_power and dist is not None:
        raise SettingsError("identity_power: not available with several training processes yet",
                            "train in one process (without torchrun), or set --identity-power 0")

    resolution, face_type = cfg["resolution"], cfg["face_type"]
    say(f"loading faces at {resolution} px: " + (f"{len(src_paths)} pretraining faces from {settings.pretrain}" if pretraining
                                                else f"src {len(src_paths)}, dst {len(dst_paths)}"))
    flip, warp = bool(chosen["flip"]), bool(chosen["random_warp"])
    src = FaceDataset(src_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp, scale_bias=float(chosen["src_scale"]) / 100))
    dst = src if pretraining else FaceDataset(dst_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp))
    for side, ds in (("src", src), ("dst", dst))[: 1 if pretraining else 2]:
        warnings += [f"{side}: skipped (not trained on): {m}" for m in ds.skipped]
        if ds.recropped:
            say(f"{side}: re-cut {ds.recropped} faces to the model's face type {face_type!r}")
        if ds.outside:
            warnings.append(f"{ds.outside} {side} faces are cut tighter than {face_type!r}: their {face_type!r} crop reaches"
                            f" outside the aligned image and the border is filled in; extract with --face-type {face_type} for a clean set")
    identity = None
    if identity_power:
        from facelab.train.identity_loss import IdentityLoss

        identity = IdentityLoss(src_paths, dst, identity_power, device, settings.seed)
        say(f"identity loss: power {identity_power:g}, {identity.faces_per_step} swapped dst faces per step")
    where = f"{dist.world} processes ({device.type})" if dist else str(device)
    say(f"{'resuming' if resumed else 'new'} {settings.model} model {model_dir.name!r} at iteration {state.get('iteration', 0)}"
        + (f" (target {target})" if target is not None else "")
        + f" on {where}, batch size {opts.batch_size}{' per process' if dist else ''}{' (pretraining)' if pretraining else ''}")

    options = {**opts.to_dict(), **chosen, "device": settings.resolved_device, "seed": settings.seed,
               "target_iteration": target}
    net = distributed.wrap(TrainForward(model), dist) if dist is not None else model

    def save(st: dict) -> None:
        extras = {}
        if adversarial is not None:
            tensors, meta = split_state(adversarial.state_dict())
            extras["adversarial"] = {"tensors": tensors, "meta": meta}
        save_checkpoint(model_dir, model, optimizer, options, {k: v for k, v in st.items() if k != "stopped"}, prefix=prefix,
                        extras=extras)
        age = backup_age_seconds(model_dir, prefix)
        if chosen["backups"] and (age is None or age >= settings.backup_every_minutes * 60):
            backup = backup_checkpoint(model_dir, int(chosen["backups"]), prefix)
            log(f"backup: {backup}")

    try:
        state = train(net, optimizer, src, dst, model_dir, opts, state, device, target, settings.minutes,
                      settings.seed, save=save, log=say, prefix=prefix, adversarial=adversarial, dist=dist,
                      identity=identity)
        if dist is not None and not dist.same_weights(model):
            warnings.append("the processes ended with different weights: report this as a bug")
    except torch.OutOfMemoryError as e:
        raise FacelabError(
            f"out of {device.type.upper()} memory at batch size {opts.batch_size} ({settings.model}, {resolution} px)",
            f"reduce --batch-size (try {max(1, opts.batch_size // 2)})"
            + (", use --optimizer-mode 2 (optimizer state in system memory) or 3 (also recompute activations)" if settings.model == "sae" else "")
            + ", turn off --gan-power / --true-face-power / style powers, or for a new model (--name) a lower --resolution"
            " or smaller --ae-dims/--e-dims/--d-dims; or train with --device cpu") from e
    finally:
        distributed.close(dist)

    history = state["loss_history"]
    counts: dict[str, float] = {"iteration": state["iteration"]}
    if history:
        counts["src_loss"], counts["dst_loss"] = history[-1][1], history[-1][2]
    if state.get("stopped") == "interrupted":
        warnings.append("training was interrupted; the model was saved and continues from here next time")
    return Summary(step="train", counts=counts, seconds=time.monotonic() - t0, outputs=[str(model_dir)], warnings=warnings)
