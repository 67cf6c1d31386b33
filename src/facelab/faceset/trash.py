"""Moving faces to the side's trash and back, with undo and redo (the UI's face-set page).

Every change is an *action*: a list of moves of one file each between
``data_<side>/aligned`` and ``data_<side>/aligned_trash`` (the folder
``sort --by final`` fills), each one ``os.replace``, so a file is always whole
in one folder or the other. The side's :meth:`~facelab.workspace.Workspace.trash_journal`
keeps the actions, one JSON line each, appended and flushed to disk before the
first file moves::

    {"op": "do", "id": "3f2a9c01b7de", "kind": "delete", "moves": [["aligned", "00012_0.jpg", "trash", "00012_0.jpg"]]}
    {"op": "end", "id": "3f2a9c01b7de"}
    {"op": "undo", "id": "3f2a9c01b7de", "kind": "delete", "moves": [["trash", "00012_0.jpg", "aligned", "00012_0.jpg"]]}
    {"op": "end", "id": "3f2a9c01b7de"}

``undo`` moves back the files of the last action done (or redone), ``redo`` moves
again those of the last action undone; a new action forgets what was undone. A
process killed midway leaves a last line without its ``end``: the next call
first finishes that action (moves the files still at their source); if a file
cannot move, the ones moved are put back and the action is marked ``abort``.
A file taken since (deleted by hand, renamed by ``facelab sort``) is left out of an
undo. Names in the journal are checked when it is read (plain file names in one
of the two folders), so a journal from elsewhere cannot move a file out of the set.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab.errors import WorkspaceError
from facelab.face_checks import safe_name
from facelab.faceset.faceid import BadFaceId, face_id
from facelab.faceset.files import FACE_EXTS
from facelab.fileio import path_lock, write_error
from facelab.workspace import Workspace, check_side

KINDS = {"delete": ("aligned", "trash"), "restore": ("trash", "aligned")}  # kind -> (from folder, to folder)


@dataclass(frozen=True)
class Action:
    """What one call moved. ``op``: ``do``, ``undo`` or ``redo``; ``kind``: ``delete`` or ``restore``;
    ``moved``: ``(from id, to id)`` per file; ``missing``: names asked for (or recorded) that were not there."""

    id: str
    op: str
    kind: str
    moved: list[tuple[str, str]]
    missing: list[str]



def _folder(ws: Workspace, side: str, key: str) -> Path:
    return ws.aligned_dir(side) if key == "aligned" else ws.trash_dir(side)


def _face_name(name: Any) -> str:
    try:
        safe_name(name)
    except ValueError as e:
        raise BadFaceId(f"face name {str(name)[:200]!r} refused: {e}", "give plain file names such as 00012_0.jpg") from None
    if Path(name).suffix.lower() not in FACE_EXTS:
        raise BadFaceId(f"{name!r} is not a face file name (.jpg or .png)", "give plain file names such as 00012_0.jpg")
    return name


# --- the journal ---------------------------------------------------------------------------------


def _valid_line(d: Any) -> bool:
    if not isinstance(d, dict) or not isinstance(d.get("id"), str):
        return False
    if d.get("op") in ("end", "abort"):
        return True
    if d.get("op") not in ("do", "undo", "redo") or d.get("kind") not in KINDS or not isinstance(d.get("moves"), list):
        return False
    for m in d["moves"]:
        if not (isinstance(m, list) and len(m) == 4 and m[0] in ("aligned", "trash") and m[2] in ("aligned", "trash")
                and m[0] != m[2]):
            return False
        try:
            _face_name(m[1]), _face_name(m[3])
        except BadFaceId:
            return False
    return True


def _read(path: Path) -> list[dict[str, Any]]:
    """The journal's valid lines (a line torn by a kill, or not facelab's, is skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if _valid_line(d):
            out.append(d)
    return out


def _replay(lines: list[dict[str, Any]]) -> tuple[list[dict], list[dict], dict | None]:
    """``(done, undone, pending)``: the actions that can be undone and redone (last = next), each as the
    line that last moved its files, and the line of an action that has no ``end`` yet."""
    done: list[dict] = []
    undone: list[dict] = []
    pending = None
    for d in lines:
        if d["op"] in ("do", "undo", "redo"):
            pending = d
            continue
        if pending is None or d["id"] != pending["id"]:
            continue
        if d["op"] == "end":
            if pending["op"] == "do":
                done.append(pending)
                undone.clear()
            elif pending["op"] == "undo" and done and done[-1]["id"] == pending["id"]:
                undone.append({**done.pop(), "moves": pending["moves"]})
            elif pending["op"] == "redo" and undone and undone[-1]["id"] == pending["id"]:
                done.append({**undone.pop(), "moves": pending["moves"]})
        pending = None
    return done, undone, pending


def _append(path: Path, d: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(d, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise (write_error(e, path) or e) from e


# --- moving --------------------------------------------------------------------------------------


def _free(folder: Path, name: str, taken: set[str]) -> str:
    """``name``, or ``<stem>_<k><ext>``: a name not on disk in ``folder`` and not in ``taken`` (then taken)."""
    stem, ext = os.path.splitext(name)
    candidate, k = name, 1
    while candidate in taken or os.path.lexists(folder / candidate):
        candidate, k = f"{stem}_{k}{ext}", k + 1
    taken.add(candidate)
    return candidate


def _plan(ws: Workspace, side: str, requests: list[tuple[str, str, str, str]]) -> tuple[list[list[str]], list[str]]:
    """``(moves, missing)`` for ``(from folder, name, to folder, wanted name)`` requests: each file that is
    there gets the wanted name in its target folder, or a free one beside it when that is taken."""
    taken: set[str] = set()
    plan, missing = [], []
    for src, name, dst, want in requests:
        if not (_folder(ws, side, src) / name).is_file():
            missing.append(name)
            continue
        plan.append([src, name, dst, _free(_folder(ws, side, dst), want, taken)])
    return plan, missing


def _check_trash(ws: Workspace, side: str) -> None:
    trash = ws.trash_dir(side)
    if not trash.resolve().is_relative_to(ws.root.resolve()):
        raise WorkspaceError(f"{trash} leads outside the workspace ({trash.resolve()})",
                             "make data_<side>/aligned_trash a plain folder of the workspace")
    trash.mkdir(parents=True, exist_ok=True)


def _run(ws: Workspace, side: str, line: dict[str, Any], missing: list[str], resume: bool = False) -> Action:
    """Append ``line`` (unless ``resume``: it is the journal's last), move its files, append ``end`` (or, when
    a file cannot move, put back the moved ones and append ``abort``). A file already at its target counts as moved."""
    journal = ws.trash_journal(side)
    if not resume:
        _append(journal, line)
    moved: list[list[str]] = []
    try:
        for m in line["moves"]:
            src, dst = _folder(ws, side, m[0]) / m[1], _folder(ws, side, m[2]) / m[3]
            if os.path.lexists(src) and not os.path.lexists(dst):
                os.replace(src, dst)
            if not os.path.lexists(src) and os.path.lexists(dst):
                moved.append(m)
    except OSError as e:
        for m in reversed(moved):
            os.replace(_folder(ws, side, m[2]) / m[3], _folder(ws, side, m[0]) / m[1])
        _append(journal, {"op": "abort", "id": line["id"]})
        raise (write_error(e) or WorkspaceError(f"could not move a face: {e}", "nothing was moved; check the folders")) from e
    _append(journal, {"op": "end", "id": line["id"]})
    ids = [(face_id(ws, _folder(ws, side, m[0]) / m[1]), face_id(ws, _folder(ws, side, m[2]) / m[3])) for m in moved]
    return Action(line["id"], line["op"], line["kind"], ids, missing)


def recover(ws: Workspace, side: str) -> Action | None:
    """Finish an action a killed process left half done (see the module docstring); ``None`` if there was none."""
    journal = ws.trash_journal(check_side(side))
    with path_lock(journal):
        return _recover(ws, side)


def _recover(ws: Workspace, side: str) -> Action | None:
    _, _, pending = _replay(_read(ws.trash_journal(side)))
    return _run(ws, side, pending, [], resume=True) if pending is not None else None


def _new(ws: Workspace, side: str, kind: str, names: list[str]) -> Action:
    check_side(side)
    names = list(dict.fromkeys(_face_name(n) for n in names))  # every name checked before anything moves
    src, dst = KINDS[kind]
    with path_lock(ws.trash_journal(side)):
        _recover(ws, side)
        _check_trash(ws, side)
        plan, missing = _plan(ws, side, [(src, n, dst, n) for n in names])
        return _run(ws, side, {"op": "do", "id": uuid.uuid4().hex[:12], "kind": kind, "moves": plan}, missing)


def delete_faces(ws: Workspace, side: str, names: list[str]) -> Action:
    """Move the faces ``names`` (plain file names in ``data_<side>/aligned``) to ``aligned_trash``; a name
    taken there gets ``_1``, ``_2`` ... Names not there are reported in ``missing``; a name that is not a
    plain face file name raises :class:`~facelab.faceset.faceid.BadFaceId` before anything moves."""
    return _new(ws, side, "delete", names)


def restore_faces(ws: Workspace, side: str, names: list[str]) -> Action:
    """Move the faces ``names`` of ``data_<side>/aligned_trash`` back to ``aligned`` (as :func:`delete_faces`)."""
    return _new(ws, side, "restore", names)


def _reverse(ws: Workspace, side: str, op: str, which: int) -> Action | None:
    check_side(side)
    with path_lock(ws.trash_journal(side)):
        _recover(ws, side)
        last = _replay(_read(ws.trash_journal(side)))[which]
        if not last:
            return None
        action = last[-1]
        _check_trash(ws, side)
        plan, missing = _plan(ws, side, [(m[2], m[3], m[0], m[1]) for m in action["moves"]])  # back to where it was
        return _run(ws, side, {"op": op, "id": action["id"], "kind": action["kind"], "moves": plan}, missing)


def undo(ws: Workspace, side: str) -> Action | None:
    """Move back the files of the last action done or redone; ``None`` when there is nothing to undo."""
    return _reverse(ws, side, "undo", 0)


def redo(ws: Workspace, side: str) -> Action | None:
    """Do again the last action undone; ``None`` when there is nothing to redo."""
    return _reverse(ws, side, "redo", 1)


def history(ws: Workspace, side: str) -> dict[str, list[dict[str, Any]]]:
    """``{"undo": [...], "redo": [...]}``: the actions undo and redo would take, next last, each
    ``{"id", "kind", "faces"}`` (for the UI's buttons)."""
    done, undone, _ = _replay(_read(ws.trash_journal(check_side(side))))

    def brief(d: dict[str, Any]) -> dict[str, Any]:
        return {"id": d["id"], "kind": d["kind"], "faces": len(d["moves"])}

    return {"undo": [brief(d) for d in done], "redo": [brief(d) for d in undone]}
