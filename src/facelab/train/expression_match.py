"""Expression matching: each dst face's code pulled towards the codes of src faces with the same expression.

A shared-bottleneck model (quick, H64, H128, DF, SAE with a df archi) swaps by decoding a dst face's code
with the src decoder. Nothing in the reconstruction losses says which src code a dst code should sit near:
the encoder lines the two sets up by whatever they share, and when the two people hold their mouths
differently most of the time (a dst speaker who talks through the clip, a src person who mostly listens)
the swap inherits src's usual mouth. Measured on franck-grid (docs/quality.md, session 20): each decoder
reproduces its own person's mouth opening (slope 0.95-0.96 against the real faces), yet the swap opens
only 0.47 as wide as dst, because dst's codes land where the src decoder paints a nearly closed mouth.

This term tells the encoder which src faces a dst face corresponds to. Before training, each face is
described by what its stored landmarks say about expression and pose (mouth opening, eye opening, yaw,
pitch: the measures ``facelab eval`` scores), and each dst face gets its :data:`NEIGHBOURS` nearest src
faces in that space. Each step a few dst faces are encoded, and ``power`` times the squared distance of
their codes to the mean code of their neighbours (relative to the neighbours' code energy, so the power
does not depend on the code's scale) is added to the loss. The src codes are targets only (no gradient),
and the decoders get no gradient from this term: it moves where dst faces sit in the code, into the
region the src decoder already paints with that expression, and that region stays a face (a term that
instead read the swap's expression from its pixels was gamed into blotches within 3,000 steps).

``quick`` trains with it at 0.05 by default (``Quick.TRAINING_DEFAULTS``, where the figures are).

Cost on 2 CPU cores (quick, demo pair, 400 iterations with start-up, two runs each): with eight matches
55.9 / 56.6 s against 49.3 / 49.2 s without, about 14 % (three matches: about 12 %). Each step encodes
:data:`FACES_PER_STEP` dst faces with gradient and their matches without.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from facelab.errors import SettingsError
from facelab.eval import metrics as M
from facelab.train.dataset import FaceDataset

FACES_PER_STEP = 4
"""dst faces whose codes are pulled each step."""
NEIGHBOURS = 8
"""src faces each dst face is matched to (their mean code is the target: steadier than one face's). Eight
rather than three (session 21): franck-grid's landmark jitter 1.14-1.19 -> 1.09-1.10, its mouth kept."""
MATCH_BLOCK = 256
"""dst faces matched at a time (a block's distance table: MATCH_BLOCK x src faces)."""
WEIGHTS = np.array([2.0, 0.5, 0.5, 0.5])
"""Weights of (mouth opening, eye opening, yaw, pitch), each first divided by its spread over both sets:
the mouth decides, the rest picks among src faces with that mouth. The mouth weighed 1.0 until 2026-12-07;
2.0 opened the demo's swapped mouth as wide as dst's (figures: docs/quality.md, session 23)."""


def expression_features(landmarks: np.ndarray) -> np.ndarray:
    """``(N, 68, 2)`` landmarks -> ``(N, 4)``: mouth opening, eye opening (as ``facelab eval`` measures them),
    yaw and pitch in degrees. Rows of faces whose landmarks give no measure hold NaN."""
    rows = []
    for p in np.asarray(landmarks, np.float64):
        yaw, pitch, _ = M.head_pose(p)
        rows.append((M.mouth_opening(p), M.eye_opening(p), yaw, pitch))
    return np.array(rows, np.float64).reshape(-1, 4)


def nearest_src(src: np.ndarray, dst: np.ndarray, k: int = NEIGHBOURS, weights: np.ndarray = WEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    """For features ``src`` ``(S, F)`` and ``dst`` ``(D, F)`` (:func:`expression_features`): the dst rows that
    can be matched (finite features) and, for each, the indices of its ``k`` nearest src rows, nearest first
    ``(len(rows), k)``. Each feature is divided by its standard deviation over both sets, then weighted."""
    s_ok, d_ok = np.flatnonzero(np.isfinite(src).all(1)), np.flatnonzero(np.isfinite(dst).all(1))
    if not len(s_ok) or not len(d_ok):
        return d_ok[:0], np.zeros((0, k), np.int64)
    k = min(k, len(s_ok))
    scale = np.concatenate([src[s_ok], dst[d_ok]]).std(0)
    scale[scale <= 0] = 1.0
    a, b = dst[d_ok] / scale * weights, src[s_ok] / scale * weights
    b2 = (b * b).sum(1)
    nearest = []
    # in blocks of dst rows: a full (dst, src) distance table of two sets of tens of thousands would not fit
    for i in range(0, len(a), MATCH_BLOCK):
        d = b2[None] - 2 * a[i:i + MATCH_BLOCK] @ b.T  # squared distance less |a|^2, which does not change the order
        nearest.append(np.argsort(d, axis=1, kind="stable")[:, :k])
    return d_ok, s_ok[np.concatenate(nearest)]


class ExpressionMatch:
    """The expression-matching term for one training run.

    Args:
        src, dst: the training face sets (their stored faces and landmarks, no augmentation).
        power: weight of the term (0..1).
        device: where the model runs.
        seed: the faces of step ``i`` are a function of ``(seed, i)``, so a resumed run picks what an
            uninterrupted one would.
    """

    def __init__(self, src: FaceDataset, dst: FaceDataset, power: float, device: torch.device, seed: int = 0,
                 faces_per_step: int = FACES_PER_STEP, neighbours: int = NEIGHBOURS) -> None:
        self.src, self.dst, self.power, self.device, self.seed = src, dst, float(power), device, seed
        self.rows, self.nearest = nearest_src(expression_features(src.landmarks), expression_features(dst.landmarks),
                                              neighbours)
        if not len(self.rows):
            raise SettingsError("expression_power: no face's landmarks give a mouth and eye opening",
                                "re-run `facelab extract` for both sides, or set --expression-power 0")
        self.faces_per_step = min(faces_per_step, len(self.rows))

    def __call__(self, model, iteration: int, amp=None) -> torch.Tensor:
        """The weighted term for step ``iteration`` (a scalar with gradients into the encoder and bottleneck only)."""
        from facelab.train.loop import to_tensor

        rng = np.random.default_rng([self.seed, iteration, 0xE9])
        pick = rng.choice(len(self.rows), self.faces_per_step, replace=False)
        dst_idx, src_idx = self.rows[pick], self.nearest[pick]
        autocast = torch.autocast(self.device.type, dtype=amp.dtype) if amp is not None else nullcontext()
        with autocast:
            with torch.no_grad():
                target = model.code(to_tensor(self.src.faces[src_idx.reshape(-1)], self.device)).float()
                target = target.view(*src_idx.shape, -1).mean(1)
            code = model.code(to_tensor(self.dst.faces[dst_idx], self.device)).float()
        energy = target.pow(2).mean().clamp_min(1e-6)
        return self.power * (code - target).pow(2).mean() / energy
