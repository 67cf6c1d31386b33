"""A side's aligned faces, loaded once into memory at model resolution.

At 64-128 px even thousands of faces fit in RAM as uint8 (a 128 px face is
48 KiB), so decoding happens once and each batch costs only augmentation.
Each face is also kept at twice the model's side while the set fits in
:data:`DETAIL_BUDGET_BYTES`: augmentation's random affine cuts the training
target from that copy, so the target is as sharp as the face (bicubic at R
keeps 0.95 of its fine detail, bilinear, as until 2026-12-06, 0.79).

Face type re-crop: a model may want another face type than extraction made
(``h64`` wants ``half`` faces, the workspace holds ``full`` ones). Each such
face is cut again from the aligned image with ``face_matrix(record.landmarks,
model_face_type, size)``: the landmarks are in aligned-face pixels, so this is
the same crop a direct alignment from the frame would give, exactly so while
the new crop lies inside the old one (full -> half). A crop reaching outside
the aligned image (half -> whole) has its border filled by edge replication;
such faces are counted in :attr:`FaceDataset.outside` so the caller can warn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from facelab.align import (
    face_matrix,
    hull_mask,
    invert_affine,
    transform_points,
    warp_image,
)
from facelab.errors import FaceFileError, WorkspaceError
from facelab.faceimage import read_face
from facelab.faceset.pose import yaw_pitch
from facelab.seg import store as seg_store
from facelab.train.augment import AugmentOptions, augment_sample
from facelab.types import FaceType


def _recrop(image: np.ndarray, landmarks: np.ndarray, face_type: str) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """Cut a ``face_type`` face out of an aligned face image (same side); returns image, landmarks, whether
    the new crop reaches more than 1 % of the side outside the old image, and the ``(2, 3)`` old -> new matrix."""
    size = image.shape[0]
    mat = face_matrix(landmarks, face_type, size)
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64), invert_affine(mat))
    outside = bool((corners < -0.01 * size).any() or (corners > 1.01 * size).any())
    return warp_image(image, mat, size), transform_points(landmarks, mat).astype(np.float64), outside, mat


# 68-point indices of the regions "eyes and mouth priority" weights up: eyes with brows, and the mouth
_EYES = (list(range(17, 22)) + list(range(36, 42)), list(range(22, 27)) + list(range(42, 48)))
_MOUTH = list(range(48, 60))


def eyes_mouth_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``(size, size) uint8`` mask (255 inside) of both eye+brow regions and the mouth, from ``(68, 2)``
    landmarks in pixels of that size; widened by about 1/32 of the side so the loss covers the edges."""
    mask = np.zeros((size, size), np.uint8)
    for idx in (*_EYES, _MOUTH):
        hull = cv2.convexHull(np.round(landmarks[idx]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
    k = max(3, size // 32) | 1
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def frame_area_mask(record, to_face: np.ndarray, size: int) -> np.ndarray:
    """``(size, size) uint8`` mask (255 inside) of the face pixels that came from inside the source frame:
    what ``remove_gray_border`` keeps in the loss (the rest is fill from cutting at the frame edge).

    ``to_face`` maps the aligned image's pixels to this face's pixels (re-crop and resize)."""
    w, h = record.source_size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    mat = np.asarray(record.image_to_face_mat, np.float64)
    poly = transform_points(transform_points(corners, mat), to_face)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
    return mask


def _load_one(path: Path, resolution: int, face_type: str | None, detail: bool = False):
    image, record = read_face(path)
    landmarks = np.asarray(record.landmarks, np.float64)
    recropped = outside = False
    to_face = np.eye(3)
    if face_type is not None and FaceType.parse(record.face_type) != FaceType.parse(face_type):
        image, landmarks, outside, mat = _recrop(image, landmarks, face_type)
        to_face[:2] = mat
        recropped = True
    w = image.shape[1]
    interp = cv2.INTER_AREA if w > resolution else cv2.INTER_CUBIC
    face = cv2.resize(image, (resolution, resolution), interpolation=interp)
    # the face at twice the side, for sharp augmented targets; None where the file holds no more detail than R
    big = cv2.resize(image, (2 * resolution,) * 2, interpolation=cv2.INTER_AREA) if detail and w >= 2 * resolution else None
    landmarks = landmarks * (resolution / w)
    to_face = np.diag([resolution / w, resolution / w, 1.0]) @ to_face
    applied = seg_store.mask_of(record)  # the segmenter's mask (`facelab seg apply`) wins over the hull
    if applied is not None:
        mask = cv2.warpAffine(applied.astype(np.float32) / 255, to_face[:2], (resolution, resolution),
                              flags=cv2.INTER_LINEAR, borderValue=0)
    else:
        mask = hull_mask(landmarks, (resolution, resolution), face_type or record.face_type)
    extra = np.stack([eyes_mouth_mask(landmarks, resolution), frame_area_mask(record, to_face[:2], resolution)], -1)
    return face, mask, recropped, outside, yaw_pitch(landmarks)[0], extra, landmarks.astype(np.float32), applied is not None, big


def _load_or_error(path: Path, resolution: int, face_type: str | None, detail: bool = False):
    try:
        return _load_one(path, resolution, face_type, detail)
    except FaceFileError as e:
        return e


# Memory a side may spend on its faces at twice the model's side (``FaceDataset.detail``): 1 GiB holds
# 21,000 faces for a 64 px model, 5,400 for 128 px, 1,300 for 256 px. A larger set resamples at R (bicubic).
DETAIL_BUDGET_BYTES = 1 << 30


LOAD_CHUNK = 256  # faces decoded at once while loading a set


def set_bytes(count: int, resolution: int, detail: bool) -> int:
    """Memory a :class:`FaceDataset` of ``count`` faces holds: face, hull mask (float32), eyes+mouth and
    frame masks, landmarks, and the twice-size copy where kept."""
    per_face = resolution * resolution * (3 + 4 + 2) + 68 * 2 * 4 + 4
    return count * per_face + (detail_bytes(count, resolution) if detail else 0)


def available_memory() -> int | None:
    """Bytes this process may still take: Linux's ``MemAvailable``, lowered to a cgroup v2 limit where one
    is set (a container); None where neither can be read (macOS, Windows)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if avail is not None and limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def fits_in_memory(count: int, resolution: int, detail: bool) -> bool:
    avail = available_memory()
    return avail is None or set_bytes(count, resolution, detail) <= avail


def check_memory(count: int, resolution: int, detail: bool) -> None:
    """Refuse, before reading a face, a set that cannot fit in memory (the system would kill the process
    part-way through loading it), and say how to make it fit."""
    need, avail = set_bytes(count, resolution, detail), available_memory()
    if avail is None or need <= avail:
        return
    fits = int(avail * 0.8) // max(set_bytes(1, resolution, detail), 1)
    gib = lambda b: f"{b / 2**30:.1f} GiB"  # noqa: E731
    raise WorkspaceError(
        f"{count} faces at {resolution} px need {gib(need)} of memory to train on (the faces are held in RAM), "
        f"and {gib(avail)} is available",
        f"keep a subset balanced over head poses: `facelab sort src --by final --target {max(fits, 1)}` (or dst, "
        "whichever side is this large; the rest goes to aligned_trash, nothing is deleted), train at a smaller "
        "--resolution, or close other programs")


def detail_bytes(count: int, resolution: int) -> int:
    """Memory of ``count`` faces kept at twice ``resolution`` (``FaceDataset.detail``)."""
    return count * (2 * resolution) ** 2 * 3


class FaceDataset:
    """Faces ``(N, R, R, 3) uint8`` BGR and hull masks ``(N, R, R) float32`` of one side.

    Args:
        paths: aligned face files (JPEG/PNG with facelab metadata).
        resolution: model input side ``R``.
        face_type: the model's face type; faces of another type are re-cut to it
            (counted in :attr:`recropped`, those reaching outside their aligned
            image in :attr:`outside`). None keeps every face as it is.
        augment: augmentation options for :meth:`sample`.

    Attributes:
        paths: the faces loaded (unreadable files left out).
        skipped: one message per face file that could not be read (left out).
        yaw: ``(N,) float32`` yaw of each face in degrees (for ``sort_by_yaw``).
        segmented: how many faces carry a segmenter mask (``facelab seg apply``), used instead of their hull.
        landmarks: ``(N, 68, 2) float32`` landmarks of each face in pixels of its ``R x R`` image.
        detail: ``(N, 2R, 2R, 3) uint8``, the faces at twice the side, or None. The random affine of
            augmentation cuts each target from it, so targets keep all the detail of the ``R x R`` face
            (:func:`facelab.train.augment.transform_face`). Kept when ``detail`` is True, or by default when
            the set fits in :data:`DETAIL_BUDGET_BYTES` and every face file is at least 2R wide.
    """

    def __init__(self, paths: list[Path], resolution: int, face_type: str | None = "full",
                 augment: AugmentOptions = AugmentOptions(), detail: bool | None = None) -> None:
        if not paths:
            raise WorkspaceError("no aligned faces to train on", "run `facelab extract src` and `facelab extract dst` first")
        self.paths = [Path(p) for p in paths]
        self.resolution = resolution
        self.augment = augment
        if detail is None:  # kept while it fits its budget and the memory left; the set trains without it otherwise
            detail = (detail_bytes(len(self.paths), resolution) <= DETAIL_BUDGET_BYTES
                      and fits_in_memory(len(self.paths), resolution, True))
        n, r = len(self.paths), resolution
        check_memory(n, r, detail)
        # filled in place, a chunk of faces at a time: holding every loaded face and then stacking
        # them took twice the set's memory at the peak
        self.faces = np.empty((n, r, r, 3), np.uint8)
        self.masks = np.empty((n, r, r), np.float32)
        # (N, R, R, 2) uint8: eyes+mouth region, and the part of the face that lay inside its frame
        self.extra_masks = np.empty((n, r, r, 2), np.uint8)
        self.landmarks = np.empty((n, 68, 2), np.float32)  # in pixels of the R x R faces
        self.yaw = np.empty(n, np.float32)
        self.detail = np.empty((n, 2 * r, 2 * r, 3), np.uint8) if detail else None
        self.recropped = self.outside = self.segmented = 0  # segmented: the mask is the segmenter's, not the hull
        self.skipped = []  # a face file that cannot be read is left out, named once here; the rest trains
        kept_paths: list[Path] = []
        with ThreadPoolExecutor(4) as pool:  # cv2 decoding releases the GIL
            for start in range(0, n, LOAD_CHUNK):
                chunk = self.paths[start:start + LOAD_CHUNK]
                for p, x in zip(chunk, pool.map(lambda p: _load_or_error(p, r, face_type, detail), chunk)):
                    if isinstance(x, FaceFileError):
                        self.skipped.append(x.message)
                        continue
                    k = len(kept_paths)
                    kept_paths.append(p)
                    self.faces[k], self.masks[k], self.extra_masks[k], self.landmarks[k] = x[0], x[1], x[5], x[6]
                    self.yaw[k] = x[4]
                    self.recropped += x[2]
                    self.outside += x[3]
                    self.segmented += x[7]
                    if self.detail is not None:
                        if x[8] is None:  # a file no larger than R: no face gets a detail copy
                            self.detail = None
                        else:
                            self.detail[k] = x[8]
        if not kept_paths:
            raise WorkspaceError(f"none of the {n} aligned faces can be read (e.g. {self.skipped[0]})",
                                 "re-run `facelab extract` for this side")
        k = len(kept_paths)
        self.paths = kept_paths
        if k < n:  # views: the skipped faces' rows were never written, so they hold no memory
            self.faces, self.masks, self.extra_masks = self.faces[:k], self.masks[:k], self.extra_masks[:k]
            self.landmarks, self.yaw = self.landmarks[:k], self.yaw[:k]
            self.detail = None if self.detail is None else self.detail[:k]
        self._yaw_order = np.argsort(self.yaw, kind="stable")

    @property
    def mismatched(self) -> int:
        """Faces whose stored face type differed from the model's (now re-cut)."""
        return self.recropped

    def __len__(self) -> int:
        return len(self.faces)

    def pick(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Random face indices (without repeats while the set is large enough)."""
        return rng.choice(len(self.faces), batch_size, replace=batch_size > len(self.faces))

    def pick_by_yaw(self, yaws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each yaw in ``yaws``, a random face among the ones nearest in yaw (a bucket of about 5 % of the set)."""
        n = len(self.faces)
        bucket = min(n, max(1, round(n * 0.05)))
        sorted_yaw = self.yaw[self._yaw_order]
        pos = np.searchsorted(sorted_yaw, np.asarray(yaws, np.float32))
        out = []
        for p, y in zip(pos, np.asarray(yaws, np.float32)):
            lo, hi = max(0, p - bucket), min(n, p + bucket)  # candidates either side, keep the nearest `bucket`
            cand = np.arange(lo, hi)
            cand = cand[np.argsort(np.abs(sorted_yaw[cand] - y), kind="stable")[:bucket]]
            out.append(self._yaw_order[rng.choice(cand)])
        return np.array(out, np.int64)

    def pick_uniform_yaw(self, batch_size: int, rng: np.random.Generator, bins: int = 16) -> np.ndarray:
        """Random faces spread evenly over head turn: pick one of ``bins`` equal yaw ranges (among those that
        hold faces) uniformly, then a face in it. A set of mostly frontal faces then still trains its
        rare profiles as often as its frontal ones."""
        edges = np.linspace(self.yaw.min(), self.yaw.max() + 1e-3, bins + 1)
        which = np.clip(np.searchsorted(edges, self.yaw, side="right") - 1, 0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
        groups = [g for g in groups if len(g)]
        return np.array([rng.choice(groups[rng.integers(len(groups))]) for _ in range(batch_size)], np.int64)

    def sample(self, batch_size: int, rng: np.random.Generator, augment: bool = True, indices: np.ndarray | None = None,
               extras: bool = False, color: tuple[str, FaceDataset] | None = None):
        """A random batch (or the faces at ``indices``): ``(inputs, targets)`` uint8 ``(B, R, R, 3)`` and target
        masks ``(B, R, R)`` float32; with ``extras`` also the eyes+mouth masks and the inside-the-frame masks
        (each ``(B, R, R)`` float32 in ``[0, 1]``).

        ``color=(mode, other)``: recolour each face towards a random face of the dataset ``other`` (the dst
        faces), measured inside both faces' hull masks, with the colour transfer ``mode`` (rct, lct, mkl, idt,
        sot) before augmentation, so the model sees src faces under dst lighting and colours.

        With ``augment=False`` inputs equal targets (no warp, affine or flip).
        """
        idx = self.pick(batch_size, rng) if indices is None else np.asarray(indices)
        faces = self.faces[idx]
        details = self.detail[idx] if self.detail is not None and augment else [None] * len(idx)
        if color is not None:
            faces, details = self._recolor(faces, details, idx, color, rng)
        masks = np.concatenate([self.masks[idx][..., None], self.extra_masks[idx].astype(np.float32) / 255], -1)
        if augment:
            out = [augment_sample(f, m, rng, self.augment, d) for f, m, d in zip(faces, masks, details)]
            inputs, targets, masks = (np.stack([o[k] for o in out]) for k in range(3))
        else:
            inputs, targets = faces, faces
        if extras:
            return inputs, targets, masks[..., 0], masks[..., 1], masks[..., 2]
        return inputs, targets, masks[..., 0]

    def _recolor(self, faces: np.ndarray, details, idx: np.ndarray, color: tuple[str, FaceDataset],
                 rng: np.random.Generator) -> tuple[np.ndarray, list]:
        """The faces (and their 2R copies, where given) recoloured towards random faces of ``other``; a face
        with a 2R copy is recoloured at 2R and area-averaged to R, so the two stay the same picture."""
        from facelab.color import color_transfer

        mode, other = color
        out, out_details = np.empty_like(faces), list(details)
        r = faces.shape[1]
        as_u8 = lambda x: np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
        for k, (face, big, i) in enumerate(zip(faces, details, idx)):
            j = rng.integers(len(other))
            ref, ref_mask = other.faces[j].astype(np.float32) / 255, other.masks[j]
            if big is None:
                out[k] = as_u8(color_transfer(mode, face.astype(np.float32) / 255, ref, self.masks[i], ref_mask))
            else:
                mask = cv2.resize(self.masks[i], (2 * r, 2 * r), interpolation=cv2.INTER_LINEAR)
                out_details[k] = as_u8(color_transfer(mode, big.astype(np.float32) / 255, ref, mask, ref_mask))
                out[k] = cv2.resize(out_details[k], (r, r), interpolation=cv2.INTER_AREA)
        return out, out_details
