"""Faces kept out of training, to measure reconstruction on faces the model never saw.

``facelab train --holdout N`` picks N faces of each side when a model is
created: evenly spaced through the face set in file-name order (so the
choice is deterministic and spread over the clip, not one scene), and writes
them to ``model/<name>/holdout.json``::

    {"version": 1, "count": N,
     "src": ["00012_0.jpg", ...], "dst": [...],              file names at creation
     "src_keys": [["00012.png", 0], ...], "dst_keys": [...]}  (frame, face index) of each

The keys follow a face through renames (``sort``), so a later run keeps
exactly the same faces out; the count is fixed at creation, as a change would
put faces the model trained on into the "unseen" set. ``facelab eval
--reconstruction`` reads the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from facelab.errors import FaceFileError, SettingsError
from facelab.faceimage import read_record
from facelab.fileio import atomic_write_json

FILE = "holdout.json"
MAX_HOLDOUT = 10_000


def pick(paths: list[Path], n: int) -> list[Path]:
    """``n`` of ``paths`` (sorted by name), evenly spaced: the middle of each of ``n`` equal slices."""
    paths = sorted(paths, key=lambda p: p.name)
    if n <= 0:
        return []
    if n >= len(paths):
        raise SettingsError(f"holdout: {n} faces of a set of {len(paths)} leaves none to train on",
                            f"use --holdout {max(0, len(paths) // 10)} or less (about a tenth of the set)")
    return [paths[int((k + 0.5) * len(paths) / n)] for k in range(n)]


def _key(path: Path) -> tuple[str, int] | None:
    try:
        rec = read_record(path)
    except FaceFileError:
        return None
    return rec.source_filename, int(rec.face_index)


def create(model_dir: Path, sides: dict[str, list[Path]], n: int, prefix: str = "") -> dict:
    """Choose and record the held-out faces of each side; returns the document written."""
    doc: dict = {"version": 1, "count": n}
    for side, paths in sides.items():
        held = pick(paths, n)
        doc[side] = [p.name for p in held]
        doc[f"{side}_keys"] = [list(k) if (k := _key(p)) else None for p in held]
    atomic_write_json(Path(model_dir) / f"{prefix}{FILE}", doc)
    return doc


def load(model_dir: Path, prefix: str = "") -> dict | None:
    """The model's holdout record, or None when it has none."""
    path = Path(model_dir) / f"{prefix}{FILE}"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("count"), int):
            raise ValueError("not a holdout record")
    except (OSError, ValueError) as e:
        raise SettingsError(f"{path} cannot be read ({e})", "restore it from a backup; without it eval cannot tell seen from unseen faces") from None
    return doc


def split(paths: list[Path], doc: dict | None, side: str) -> tuple[list[Path], list[Path]]:
    """``(train, held)``: the faces to train on and the held-out ones, matched by (frame, face index) when the
    record has keys (a renamed face stays held out), else by file name."""
    if not doc:
        return list(paths), []
    keys = {tuple(k) for k in doc.get(f"{side}_keys") or [] if k}
    names = set(doc.get(side) or [])
    train, held = [], []
    for p in paths:
        k = _key(p) if keys else None
        (held if (k in keys if k else p.name in names) else train).append(p)
    return train, held
