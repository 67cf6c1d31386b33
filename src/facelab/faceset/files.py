"""The face files of a folder of aligned faces (what every face-set command works on)."""

from __future__ import annotations

from pathlib import Path



FACE_EXTS = (".jpg", ".jpeg", ".png")


def face_files(folder: Path) -> list[Path]:
    """Face images of a folder (no ``*_debug`` images, no hidden/temporary files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in FACE_EXTS and not p.stem.endswith("_debug") and not p.name.startswith(".")
    )
