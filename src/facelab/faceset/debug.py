"""``facelab faceset debug-landmarks``: each face with its landmarks, hull and crop drawn, beside it as ``<name>_debug.jpg``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facelab import align
from facelab.errors import FaceFileError, FacelabError
from facelab.faceimage import FaceRecord, read_face
from facelab.fileio import atomic_write_bytes, encode_image
from facelab.types import FaceType
from facelab.faceset.files import face_files


def debug_image(image: np.ndarray, record: FaceRecord) -> np.ndarray:
    """The face (scaled to >= 256 px) with landmarks (green), hull (blue), the
    full-face square (yellow, when the face type is not full) and the face type."""
    k = max(1.0, 256.0 / max(image.shape[:2]))
    out = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC) if k > 1 else image.copy()
    lm = np.asarray(record.landmarks, np.float64) * k
    hull = cv2.convexHull(np.round(lm).astype(np.int32))
    cv2.polylines(out, [hull], True, (255, 0, 0), 1, cv2.LINE_AA)
    for x, y in lm:
        cv2.circle(out, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1, cv2.LINE_AA)
    h, w = out.shape[:2]
    cv2.rectangle(out, (0, 0), (w - 1, h - 1), (0, 255, 255), 2)
    if record.face_type != FaceType.FULL.value:
        try:
            full = align.face_matrix(record.source_landmarks, FaceType.FULL, record.size)
            mine = align.face_matrix(record.source_landmarks, record.face_type, record.size)
            to_mine = np.vstack([mine, [0, 0, 1]]) @ np.vstack([align.invert_affine(full), [0, 0, 1]])
            s = record.size
            sq = align.transform_points(np.array([[0, 0], [s, 0], [s, s], [0, s]], np.float64), to_mine[:2]) * k
            cv2.polylines(out, [np.round(sq).astype(np.int32)], True, (0, 200, 255), 1, cv2.LINE_AA)
        except (ValueError, FacelabError):
            pass
    cv2.putText(out, f"{record.face_type} {record.size}px", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    return out


def write_debug(folder: Path) -> tuple[int, list[str]]:
    """Write ``<stem>_debug.jpg`` beside each face; returns (count, warnings)."""
    n, warnings = 0, []
    for p in face_files(folder):
        try:
            image, record = read_face(p)
        except FaceFileError as e:
            warnings.append(str(e))
            continue
        atomic_write_bytes(p.with_name(p.stem + "_debug.jpg"), encode_image(debug_image(image, record), ".jpg", 90))
        n += 1
    return n, warnings


def remove_debug(folder: Path) -> int:
    n = 0
    for p in sorted(Path(folder).glob("*_debug.jpg")):
        p.unlink()
        n += 1
    return n
