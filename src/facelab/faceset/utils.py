"""Face-set utilities: landmark debug images, original names, resize,
metadata save/restore for outside editors, PNG -> JPG.

Every function works on one folder of aligned faces and returns counts; the
stage functions in :mod:`facelab.stages.faceset` wrap them for the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facelab import align
from facelab.errors import FaceFileError, FacelabError, WorkspaceError
from facelab.face_checks import MAX_DEPTH, MAX_DOCUMENT_BYTES, check_json_tree, safe_name
from facelab.faceimage import (
    FaceRecord,
    embed_jpeg,
    embed_png,
    face_bytes,
    read_face,
    read_record,
    record_from_bytes,
)
from facelab.faceset import renames
from facelab.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    encode_image,
    read_image,
)
from facelab.types import FaceType

FACE_EXTS = (".jpg", ".jpeg", ".png")
META_NAME = "meta.json"
MAX_META_BYTES = 64 * MAX_DOCUMENT_BYTES


def face_files(folder: Path) -> list[Path]:
    """Face images of a folder (no ``*_debug`` images, no hidden/temporary files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in FACE_EXTS and not p.stem.endswith("_debug") and not p.name.startswith(".")
    )


# --- landmark debug images --------------------------------------------------------------


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


# --- original file names ----------------------------------------------------------------

JOURNAL = "recover_names.json"


def original_name(record: FaceRecord, suffix: str) -> str:
    """The face's first file name: ``extra["original_filename"]``, else ``<frame stem>_<face index><suffix>``;
    always a plain file name (never a path), whatever the metadata says."""
    suffix = suffix.lower()
    stored = record.extra.get("original_filename")
    for name in (stored, f"{Path(record.source_filename).stem}_{record.face_index}{suffix}"):
        if not isinstance(name, str):
            continue
        if Path(name).suffix.lower() != suffix:  # keep the file's real type: a face named "x" would be hidden
            name = Path(name).stem + suffix
        try:
            return safe_name(name)
        except ValueError:
            continue
    return f"face_{record.face_index}{suffix}"


@dataclass
class RecoverResult:
    renamed: int = 0
    unchanged: int = 0
    from_trash: int = 0
    warnings: list[str] = field(default_factory=list)


def recover_names(aligned: Path, state_dir: Path, trash: Path | None = None, also_finish: tuple[Path, ...] = ()) -> RecoverResult:
    """Give every face its original file name back (and bring back ``trash`` faces).

    Two phases: every file that moves first gets a unique temporary name in
    ``aligned``, the plan is written to ``state_dir/recover_names.json``, then
    each gets its final name. A run interrupted in phase 2 is finished by the
    next run (also in the folders ``also_finish``: a trash an earlier run may have
    included); no file is ever overwritten.
    """
    aligned, state_dir = Path(aligned), Path(state_dir)
    res = RecoverResult()
    state_dir.mkdir(parents=True, exist_ok=True)
    journal = state_dir / JOURNAL
    folders = [aligned] + ([trash] if trash is not None else [])
    # an earlier run may have included the trash
    renames.finish(journal, folders + list(also_finish), ".recover-", res.warnings)
    sources = [(p, False) for p in face_files(aligned)]
    if trash is not None:
        sources += [(p, True) for p in face_files(trash)]
    plan: list[tuple[Path, str, bool]] = []
    keep: set[str] = set()
    for p, in_trash in sources:
        try:
            rec = read_record(p)
        except FaceFileError as e:
            res.warnings.append(f"{p.name} kept as it is: {e.message}")
            if not in_trash:
                keep.add(p.name)
            continue
        plan.append((p, original_name(rec, p.suffix), in_trash))
    # faces that already have their name keep it
    plan.sort(key=lambda t: not (t[0].parent == aligned and t[0].name == t[1]))
    taken = set(keep)
    final: list[tuple[Path, str]] = []
    for p, want, in_trash in plan:
        name, k = want, 1
        while name in taken:
            name = f"{Path(want).stem}_{k}{Path(want).suffix}"
            k += 1
        if name != want:
            res.warnings.append(f"{p.name}: {want} is taken, named {name}")
        taken.add(name)
        if p.parent == aligned and p.name == name:
            res.unchanged += 1
            continue
        final.append((p, name))
        res.from_trash += in_trash
    res.renamed = renames.rename_all([(p, aligned / name) for p, name in final], journal, ".recover-",
                                     folders=folders, warnings=res.warnings)
    return res


# --- resize ---------------------------------------------------------------------------


def _resample_ok(old: FaceRecord, new_mat: np.ndarray, size: int) -> np.ndarray | None:
    """old-face px -> new-face px when the new face lies inside the old one and is not enlarged."""
    m_old = np.vstack([np.asarray(old.image_to_face_mat, np.float64), [0, 0, 1]])
    m_new = np.vstack([new_mat, [0, 0, 1]])
    to_new = (m_new @ np.linalg.inv(m_old))[:2]
    scale = float(np.sqrt(abs(np.linalg.det(to_new[:, :2]))))
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    back = align.transform_points(corners, align.invert_affine(to_new))
    inside = bool(np.all(back >= -1.0) and np.all(back <= old.size + 1.0))
    return to_new if scale <= 1.0 + 1e-6 and inside else None


def resize_face(path: Path, frames_dir: Path, size: int, face_type: str | None = None, jpeg_quality: int = 95) -> str:
    """Re-cut one face at ``size`` (and ``face_type``); returns 'frame' or 'resampled'."""
    image, rec = read_face(path)
    ftype = FaceType.parse(face_type or rec.face_type).value
    src_lm = np.asarray(rec.source_landmarks, np.float64)
    mat = align.face_matrix(src_lm, ftype, size)
    frame_path = Path(frames_dir) / safe_name(rec.source_filename)  # checked by the reader; never a path
    how = "frame"
    if frame_path.is_file():
        face = align.warp_image(read_image(frame_path), mat, size)
    else:
        to_new = _resample_ok(rec, mat, size)
        if to_new is None:
            raise WorkspaceError(
                f"cannot resize {path.name}: its frame {frame_path} is missing and the face itself is too small for the new size/type",
                "put the frame back (run `facelab frames`), or resize only down within the same face type",
            )
        face = cv2.warpAffine(image, to_new, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        how = "resampled"
    new = rec.replace(
        face_type=ftype, size=int(size), image_to_face_mat=mat, landmarks=align.transform_points(src_lm, mat)
    )
    atomic_write_bytes(path, face_bytes(face, new, path.suffix, jpeg_quality))
    return how


# --- metadata for outside editors -------------------------------------------------------------


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


# --- PNG -> JPG -----------------------------------------------------------------------------


def to_jpg(folder: Path, quality: int = 95) -> tuple[int, list[str]]:
    """Convert every aligned PNG of ``folder`` to JPG with the same metadata (the PNG is removed)."""
    if not 1 <= quality <= 100:
        raise FacelabError(f"JPEG quality {quality} is out of range", "use 1..100 (default 95)")
    n, warnings = 0, []
    for p in face_files(folder):
        if p.suffix.lower() != ".png":
            continue
        target = p.with_suffix(".jpg")
        if target.exists():
            warnings.append(f"{p.name}: {target.name} exists already; skipped")
            continue
        try:
            image, record = read_face(p)
        except FaceFileError as e:
            warnings.append(str(e))
            continue
        data = face_bytes(image, record, ".jpg", quality)
        record_from_bytes(data, str(target))  # check before the PNG goes
        atomic_write_bytes(target, data)
        p.unlink()
        n += 1
    return n, warnings
