"""Merge modes as one table: mode name -> how the face is matched to the dst face and put into the frame.

:data:`MERGE_MODES` is the only list of modes: :class:`facelab.merge.compose.MergeSettings`
accepts its names, :func:`facelab.merge.compose.face_layers` and
:func:`facelab.merge.compose.compose_faces` run its functions, the CLI's
``--mode`` help lists it, and a test keeps ``docs/merge.md``'s table in step.
A new mode is one new row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facelab.merge.blend import hist_match, hist_match_bw, overlay, paste, seamless

Blend = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``blend(frame, face, mask)``: ``(H, W, 3) float32`` BGR ``[0, 1]`` frame region and face (frame
geometry) and ``(H, W) float32 [0, 1]`` mask -> the blended ``(H, W, 3) float32`` region (new array)."""

HistMatch = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", int], np.ndarray]
"""``hist(face, reference, mask, threshold)``: the predicted face matched to the dst face
(aligned, ``(R, R, 3) float32`` BGR ``[0, 1]``), see :func:`facelab.merge.blend.hist_match`."""


@dataclass(frozen=True)
class MergeMode:
    """One merge mode.

    Attributes:
        summary: what it does, in a few words (the CLI help).
        blend: how the face goes into the frame; None: no frame at all (``raw-predict``
            writes the aligned faces, see :func:`facelab.merge.compose.aligned_outputs`).
        hist: histogram match of the face to the dst face after the colour transfer, or None.
    """

    summary: str
    blend: Blend | None
    hist: HistMatch | None = None


MERGE_MODES: dict[str, MergeMode] = {
    "seamless": MergeMode("Poisson clone", seamless),
    "seamless-hist-match": MergeMode("histogram match, then seamless", seamless, hist_match),
    "overlay": MergeMode("alpha blend", overlay),
    "hist-match": MergeMode("per-channel histogram match, then overlay", overlay, hist_match),
    "hist-match-bw": MergeMode("luma histogram match, then overlay", overlay, hist_match_bw),
    "raw-rgb": MergeMode("the face pasted where the mask is >= 0.5", paste),
    "raw-predict": MergeMode("aligned faces and masks, no frame", None),
}

DEFAULT_MODE = "seamless"
