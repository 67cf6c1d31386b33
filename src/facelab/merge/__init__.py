"""Merging predicted faces back into destination frames.

- :mod:`facelab.merge.color`: colour transfer (``rct``, ``lct``) between face images.
- :mod:`facelab.merge.blend`: mask erode/blur, overlay, Poisson (seamless) blending,
  histogram matching.
- :mod:`facelab.merge.compose`: :class:`MergeSettings` and :func:`merge_frame`,
  which run all of the above for every face of one frame.

Images are ``(H, W, 3) float32`` BGR in ``[0, 1]`` inside this package and
``(H, W, 3) uint8`` BGR at its edges (:func:`merge_frame` in and out).
"""

from facelab.merge.blend import erode_blur_mask, hist_match, overlay, seamless
from facelab.merge.color import lct, rct
from facelab.merge.compose import MergeSettings, Predictor, merge_frame

__all__ = [
    "MergeSettings",
    "Predictor",
    "erode_blur_mask",
    "hist_match",
    "lct",
    "merge_frame",
    "overlay",
    "rct",
    "seamless",
]
