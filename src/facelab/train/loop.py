"""Training a face-swap model: one step, its batches, its preview; the loop itself is :mod:`facelab.train.runner`.

Read top to bottom: :func:`train_step` is one optimisation step on a src and a
dst batch; :class:`SwapTask` draws the batches and previews for
:func:`facelab.train.runner.run`, which handles budgets, logging, previews,
checkpoints and Ctrl+C for every kind of training. Both sides are trained in
the same step with one optimizer (the shared encoder sees both identities
every step).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facelab.provenance.marker import Marker, require_marker
from facelab.train import runner
from facelab.train.dataset import FaceDataset
from facelab.train.guard import DivergenceGuard
from facelab.train.objective import (
    LossOptions,
    SideBatch,
    compute,
    model_outputs,
    soft_mask,
    wants,
)


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
    uniform_yaw: bool = False  # sample faces evenly over yaw (rare profiles as often as frontal faces)
    preview_history: bool = False  # keep previews/preview_<iteration>.jpg besides preview.jpg
    clip_grad: bool = False  # clip the gradient norm to 1: steadier with large models or GAN-like losses
    lr_dropout: float = 0.0  # share of each step's weight updates randomly dropped (0 = off; DFL used ~0.3)
    color_transfer: str | None = None  # recolour src samples towards random dst faces: rct, lct, mkl, idt, sot
    workers: int = 0  # threads preparing batches ahead of the model (0: in the training thread)
    amp: bool | None = None  # mixed precision where the hardware runs it natively (CUDA, CPU bfloat16); False = off
    losses: LossOptions = field(default_factory=LossOptions)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def make_optimizer(model: torch.nn.Module, opts: TrainOptions, offload: bool = False) -> torch.optim.Optimizer:
    """Adam; with ``offload`` (SAE optimizer modes 2 and 3) its state lives in system memory."""
    # Adam with beta1 0.5, the usual choice for image autoencoders/GANs: it
    # reacts faster to the changing gradients of the warp augmentation.
    # lr: measured over 2.5 min on CPU (quick, batch 8), src loss 0.109 at 2e-4,
    # 0.059 at 6e-4, 0.079 at 1e-3; 5e-4 keeps a margin from the unstable side.
    from facelab.train.offload import make_adam

    return make_adam(model.parameters(), lr=opts.lr, betas=tuple(opts.betas), offload=offload)


def to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, H, W, C) uint8`` or ``(B, H, W) float32`` -> ``(B, C, H, W) float32`` in ``[0, 1]``, channels_last."""
    t = torch.from_numpy(np.ascontiguousarray(batch))
    if t.ndim == 3:
        t = t[..., None]
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    else:
        t = t.to(device)
    t = t.permute(0, 3, 1, 2)  # a view with NHWC strides: channels_last for free
    return t.float().div_(255) if batch.dtype == np.uint8 else t.float()


class TrainForward(nn.Module):
    """The model's training pass as a module ``forward``, so DistributedDataParallel (which syncs gradients
    of what ``forward`` touched) sees the extra outputs (codes, swap) too."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, dst: torch.Tensor, codes: bool = False, swap: bool = False) -> dict:
        return model_outputs(self.model, src, dst, codes, swap)


def unwrap(model: nn.Module) -> nn.Module:
    """The face-swap model inside DDP / :class:`TrainForward` wrappers."""
    while isinstance(model, (TrainForward, DistributedDataParallel)):
        model = model.module if isinstance(model, DistributedDataParallel) else model.model
    return model


@dataclass
class AmpState:
    """Mixed precision on CUDA: autocast dtype and (for float16 only) a gradient scaler."""

    dtype: torch.dtype
    scaler: torch.amp.GradScaler | None

    @classmethod
    def for_device(cls, device: torch.device, enabled: bool | None) -> AmpState | None:
        """Mixed precision wherever the hardware runs it natively, unless ``enabled`` is False.

        CUDA: bfloat16 where supported, else float16 with loss scaling. CPU: bfloat16 when the CPU has it
        natively (AVX-512 BF16 / AMX; elsewhere it would be emulated and slow, so float32 stays). On this
        project's 2-core AVX-512 BF16 CPU the quick model trains 1.5x the iterations per minute with the same
        loss per iteration as float32 (within 2 % after 1,000 iterations: benchmarks/bench_quality.py), sae
        about 3x. ``enabled`` None and True mean the same; False: float32 everywhere (``--no-amp``).
        """
        if enabled is False:
            return None
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return cls(torch.bfloat16, None)  # same range as float32: no loss scaling needed
            return cls(torch.float16, torch.amp.GradScaler("cuda"))
        if device.type == "cpu" and cpu_bf16_supported():
            return cls(torch.bfloat16, None)
        return None


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 natively (oneDNN says so); elsewhere bfloat16 would be emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _side(batch, device: torch.device) -> SideBatch:
    return SideBatch(*[to_tensor(x, device) for x in batch])


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Scale the gradients down to a total norm of ``max_norm`` when they are over it (the same gradients
    as ``torch.nn.utils.clip_grad_norm_``); returns the norm before. Steps under the limit skip the
    multiplication, which took half of clip_grad_norm_'s 2.1 ms a step on ``quick`` (2 CPU cores)."""
    params = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if total + 1e-6 > max_norm:  # clip_grad_norm_ scales by max_norm / (total + 1e-6), capped at 1
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def train_step(model, optimizer, src_batch, dst_batch, device: torch.device, mask_weight: float = 1.0,
               clip_grad: bool = False, lr_dropout: float = 0.0, losses: LossOptions | None = None,
               adversarial=None, amp: AmpState | None = None, extra_terms=(), iteration: int = 0) -> tuple[float, float]:
    """One Adam step on a src and a dst batch (each ``(inputs, targets, masks[, eyes_mouth, in_frame])`` from
    :meth:`FaceDataset.sample`), then one step of the discriminators if ``adversarial`` is given.
    Each of ``extra_terms`` (:class:`facelab.train.identity_loss.IdentityLoss`,
    :class:`facelab.train.expression_match.ExpressionMatch`) adds its term for step ``iteration``.

    The face loss is DSSIM + MSE, or plain MSE when ``losses.pixel_loss`` is set; see :mod:`facelab.train.objective` for the optional terms.
    Returns the (src, dst) face losses as floats.
    """
    src, dst = _side(src_batch, device), _side(dst_batch, device)
    inner = unwrap(model)
    if losses is None:
        losses = LossOptions(mask_weight=mask_weight)
    fwd = model if isinstance(model, (TrainForward, DistributedDataParallel)) else TrainForward(model)
    with torch.autocast(device.type, dtype=amp.dtype) if amp is not None else nullcontext():
        out = fwd(src.inputs, dst.inputs, **wants(inner, losses, adversarial))
    loss, src_loss, dst_loss = compute(out, src, dst, losses, adversarial)
    for term in extra_terms:
        loss = loss + term(inner, iteration, amp)
    optimizer.zero_grad(set_to_none=True)
    scaler = amp.scaler if amp is not None else None
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_grad:
        clip_gradients(inner.parameters(), 1.0)
    step = (lambda: scaler.step(optimizer)) if scaler is not None else optimizer.step
    if lr_dropout > 0:
        # learning-rate dropout: each weight keeps its update with probability 1 - lr_dropout,
        # which late in training helps escape the flat, blurry optimum
        params = [p for p in inner.parameters() if p.grad is not None]
        before = [p.detach().clone() for p in params]
        step()
        with torch.no_grad():
            for p, old in zip(params, before):
                keep = torch.rand_like(p) >= lr_dropout
                p.copy_(torch.where(keep, p, old))
    else:
        step()
    if scaler is not None:
        scaler.update()
    if adversarial is not None:
        m = soft_mask(src.masks)
        fake = out["scales"][0][0].detach().float() * m + src.targets * (1 - m)
        codes = [out[k].detach().float() if k in out else None for k in ("src_code", "dst_code")]
        adversarial.discriminator_step(src.targets, fake, *codes)
    return src_loss.item(), dst_loss.item()


def write_preview(model_dir: Path, model, src: FaceDataset, dst: FaceDataset, history: list, iteration: int,
                  device: torch.device, samples: int = 4, keep_history: bool = False, prefix: str = "", *,
                  marker: Marker) -> Path:
    """Write ``<prefix>preview.jpg`` and, with ``keep_history``, ``previews/<prefix>preview_<iteration>.jpg``
    (the same fixed faces each time), marked as synthetic by ``marker``."""
    from facelab.fileio import atomic_write_bytes
    from facelab.train.preview import make_preview, preview_jpeg

    pick = lambda ds: ds.faces[np.linspace(0, len(ds) - 1, samples).round().astype(int)]
    data = preview_jpeg(make_preview(model, pick(src), pick(dst), history, device), marker)
    if keep_history:
        (model_dir / "previews").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(model_dir / "previews" / f"{prefix}preview_{iteration:08d}.jpg", data)
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / f"{prefix}preview.jpg", data)
    return model_dir / f"{prefix}preview.jpg"


def batch_maker(src: FaceDataset, dst: FaceDataset, opts: TrainOptions, seed: int, rank: int = 0) -> Callable[[int], tuple]:
    """``make(iteration) -> (src_batch, dst_batch)``: the batches of one iteration, a pure function of
    ``(seed, iteration, rank)``, so a resumed run continues with exactly the batches an uninterrupted run
    would have seen, and batches can be prepared ahead on other threads."""
    extras = opts.losses.eyes_mouth_priority or opts.losses.remove_gray_border
    color = (opts.color_transfer, dst) if opts.color_transfer else None

    def make(iteration: int) -> tuple:
        rng = np.random.default_rng([seed, iteration, rank])
        n = opts.batch_size
        d_idx = dst.pick_uniform_yaw(n, rng) if opts.uniform_yaw else dst.pick(n, rng)
        if opts.sort_by_yaw:
            s_idx = src.pick_by_yaw(dst.yaw[d_idx], rng)
        else:
            s_idx = src.pick_uniform_yaw(n, rng) if opts.uniform_yaw else src.pick(n, rng)
        return (src.sample(0, rng, indices=s_idx, extras=extras, color=color),
                dst.sample(0, rng, indices=d_idx, extras=extras))

    return make


class BatchFeed:
    """Batches for consecutive iterations, made ``workers`` at a time on background threads (OpenCV and
    numpy release the GIL) so a fast GPU does not wait for augmentation; ``workers=0`` makes each one
    when asked."""

    def __init__(self, make: Callable[[int], tuple], first: int, workers: int = 0) -> None:
        self.make, self.next, self.workers = make, first, workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="batches") if workers else None
        self.ahead: dict[int, Future] = {}

    def get(self, iteration: int) -> tuple:
        if self.pool is None:
            return self.make(iteration)
        self.next = max(self.next, iteration)
        while len(self.ahead) < 2 * self.workers:
            self.ahead[self.next] = self.pool.submit(self.make, self.next)
            self.next += 1
        future = self.ahead.pop(iteration, None) or self.pool.submit(self.make, iteration)
        return future.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class SwapTask:
    """Training a face-swap model, as :func:`facelab.train.runner.run` drives it: each step draws the
    iteration's batches (a pure function of seed and iteration, prepared ahead by ``opts.workers`` threads),
    takes one optimisation step and, under several processes, averages the discriminators; a
    :class:`~facelab.train.guard.DivergenceGuard` (one process only) rolls back a blow-up."""

    loss_names = ("src", "dst")

    def __init__(self, model, optimizer, src: FaceDataset, dst: FaceDataset, model_dir: Path, opts: TrainOptions,
                 device: torch.device, seed: int = 0, prefix: str = "", adversarial=None, dist=None, extra_terms=(),
                 marker: Marker | None = None) -> None:
        self.model, self.optimizer, self.src, self.dst, self.model_dir = model, optimizer, src, dst, model_dir
        self.opts, self.device, self.seed, self.prefix = opts, device, seed, prefix
        self.adversarial, self.dist, self.extra_terms, self.marker = adversarial, dist, tuple(extra_terms), marker
        self.inner = unwrap(model)
        self.feed: BatchFeed | None = None
        self.guard: DivergenceGuard | None = None
        self.amp: AmpState | None = None

    def start(self, state: dict) -> None:
        # Early in training many activations and gradients are denormal floats, which x86 CPUs process up
        # to 30x slower (measured: 4.7 s instead of 0.15 s per step). Flushing them to zero costs nothing here.
        torch.set_flush_denormal(True)
        rank = 0 if self.dist is None else self.dist.rank
        self.feed = BatchFeed(batch_maker(self.src, self.dst, self.opts, self.seed, rank), state["iteration"], self.opts.workers)
        self.amp = AmpState.for_device(self.device, self.opts.amp)
        self.model.train()
        # one process only: under DDP the ranks would have to agree on a restore (not done yet)
        self.guard = DivergenceGuard(self.inner, self.optimizer, state) if self.dist is None else None

    def step(self, iteration: int) -> tuple[float, float]:
        src_batch, dst_batch = self.feed.get(iteration)
        losses = train_step(self.model, self.optimizer, src_batch, dst_batch, self.device, clip_grad=self.opts.clip_grad,
                            lr_dropout=self.opts.lr_dropout, losses=self.opts.losses, adversarial=self.adversarial,
                            amp=self.amp, extra_terms=self.extra_terms, iteration=iteration)
        if self.dist is not None and self.adversarial is not None:  # DDP does not wrap the discriminators
            for net in (self.adversarial.patch, self.adversarial.code):
                if net is not None:
                    self.dist.average_(net)
        return losses

    def checked(self, iteration: int, loss: float) -> str | None:
        return self.guard.check(iteration, loss) if self.guard else None

    def preview(self, state: dict) -> Path:
        return write_preview(self.model_dir, self.inner, self.src, self.dst, state["loss_history"], state["iteration"],
                             self.device, keep_history=self.opts.preview_history, prefix=self.prefix, marker=self.marker)

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()


def train(model, optimizer, src: FaceDataset, dst: FaceDataset, model_dir: Path, opts: TrainOptions, state: dict,
          device: torch.device, target_iteration: int | None = None, minutes: float | None = None, seed: int = 0,
          save: Callable[[dict], None] | None = None, log: Callable[[str], None] = print, prefix: str = "",
          adversarial=None, dist=None, extra_terms=(), marker: Marker | None = None) -> dict:
    """Train until ``state["iteration"] >= target_iteration`` or ``minutes`` of wall time pass (whichever first;
    neither: until Ctrl+C or the job's cancel). Saves with ``save(state)`` every ``opts.save_every_minutes``
    and on exit; ``marker`` marks the previews (required).

    ``state`` holds ``iteration``, ``elapsed_seconds`` and ``loss_history``; an updated copy is returned
    with ``stopped`` set to ``"iterations"``, ``"minutes"`` or ``"interrupted"`` (see :func:`runner.run`,
    which also says how several processes (``dist``) stay in step).
    """
    marker = require_marker(marker, "train")  # refused before any step: a preview must never go out unmarked
    task = SwapTask(model, optimizer, src, dst, model_dir, opts, device, seed, prefix, adversarial, dist, extra_terms, marker)
    schedule = runner.Schedule(target_iteration, minutes, opts.save_every_minutes, opts.preview_every_minutes,
                               opts.log_every_seconds)
    return runner.run(task, state, schedule, save=save, log=log, dist=dist)
