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

Only step 2 depends on the frames before, so the filter comes in three
parts: :meth:`JitterFilter.measure` (step 1) and :meth:`JitterFilter.correct`
(step 3) are pure and run on the render loop's worker threads beside the
blending; :meth:`JitterFilter.update` (step 2, a few 32x32 arrays per face)
must see the frames in order and runs on its main thread.
:meth:`JitterFilter.apply` is the three in a row.

A merge that stops (a cancel, a kill) and resumes must give the frames of one
uninterrupted run, so the render loop keeps the tracks after each frame it
journals (:func:`save_tracks`, a few kilobytes per face) and a resumed run
starts from them (:func:`load_tracks`).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

from facelab.align import crop_matrix, scale_matrix, unwarp_image
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

    @staticmethod
    def _low(image: np.ndarray, weight: np.ndarray, mat: np.ndarray, resolution: int) -> np.ndarray:
        """Blurred colours of the face pixels only (a normalised convolution with the blend mask), so the
        background around the face does not dilute them."""
        m = scale_matrix(mat, SIZE / resolution)

        def small(x: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(x, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)

        w = small(weight)
        num = cv2.GaussianBlur(small(image * weight[..., None]), (0, 0), BLUR, borderType=cv2.BORDER_CONSTANT)
        den = cv2.GaussianBlur(w, (0, 0), BLUR, borderType=cv2.BORDER_CONSTANT)
        return num / np.maximum(den, 1e-3)[..., None]

    @staticmethod
    def _region(merged: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """The frame's colours and blend weights (``float32``, 0..1) inside the box around the mask, and that
        box ``(x, y, w, h)``: the only pixels the filter reads or changes (weight 0 elsewhere), a fifth of a
        720p frame for one face."""
        check_image(merged, "JitterFilter merged", channels=(3, 4), dtype=np.uint8)
        mask = check_mask(mask, "JitterFilter mask", shape=merged.shape)
        x, y, w, h = cv2.boundingRect(mask)
        rgb = merged[y:y + h, x:x + w, :3].astype(np.float32) / 255.0
        return rgb, mask[y:y + h, x:x + w].astype(np.float32) / 255.0, (x, y, w, h)

    @classmethod
    def measure(cls, merged: np.ndarray, mask: np.ndarray, mats: np.ndarray, resolution: int) -> list[np.ndarray]:
        """Step 1, for any frame in any order: each face's coarse colour and light ``L_t``
        (``(SIZE, SIZE, 3) float32``), in the order of ``mats``."""
        rgb, weight, box = cls._region(merged, mask)
        if weight.size == 0:  # an empty mask: nothing of the face shows
            return [np.zeros((SIZE, SIZE, 3), np.float32) for _ in mats]
        return [cls._low(rgb, weight, crop_matrix(mat, *box[:2]), resolution) for mat in mats]

    @property
    def tracks(self) -> dict[int, tuple[int | None, np.ndarray]]:
        """``face index -> (frame number, running average)``: a snapshot (the averages are never changed in
        place, so a copy of the dict is one)."""
        return dict(self._tracks)

    @tracks.setter
    def tracks(self, value: dict[int, tuple[int | None, np.ndarray]]) -> None:
        self._tracks = dict(value)

    def update(self, lows: list[np.ndarray], face_indices: list[int], frame_number: int | None) -> list[np.ndarray]:
        """Step 2, frames in order: fold each face's ``L_t`` into its track's running average ``E_t`` and
        return the corrections ``E_t - L_t`` (zero where a track starts or restarts)."""
        fixes = []
        for low, index in zip(lows, face_indices):
            prev = self._tracks.get(index)
            if prev is None or frame_number is None or prev[0] is None or not 0 < frame_number - prev[0] <= MAX_GAP \
                    or np.abs(low - prev[1]).mean() > RESET:
                avg = low
            else:
                avg = self.alpha * prev[1] + (1 - self.alpha) * low
            self._tracks[index] = (frame_number, avg)
            fixes.append(avg - low)
        return fixes

    @classmethod
    def correct(cls, merged: np.ndarray, mask: np.ndarray, mats: np.ndarray, resolution: int,
                fixes: list[np.ndarray]) -> np.ndarray:
        """Step 3, for any frame in any order: add each face's correction, warped into the frame, inside the
        blend mask. Returns a new ``uint8`` frame of ``merged``'s shape (alpha kept)."""
        rgb, weight, (x, y, w, h) = cls._region(merged, mask)
        result = merged.copy()
        if weight.size == 0:
            return result
        for mat, fix in zip(mats, fixes):
            big = cv2.resize(fix, (resolution, resolution), interpolation=cv2.INTER_CUBIC)
            rgb += unwarp_image(big, crop_matrix(mat, x, y), (h, w)) * weight[..., None]
        result[y:y + h, x:x + w, :3] = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return result

    def apply(self, merged: np.ndarray, mask: np.ndarray, mats: np.ndarray, face_indices: list[int],
              resolution: int, frame_number: int | None) -> np.ndarray:
        """Steady one merged frame (frames in order): :meth:`measure`, :meth:`update`, :meth:`correct`.

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
        lows = self.measure(merged, mask, mats, resolution)
        return self.correct(merged, mask, mats, resolution, self.update(lows, face_indices, frame_number))


def save_tracks(path: Path, tracks: dict[int, tuple[int | None, np.ndarray]], after: str, fingerprint: str) -> None:
    """Keep ``tracks`` (:attr:`JitterFilter.tracks`) as they were after frame ``after`` (its stem), made with
    ``fingerprint``: an ``.npz`` of plain arrays (no pickle), replaced atomically."""
    from facelab.fileio import atomic_write_bytes

    keys = sorted(tracks)
    buf = io.BytesIO()
    np.savez(buf, after=np.array(after), fingerprint=np.array(fingerprint), indices=np.array(keys, np.int64),
             numbers=np.array([-1 if tracks[k][0] is None else tracks[k][0] for k in keys], np.int64),
             averages=np.array([tracks[k][1] for k in keys], np.float32).reshape(len(keys), SIZE, SIZE, 3))
    atomic_write_bytes(path, buf.getvalue())


def load_tracks(path: Path) -> tuple[str, str, dict[int, tuple[int | None, np.ndarray]]] | None:
    """``(frame stem, fingerprint, tracks)`` as :func:`save_tracks` kept them; None when there is no such file or
    it cannot be read (the filter then starts afresh, as at the first frame)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            after, fingerprint = str(z["after"]), str(z["fingerprint"])
            indices, numbers, averages = z["indices"], z["numbers"], z["averages"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if averages.shape != (len(indices), SIZE, SIZE, 3) or numbers.shape != indices.shape:
        return None
    tracks = {int(i): (None if n < 0 else int(n), a.copy()) for i, n, a in zip(indices, numbers, averages)}
    return after, fingerprint, tracks
