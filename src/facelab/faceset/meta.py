"""``facelab faceset save-meta`` / ``restore-meta``: the face records to a JSON file and back, around an outside image editor."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from facelab.errors import FaceFileError, WorkspaceError
from facelab.face_checks import MAX_DEPTH, MAX_DOCUMENT_BYTES, check_json_tree, safe_name
from facelab.faceimage import FaceRecord, embed_jpeg, embed_png, read_record
from facelab.fileio import atomic_write_bytes, atomic_write_json
from facelab.faceset.files import face_files


META_NAME = "meta.json"
MAX_META_BYTES = 64 * MAX_DOCUMENT_BYTES




def save_meta(folder: Path) -> tuple[int, Path, list[str]]:
    """Write every face's metadata to ``folder/meta.json`` keyed by file name."""
    folder = Path(folder)
    faces, warnings = {}, []
    for p in face_files(folder):
        try:
            faces[p.name] = read_record(p).to_dict()
        except FaceFileError as e:
            warnings.append(str(e))
    if not faces:
        raise WorkspaceError(f"{folder} has no faces with facelab metadata", "run `facelab extract` first")
    target = folder / META_NAME
    atomic_write_json(target, {"facelab_meta": 1, "faces": faces})
    return len(faces), target, warnings


def restore_meta(folder: Path) -> tuple[int, list[str]]:
    """Write the metadata saved by :func:`save_meta` back into the (edited) faces.

    ``meta.json`` is read under the same contract as a face file: a file that is
    not a ``{"faces": {name: record}}`` object of plain JSON within the limits is
    refused as a whole; an entry whose name is not a plain file name, or whose
    record fails a check, is skipped with one line naming it.
    """
    folder = Path(folder)
    meta = folder / META_NAME
    if not meta.is_file():
        raise WorkspaceError(f"{meta} does not exist", "run `facelab faceset save-meta` before editing the faces")
    hint = "run save-meta again on the unedited faces"
    try:
        raw = meta.read_bytes()
        if len(raw) > MAX_META_BYTES:
            raise ValueError(f"it is {len(raw)} bytes long (at most {MAX_META_BYTES})")
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        if not isinstance(doc, dict) or not isinstance(doc.get("faces"), dict):
            raise ValueError("it is not an object with a 'faces' object")
        check_json_tree(doc, MAX_DEPTH + 2)
        faces = doc["faces"]
    except (ValueError, RecursionError, OSError) as e:
        why = "it is nested too deep" if isinstance(e, RecursionError) else str(e)[:300]
        raise FaceFileError(f"{meta} is not a valid metadata file: {why}", hint) from None
    n, warnings = 0, []
    for name, d in faces.items():
        try:
            safe_name(name)
            record = FaceRecord.from_dict(d)
        except ValueError as e:
            warnings.append(f"{meta.name}: entry {name[:80]!r} skipped: {str(e)[:200]}")
            continue
        p = folder / name
        if not p.is_file():
            warnings.append(f"{name} is gone (deleted or renamed in the editor); its metadata is not restored")
            continue
        data = p.read_bytes()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            warnings.append(f"{name} cannot be decoded; skipped")
            continue
        if img.shape[0] != record.size or img.shape[1] != record.size:
            warnings.append(f"{name} is {img.shape[1]}x{img.shape[0]} now but was {record.size} px; skipped (its landmarks"
                            " would not fit: resize it back to its size in the editor)")
            continue
        try:
            new = embed_png(data, record) if data.startswith(b"\x89PNG") else embed_jpeg(data, record)
        except ValueError as e:
            warnings.append(f"{name}: {e}; skipped")
            continue
        atomic_write_bytes(p, new)
        n += 1
    return n, warnings


def _no_constant(name: str):
    raise ValueError(f"it holds {name}, which is not a number")
