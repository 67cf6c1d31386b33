"""Training the segmenter: batches, one step, IoU and the preview; the loop is :mod:`facelab.train.runner`.

Each step draws a batch (a pure function of seed and iteration, so a resumed
run sees the batches an uninterrupted one would), augments every face
(:mod:`facelab.seg.augment`) and takes one Adam step on the pixel-wise binary
cross entropy between the predicted logits and the target mask, plus (``iou_loss``,
an option) the Lovász hinge, a surrogate of the IoU the masks are judged by.
When some faces carry drawn labels, at least half of each batch comes from
them: a few dozen labels then steer training as much as hundreds of hull
pseudo-labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from facelab.provenance.marker import Marker
from facelab.seg.augment import SegAugment, augment, template_eyes
from facelab.seg.data import SegFaces
from facelab.train.loop import to_tensor
from facelab.train.offload import make_adam

LR = 3e-4
EVAL_BATCH = 8
BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class SegLoopOptions:
    batch_size: int = 8
    seed: int = 0
    augment: SegAugment = field(default_factory=SegAugment)


def make_optimizer(net: torch.nn.Module) -> torch.optim.Optimizer:
    return make_adam(net.parameters(), lr=LR, betas=BETAS)


def make_batch(data: SegFaces, opts: SegLoopOptions, iteration: int) -> tuple[np.ndarray, np.ndarray]:
    """``(B, R, R, 3) uint8`` augmented faces and ``(B, R, R) float32`` targets for ``iteration``."""
    rng = np.random.default_rng([opts.seed, iteration])
    n = len(data)
    labelled = np.flatnonzero(data.labelled)
    b = opts.batch_size
    if len(labelled) and len(labelled) < n:
        k = (b + 1) // 2
        idx = np.concatenate([rng.choice(labelled, k), rng.integers(0, n, b - k)])
    else:
        idx = rng.integers(0, n, b)

    def donor():
        j = int(rng.integers(n))
        return data.faces[j], data.target(j)

    eyes = template_eyes(data.face_type, data.faces.shape[1])
    out = [augment(data.faces[i], data.target(i), rng, donor, opts.augment, eyes, data.occluders) for i in idx]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def lovasz_hinge(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The Lovász hinge (Berman, Triki and Blaschko, CVPR 2018): a convex surrogate of ``1 - IoU``, per face,
    averaged over the batch. ``logits`` and ``targets`` ``(B, 1, R, R)``; targets count as face above 0.5.

    Each pixel's hinge error ``1 - logit * (+1 face / -1 not face)`` is weighted by how much the IoU would lose
    if the pixels erring at least as much were wrong: sorted by error, the weights are the increments of the
    Jaccard loss. With logits of exactly ``+-s`` on a mask ``p`` it equals ``(1 + s) * (1 - IoU(p, targets))``.
    """
    b = logits.shape[0]
    z = logits.reshape(b, -1).float()
    t = (targets.reshape(b, -1) > 0.5).float()
    errors, order = torch.sort(1 - z * (2 * t - 1), dim=1, descending=True)
    t = torch.gather(t, 1, order)
    total = t.sum(1, keepdim=True)
    jaccard = 1 - (total - t.cumsum(1)) / (total + (1 - t).cumsum(1))
    weights = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)
    return (F.relu(errors) * weights).sum(1).mean()


def train_step(net, optimizer, faces: np.ndarray, targets: np.ndarray, device: torch.device,
               iou_loss: bool = False) -> tuple[float, ...]:
    """One Adam step on a batch; the mean binary cross entropy, and with ``iou_loss`` the Lovász hinge added
    to it (:func:`lovasz_hinge`; both returned)."""
    x, y = to_tensor(faces, device), to_tensor(targets, device)
    logits = net(x)
    terms = [F.binary_cross_entropy_with_logits(logits, y)]
    if iou_loss:
        terms.append(lovasz_hinge(logits, y))
    optimizer.zero_grad(set_to_none=True)
    sum(terms).backward()
    optimizer.step()
    return tuple(t.item() for t in terms)


def predict(net, faces: np.ndarray, device: torch.device, batch: int = 8) -> np.ndarray:
    """``(N, R, R, 3) uint8`` -> ``(N, R, R) float32`` probabilities, with the net in eval mode (restored after)."""
    was = net.training
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(faces), batch):
            out.append(torch.sigmoid(net(to_tensor(faces[i:i + batch], device)))[:, 0].float().cpu().numpy())
    net.train(was)
    return np.concatenate(out) if out else np.zeros((0,) + faces.shape[1:3], np.float32)


def iou(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of two masks thresholded at ``threshold`` (1.0 when both are empty)."""
    p, t = pred > threshold, target > threshold
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


def overlay(face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A face with ``mask`` shown: outside dimmed, the edge drawn in green."""
    m = (mask > 0.5).astype(np.uint8)
    out = (face.astype(np.float32) * (0.35 + 0.65 * mask[..., None])).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (80, 255, 80), 1, cv2.LINE_AA)
    return out


def render_preview(net, rows: dict[str, np.ndarray], device: torch.device, iteration: int, loss: float | None,
                   cell: int = 128) -> np.ndarray:
    """One block per named group of ``(n, R, R, 3) uint8`` faces (training faces, src, dst): each face and
    its predicted mask over it, ``cell`` px each, under a labelled header line."""
    blocks = []
    width = 8 * cell
    for name, faces in rows.items():
        if not len(faces):
            continue
        probs = predict(net, faces, device)
        tiles = []
        for f, p in zip(faces, probs):
            tiles += [cv2.resize(f, (cell, cell), interpolation=cv2.INTER_AREA),
                      cv2.resize(overlay(f, p), (cell, cell), interpolation=cv2.INTER_AREA)]
        row = np.hstack(tiles[:8])
        row = np.hstack([row, np.full((cell, width - row.shape[1], 3), 24, np.uint8)]) if row.shape[1] < width else row
        head = np.full((18, width, 3), 32, np.uint8)
        cv2.putText(head, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        blocks += [head, row]
    footer = np.full((18, width, 3), 32, np.uint8)
    text = f"segmenter  iter {iteration}" + (f"  loss {loss:.4f}" if loss is not None else "")
    cv2.putText(footer, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack(blocks + [footer])


class SegTask:
    """Training a segmenter, as :func:`facelab.train.runner.run` drives it."""

    def __init__(self, net, optimizer, data: SegFaces, preview_rows: dict[str, np.ndarray], model_dir: Path,
                 opts: SegLoopOptions, device: torch.device, marker: Marker, iou_loss: bool = False) -> None:
        self.net, self.optimizer, self.data, self.rows = net, optimizer, data, preview_rows
        self.model_dir, self.opts, self.device, self.marker = model_dir, opts, device, marker
        self.iou_loss = iou_loss
        self.loss_names = ("bce", "lovasz") if iou_loss else ("bce",)

    def start(self, state: dict) -> None:
        torch.set_flush_denormal(True)  # denormals early in training slow x86 CPUs down many times (see train/loop.py)
        self.net.train()

    def step(self, iteration: int) -> tuple[float, ...]:
        faces, targets = make_batch(self.data, self.opts, iteration)
        return train_step(self.net, self.optimizer, faces, targets, self.device, self.iou_loss)

    def checked(self, iteration: int, loss: float) -> None:
        return None

    def preview(self, state: dict) -> Path:
        from facelab.fileio import atomic_write_bytes
        from facelab.train.preview import preview_jpeg

        history = state.get("loss_history") or []
        image = render_preview(self.net, self.rows, self.device, state["iteration"], history[-1][1] if history else None)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.model_dir / "preview.jpg", preview_jpeg(image, self.marker))
        return self.model_dir / "preview.jpg"

    def close(self) -> None:
        pass
