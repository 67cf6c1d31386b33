"""Workspace files addressed by id: the UI never takes a path from the client.

A file id is the file's path relative to the workspace root, with ``/``
separators (``data_src/aligned/00012_0.jpg``). :func:`resolve` turns an id back
into a path and refuses one that is absolute, has ``..`` or a backslash, or
whose real location (after symlinks) is outside the workspace.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from facelab.errors import FacelabError
from facelab.workspace import Workspace


class FileIdError(FacelabError):
    """A file id that does not name a file inside the workspace."""


def file_id(ws: Workspace, path: Path) -> str:
    """The id of ``path`` (a file inside the workspace)."""
    return Path(path).resolve().relative_to(ws.root).as_posix()


def resolve(ws: Workspace, fid: str, *, must_exist: bool = True) -> Path:
    """The path of file id ``fid``; :class:`FileIdError` for an id that leaves the workspace or is missing."""
    if not isinstance(fid, str) or not fid or "\\" in fid or "\x00" in fid:
        raise FileIdError(f"{fid!r} is not a file id", "use the ids the UI lists")
    pure = PurePosixPath(fid)
    if pure.is_absolute() or any(part in ("..", "") for part in fid.split("/")):
        raise FileIdError(f"{fid!r} is not a file id inside the workspace", "use the ids the UI lists")
    path = ws.root.joinpath(*pure.parts)
    real = path.resolve()
    if real != ws.root and ws.root not in real.parents:
        raise FileIdError(f"{fid!r} leads outside the workspace", "use the ids the UI lists")
    if must_exist and not real.is_file():
        raise FileIdError(f"{fid} does not exist", "reload the page: the file may have been moved or deleted")
    return real
