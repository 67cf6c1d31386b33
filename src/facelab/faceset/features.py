"""Per-face features used by the sort methods.

Each feature is a function ``(image, record) -> value`` (``image`` may be
``None`` for features that only need the metadata). :func:`compute` reads every
file once, computes the requested features on a thread pool (OpenCV releases
the GIL) and keeps the results in an in-memory cache keyed by the file's inode,
modification time and size, so renaming does not invalidate it but rewriting
does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab import align
from facelab.errors import FaceFileError
from facelab.faceimage import FaceRecord, read_face, read_record
from facelab.faceset.pose import yaw_pitch
from facelab.progress import track

WORK_SIZE = 256  # faces larger than this are measured at this size, so sets of mixed sizes compare
HIST_BINS = 32
THUMB = 24  # absdiff thumbnails are THUMB x THUMB x 3


def _work(image: np.ndarray, record: FaceRecord) -> tuple[np.ndarray, np.ndarray]:
    """Face image (at most WORK_SIZE px) and its landmark-hull mask (eroded so the hull edge does not count)."""
    h = image.shape[0]
    lm = np.asarray(record.landmarks, np.float32)
    if h > WORK_SIZE:
        k = WORK_SIZE / h
        image = cv2.resize(image, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
        lm = lm * k
    mask = align.hull_mask(lm, image.shape[:2], "full") > 0.5
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if eroded.sum() >= 64:
        mask = eroded
    if mask.sum() < 64:  # landmarks outside the image: use all of it
        mask = np.ones(image.shape[:2], bool)
    return image, mask


def sharpness(image: np.ndarray, record: FaceRecord) -> float:
    """Variance of the Laplacian of the grey face inside the landmark hull (higher = sharper)."""
    img, mask = _work(image, record)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=3)
    return float(lap[mask].var())


_DIRECTIONS = [
    np.array([[0, 0, 0], [1, -2, 1], [0, 0, 0]], np.float32),
    np.array([[0, 1, 0], [0, -2, 0], [0, 1, 0]], np.float32),
    np.array([[1, 0, 0], [0, -2, 0], [0, 0, 1]], np.float32) / 2,
    np.array([[0, 0, 1], [0, -2, 0], [1, 0, 0]], np.float32) / 2,
]


def motion_sharpness(image: np.ndarray, record: FaceRecord) -> float:
    """Sharpness along the most blurred of 4 directions (0, 45, 90, 135 degrees).

    Mean squared second derivative per direction inside the hull; motion blur
    wipes out detail along its direction, so its minimum drops far below the
    other directions'. Higher = less (directional) blur.
    """
    img, mask = _work(image, record)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    energies = [float(np.mean(cv2.filter2D(gray, cv2.CV_32F, k)[mask] ** 2)) for k in _DIRECTIONS]
    return min(energies)


def pose(image: np.ndarray | None, record: FaceRecord) -> tuple[float, float]:
    return yaw_pitch(record.landmarks)


def rect_size(image: np.ndarray | None, record: FaceRecord) -> float:
    """Side of the detector box in frame pixels (geometric mean of width and height)."""
    x0, y0, x1, y1 = record.source_rect
    return float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))


def histogram(image: np.ndarray, record: FaceRecord) -> np.ndarray:
    """``(3, HIST_BINS)`` B, G, R histograms of the whole face image, each summing to 1."""
    img = image if image.shape[0] <= WORK_SIZE else cv2.resize(image, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
    hists = [cv2.calcHist([img], [c], None, [HIST_BINS], [0, 256]).ravel() for c in range(3)]
    h = np.stack(hists).astype(np.float32)
    return h / np.maximum(h.sum(1, keepdims=True), 1)


def hsv_means(image: np.ndarray, record: FaceRecord) -> tuple[float, float]:
    """Mean brightness (V, 0..255) and mean hue (circular mean, 0..180 OpenCV units) inside the hull."""
    img, mask = _work(image, record)
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    v = float(hsv[..., 2][mask].mean())
    ang = hsv[..., 0][mask].astype(np.float64) * (2 * np.pi / 180)
    hue = float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360 / 2)
    return v, hue


def outside_fraction(image: np.ndarray, record: FaceRecord) -> float:
    """Fraction of the face that is not picture: pixels that came from outside the frame
    (found from the stored frame->face matrix and frame size; filled by replicated or black
    border when the face was cut), or, for faces without that, near-black pixels."""
    size = image.shape[0]
    step = max(1, size // 64)
    ys, xs = np.mgrid[0:size:step, 0:size:step]
    pts = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
    w, h = record.source_size
    outside = 0.0
    if w > 0 and h > 0:
        frame = align.transform_points(pts, align.invert_affine(record.image_to_face_mat))
        out = (frame[:, 0] < 0) | (frame[:, 1] < 0) | (frame[:, 0] > w - 1) | (frame[:, 1] > h - 1)
        outside = float(out.mean())
    small = image[::step, ::step]
    black = float((small.max(axis=2) <= 8).mean())
    return max(outside, black)


def thumbnail(image: np.ndarray, record: FaceRecord) -> np.ndarray:
    """``THUMB*THUMB*3`` float32 pixels for absolute-difference comparison."""
    return cv2.resize(image, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()


def identity(image: np.ndarray, record: FaceRecord) -> np.ndarray:
    from facelab.identity import embed_face

    return embed_face(image, record.landmarks)


def origin(image: np.ndarray | None, record: FaceRecord) -> tuple[str, int]:
    return record.source_filename, int(record.face_index)


# name -> (function, needs pixels)
FEATURES: dict[str, tuple[Callable[..., Any], bool]] = {
    "sharpness": (sharpness, True),
    "motion_sharpness": (motion_sharpness, True),
    "pose": (pose, False),
    "rect_size": (rect_size, False),
    "histogram": (histogram, True),
    "hsv": (hsv_means, True),
    "outside": (outside_fraction, True),
    "thumbnail": (thumbnail, True),
    "identity": (identity, True),
    "origin": (origin, False),
}

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def _key(path: Path, st: os.stat_result, name: str) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, name)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def compute(paths: list[Path], names: list[str], threads: int = 0, description: str = "features",
            errors: list[FaceFileError] | None = None) -> list[dict[str, Any] | None]:
    """Features ``names`` of every face file, as one dict per file (same order as ``paths``).

    Also returns each file's record under the key ``"record"``. With ``errors``
    given, a file that cannot be read gives ``None`` and its error is appended
    there; without it the error is raised.
    """
    for n in names:
        if n not in FEATURES:
            raise KeyError(n)
    pixels = any(FEATURES[n][1] for n in names)

    def one(path: Path) -> dict[str, Any]:
        st = path.stat()
        out: dict[str, Any] = {}
        with _lock:
            for n in names + ["record"]:
                k = _key(path, st, n)
                if k in _cache:
                    out[n] = _cache[k]
        missing = [n for n in names if n not in out]
        if not missing and "record" in out:
            return out
        if pixels and any(FEATURES[n][1] for n in missing):
            image, record = read_face(path)
        else:
            image, record = None, read_record(path)
        out["record"] = record
        for n in missing:
            out[n] = FEATURES[n][0](image, record)
        with _lock:
            for n in missing + ["record"]:
                _cache[_key(path, st, n)] = out[n]
        return out

    def guarded(path: Path) -> dict[str, Any] | FaceFileError:
        try:
            return one(path)
        except FaceFileError as e:
            if errors is None:
                raise
            return e

    workers = threads if threads > 0 else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            out = list(track(pool.map(guarded, paths), total=len(paths), description=description))
        except BaseException:
            # a cancelled job (or an error) stops after the faces in flight: map() submitted every face, and
            # leaving the pool would otherwise wait for all of them
            pool.shutdown(cancel_futures=True)
            raise
    if errors is not None:
        errors.extend(r for r in out if isinstance(r, FaceFileError))
    return [None if isinstance(r, FaceFileError) else r for r in out]
