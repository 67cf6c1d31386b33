"""``facelab faceset to-jpg``: PNG faces to JPEG, keeping their records."""

from __future__ import annotations

from pathlib import Path

from facelab.errors import FaceFileError, FacelabError
from facelab.faceimage import face_bytes, read_face, record_from_bytes
from facelab.fileio import atomic_write_bytes
from facelab.faceset.files import face_files


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
