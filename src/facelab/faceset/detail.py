"""One face in detail, for the UI's face view: its record as JSON, the face with its landmarks drawn,
its hull mask, and the frame it was cut from (ids as :mod:`facelab.faceset.faceid` takes them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facelab import align
from facelab.errors import FaceFileError, WorkspaceError
from facelab.faceimage import read_face, read_record
from facelab.faceset import features
from facelab.faceset.debug import debug_image
from facelab.faceset.faceid import face_id, frame_path, locate
from facelab.workspace import Workspace



def _summary(value: Any) -> Any:
    """An ``extra`` value as the detail view shows it: numbers, short strings and short lists of them
    as they are; anything bigger as a phrase saying what it is."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, list):
        small = len(value) <= 8 and all(v is None or isinstance(v, (bool, int, float)) for v in value)
        return value if small else f"list of {len(value)}"
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    return type(value).__name__


def _points(a: np.ndarray) -> list:
    return np.round(np.asarray(a, np.float64), 2).tolist()


def face_detail(ws: Workspace, file_id: str) -> dict[str, Any]:
    """Everything the detail view shows of one face, JSON-able: file, record (landmarks as ``[[x, y], ...]``
    in face and frame pixels), pose, blur score (``None`` when the pixels cannot be read), the source frame's
    id (``None`` when it is not there) and ``extra`` summarized (:func:`_summary`). Raises
    :class:`~facelab.errors.FaceFileError` for a file that has no valid face record."""
    side, path = locate(ws, file_id)
    st = path.stat()
    try:
        image, record = read_face(path)
        blur: float | None = float(features.sharpness(image, record))
    except FaceFileError:
        record, blur = read_record(path), None  # a record without readable pixels is still shown
    yaw, pitch = features.pose(None, record)
    return {
        "id": file_id, "name": path.name, "side": side, "in_trash": path.parent == ws.trash_dir(side),
        "file_bytes": st.st_size, "modified": st.st_mtime,
        "face_type": record.face_type, "size": int(record.size), "face_index": int(record.face_index),
        "source_filename": record.source_filename, "source_frame": _frame_id(ws, side, record.source_filename),
        "source_size": [int(v) for v in record.source_size], "source_rect": [round(float(v), 2) for v in record.source_rect],
        "landmarks": _points(record.landmarks), "source_landmarks": _points(record.source_landmarks),
        "image_to_face_mat": np.asarray(record.image_to_face_mat, np.float64).tolist(),
        "yaw": round(float(yaw), 2), "pitch": round(float(pitch), 2), "blur_score": blur,
        "extra": {str(k): _summary(v) for k, v in record.extra.items()},
    }


def face_overlay(ws: Workspace, file_id: str) -> np.ndarray:
    """The face with its landmarks, hull and face type drawn (:func:`facelab.faceset.debug.debug_image`):
    ``(S, S, 3) uint8`` BGR, ``S`` the face size but at least 256."""
    _, path = locate(ws, file_id)
    image, record = read_face(path)
    return debug_image(image, record)


def face_mask(ws: Workspace, file_id: str) -> np.ndarray:
    """The face's hull mask from its landmarks (as training and merging use it without a trained mask):
    ``(size, size) uint8``, 0 or 255."""
    _, path = locate(ws, file_id)
    record = read_record(path)
    mask = align.hull_mask(np.asarray(record.landmarks, np.float32), (record.size, record.size), record.face_type)
    return (mask > 0.5).astype(np.uint8) * 255


def source_frame_id(ws: Workspace, file_id: str) -> str | None:
    """Id of the frame the face was cut from (``data_src/00012.png``), ``None`` when that frame is not there."""
    side, path = locate(ws, file_id)
    return _frame_id(ws, side, read_record(path).source_filename)


def _frame_id(ws: Workspace, side: str, name: str) -> str | None:
    try:
        return face_id(ws, frame_path(ws, f"{face_id(ws, ws.frames_dir(side))}/{name}"))
    except WorkspaceError:
        return None
