"""Merging predicted faces back into destination frames.

- :mod:`facelab.color` (shared with training): colour transfer (``rct``, ``lct``, ``mkl``, ``idt``, ``sot``) between face images.
- :mod:`facelab.merge.blend`: mask erode/blur, overlay, Poisson (seamless) blending,
  histogram matching (per channel and luma only).
- :mod:`facelab.merge.masks`: the registry of face-mask providers (``learned``,
  ``learned-dst``, ``dst``, ``predicted``; later the trainable segmentation).
- :mod:`facelab.merge.effects`: degrade, sharpen, motion blur and frame denoise.
- :mod:`facelab.merge.compose`: :class:`MergeSettings`, :func:`merge_frame` and
  :func:`predict_faces`, which run all of the above for every face of one frame
  (the order of the steps is in its docstring).

Images are ``(H, W, 3) float32`` BGR in ``[0, 1]`` inside this package and
``(H, W, 3) uint8`` BGR at its edges (:func:`merge_frame` in and out).
"""

from facelab.color import lct, rct
from facelab.merge.blend import erode_blur_mask, hist_match, hist_match_bw, overlay, seamless
from facelab.merge.compose import (
    MergeSettings,
    Predictor,
    aligned_outputs,
    compose_faces,
    merge_frame,
    predict_faces,
    prepare_faces,
    run_predictor,
)
from facelab.merge.masks import register_mask

__all__ = [
    "MergeSettings",
    "Predictor",
    "aligned_outputs",
    "compose_faces",
    "erode_blur_mask",
    "hist_match",
    "hist_match_bw",
    "lct",
    "merge_frame",
    "overlay",
    "predict_faces",
    "prepare_faces",
    "rct",
    "register_mask",
    "run_predictor",
    "seamless",
]
