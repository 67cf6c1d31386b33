"""The mask editor page's file moves (the seed's mask editor, SPEC section 5); the polygons themselves are
:mod:`facelab.masks.polygons` (``read_polygons``, ``write_polygons``, ``rasterize``).

``E`` saves a face's polygons and moves it to ``data_<side>/aligned_confirmed``,
``W`` moves it to ``data_<side>/aligned_skipped`` without saving; going back
(``Q``/``Z``) onto such a face moves it back to ``aligned`` first, as the seed
did. A moved face leaves the face set: training reads ``aligned`` only, so
move the faces back (or copy them) once the masks are done. ``C`` and ``X``
(skip, save) move nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from facelab.errors import FacelabError, SettingsError
from facelab.face_checks import safe_name
from facelab.workspace import Workspace, check_side

PLACES = ("aligned", "confirmed", "skipped")


def review_dirs(ws: Workspace, side: str) -> dict[str, Path]:
    """``{"aligned": ..., "confirmed": ..., "skipped": ...}``: the folders a face under review can be in."""
    check_side(side)
    return {"aligned": ws.aligned_dir(side), "confirmed": ws.confirmed_dir(side), "skipped": ws.skipped_dir(side)}


def move_face(ws: Workspace, side: str, name: str, to: str) -> Path:
    """Move the face file ``name`` to ``to`` (``"confirmed"``, ``"skipped"`` or back to ``"aligned"``) from
    whichever of those folders holds it; returns its new path (the same one when it is there already).

    Raises :class:`FacelabError` when no folder holds it, or the target already has a file of that name
    (nothing is overwritten).
    """
    if to not in PLACES:
        raise SettingsError(f"cannot move a face to {to!r}", f"use one of {', '.join(PLACES)}")
    try:
        name = safe_name(name)
    except ValueError as e:
        raise FacelabError(f"bad face file name: {e}", "give the name of a file in the aligned folder") from None
    dirs = review_dirs(ws, side)
    target = dirs[to] / name
    source = next((d / name for place, d in dirs.items() if place != to and (d / name).is_file()), None)
    if source is None:
        if target.is_file():
            return target
        raise FacelabError(f"no face {name} in {', '.join(str(d) for d in dirs.values())}",
                           "it was moved or deleted meanwhile: reload the face list")
    if target.exists():
        raise FacelabError(f"cannot move {source} to {dirs[to]}: a file {name} is there already",
                           "rename or remove one of the two, then try again")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


__all__ = ["PLACES", "move_face", "review_dirs"]
