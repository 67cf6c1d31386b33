"""A trained segmenter on disk, and running it on faces.

It lives in ``model/<name>/`` (default ``model/segmenter``) like any facelab
model (:mod:`facelab.train.checkpoint`: safetensors weights, JSON config and
state, atomic saves, backups), with ``"kind": "segmenter"`` in ``config.json``
so it is never taken for a face-swap model or the other way round.

:class:`SegmenterRunner` is the inference side: batch norm folded into the
convolutions, channels-last memory, no autograd; it takes faces of the
segmenter's own face type (:meth:`predict`), face files of any face type
(:meth:`mask_for_face`), or squares of another face type with their landmarks
(:meth:`masks_in_square`, the merge's case).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from facelab.align import face_matrix
from facelab.faceimage import FaceRecord
from facelab.seg.data import cut_face, from_reduced, reduction_for
from facelab.seg.net import Segmenter
from facelab.seg.store import FLIP_SUFFIX
from facelab.train.checkpoint import load_checkpoint, save_id

KIND = "segmenter"
ARCHITECTURE = "segnet"
DEFAULT_NAME = "segmenter"  # folder under model/
Segmenter.architecture = ARCHITECTURE  # type: ignore[attr-defined]
Segmenter.kind = KIND  # type: ignore[attr-defined]


def create_segmenter(name: str = ARCHITECTURE, **config: Any) -> Segmenter:
    """Build a segmenter from its saved architecture name and config (``ValueError`` for an unknown name)."""
    if name != ARCHITECTURE:
        raise ValueError(f"unknown segmenter architecture {name!r} (known: {ARCHITECTURE})")
    return Segmenter(**config)


def saved_segmenter(name: str = ARCHITECTURE, **config: Any) -> Segmenter:
    """:func:`create_segmenter` for a saved config: a segmenter saved before the ``skips`` and ``pad`` choices
    existed was built with ``"concat"`` and ``"replicate"``, so its weights load into that shape."""
    config.setdefault("skips", "concat")
    config.setdefault("pad", "replicate")
    return create_segmenter(name, **config)


def fused(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every Conv2d -> BatchNorm2d pair folded into one convolution."""
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i in range(len(items) - 1):
                if isinstance(items[i], nn.Conv2d) and isinstance(items[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(items[i], items[i + 1])
                    module[i + 1] = nn.Identity()
    return net


def uncertainty(prob: np.ndarray) -> float:
    """How unsure a mask is, 0..1: the share of undecided pixels (probability 0.1..0.9) among those that are
    face or undecided (above 0.1).

    ``prob`` ``(R, R) float32 [0, 1]``; 0 for a crisp mask, 1 when nothing is decided (an occluder or a
    lighting the segmenter never saw): the faces worth labelling next."""
    seen = float((prob > 0.1).sum())
    return float(((prob > 0.1) & (prob < 0.9)).sum()) / seen if seen else 0.0


class SegmenterRunner:
    """A trained segmenter ready to run (see the module docstring).

    Attributes:
        resolution, face_type: of the faces it takes.
        model_id: the save id of the weights (stored with every applied mask), plus ``+flip`` with
            ``flip_average``.
        flip_average: each mask is the mean of the face's and its mirror image's (twice the work; on the
            held-out labels of ``benchmarks/seg_iou.py`` it raised the IoU of every segmenter measured by
            0.006-0.016).
    """

    def __init__(self, net: Segmenter, device: torch.device | str = "cpu", model_id: str = "",
                 flip_average: bool = False) -> None:
        self.device = torch.device(device)
        self.net = fused(net).to(self.device).to(memory_format=torch.channels_last)
        self.resolution = int(net.config["resolution"])
        self.face_type = str(net.config["face_type"])
        self.flip_average = bool(flip_average)
        # masks made with the mirror pass differ from single-pass ones: the id says so, so `seg apply` re-masks
        # faces made in the other mode (the merge always runs one pass)
        self.model_id = model_id + FLIP_SUFFIX if flip_average and model_id else model_id

    def predict(self, faces: np.ndarray, batch: int = 16) -> np.ndarray:
        """``(N, R, R, 3)`` BGR faces (uint8, or float32 ``[0, 1]``) of the segmenter's face type and size ->
        ``(N, R, R) float32`` face probabilities; with ``flip_average`` the mean of the face's and its mirror
        image's (mirrored back), which costs a second pass."""
        faces = np.asarray(faces)
        r = self.resolution
        if faces.ndim != 4 or faces.shape[1:] != (r, r, 3):
            raise ValueError(f"segmenter: expected (N, {r}, {r}, 3) faces, got {faces.shape}")
        scale = 1 / 255 if faces.dtype == np.uint8 else 1.0
        out = np.empty((len(faces), r, r), np.float32)
        with torch.inference_mode():
            for i in range(0, len(faces), batch):
                x = torch.from_numpy(np.ascontiguousarray(faces[i:i + batch])).to(self.device)
                x = (x.float() * scale).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
                prob = torch.sigmoid(self.net(x))
                if self.flip_average:
                    prob = (prob + torch.sigmoid(self.net(x.flip(3))).flip(3)) / 2
                out[i:i + batch] = prob[:, 0].float().cpu().numpy()
        return out

    def cut(self, image: np.ndarray, record: FaceRecord, reduce: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A face file's image (decoded at ``1/reduce``) cut to the segmenter's face type and size, and the
        face-file -> cut matrix."""
        return cut_face(image, record, self.face_type, self.resolution, reduce)

    def reduction_for(self, record: FaceRecord) -> int:
        """How much smaller a face file can be decoded for this segmenter (see :func:`reduction_for`)."""
        return reduction_for(record, self.face_type, self.resolution)

    def back_to_face(self, prob: np.ndarray, mat: np.ndarray, size: int, reduce: int = 1) -> np.ndarray:
        """A ``(R, R)`` probability of a cut (``mat`` from :meth:`cut`) as ``float32`` in the face file's
        pixels: ``(size, size)``, or the ``1/reduce`` grid of :func:`facelab.faceimage.face_from_bytes`."""
        side = size if reduce == 1 else -(-size // reduce)
        return cv2.warpAffine(prob, from_reduced(mat, reduce) if reduce != 1 else mat, (side, side),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def mask_for_face(self, image: np.ndarray, record: FaceRecord) -> np.ndarray:
        """The face probability ``(S, S) float32`` of one face file (``(S, S, 3) uint8`` image and its record)."""
        face, mat = self.cut(image, record)
        return self.back_to_face(self.predict(face[None])[0], mat, int(record.size))

    def masks_in_square(self, faces: np.ndarray, landmarks: np.ndarray | None, face_type: str) -> np.ndarray:
        """Face probabilities of faces aligned for another model: ``(N, S, S, 3) float32 [0, 1]`` squares of
        ``face_type`` with their ``(N, 68, 2)`` landmarks in square pixels (NaN or None: the square is taken as
        the segmenter's own crop) -> ``(N, S, S) float32``. Where the segmenter's crop reaches beyond the
        square the edge pixels are repeated; outside the square nothing is face."""
        n, s = faces.shape[:2]
        r = self.resolution
        mats = np.zeros((n, 2, 3), np.float64)
        cuts = np.empty((n, r, r, 3), np.float32)
        for i in range(n):
            lm = None if landmarks is None else np.asarray(landmarks[i], np.float64)
            if lm is None or not np.isfinite(lm).all() or len(lm) != 68 or face_type == self.face_type:
                mats[i] = np.array([[r / s, 0, 0], [0, r / s, 0]])
            else:
                mats[i] = face_matrix(lm, self.face_type, r)
            cuts[i] = cv2.warpAffine(np.asarray(faces[i], np.float32), mats[i], (r, r), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        probs = self.predict(np.clip(cuts, 0, 1))
        return np.stack([self.back_to_face(probs[i], mats[i], s) for i in range(n)]) if n else np.zeros((0, s, s), np.float32)


def load_segmenter(model_dir: str | Path, device: str | torch.device = "cpu",
                   flip_average: bool = False) -> SegmenterRunner:
    """Load a segmenter folder for inference (``ModelError`` naming the file if it is broken, ``WrongKindError``
    if the folder holds another kind of model); ``flip_average``: see :class:`SegmenterRunner`."""
    ckpt = load_checkpoint(model_dir, device, with_optimizer=False, factory=saved_segmenter, kind=KIND)
    return SegmenterRunner(ckpt.model, device, save_id(model_dir) or "", flip_average)

