"""The training loop: sample, augment, step, log, preview, save; until a budget runs out or Ctrl+C.

Read top to bottom: :func:`train_step` is one optimisation step on a src and a
dst batch; :func:`train` repeats it and handles time, logging, previews and
checkpoints. Both sides are trained in the same step with one optimizer (the
shared encoder sees both identities every step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from facelab.train.dataset import FaceDataset
from facelab.train.losses import face_loss, mask_loss


@dataclass(frozen=True)
class TrainOptions:
    """Non-architecture training options (saved with the model, may change on resume)."""

    batch_size: int = 8
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    mask_weight: float = 1.0
    log_every_seconds: float = 10.0
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0
    sort_by_yaw: bool = False  # pick src faces of about the yaw of the sampled dst faces
    preview_history: bool = False  # keep previews/preview_<iteration>.jpg besides preview.jpg
    clip_grad: bool = False  # clip the gradient norm to 1: steadier with large models or GAN-like losses
    lr_dropout: float = 0.0  # share of each step's weight updates randomly dropped (0 = off; DFL used ~0.3)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def make_optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    # Adam with beta1 0.5, the usual choice for image autoencoders/GANs: it
    # reacts faster to the changing gradients of the warp augmentation.
    # lr: measured over 2.5 min on CPU (quick, batch 8), src loss 0.109 at 2e-4,
    # 0.059 at 6e-4, 0.079 at 1e-3; 5e-4 keeps a margin from the unstable side.
    return torch.optim.Adam(model.parameters(), lr=opts.lr, betas=tuple(opts.betas))


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, H, W, C) uint8`` or ``(B, H, W) float32`` -> ``(B, C, H, W) float32`` in ``[0, 1]``, channels_last."""
    t = torch.from_numpy(np.ascontiguousarray(batch))
    if t.ndim == 3:
        t = t[..., None]
    t = t.to(device).permute(0, 3, 1, 2)  # a view with NHWC strides: channels_last for free
    return t.float().div_(255) if batch.dtype == np.uint8 else t.float()


def _soft(mask: torch.Tensor) -> torch.Tensor:
    """Blur and widen the hull mask a little so the loss also covers the face's edge."""
    k = max(3, mask.shape[-1] // 16) | 1
    return (F.avg_pool2d(mask, k, 1, k // 2, count_include_pad=False) * 2).clamp_(0, 1)


def train_step(model, optimizer, src_batch, dst_batch, device: torch.device, mask_weight: float = 1.0,
               clip_grad: bool = False, lr_dropout: float = 0.0) -> tuple[float, float]:
    """One Adam step on a src and a dst batch (each ``(inputs, targets, masks)`` from :meth:`FaceDataset.sample`).

    The face loss is DSSIM + MSE, or plain MSE when the model's config has ``pixel_loss`` set.
    Returns the (src, dst) face losses as floats.
    """
    (s_in, s_tgt, s_m), (d_in, d_tgt, d_m) = [[to_tensor(x, device) for x in b] for b in (src_batch, dst_batch)]
    pixel = bool(getattr(model, "config", {}).get("pixel_loss", False))
    s_face, s_mask, d_face, d_mask = model(s_in, d_in)
    src_loss = face_loss(s_face, s_tgt, _soft(s_m), pixel)
    dst_loss = face_loss(d_face, d_tgt, _soft(d_m), pixel)
    loss = src_loss + dst_loss + mask_weight * (mask_loss(s_mask, s_m) + mask_loss(d_mask, d_m))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if lr_dropout > 0:
        # learning-rate dropout: each weight keeps its update with probability 1 - lr_dropout,
        # which late in training helps escape the flat, blurry optimum
        params = [p for p in model.parameters() if p.grad is not None]
        before = [p.detach().clone() for p in params]
        optimizer.step()
        with torch.no_grad():
            for p, old in zip(params, before):
                keep = torch.rand_like(p) >= lr_dropout
                p.copy_(torch.where(keep, p, old))
    else:
        optimizer.step()
    return src_loss.item(), dst_loss.item()


HISTORY_EVERY = 10  # iterations averaged into one loss-history point
HISTORY_MAX = 4000  # beyond this, neighbouring points are merged (halving the resolution)


def _record(history: list, iteration: int, pending: list[tuple[float, float]]) -> None:
    s, d = np.mean(pending, 0)
    history.append([iteration, round(float(s), 6), round(float(d), 6)])
    if len(history) > HISTORY_MAX:
        history[:] = [[b[0], round((a[1] + b[1]) / 2, 6), round((a[2] + b[2]) / 2, 6)]
                      for a, b in zip(history[0::2], history[1::2])] + ([history[-1]] if len(history) % 2 else [])


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def write_preview(model_dir: Path, model, src: FaceDataset, dst: FaceDataset, history: list, iteration: int,
                  device: torch.device, samples: int = 4, keep_history: bool = False, prefix: str = "") -> Path:
    """Write ``<prefix>preview.jpg`` and, with ``keep_history``, ``previews/<prefix>preview_<iteration>.jpg``
    (the same fixed faces each time)."""
    from facelab.fileio import atomic_write_bytes
    from facelab.train.preview import make_preview, preview_jpeg

    pick = lambda ds: ds.faces[np.linspace(0, len(ds) - 1, samples).round().astype(int)]
    data = preview_jpeg(make_preview(model, pick(src), pick(dst), history, device))
    if keep_history:
        (model_dir / "previews").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(model_dir / "previews" / f"{prefix}preview_{iteration:08d}.jpg", data)
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / f"{prefix}preview.jpg", data)
    return model_dir / f"{prefix}preview.jpg"


def train(model, optimizer, src: FaceDataset, dst: FaceDataset, model_dir: Path, opts: TrainOptions, state: dict,
          device: torch.device, target_iteration: int | None = None, minutes: float | None = None, seed: int = 0,
          save: Callable[[dict], None] | None = None, log: Callable[[str], None] = print, prefix: str = "") -> dict:
    """Train until ``state["iteration"] >= target_iteration`` or ``minutes`` of wall time pass (whichever first;
    neither: until Ctrl+C). Saves with ``save(state)`` every ``opts.save_every_minutes`` and on exit.

    ``state`` holds ``iteration``, ``elapsed_seconds`` and ``loss_history``; an updated copy is returned
    with ``stopped`` set to ``"iterations"``, ``"minutes"`` or ``"interrupted"``.
    """
    state = {"iteration": 0, "elapsed_seconds": 0.0, "loss_history": [], **state}
    # Early in training many activations and gradients are denormal floats, which
    # x86 CPUs process up to 30x slower (measured: 4.7 s instead of 0.15 s per
    # step). Flushing them to zero costs nothing in accuracy here.
    torch.set_flush_denormal(True)
    history = state["loss_history"] = list(state["loss_history"])  # the caller's list stays as it was
    rng = np.random.default_rng([seed, state["iteration"]])  # a resumed run does not replay the same batches
    model.train()
    base_elapsed = float(state["elapsed_seconds"])
    start = last_log = last_save = last_preview = time.monotonic()
    log_iter0, pending, window = state["iteration"], [], []
    stopped = "interrupted"
    try:
        while True:
            if target_iteration is not None and state["iteration"] >= target_iteration:
                stopped = "iterations"
                break
            if minutes is not None and time.monotonic() - start >= minutes * 60:
                stopped = "minutes"
                break
            d_idx = dst.pick(opts.batch_size, rng)
            s_idx = src.pick_by_yaw(dst.yaw[d_idx], rng) if opts.sort_by_yaw else src.pick(opts.batch_size, rng)
            losses = train_step(model, optimizer, src.sample(0, rng, indices=s_idx), dst.sample(0, rng, indices=d_idx),
                                device, opts.mask_weight, opts.clip_grad, opts.lr_dropout)
            state["iteration"] += 1
            pending.append(losses)
            window.append(losses)
            if len(pending) == HISTORY_EVERY:
                _record(history, state["iteration"], pending)
                pending = []
            now = time.monotonic()
            if now - last_log >= opts.log_every_seconds:
                ms = (now - last_log) * 1000 / max(state["iteration"] - log_iter0, 1)
                s, d = np.mean(window, 0)
                line = f"[iter {state['iteration']}] {ms:.0f} ms/it  src {s:.4f}  dst {d:.4f}"
                left = []
                if target_iteration is not None:
                    left.append((target_iteration - state["iteration"]) * ms / 1000)
                if minutes is not None:
                    left.append(minutes * 60 - (now - start))
                if left:
                    line += f"  eta {_eta(max(min(left), 0))}"
                log(line)
                last_log, log_iter0, window = now, state["iteration"], []
            if now - last_preview >= opts.preview_every_minutes * 60:
                write_preview(model_dir, model, src, dst, history, state["iteration"], device,
                  keep_history=opts.preview_history, prefix=prefix)
                last_preview = time.monotonic()
            if save is not None and now - last_save >= opts.save_every_minutes * 60:
                state["elapsed_seconds"] = base_elapsed + now - start
                save(state)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        log(f"[iter {state['iteration']}] interrupted: saving")
    if pending:
        _record(history, state["iteration"], pending)
    state["elapsed_seconds"] = base_elapsed + time.monotonic() - start
    state["stopped"] = stopped
    write_preview(model_dir, model, src, dst, history, state["iteration"], device,
                  keep_history=opts.preview_history, prefix=prefix)
    if save is not None:
        save(state)
    return state
