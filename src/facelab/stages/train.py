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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from facelab import jobs
from facelab.device import cpu_threads, resolve_device
from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.models import MODELS, create_model, list_models
from facelab.provenance.marker import Marker, require_marker
from facelab.stages import Summary
from facelab.train import holdout
from facelab.train import options as train_options
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
    require_free_space,
    save_bytes,
    save_checkpoint,
)
from facelab.train.dataset import DETAIL_BUDGET_BYTES, FaceDataset, detail_bytes
from facelab.train.loop import TrainOptions, make_optimizer, train
from facelab.workspace import Workspace, check_folder_name

DEFAULT_BATCH_SIZE = TrainOptions.batch_size
# defaults of the options saved with a model (None in TrainSettings = the saved value, else these, with the
# model's own TRAINING_DEFAULTS over them); every option is declared in facelab.train.options
OPTION_DEFAULTS = train_options.SAVED_DEFAULTS
COLOR_TRANSFERS = train_options.COLOR_TRANSFERS
STYLE_EARLY = 5000
"""Below this iteration a style power draws a warning: measured from the first step, it took the swap over."""


@dataclass(frozen=True)
class TrainSettings:
    """Settings of `facelab train`: one field per option of :data:`facelab.train.options.TRAINER`, where each
    is declared with its type, default, range and help (``docs/training.md`` has them as tables).

    None means "not given": an option saved with the model then takes its saved value, else its default.
    ``architecture`` holds the architecture options given (``(name, value)`` pairs of
    :data:`facelab.train.options.ARCHITECTURE`, the model constructor's typed config), used when the model is
    created and fixed after that.
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
    expression_power: float | None = None
    pretrain: str | None = None
    workers: int | None = None
    amp: bool | None = None
    holdout: int | None = None
    pixel_loss: bool | None = None
    remove_gray_border: bool | None = None
    face_style_power: float | None = None
    bg_style_power: float | None = None
    optimizer_mode: int | None = None
    # architecture options: used when a model is created, fixed after that
    architecture: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.model not in list_models():
            raise SettingsError(f"model: unknown model {self.model!r}", f"known models: {', '.join(list_models())}")
        if self.name is not None:
            check_folder_name(self.name)
        for option in train_options.TRAINER:  # type, range and choices, as declared
            option.check(getattr(self, option.name))
        if self.no_target and self.iterations is not None:
            raise SettingsError(f"iterations: {self.iterations} conflicts with no_target", "give a target iteration or remove it, not both")
        if self.gpu is not None and self.device not in ("auto", f"cuda:{self.gpu}"):
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
    def folder(self) -> str:
        """The model folder's name under ``model/``: ``name``, else the architecture's name."""
        return self.name or self.model


def offloads_optimizer(optimizer_mode: int) -> bool:
    """Whether the optimizer state goes to system memory: optimizer modes 2 and 3 (3 = mode 2 plus recomputed
    activations, which the model does itself). On a CPU the state is there anyway and
    :class:`~facelab.train.offload.OffloadAdam` updates in place, as fast as ``torch.optim.Adam``'s default
    kernel (8.5 M parameters: 22 vs 22 ms a step; mode 1's fused kernel is faster still, 2026-12-07: sae's 45 M
    parameters 53 against 105 ms), so the mode picks the same optimizer on every device."""
    return int(optimizer_mode) >= 2


def _pretrain_paths(folder: str) -> list:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise SettingsError(f"pretrain: {root} is not a folder", "give a folder of aligned faces (facelab extract output)")
    paths = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SettingsError(f"pretrain: {root} holds no aligned faces (.jpg/.png)", "extract faces of many people into it first")
    return paths


def _check_fixed(model, settings: TrainSettings, model_dir) -> None:
    """Refuse changed architecture options (compared after normalising, so df-du equals df-ud)."""
    given = dict(settings.architecture)
    resolve = getattr(type(model), "resolve_config", None)
    merged = resolve({**model.config, **given}) if resolve else {**model.config, **given}
    changed = {k: merged.get(k, given[k]) for k in given if merged.get(k) != model.config.get(k)}
    if changed:
        raise SettingsError(
            f"{model_dir.name}: architecture options are fixed at the first run ({', '.join(f'{k}={v}' for k, v in changed.items())} asked, "
            f"{', '.join(f'{k}={model.config.get(k)}' for k in changed)} saved)",
            "leave them out to continue this model, or use --name <other> for a new one")


def _build(settings: TrainSettings, model_dir, prefix: str, device: torch.device):
    """The model (new or resumed), its state, the saved options and the optimizer state to restore."""
    resumed = (model_dir / (prefix + CONFIG)).is_file() or (model_dir / (prefix + WEIGHTS)).is_file()
    if not resumed:
        torch.manual_seed(settings.seed)
        accepted = inspect.signature(MODELS.get(settings.model)).parameters
        unknown = [k for k, _ in settings.architecture if k not in accepted]
        if unknown:
            raise SettingsError(f"model {settings.model!r} has no option {', '.join(unknown)}",
                                f"its architecture options are: {', '.join(accepted)}")
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


@dataclass
class _Run:
    """What the sections of :func:`run` hand on to each other."""

    settings: TrainSettings
    model_dir: Path
    prefix: str
    device: torch.device
    dist: object
    say: Callable[[str], None]
    warnings: list[str]


def _chosen_options(r: _Run, model, saved_opts: dict) -> dict:
    """The saved options, with those this run gives over them (a model's TRAINING_DEFAULTS for a new one)."""
    defaults = {**OPTION_DEFAULTS, **type(model).TRAINING_DEFAULTS}
    chosen = {k: getattr(r.settings, k) if getattr(r.settings, k) is not None else saved_opts.get(k, default)
              for k, default in defaults.items()}
    check_shared_code(model, chosen)
    return chosen


def check_shared_code(model, chosen: dict) -> None:
    """A :class:`SettingsError` (before any face loads) when ``chosen`` turns on a term that works on the
    bottleneck code shared by src and dst (the true-face discriminator, expression matching) for a model
    without one (the liae models)."""
    for name in ("true_face_power", "expression_power"):
        if chosen.get(name) and not model.shares_code:
            raise SettingsError(f"{name}: {type(model).__name__} has no bottleneck code shared by src and dst",
                                f"set --{name.replace('_', '-')} 0, or train a model with one: quick, h64, h128, df, "
                                "or sae with a df archi")


def _resume_state(r: _Run, state: dict, saved_opts: dict) -> tuple[dict, bool, int | None]:
    """``(state, restart, target)``: pretraining ends when a run leaves ``pretrain`` out (the count restarts);
    the target iteration is the given one, else the saved one."""
    restart = False
    if state.get("pretraining") and not r.settings.pretrain:
        r.say(f"pretraining ended at iteration {state.get('iteration', 0)}: continuing on the workspace's faces from iteration 0")
        state = {"pretrained_iterations": state.get("iteration", 0)}
        restart = True
    state["pretraining"] = bool(r.settings.pretrain)
    saved_target = saved_opts.get("target_iteration")
    if saved_target is not None and (isinstance(saved_target, bool) or not isinstance(saved_target, int) or saved_target < 1):
        r.warnings.append(f"{r.model_dir / (r.prefix + CONFIG)}: target_iteration {saved_target!r} is not a whole number >= 1: ignored")
        saved_target = None
    s = r.settings
    target = None if s.no_target else s.iterations if s.iterations is not None else saved_target
    if target is not None and s.iterations is None and state.get("iteration", 0) >= target:
        r.say(f"iteration {state.get('iteration', 0)} has reached the saved target iteration {target}: give --iterations N"
              " to train further, or --iterations 0 to remove the target")
    return state, restart, target


def _train_options(r: _Run, model, chosen: dict, saved_opts: dict) -> TrainOptions:
    from facelab.train.objective import EYES_MOUTH_WEIGHT, LossOptions

    s, pretraining = r.settings, bool(r.settings.pretrain)
    workers = s.workers if s.workers is not None else (0 if r.device.type == "cpu" else min(4, os.cpu_count() or 1))
    return TrainOptions(
        batch_size=s.batch_size or int(saved_opts.get("batch_size", DEFAULT_BATCH_SIZE)),
        save_every_minutes=s.save_every_minutes,
        preview_every_minutes=s.preview_every_minutes,
        sort_by_yaw=bool(chosen["sort_by_yaw"]) and not pretraining,
        uniform_yaw=bool(chosen["uniform_yaw"]),
        preview_history=bool(chosen["preview_history"]),
        clip_grad=bool(chosen["clip_grad"]),
        lr_dropout=float(chosen["lr_dropout"]),
        color_transfer=None if chosen["color_transfer"] == "none" or pretraining else chosen["color_transfer"],
        workers=workers,
        amp=s.amp,
        losses=LossOptions(pixel_loss=bool(chosen["pixel_loss"]), eyes_mouth_priority=bool(chosen["eyes_mouth_priority"]),
                           eyes_mouth_weight=EYES_MOUTH_WEIGHT if type(model).EYES_MOUTH_WEIGHT is None
                           else type(model).EYES_MOUTH_WEIGHT,
                           remove_gray_border=bool(chosen["remove_gray_border"]),
                           face_style_power=float(chosen["face_style_power"]), bg_style_power=float(chosen["bg_style_power"])),
    )


def _optimizer(r: _Run, model, opts: TrainOptions, ckpt, state: dict, resume_optimizer: bool, mode: int):
    """The optimizer (its state in system memory in modes 2 and 3; mode 3 also recomputes activations where
    the model can), restored on resume."""
    model.recompute_activations = mode == 3 and type(model).RECOMPUTES
    if mode == 3 and not type(model).RECOMPUTES:
        r.warnings.append(f"optimizer_mode 3: {r.settings.model} does not recompute activations; it trains as in mode 2")
    optimizer = make_optimizer(model, opts, offload=offloads_optimizer(mode))
    if resume_optimizer and ckpt.optimizer_state is not None:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except (ValueError, KeyError) as e:
            raise ModelError(f"{r.model_dir / 'optimizer.safetensors'} does not fit the model: {e}", "delete it to restart the optimizer") from e
        for group in optimizer.param_groups:  # options may change between runs; a divergence guard's cuts stay
            group["lr"], group["betas"] = opts.lr * float(state.get("lr_scale", 1.0)), tuple(opts.betas)
    return optimizer


def _discriminators(r: _Run, chosen: dict, cfg: dict, ckpt, resume: bool):
    """The GAN / true-face discriminators (None when both powers are 0), restored on resume."""
    from facelab.train.adversarial import AdversarialTrainer

    gan, true_face = (0.0, 0.0) if r.settings.pretrain else (float(chosen["gan_power"]), float(chosen["true_face_power"]))
    if not (gan or true_face):
        return None
    adversarial = AdversarialTrainer(cfg["resolution"], int(cfg.get("ae_dims", 0)), gan, true_face, r.device)
    saved = ckpt.extras.get("adversarial") if resume else None
    if saved:
        try:
            adversarial.load_state_dict({**saved["tensors"], **saved["meta"]})
        except ValueError as e:
            raise ModelError(f"{r.model_dir / (r.prefix + 'adversarial.safetensors')}: {e}",
                             "delete that file to start the discriminators afresh") from e
    return adversarial


def _datasets(r: _Run, chosen: dict, cfg: dict, src_paths: list[Path], dst_paths: list[Path]) -> tuple[FaceDataset, FaceDataset]:
    """The src and dst training sets at the model's size and face type (one set while pretraining)."""
    pretraining, resolution, face_type = bool(r.settings.pretrain), cfg["resolution"], cfg["face_type"]
    r.say(f"loading faces at {resolution} px: " + (f"{len(src_paths)} pretraining faces from {r.settings.pretrain}" if pretraining
                                                  else f"src {len(src_paths)}, dst {len(dst_paths)}"))
    flip, warp = bool(chosen["flip"]), bool(chosen["random_warp"])
    src = FaceDataset(src_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp, scale_bias=float(chosen["src_scale"]) / 100))
    dst = src if pretraining else FaceDataset(dst_paths, resolution, face_type, AugmentOptions(flip=flip, warp=warp))
    for side, ds in (("src", src), ("dst", dst))[: 1 if pretraining else 2]:
        r.warnings.extend(f"{side}: skipped (not trained on): {m}" for m in ds.skipped)
        if ds.recropped:
            r.say(f"{side}: re-cut {ds.recropped} faces to the model's face type {face_type!r}")
        if ds.segmented:
            r.say(f"{side}: {ds.segmented} of {len(ds.paths)} faces use the segmenter's mask (`facelab seg apply`), the rest the landmark hull")
        if ds.detail is None:  # targets a little softer than the faces (docs/training.md, "sharp targets")
            need = detail_bytes(len(ds.paths), resolution)
            why = (f"copies at {2 * resolution} px would take {need / 2**30:.1f} GiB, over {DETAIL_BUDGET_BYTES / 2**30:.0f} GiB"
                   if need > DETAIL_BUDGET_BYTES else f"not every face file is {2 * resolution} px or larger (extract with --size {2 * resolution} for sharper targets)")
            r.say(f"{side}: training targets are resampled at {resolution} px: {why}")
        if ds.outside:
            r.warnings.append(f"{ds.outside} {side} faces are cut tighter than {face_type!r}: their {face_type!r} crop reaches"
                              f" outside the aligned image and the border is filled in; extract with --face-type {face_type} for a clean set")
    return src, dst


def _saver(r: _Run, model, optimizer, options: dict, adversarial, backups: int, log: Callable[[str], None]) -> Callable[[dict], None]:
    """``save(state)``: the model folder, then a backup when the newest is ``backup_every_minutes`` old."""
    from facelab.train.adversarial import split_state

    def save(st: dict) -> None:
        extras = {}
        if adversarial is not None:
            tensors, meta = split_state(adversarial.state_dict())
            extras["adversarial"] = {"tensors": tensors, "meta": meta}
        save_checkpoint(r.model_dir, model, optimizer, options, {k: v for k, v in st.items() if k != "stopped"}, prefix=r.prefix,
                        extras=extras)
        age = backup_age_seconds(r.model_dir, r.prefix)
        job = jobs.current()
        asked = job is not None and job.take("backup")  # the UI's Backup now
        if (backups or asked) and (asked or age is None or age >= r.settings.backup_every_minutes * 60):
            log(f"backup: {backup_checkpoint(r.model_dir, max(int(backups), 1), r.prefix)}")

    return save


def _check_free_space(r: _Run, model, optimizer, adversarial, backups: int) -> None:
    """The first save (weights, optimizer, a discriminator and its optimizer) and the backup due after it
    must fit on the model folder's disk before training starts."""
    one = save_bytes(model.state_dict(), adversarial.state_dict() if adversarial is not None else {}, optimizer=optimizer)
    age = backup_age_seconds(r.model_dir, r.prefix)
    backup = bool(backups) and (age is None or age >= r.settings.backup_every_minutes * 60)
    require_free_space(r.model_dir, one, backup=backup)


def _out_of_memory(r: _Run, opts: TrainOptions, resolution: int) -> FacelabError:
    return FacelabError(
        f"out of {r.device.type.upper()} memory at batch size {opts.batch_size} ({r.settings.model}, {resolution} px)",
        f"reduce --batch-size (try {max(1, opts.batch_size // 2)})"
        + ", use --optimizer-mode 2 (optimizer state in system memory)"
        + (" or 3 (also recompute activations)" if MODELS.get(r.settings.model).RECOMPUTES else "")
        + ", turn off --gan-power / --true-face-power / style powers, or for a new model (--name) a lower --resolution"
        " or smaller --ae-dims/--e-dims/--d-dims; or train with --device cpu")


def _warn_variants(r: _Run) -> None:
    """A new model beside models trained with ``--gpu N`` in the same folder: say how to continue those."""
    others = [v for v in model_variants(r.model_dir) if v is not None and v != r.settings.gpu]
    if others:
        gpu = r.settings.gpu
        r.warnings.append(f"{r.model_dir} holds models trained with --gpu {', '.join(map(str, others))}; this run started a new "
                          f"one{' for --gpu ' + str(gpu) if gpu is not None else ' without a GPU prefix'}:"
                          f" give --gpu {others[0]} to continue that one instead")


UNSETTLED = "its swap settles at about"
"""In the warning of a run that stopped under its model's ``SETTLED_ITERATIONS`` (a caller that trains on drops it)."""


def _summary(r: _Run, state: dict, seconds: float, settled: int | None) -> Summary:
    history = state["loss_history"]
    counts: dict[str, float] = {"iteration": state["iteration"]}
    if history:
        counts["src_loss"], counts["dst_loss"] = history[-1][1], history[-1][2]
    if state.get("stopped") == "interrupted":
        r.warnings.append("training was interrupted; the model was saved and continues from here next time")
    if settled and not r.settings.pretrain and state["iteration"] < settled:
        r.warnings.append(f"{r.settings.model} at iteration {state['iteration']}: {UNSETTLED} {settled} "
                          "(before that the mouth may not follow dst's, and some frames still show dst's face); "
                          "`facelab train` again continues this model")
    return Summary(step="train", counts=counts, seconds=seconds, outputs=[str(r.model_dir)], warnings=r.warnings)


def run(ws: Workspace, settings: TrainSettings, log: Callable[[str], None] = print, *, marker: Marker | None = None,
        job: jobs.Job | None = None) -> Summary:
    """Train (or continue) ``model/<name>`` on the workspace's faces; see the module docstring.

    ``marker`` marks the previews (required); ``job`` receives progress events (each log line and preview)
    and its cancel token stops training as Ctrl+C does: saved, resumable.
    """
    from facelab.train import distributed
    from facelab.train.loop import TrainForward

    marker = require_marker(marker, "train")  # it marks the previews; refused before anything is written
    t0 = time.monotonic()
    ws.require_exists()
    # -- where: device, processes, faces
    dist = distributed.from_env(settings.resolved_device)
    device = dist.device if dist is not None else resolve_device(settings.resolved_device)
    if settings.pretrain:
        src_paths = dst_paths = _pretrain_paths(settings.pretrain)
    else:
        src_paths, dst_paths = ws.require_aligned("src"), ws.require_aligned("dst")
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(dist.world if dist else 1))
    main = dist is None or dist.is_main
    r = _Run(settings, ws.model_dir(settings.folder), settings.prefix, device, dist, log if main else (lambda _s: None), [])

    # -- model: new, or resumed with its saved architecture and options
    model, state, saved_opts, ckpt, resumed = _build(settings, r.model_dir, r.prefix, device)
    if not resumed:
        _warn_variants(r)
    if not settings.pretrain:
        src_paths, dst_paths = _hold_out(r.model_dir, r.prefix, settings.holdout, resumed, src_paths, dst_paths, main, r.say)
    elif settings.holdout:
        r.warnings.append("holdout: not used while pretraining (it keeps faces of the workspace's pair out)")

    # -- options, optimizer, discriminators
    chosen, cfg = _chosen_options(r, model, saved_opts), model.config
    state, restart, target = _resume_state(r, state, saved_opts)
    if (chosen["face_style_power"] or chosen["bg_style_power"]) and state.get("iteration", 0) < STYLE_EARLY:
        r.warnings.append(f"style power on a model at iteration {state.get('iteration', 0)}: early in training it can take the "
                          "swap over (on quick from the first step, power 1 and 10 turned the face into a blob and a grid; "
                          "docs/training.md); train without it first, then turn it on low and watch the preview")
    opts = _train_options(r, model, chosen, saved_opts)
    model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(r, model, opts, ckpt, state, resumed and not restart, int(chosen["optimizer_mode"]))
    adversarial = _discriminators(r, chosen, cfg, ckpt, resumed and not restart)
    identity_power = 0.0 if settings.pretrain else float(chosen["identity_power"])
    expression_power = 0.0 if settings.pretrain else float(chosen["expression_power"])
    if identity_power and dist is not None:
        raise SettingsError("identity_power: not available with several training processes yet",
                            "train in one process (without torchrun), or set --identity-power 0")

    # -- data
    src, dst = _datasets(r, chosen, cfg, src_paths, dst_paths)
    extra_terms = []
    if identity_power:
        from facelab.train.identity_loss import IdentityLoss

        extra_terms.append(IdentityLoss(src_paths, dst, identity_power, device, settings.seed))
        r.say(f"identity loss: power {identity_power:g}, {extra_terms[-1].faces_per_step} swapped dst faces per step")
    if expression_power:
        from facelab.train.expression_match import ExpressionMatch

        extra_terms.append(ExpressionMatch(src, dst, expression_power, device, settings.seed))
        r.say(f"expression matching: power {expression_power:g}, {extra_terms[-1].faces_per_step} dst faces per step, "
              f"{len(extra_terms[-1].rows)} of {len(dst)} dst faces matched")
    where = f"{dist.world} processes ({device.type})" if dist else str(device)
    r.say(f"{'resuming' if resumed else 'new'} {settings.model} model {r.model_dir.name!r} at iteration {state.get('iteration', 0)}"
          + (f" (target {target})" if target is not None else "")
          + f" on {where}, batch size {opts.batch_size}{' per process' if dist else ''}{' (pretraining)' if settings.pretrain else ''}")

    # -- the loop
    options = {**opts.to_dict(), **chosen, "device": settings.resolved_device, "seed": settings.seed, "target_iteration": target}
    save = _saver(r, model, optimizer, options, adversarial, chosen["backups"], log)
    _check_free_space(r, model, optimizer, adversarial, chosen["backups"])  # on every process: all stop or none
    net = distributed.wrap(TrainForward(model), dist) if dist is not None else model
    try:
        with jobs.running(job):
            state = train(net, optimizer, src, dst, r.model_dir, opts, state, device, target, settings.minutes, settings.seed,
                          save=save, log=r.say, prefix=r.prefix, adversarial=adversarial, dist=dist, extra_terms=extra_terms,
                          marker=marker)
        if dist is not None and not dist.same_weights(model):
            r.warnings.append("the processes ended with different weights: report this as a bug")
    except torch.OutOfMemoryError as e:
        raise _out_of_memory(r, opts, cfg["resolution"]) from e
    finally:
        distributed.close(dist)

    return _summary(r, state, time.monotonic() - t0, type(model).SETTLED_ITERATIONS)
