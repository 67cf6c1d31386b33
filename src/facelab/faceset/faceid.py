"""Face ids: how the UI names a face file, and the one way back from an id to a file.

An id is the file's path relative to the workspace, with ``/``:
``data_src/aligned/00012_0.jpg`` or ``data_src/aligned_trash/00007_0.jpg``; a
frame's id is ``data_src/00012.png``. :func:`locate` accepts a face file
directly inside a side's ``aligned`` or ``aligned_trash`` folder and nothing
else: no absolute path, no ``..``, no link that leads out of that folder. A
folder that is itself a link (a face set kept on another disk) is followed:
where the workspace's folders are is the user's choice, not a request's.
"""

from __future__ import annotations

from pathlib import Path

from facelab.errors import WorkspaceError
from facelab.face_checks import safe_name
from facelab.faceset.files import FACE_EXTS
from facelab.types import SIDES
from facelab.workspace import FRAME_EXTENSIONS, Workspace


class BadFaceId(WorkspaceError):
    """An id that does not name a face of a side's ``aligned`` or ``aligned_trash`` folder."""


class FaceNotFound(WorkspaceError):
    """A well-formed id whose file is not there (deleted, renamed by a sort)."""


def face_id(ws: Workspace, path: Path) -> str:
    """The id of a face file of the workspace (its path relative to ``ws.root``, with ``/``)."""
    return Path(path).relative_to(ws.root).as_posix()


def _folders(ws: Workspace) -> dict[str, tuple[str, Path]]:
    """id folder (``data_src/aligned`` ...) -> (side, folder)."""
    return {face_id(ws, folder): (side, folder) for side in SIDES for folder in (ws.aligned_dir(side), ws.trash_dir(side))}


def locate(ws: Workspace, file_id: str) -> tuple[str, Path]:
    """``(side, path)`` of the face ``file_id``; raises :class:`BadFaceId` for an id outside the sides'
    ``aligned`` and ``aligned_trash`` folders (a file linked from elsewhere included) and :class:`FaceNotFound`
    when the file is not there. A folder that is itself a link (a face set kept on another disk) is followed."""
    hint = "use an id from the face list, such as data_src/aligned/00012_0.jpg"
    if not isinstance(file_id, str) or "\\" in file_id or "\x00" in file_id:
        raise BadFaceId(f"face id {str(file_id)[:200]!r} is not a relative path with '/'", hint)
    parent, _, name = file_id.rpartition("/")
    place = _folders(ws).get(parent)
    try:
        safe_name(name)
    except ValueError:
        place = None
    if place is None or Path(name).suffix.lower() not in FACE_EXTS:
        raise BadFaceId(f"{file_id[:200]!r} is not a face of data_<side>/aligned or data_<side>/aligned_trash", hint)
    side, folder = place
    path = folder / name
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise FaceNotFound(f"no face {file_id} in the workspace", "list the faces again: it was moved or renamed") from None
    if real.parent != folder.resolve():
        raise BadFaceId(f"{file_id} is a link out of {face_id(ws, folder)}", "only faces inside the face set are shown")
    if not real.is_file():
        raise BadFaceId(f"{file_id} is not a file", hint)
    return side, path


def frame_path(ws: Workspace, frame_id: str) -> Path:
    """The frame file of ``frame_id`` (``data_src/00012.png``, as :func:`facelab.faceset.detail.source_frame_id`
    gives it); raises :class:`BadFaceId` for anything else (a link out of the frames folder included) and
    :class:`FaceNotFound` when the frame is not there."""
    parent, _, name = str(frame_id).rpartition("/")
    sides = [s for s in SIDES if face_id(ws, ws.frames_dir(s)) == parent]
    try:
        ok = bool(sides) and safe_name(name) == name and Path(name).suffix.lower() in FRAME_EXTENSIONS
    except ValueError:
        ok = False
    if not ok:
        raise BadFaceId(f"{str(frame_id)[:200]!r} is not a frame of data_src or data_dst", "use an id from source_frame_id")
    path = ws.frames_dir(sides[0]) / name
    if not path.is_file():
        raise FaceNotFound(f"no frame {frame_id} in the workspace", f"run `facelab frames {sides[0]}` to extract the frames again")
    if path.resolve().parent != ws.frames_dir(sides[0]).resolve():
        raise BadFaceId(f"{frame_id} is a link out of data_{sides[0]}", "only frames inside the workspace are shown")
    return path


