"""Training an enhancer: one step, evaluation and preview; the loop is :mod:`facelab.train.runner`, shared with the swap models.

The loss is L1 + DSSIM (``(1 - SSIM) / 2``) between the enhanced face and the
real one: L1 keeps colours and brightness exact, DSSIM rewards the local
structure (edges, pores, hair) that L1 alone averages away into blur.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from facelab.enhance.data import DegradeOptions, make_batch, make_pair
from facelab.provenance.marker import Marker, require_marker
from facelab.train import runner
from facelab.train.loop import to_tensor
from facelab.train.losses import dssim
from facelab.train.offload import make_adam

LR = 5e-4
BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class LoopOptions:
    target_size: int  # S: side of the targets (input side * scale)
    scale: int
    batch_size: int = 8
    seed: int = 0
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0
    log_every_seconds: float = 10.0
    degrade: DegradeOptions = field(default_factory=DegradeOptions)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return make_adam(model.parameters(), lr=LR, betas=BETAS)


def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + DSSIM of ``(N, 3, S, S)`` tensors: a scalar."""
    return F.l1_loss(pred, target) + dssim(pred, target)


def train_step(model, optimizer, inputs: np.ndarray, targets: np.ndarray, device: torch.device) -> float:
    """One Adam step on ``(B, R, R, 3)`` uint8 inputs and ``(B, kR, kR, 3)`` uint8 targets; returns the loss."""
    x, y = to_tensor(inputs, device), to_tensor(targets, device)
    loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def eval_pairs(faces: np.ndarray, target_size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred, undegraded pairs ``(inputs, targets)`` uint8 of ``(N, S', S', 3)`` faces."""
    pairs = [make_pair(f, target_size, scale, np.random.default_rng(0), augment=False) for f in faces]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def bicubic(inputs: np.ndarray, scale: int) -> np.ndarray:
    """``(N, R, R, 3) uint8`` -> ``(N, kR, kR, 3) uint8`` by OpenCV's bicubic resize: the baseline to beat."""
    r = inputs.shape[1] * scale
    return np.stack([cv2.resize(x, (r, r), interpolation=cv2.INTER_CUBIC) for x in inputs])


def enhance_uint8(model, inputs: np.ndarray, device: torch.device, batch: int = 8) -> np.ndarray:
    """``(N, R, R, 3) uint8`` -> ``(N, kR, kR, 3) uint8`` through ``model`` in eval mode."""
    was = model.training
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(inputs), batch):
            y = model(to_tensor(inputs[i:i + batch], device)).clamp(0, 1)
            outs.append((y.permute(0, 2, 3, 1).float().cpu().numpy() * 255 + 0.5).astype(np.uint8))
    model.train(was)
    return np.concatenate(outs)


def evaluate(model, faces: np.ndarray, target_size: int, scale: int, device: torch.device) -> dict[str, float]:
    """Mean absolute error (``[0, 1]`` scale) of the enhanced and of the bicubic faces against the real ones."""
    inputs, targets = eval_pairs(faces, target_size, scale)
    t = targets.astype(np.float32)
    l1 = float(np.abs(enhance_uint8(model, inputs, device).astype(np.float32) - t).mean() / 255)
    base = float(np.abs(bicubic(inputs, scale).astype(np.float32) - t).mean() / 255)
    return {"l1": round(l1, 5), "bicubic_l1": round(base, 5)}


def render_preview(model, faces: np.ndarray, target_size: int, scale: int, device: torch.device,
                   iteration: int, loss: float | None) -> np.ndarray:
    """Rows of ``input (bicubic) | enhanced | target`` for ``(N, S', S', 3) uint8`` faces, under a header line."""
    inputs, targets = eval_pairs(faces, target_size, scale)
    cols = [bicubic(inputs, scale), enhance_uint8(model, inputs, device), targets]
    grid = np.vstack([np.hstack([c[i] for c in cols]) for i in range(len(inputs))])
    header = np.full((18, grid.shape[1], 3), 32, np.uint8)
    for i, name in enumerate(("input (bicubic)", "enhanced", "target")):
        cv2.putText(header, name, (i * target_size + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    footer = np.full((18, grid.shape[1], 3), 32, np.uint8)
    text = f"iter {iteration}" + (f"  loss {loss:.4f}" if loss is not None else "")
    cv2.putText(footer, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack([header, grid, footer])


def write_preview(model_dir: Path, model, faces: np.ndarray, opts: LoopOptions, device: torch.device, state: dict, *,
                  marker: Marker) -> Path:
    """``model_dir/preview.jpg`` (watermarked, labelled, signed by ``marker`` like every preview) of up to 4 fixed faces."""
    from facelab.fileio import atomic_write_bytes
    from facelab.train.preview import preview_jpeg

    pick = faces[np.linspace(0, len(faces) - 1, min(4, len(faces))).round().astype(int)]
    history = state.get("loss_history") or []
    image = render_preview(model, pick, opts.target_size, opts.scale, device, state["iteration"],
                           history[-1][1] if history else None)
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / "preview.jpg", preview_jpeg(image, marker))
    return model_dir / "preview.jpg"


class EnhanceTask:
    """Training an enhancer, as :func:`facelab.train.runner.run` drives it: each step degrades a batch of
    faces (a pure function of seed and iteration) and takes one optimisation step."""

    loss_names = ("loss",)

    def __init__(self, model, optimizer, faces: np.ndarray, model_dir: Path, opts: LoopOptions, device: torch.device,
                 marker: Marker) -> None:
        self.model, self.optimizer, self.faces, self.model_dir = model, optimizer, faces, model_dir
        self.opts, self.device, self.marker = opts, device, marker

    def start(self, state: dict) -> None:
        torch.set_flush_denormal(True)  # denormals early in training slow x86 CPUs down many times (see train/loop.py)
        self.model.train()

    def step(self, iteration: int) -> tuple[float]:
        o = self.opts
        inputs, targets = make_batch(self.faces, o.target_size, o.scale, o.batch_size, o.seed, iteration, o.degrade)
        return (train_step(self.model, self.optimizer, inputs, targets, self.device),)

    def checked(self, iteration: int, loss: float) -> None:
        return None

    def preview(self, state: dict) -> Path:
        return write_preview(self.model_dir, self.model, self.faces, self.opts, self.device, state, marker=self.marker)

    def close(self) -> None:
        pass


def train(model, optimizer, faces: np.ndarray, model_dir: Path, opts: LoopOptions, state: dict, device: torch.device,
          target_iteration: int | None = None, minutes: float | None = None,
          save: Callable[[dict], None] | None = None, log: Callable[[str], None] = print,
          marker: Marker | None = None) -> dict:
    """Train on ``(N, S', S', 3) uint8`` faces until ``target_iteration`` (a total) or ``minutes`` (this run),
    whichever first, or Ctrl+C / the job's cancel; saves with ``save(state)`` every ``opts.save_every_minutes``
    and at the end (the loop: :func:`facelab.train.runner.run`).

    ``state`` holds ``iteration``, ``elapsed_seconds`` and ``loss_history`` (``[[iteration, loss], ...]``);
    an updated copy is returned with ``stopped`` set to ``"iterations"``, ``"minutes"`` or ``"interrupted"``.
    ``marker`` marks the previews (required: without one this refuses before training).
    """
    marker = require_marker(marker, "enhance")
    schedule = runner.Schedule(target_iteration, minutes, opts.save_every_minutes, opts.preview_every_minutes,
                               opts.log_every_seconds)
    return runner.run(EnhanceTask(model, optimizer, faces, model_dir, opts, device, marker), state, schedule, save=save, log=log)
