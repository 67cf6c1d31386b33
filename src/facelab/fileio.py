"""Crash-safe file writing: write to a temporary name beside the target, then rename.

A step killed in the middle leaves either the old file or the new one, never a
half-written file under the real name.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab.errors import FacelabError, MediaError


# errno -> (what happened, what to do); the only place these messages are written
_WRITE_ERRORS = {
    errno.ENOSPC: ("disk full while writing {path}", "free some space and run the step again; finished work is kept"),
    errno.EDQUOT: ("disk quota exceeded while writing {path}", "free some space and run the step again; finished work is kept"),
    errno.EROFS: ("{path} is on a read-only file system", "use a workspace on a writable disk (-w PATH); finished work is kept"),
    errno.EACCES: ("permission denied for {path}", "make the workspace readable and writable by you (or use -w PATH); finished work is kept"),
    errno.EPERM: ("operation not permitted on {path}", "make the workspace readable and writable by you (or use -w PATH); finished work is kept"),
}



_path_locks: dict[Path, threading.Lock] = {}
_path_locks_guard = threading.Lock()


def path_lock(path: str | Path) -> threading.Lock:
    """One lock per file path in this process: threads that read, change and write back the same file (a cache,
    a journal) take it around that."""
    with _path_locks_guard:
        return _path_locks.setdefault(Path(path), threading.Lock())

def write_error(error: OSError, path: str | Path | None = None) -> FacelabError | None:
    """The user error for an ``OSError`` the user can fix (disk full, read-only, no permission), else ``None``.

    ``path`` is the file being written (default: the file the error names; a
    temporary name is not what the user should see). The CLI maps stray
    ``OSError`` s (a ``mkdir``, an ``open``) through this too.
    """
    found = _WRITE_ERRORS.get(error.errno)  # type: ignore[arg-type]
    if found is None:
        return None
    name = path if path is not None else error.filename
    message, hint = found
    return FacelabError(message.format(path=name if name is not None else "a file"), hint)


def _tmp_name(path: Path, shared: bool = False) -> Path:
    if shared:  # a name of this thread's own: two threads writing the same file must not write one temporary file
        return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False, shared: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it. ``shared``: several threads of this
    process may write ``path`` at once (a cache the UI fills from several requests); each then writes a
    temporary file of its own and the last rename wins, whole."""
    path = Path(path)
    tmp = _tmp_name(path, shared)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # read-only or unreadable folder: there is no temporary file to remove
        user_error = write_error(e, path)
        if user_error is not None:
            raise user_error from e
        raise


def atomic_write_json(path: str | Path, obj: Any, fsync: bool = False) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"), fsync=fsync)


def encode_image(image: np.ndarray, ext: str, jpeg_quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3|4) uint8`` BGR(A) or ``(H, W) uint8`` image to ``.png``/``.jpg`` bytes."""
    ext = ext.lower()
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif ext == ".png":
        # Lossless and fast. Measured on a 1280x720 frame (plain / watermarked): zlib level 1 with the
        # default adaptive filters 32 / 37 ms, 363 / 473 KB; the "up" filter with run-length matching
        # 16.5 / 18.8 ms, 369 / 440 KB. It halves the merge's PNG cost and what the watermark adds to it.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                  cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise MediaError(f"could not encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    path = Path(path)
    atomic_write_bytes(path, encode_image(image, path.suffix, jpeg_quality))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` BGR; raise :class:`MediaError` naming the file."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise MediaError(f"cannot read {path}: {e.strerror}") from e
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(f"{path} is not a readable image (corrupt or truncated?)", "delete it or re-run the step that made it")
    return image
