"""Renaming many face files without losing one if the process is killed.

Two phases under a journal (JSON, written with fsync before anything moves):
every file first gets a temporary name in its target folder (which frees all
final names, so files can swap names), then each temporary name becomes the
final one. :func:`finish` completes a run that was interrupted in either phase;
a file still at its old name in phase 1 is simply moved on. Used by ``sort``
and ``faceset recover-names``.

Whatever happens, every face ends visible: a temporary (dot) name that cannot
take its final name goes back to its old name, or else to a free name beside
the final one, and the journal is removed. Every path in a plan and in a
journal read back must lie in one of the caller's folders; a journal that
names anything else is not replayed (its temporary files are given visible
names instead), so a journal planted in a shared face set moves nothing out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facelab.fileio import atomic_write_json


def _inside(path: str | Path, roots: list[Path]) -> bool:
    p = Path(path)
    if p.name in ("", ".", "..") or "\x00" in str(p):
        return False
    try:
        parent = p.parent.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(parent == r for r in roots)


def _roots(folders: list[Path]) -> list[Path]:
    return [Path(f).resolve() for f in folders]


def rename_all(moves: list[tuple[Path, Path]], journal: Path, tmp_prefix: str = ".renaming-",
               folders: list[Path] | None = None, warnings: list[str] | None = None) -> int:
    """Move each ``(source, target)``; returns the number of files moved.

    ``folders``: the only folders sources and targets may be in (default: the
    targets' folders); anything else raises ``ValueError`` before a file moves.
    A target that cannot be taken leaves its file at a visible name and adds a
    line to ``warnings``.
    """
    if not moves:
        return 0
    roots = _roots(folders if folders is not None else sorted({Path(d).parent for _, d in moves}))
    for src, dst in moves:
        if not (_inside(src, roots) and _inside(dst, roots)):
            raise ValueError(f"refusing to rename {src} -> {dst}: outside the face set")
    plan = [
        {"from": str(src), "tmp": str(Path(dst).parent / f"{tmp_prefix}{i:06d}{Path(dst).suffix}"), "to": str(dst)}
        for i, (src, dst) in enumerate(moves)
    ]
    journal.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(journal, {"phase": 1, "prefix": tmp_prefix, "moves": plan}, fsync=True)
    try:
        for m in plan:  # phase 1: everything to a temporary name
            os.replace(m["from"], m["tmp"])
    except OSError:
        _rollback(plan, warnings)
        journal.unlink(missing_ok=True)
        raise
    atomic_write_json(journal, {"phase": 2, "prefix": tmp_prefix, "moves": plan}, fsync=True)
    moved = _phase2(plan, warnings)
    journal.unlink()
    return moved


def finish(journal: Path, folders: list[Path], tmp_prefix: str, warnings: list[str] | None = None) -> int:
    """Complete an interrupted :func:`rename_all`; returns how many files it moved (0 if none was pending).

    A journal that cannot be read, or that names a path outside ``folders``, is
    not replayed: the temporary ``tmp_prefix`` files in ``folders`` get visible
    names instead and the journal is removed.
    """
    if not journal.exists():
        return 0
    roots = _roots(folders)
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
        plan = doc["moves"]
        if not isinstance(plan, list) or not all(
            isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("from", "tmp", "to")) for m in plan
        ):
            raise ValueError("malformed moves")
        for m in plan:
            if not all(_inside(m[k], roots) for k in ("from", "tmp", "to")):
                raise ValueError(f"it names {m['to']!r}, outside the face set")
            if not Path(m["tmp"]).name.startswith(tmp_prefix):
                raise ValueError(f"temporary name {Path(m['tmp']).name!r} is not one of facelab's")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        moved = reveal_hidden(folders, tmp_prefix, warnings)
        if warnings is not None:
            warnings.append(f"ignored the rename journal {journal.name} ({str(e)[:200]}); "
                            f"{moved} hidden face(s) given visible names instead")
        journal.unlink(missing_ok=True)
        return moved
    moved = 0
    if doc.get("phase", 1) == 1:
        for m in plan:
            if os.path.exists(m["from"]) and not os.path.exists(m["tmp"]):
                try:
                    os.replace(m["from"], m["tmp"])
                    moved += 1
                except OSError:
                    pass  # it stays at its old, visible name; phase 2 skips it
        atomic_write_json(journal, {**doc, "phase": 2}, fsync=True)
    moved += _phase2(plan, warnings)
    journal.unlink()
    return moved


def reveal_hidden(folders: list[Path], tmp_prefix: str, warnings: list[str] | None = None) -> int:
    """Give every leftover ``tmp_prefix*`` file in ``folders`` a visible name; returns how many."""
    n = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.name.startswith(tmp_prefix):
                target = _free_name(folder / f"recovered_{p.name[len(tmp_prefix):]}")
                os.replace(p, target)
                if warnings is not None:
                    warnings.append(f"{p.name} was hidden by an interrupted rename: now {target.name}")
                n += 1
    return n


def _free_name(path: Path) -> Path:
    candidate, k = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{k}{path.suffix}")
        k += 1
    return candidate


def _settle(tmp: str, to: str, old: str, warnings: list[str] | None) -> bool:
    """Move ``tmp`` to ``to``; if that fails, back to ``old``, else to a free name beside ``to``.
    Returns whether the file reached ``to``."""
    if os.path.lexists(to):
        why = "a file of that name exists"  # never overwrite a face that is not part of the plan
    else:
        try:
            os.replace(tmp, to)
            return True
        except OSError as e:
            why = e.strerror or str(e)
    for fallback in ([old] if not os.path.exists(old) else []) + [str(_free_name(Path(to).with_name("recovered" + Path(to).suffix)))]:
        try:
            os.replace(tmp, fallback)
            if warnings is not None:
                warnings.append(f"could not name a face {Path(to).name} ({why}); it is {Path(fallback).name}")
            return False
        except OSError:
            continue
    raise OSError(f"cannot give {tmp} a visible name ({why})")


def _rollback(plan: list[dict[str, str]], warnings: list[str] | None) -> None:
    for m in plan:
        if os.path.exists(m["tmp"]):
            _settle(m["tmp"], m["from"], m["from"], warnings)


def _phase2(plan: list[dict[str, str]], warnings: list[str] | None) -> int:
    moved = 0
    for m in plan:
        if os.path.exists(m["tmp"]):
            moved += _settle(m["tmp"], m["to"], m["from"], warnings)
    return moved
