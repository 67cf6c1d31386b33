"""Thumbnails of face files for the UI's grid, cached on disk.

A thumbnail is a JPEG in the side's :meth:`~facelab.workspace.Workspace.thumbs_dir`,
``<px>/<inode>-<mtime_ns>-<size>.jpg`` (hex): the name says which version of
which file it shows, so a face that is rewritten gets a new thumbnail, while
renaming it (``facelab sort``) or moving it to the trash and back keeps its own.
Two threads asking for the same missing thumbnail both make it and each writes
a temporary file of its own before the rename, so either finished file is whole.
:func:`prune_thumbnails` removes those of faces that are gone or changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from facelab.errors import FaceFileError, SettingsError
from facelab.faceimage import image_dimensions
from facelab.faceset.faceid import locate
from facelab.faceset.files import face_files
from facelab.fileio import atomic_write_bytes, encode_image
from facelab.workspace import Workspace, check_side

SIZES = (16, 1024)  # smallest and largest thumbnail side in pixels
MAX_SOURCE = 8192  # a file claiming more pixels per side is not decoded
QUALITY = 85
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _name(path: Path, st: os.stat_result) -> str:
    who = f"{st.st_ino:x}" if st.st_ino else path.name  # some file systems have no inode numbers
    return f"{who}-{st.st_mtime_ns:x}-{st.st_size:x}.jpg"


def thumbnail_image(data: bytes, size: int, name: str = "<bytes>") -> np.ndarray:
    """The encoded image ``data`` shrunk to fit ``size`` x ``size`` (aspect kept; never enlarged):
    ``(h, w, 3) uint8`` BGR with ``max(h, w) == min(size, image side)``."""
    try:
        w, h = image_dimensions(data)
    except ValueError as e:
        raise FaceFileError(f"{name} is not a readable image: {e}", "delete it from the face set") from None
    if not (0 < w <= MAX_SOURCE and 0 < h <= MAX_SOURCE):
        raise FaceFileError(f"{name} claims {w}x{h} pixels (at most {MAX_SOURCE} per side)", "delete it from the face set")
    # a JPEG decoder can shrink by 2, 4 or 8 while decoding: much faster for a large face and a small thumbnail
    k = next((k for k in (8, 4, 2) if max(w, h) >= size * k), 1)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[k])
    if image is None:
        raise FaceFileError(f"{name} cannot be decoded", "delete it from the face set")
    k = size / max(image.shape[:2])
    if k < 1:
        dsize = (max(1, round(image.shape[1] * k)), max(1, round(image.shape[0] * k)))
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
    return image


def thumbnail(ws: Workspace, file_id: str, size: int = 128) -> Path:
    """Path of the JPEG thumbnail (at most ``size`` px a side) of the face ``file_id`` (an id as
    :func:`facelab.faceset.faceid.locate` takes it), made if missing or out of date.

    Raises :class:`~facelab.faceset.faceid.BadFaceId` for an id outside the face folders,
    :class:`~facelab.faceset.faceid.FaceNotFound` for a missing file and
    :class:`~facelab.errors.FaceFileError` for a file that is not an image.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not SIZES[0] <= size <= SIZES[1]:
        raise SettingsError(f"thumbnail size must be {SIZES[0]}..{SIZES[1]} px, got {size!r}", "use e.g. 128")
    side, path = locate(ws, file_id)
    st = path.stat()
    thumb = ws.thumbs_dir(side) / str(size) / _name(path, st)
    if thumb.is_file():
        return thumb
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FaceFileError(f"cannot read {file_id}: {e.strerror}", "list the faces again") from e
    image = thumbnail_image(data, size, file_id)
    thumb.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(thumb, encode_image(image, ".jpg", QUALITY), shared=True)
    return thumb


def prune_thumbnails(ws: Workspace, side: str) -> int:
    """Delete the side's thumbnails of faces that are gone or changed; returns how many."""
    current = set()
    for folder in (ws.aligned_dir(check_side(side)), ws.trash_dir(side)):
        for p in face_files(folder):
            try:
                current.add(_name(p, p.stat()))
            except FileNotFoundError:
                continue
    removed = 0
    root = ws.thumbs_dir(side)
    for sub in sorted(root.iterdir()) if root.is_dir() else []:
        for t in sorted(sub.glob("*.jpg")) if sub.is_dir() else []:
            if t.name not in current:
                t.unlink(missing_ok=True)
                removed += 1
    return removed
