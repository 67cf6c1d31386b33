"""`facelab train-enhancer`: train (or continue training) a face enhancer on the workspace's src faces.

The enhancer (:mod:`facelab.enhance`) is the super resolution of ``facelab
merge --enhancer NAME``: it upscales the swap model's predicted faces
by ``scale``. No pretrained one can be shipped, so it learns from the src face
set: real src faces at ``input_size * scale`` px are the targets, the same
faces shrunk to ``input_size`` (and randomly blurred, noised, compressed,
flipped and shifted, :mod:`facelab.enhance.data`) the inputs.

It lives in ``model/<name>/`` like a swap model (see
:mod:`facelab.train.checkpoint`), with ``"kind": "enhancer"`` in its
``config.json``. A folder holding a model resumes: its architecture (scale,
channels, blocks) is authoritative and the iteration count continues.
``iterations`` is a total target, ``minutes`` this run's wall time; with
neither, until Ctrl+C, which saves and returns normally.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from facelab import jobs
from facelab.device import cpu_threads, resolve_device
from facelab.enhance import create_enhancer, list_enhancers
from facelab.enhance.data import DegradeOptions, margin
from facelab.enhance.inference import load_checkpoint
from facelab.enhance.options import ARCHITECTURE, DEFAULTS, OPTIONS  # declared without PyTorch, for the CLI
from facelab.enhance.training import LoopOptions, evaluate, make_optimizer, train
from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.provenance.marker import Marker, require_marker
from facelab.stages import Summary
from facelab.train.checkpoint import CONFIG, WEIGHTS, require_free_space, save_bytes, save_checkpoint
from facelab.workspace import Workspace, check_folder_name

EVAL_FACES = 16  # faces measured against bicubic at the end of a run


@dataclass(frozen=True)
class EnhanceSettings:
    """Settings of `facelab train-enhancer`, each declared in :data:`OPTIONS` (:mod:`facelab.enhance.options`).

    Attributes:
        name: model folder name under ``model/`` (default ``enhancer``).
        scale: upscaling factor, 2 or 4 (architecture: first run only); None = saved, else 2.
        input_size: side of the faces it enhances (16..512, a multiple of 8): set it to the swap model's
            resolution. None = saved, else 128. Targets are ``input_size * scale`` px src faces.
        minutes: wall-clock minutes for this run (> 0), or None.
        iterations: total iteration to train up to (1..100,000,000), or None.
        batch_size: faces per step (1..512); None = saved, else 8.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        seed: random seed for the initial weights and the batches (>= 0).
        save_every_minutes: minutes between saves (> 0).
        preview_every_minutes: minutes between previews (> 0).
        channels: feature channels 4..256 (architecture); None = saved, else 48.
        blocks: residual blocks 0..32 (architecture); None = saved, else 6.
        model: registered enhancer architecture (``facelab.enhance.list_enhancers()``).
    """

    name: str = "enhancer"
    scale: int | None = None
    input_size: int | None = None
    minutes: float | None = None
    iterations: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    seed: int = 0
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0
    channels: int | None = None
    blocks: int | None = None
    model: str = "srnet"

    def __post_init__(self) -> None:
        for option in OPTIONS:
            value = getattr(self, option.name)
            if value is None and option.default is not None:  # None (not given) only where the default is None
                raise SettingsError(f"{option.name}: None is not allowed", option.hint or f"use {option.range_text()}")
            option.check(value)
        # beyond what a declaration says: a plain folder name, a registered enhancer, a device that exists
        check_folder_name(self.name)
        if self.model not in list_enhancers():
            raise SettingsError(f"model: unknown enhancer {self.model!r}", f"known enhancers: {', '.join(list_enhancers())}")
        resolve_device(self.device)


def _build(settings: EnhanceSettings, model_dir, device: torch.device):
    """The enhancer (new or resumed), its state, saved options and the optimizer state to restore."""
    resumed = (model_dir / CONFIG).is_file() or (model_dir / WEIGHTS).is_file()
    if not resumed:
        torch.manual_seed(settings.seed)
        arch = {k: getattr(settings, k) if getattr(settings, k) is not None else DEFAULTS[k] for k in ARCHITECTURE}
        return create_enhancer(settings.model, **arch).to(device), {}, {}, None
    ckpt = load_checkpoint(model_dir, device)  # a face-swap model folder is refused here, by name
    if ckpt.architecture != settings.model:
        raise SettingsError(f"model: {model_dir} holds a {ckpt.architecture!r} enhancer, not {settings.model!r}",
                            "leave --model out to continue it, or use --name <other> for a new one")
    changed = [k for k in ARCHITECTURE if getattr(settings, k) is not None and getattr(settings, k) != ckpt.config.get(k)]
    if changed:
        raise SettingsError(
            f"{', '.join(f'{k}: {getattr(settings, k)} asked, {ckpt.config.get(k)} saved' for k in changed)} "
            f"(model/{model_dir.name} is fixed at its first run)",
            "leave it out to continue this enhancer, or use --name <other> for a new one")
    return ckpt.model, ckpt.state, ckpt.options, ckpt.optimizer_state


def _stored_size(paths: list[Path]) -> int:
    """Size of the first readable face (unreadable ones are named later, when the faces load)."""
    from facelab.errors import FaceFileError
    from facelab.faceimage import read_record

    for p in paths:
        try:
            return int(read_record(p).size)
        except FaceFileError:
            continue
    raise FaceFileError(f"none of the {len(paths)} src faces can be read", "re-run `facelab extract src`")


@jobs.step
def run(ws: Workspace, settings: EnhanceSettings, log: Callable[[str], None] = print, *, marker: Marker | None = None) -> Summary:
    from facelab.train.dataset import FaceDataset

    marker = require_marker(marker, "enhance")  # it marks the previews; refused before anything is written
    t0 = time.monotonic()
    ws.require_exists()
    paths = ws.require_aligned("src")
    device = resolve_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    model_dir = ws.model_dir(settings.name)
    model, state, saved, opt_state = _build(settings, model_dir, device)
    scale = int(model.config["scale"])
    input_size = settings.input_size or int(saved.get("input_size", DEFAULTS["input_size"]))
    batch_size = settings.batch_size or int(saved.get("batch_size", DEFAULTS["batch_size"]))
    target = input_size * scale
    warnings: list[str] = []
    if saved.get("input_size") and int(saved["input_size"]) != input_size:
        warnings.append(f"input_size changed from {saved['input_size']} to {input_size}: the enhancer relearns the face scale")

    optimizer = make_optimizer(model)
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as e:
            raise ModelError(f"{model_dir / 'optimizer.safetensors'} does not fit the enhancer: {e}", "delete it to restart the optimizer") from e

    require_free_space(model_dir, save_bytes(model.state_dict(), optimizer=optimizer), "the enhancer")
    degrade = DegradeOptions()
    stored = _stored_size(paths)
    # room for random shifts, where the faces are large enough that the targets stay real pixels
    pad = margin(target, scale, degrade) if stored >= target + margin(target, scale, degrade) else 0
    log(f"loading {len(paths)} src faces at {target + pad} px")
    dataset = FaceDataset(paths, target + pad, face_type=None, detail=False)  # each face keeps its own crop
    faces = dataset.faces
    warnings += [f"src: skipped (not trained on): {m}" for m in dataset.skipped]
    if stored < target:
        warnings.append(f"the aligned src faces are {stored} px, smaller than the {target} px targets: they are upscaled "
                        f"and the enhancer cannot learn real detail (extract src with --size {target} or more)")
    opts = LoopOptions(target_size=target, scale=scale, batch_size=batch_size, seed=settings.seed,
                       save_every_minutes=settings.save_every_minutes, preview_every_minutes=settings.preview_every_minutes,
                       degrade=degrade)
    options = {"input_size": input_size, "batch_size": batch_size, "seed": settings.seed, "device": settings.device,
               "degrade": asdict(degrade)}
    log(f"{'resuming' if state else 'new'} {settings.model} enhancer {model_dir.name!r} (x{scale}, {input_size} -> {target} px) "
        f"at iteration {state.get('iteration', 0)} on {device}, batch size {batch_size}")

    def save(st: dict) -> None:
        save_checkpoint(model_dir, model, optimizer, options, {k: v for k, v in st.items() if k != "stopped"})

    try:
        state = train(model, optimizer, faces, model_dir, opts, state, device, settings.iterations, settings.minutes,
                      save=save, log=log, marker=marker)
    except torch.OutOfMemoryError as e:
        raise FacelabError(f"out of {device.type.upper()} memory at batch size {batch_size} ({target} px targets)",
                           f"reduce --batch-size (try {max(1, batch_size // 2)}) or train with --device cpu") from e
    pick = faces[torch.linspace(0, len(faces) - 1, min(EVAL_FACES, len(faces))).round().long().numpy()]
    counts: dict[str, float] = {"iteration": state["iteration"], **evaluate(model, pick, target, scale, device)}
    if state["loss_history"]:
        counts = {"iteration": state["iteration"], "loss": state["loss_history"][-1][1], **counts}
    if counts["l1"] >= counts["bicubic_l1"]:
        warnings.append("the enhancer is not yet better than bicubic upscaling on the training faces: train longer")
    if state.get("stopped") == "interrupted":
        warnings.append("training was interrupted; the enhancer was saved and continues from here next time")
    return Summary(step="train-enhancer", counts=counts, seconds=time.monotonic() - t0, outputs=[str(model_dir)], warnings=warnings)
