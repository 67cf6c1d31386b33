"""A trained face-swap model ready for the merge and for eval: faces in, swapped faces and masks out.

Inference lives here, not in :mod:`facelab.train`: the merge and eval use a model folder
(:func:`load_predictor`) without any of the training machinery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facelab.train.checkpoint import load_checkpoint


class Predictor:
    """A trained model ready to swap faces: dst faces in, src-looking faces and masks out.

    Attributes:
        resolution: side ``R`` of the faces it takes and returns.
        face_type: face type of the aligned faces it was trained on.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model = model.eval()
        self.device = device
        self.resolution: int = int(model.config["resolution"])
        self.face_type: str = str(model.config["face_type"])

    def _input(self, batch: np.ndarray, what: str) -> torch.Tensor:
        """``(N, R, R, 3) float32`` BGR faces as the model's ``(N, 3, R, R)`` input on its device (ValueError if not)."""
        batch = np.asarray(batch)
        r = self.resolution
        if batch.ndim != 4 or batch.shape[1:] != (r, r, 3):
            raise ValueError(f"{what}: expected (N, {r}, {r}, 3) float32 BGR faces, got {batch.shape} {batch.dtype}")
        return torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device).permute(0, 3, 1, 2)

    def _reconstructs(self, what: str, kind: str) -> None:
        if not hasattr(self.model, "reconstruct"):
            raise ValueError(f"{what}: model {type(self.model).__name__} has no {kind} reconstruction")

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, R, R, 3) float32`` BGR in ``[0, 1]`` -> ``((N, R, R, 3) float32, (N, R, R) float32)`` in ``[0, 1]``."""
        x = self._input(batch, "predict")
        with torch.inference_mode():
            return _faces_and_masks(*self.model.swap(x))

    def predict_dst_mask(self, batch: np.ndarray) -> np.ndarray:
        """The mask the model predicts for the dst faces themselves (their dst-side reconstruction).

        ``(N, R, R, 3) float32`` BGR in ``[0, 1]`` -> ``(N, R, R) float32`` in ``[0, 1]``;
        the merge's ``learned-dst`` mask. Raises ``ValueError`` for a model
        without a dst-side reconstruction.
        """
        x = self._input(batch, "predict_dst_mask")
        self._reconstructs("predict_dst_mask", "dst-side")
        with torch.inference_mode():
            return _faces_and_masks(*self.model.reconstruct(x, "dst"))[1]

    def reconstruct(self, batch: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
        """Faces of ``side`` (``"src"`` or ``"dst"``) through that side's own decoder, as in training; for
        ``facelab eval --reconstruction``. Shapes and ranges as :meth:`predict`. Raises ``ValueError`` for a
        model without per-side reconstruction."""
        if side not in ("src", "dst"):
            raise ValueError(f"reconstruct: side must be 'src' or 'dst', got {side!r}")
        x = self._input(batch, "reconstruct")
        self._reconstructs("reconstruct", "per-side")
        with torch.inference_mode():
            return _faces_and_masks(*self.model.reconstruct(x, side))


def _faces_and_masks(face: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, R, R)`` faces and ``(N, 1, R, R)`` masks -> ``(N, R, R, 3)`` and ``(N, R, R)`` float32 arrays."""
    return face.permute(0, 2, 3, 1).float().cpu().numpy().copy(), mask[:, 0].float().cpu().numpy().copy()


def load_predictor(model_dir: str | Path, device: str = "cpu", prefix: str = "") -> Predictor:
    """Load a model folder's weights (not its optimizer) for inference on ``device``."""
    dev = torch.device(device)
    ckpt = load_checkpoint(model_dir, dev, with_optimizer=False, prefix=prefix)
    return Predictor(ckpt.model, dev)
