"""Renaming many face files without losing one if the process is killed.

Two phases under a journal (JSON, written with fsync before anything moves):
every file first gets a temporary name in its target folder (which frees all
final names, so files can swap names), then each temporary name becomes the
final one. :func:`finish` completes a run that was interrupted in either phase;
a file still at its old name in phase 1 is simply moved on. Used by ``sort``
and ``faceset recover-names``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facelab.fileio import atomic_write_json


def rename_all(moves: list[tuple[Path, Path]], journal: Path, tmp_prefix: str = ".renaming-") -> int:
    """Move each ``(source, target)``; returns the number of files moved."""
    if not moves:
        return 0
    plan = [
        {"from": str(src), "tmp": str(Path(dst).parent / f"{tmp_prefix}{i:06d}{Path(dst).suffix}"), "to": str(dst)}
        for i, (src, dst) in enumerate(moves)
    ]
    journal.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(journal, {"phase": 1, "moves": plan}, fsync=True)
    for m in plan:  # phase 1: everything to a temporary name
        os.replace(m["from"], m["tmp"])
    atomic_write_json(journal, {"phase": 2, "moves": plan}, fsync=True)
    moved = _phase2(plan)
    journal.unlink()
    return moved


def finish(journal: Path) -> int:
    """Complete an interrupted :func:`rename_all`; returns how many files it moved (0 if none was pending)."""
    if not journal.exists():
        return 0
    doc = json.loads(journal.read_text())
    plan, moved = doc["moves"], 0
    if doc.get("phase", 1) == 1:
        for m in plan:
            if os.path.exists(m["from"]) and not os.path.exists(m["tmp"]):
                os.replace(m["from"], m["tmp"])
                moved += 1
        atomic_write_json(journal, {**doc, "phase": 2}, fsync=True)
    moved += _phase2(plan)
    journal.unlink()
    return moved


def _phase2(plan: list[dict[str, str]]) -> int:
    moved = 0
    for m in plan:
        if os.path.exists(m["tmp"]):
            os.replace(m["tmp"], m["to"])
            moved += 1
    return moved
