"""``suppress_jitter``: steady the merged face's colour and light from frame to frame.

Seamless (Poisson) blending sets the face's colour from the pixels along the
mask's edge, and those change a little every frame (hair, noise, the mask
itself), so the face's tint and brightness flicker although the predicted face
is steady. The flicker lives in the lowest spatial frequencies of the face, so
:class:`JitterFilter` works there only:

1. warp the merged face (for each face of the frame, by its frame -> face
   affine) to a small aligned square and blur it, weighting by the blend mask
   so only face pixels count: ``L_t``, the face's coarse colour and light,
   independent of head motion;
2. keep a running average per face track (face index): ``E_t = a E_(t-1) +
   (1 - a) L_t``;
3. add ``E_t - L_t`` back, warped into the frame, inside the blend mask.

Detail (expression, mouth, eyes) is untouched because it is above the cut-off.
Real light changes pass with a lag of about ``a / (1 - a)`` frames; a jump
larger than :data:`RESET` (a scene cut, a flash) restarts the average, and so
does a gap of more than :data:`MAX_GAP` frames without the face.

Frames must be given in order; the render loop applies the filter on its
main thread, in frame order, while the blending itself stays parallel.
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.align import scale_matrix, unwarp_image
from facelab.checks import check_image, check_mask

SIZE = 32  # side of the aligned square the low frequencies are kept at
BLUR = 5.0  # Gaussian sigma at SIZE: keeps features coarser than ~1/6 of the face
ALPHA = 0.6  # weight of the past in the running average
RESET = 0.08  # mean absolute change (0..1) that counts as a cut
MAX_GAP = 5  # frames without this face after which its average starts afresh


class JitterFilter:
    """Per-face-track running average of the merged face's low frequencies (see the module docstring)."""

    def __init__(self, alpha: float = ALPHA) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"JitterFilter: alpha must be in [0, 1), got {alpha}")
        self.alpha = alpha
        self._tracks: dict[int, tuple[int | None, np.ndarray]] = {}

    def _low(self, image: np.ndarray, weight: np.ndarray, mat: np.ndarray, resolution: int) -> np.ndarray:
        """Blurred colours of the face pixels only (a normalised convolution with the blend mask), so the
        background around the face does not dilute them."""
        m = scale_matrix(mat, SIZE / resolution)

        def small(x: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(x, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)

        w = small(weight)
        num = cv2.GaussianBlur(small(image * weight[..., None]), (0, 0), BLUR, borderType=cv2.BORDER_CONSTANT)
        den = cv2.GaussianBlur(w, (0, 0), BLUR, borderType=cv2.BORDER_CONSTANT)
        return num / np.maximum(den, 1e-3)[..., None]

    def apply(self, merged: np.ndarray, mask: np.ndarray, mats: np.ndarray, face_indices: list[int],
              resolution: int, frame_number: int | None) -> np.ndarray:
        """Steady one merged frame.

        Args:
            merged: ``(H, W, 3)`` or ``(H, W, 4) uint8`` merged frame (alpha kept).
            mask: ``(H, W) uint8`` blend mask of the frame (0..255).
            mats: ``(N, 2, 3)`` frame -> face affines of the model's ``resolution``.
            face_indices: the face index (track) of each face.
            resolution: side of the model's faces, the space ``mats`` map into.
            frame_number: the frame's number (a gap over :data:`MAX_GAP` restarts a track), or None.

        Returns:
            A new ``uint8`` frame of the same shape.
        """
        check_image(merged, "JitterFilter merged", channels=(3, 4), dtype=np.uint8)
        mask = check_mask(mask, "JitterFilter mask", shape=merged.shape)
        rgb = merged[..., :3].astype(np.float32) / 255.0
        out = rgb.copy()
        weight = mask.astype(np.float32) / 255.0
        h, w = mask.shape
        for mat, index in zip(mats, face_indices):
            low = self._low(rgb, weight, mat, resolution)
            prev = self._tracks.get(index)
            if prev is None or frame_number is None or prev[0] is None or not 0 < frame_number - prev[0] <= MAX_GAP \
                    or np.abs(low - prev[1]).mean() > RESET:
                avg = low
            else:
                avg = self.alpha * prev[1] + (1 - self.alpha) * low
            self._tracks[index] = (frame_number, avg)
            fix = cv2.resize(avg - low, (resolution, resolution), interpolation=cv2.INTER_CUBIC)
            fix_frame = unwarp_image(fix, mat, (h, w))
            out += fix_frame * weight[..., None]
        result = merged.copy()
        result[..., :3] = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return result
