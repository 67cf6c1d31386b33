"""A trained enhancer, ready for the merge: faces in, faces ``scale`` times larger out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facelab.enhance import KIND, create_enhancer


class Enhancer:
    """Callable super resolution: ``(N, R, R, 3) float32`` BGR ``[0, 1]`` -> ``(N, k*R, k*R, 3) float32`` ``[0, 1]``.

    The shape contract of :data:`facelab.merge.compose.Enhancer`.

    Attributes:
        scale: the factor ``k`` (2 or 4).
        input_size: face side ``R`` it was trained at (None if unknown); other
            sides work, but it learned faces at this scale.
        name: registered architecture (``"srnet"``).
        batch_size: faces per forward pass (bounds memory on large batches).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, input_size: int | None = None,
                 batch_size: int = 8) -> None:
        self.model = model.eval()
        self.device = device
        self.scale: int = int(model.config["scale"])
        self.input_size = input_size
        self.name: str = str(model.architecture)
        self.batch_size = int(batch_size)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        """``(N, R, R, 3) float32`` BGR in ``[0, 1]`` -> ``(N, k*R, k*R, 3) float32`` in ``[0, 1]``; the input is not modified."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[1] != faces.shape[2] or faces.shape[3] != 3 or faces.shape[1] < 1:
            raise ValueError(f"enhancer: expected (N, R, R, 3) float32 BGR faces, got {faces.shape} {faces.dtype}")
        if not np.issubdtype(faces.dtype, np.floating):
            raise ValueError(f"enhancer: expected float32 faces in [0, 1], got {faces.dtype} (divide uint8 images by 255)")
        n, r = faces.shape[:2]
        out = np.empty((n, r * self.scale, r * self.scale, 3), np.float32)
        with torch.inference_mode():
            for i in range(0, n, self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(faces[i:i + self.batch_size], np.float32)).to(self.device)
                y = self.model(x.permute(0, 3, 1, 2)).clamp_(0, 1)
                out[i:i + len(x)] = y.permute(0, 2, 3, 1).float().cpu().numpy()
        return out


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu", with_optimizer: bool = True):
    """An enhancer folder as a :class:`facelab.train.checkpoint.Checkpoint`; :class:`ModelError` (its subclass
    ``WrongKindError`` for a face-swap model folder) naming the file otherwise."""
    from facelab.train import checkpoint

    return checkpoint.load_checkpoint(model_dir, device, with_optimizer, factory=create_enhancer, kind=KIND)


def load_enhancer(model_dir: str | Path, device: str = "cpu") -> Enhancer:
    """Load a folder written by ``facelab train-enhancer`` (weights only) for inference on ``device``.

    Raises :class:`facelab.errors.ModelError` for a missing or damaged folder, and for a face-swap model
    folder (``WrongKindError``, which says so)."""
    from facelab.device import resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(model_dir, dev, with_optimizer=False)
    size = ckpt.options.get("input_size")
    return Enhancer(ckpt.model, dev, int(size) if size else None)
