"""Pack a face set into one file and unpack it again (``data_<side>/aligned.faceset``).

Many small files copy slowly; one file copies fast. The container is simple
and safe to load (no pickle, nothing executed)::

    b"FACELAB-FACESET\\n"          16-byte magic
    uint32 little-endian           format version (1)
    uint64 little-endian           length N of the index
    N bytes                        UTF-8 JSON index:
        {"version": 1, "files": [{"name": "00001_0.jpg", "offset": 0,
                                  "size": 51234, "sha256": "..."}, ...]}
    concatenated file bytes        each file exactly as it was on disk;
                                   offsets count from the end of the index

Each file is stored byte for byte, so unpacking gives identical files; the
SHA-256 of each is checked on pack (read back before the loose files are
removed) and on unpack.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from facelab.errors import FaceFileError, FacelabError
from facelab.face_checks import safe_name

MAGIC = b"FACELAB-FACESET\n"
VERSION = 1
_HEAD = struct.Struct("<IQ")


def _bad(path: Path, why: str) -> FaceFileError:
    return FaceFileError(f"{path} is not a valid face-set pack: {why}", "pack the face set again from its loose files")


def read_index(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The pack's file list and the byte offset where file data starts."""
    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + _HEAD.size)
        if head[: len(MAGIC)] != MAGIC:
            raise _bad(path, "wrong magic (not a facelab face-set pack)")
        if len(head) < len(MAGIC) + _HEAD.size:
            raise _bad(path, "the file is truncated (header incomplete)")
        version, n = _HEAD.unpack(head[len(MAGIC):])
        if version > VERSION:
            raise FaceFileError(f"{path} is pack format {version}, newer than this facelab reads ({VERSION})", "upgrade facelab")
        start = len(head) + n
        if start > total:
            raise _bad(path, f"the file is truncated (index needs {n} bytes)")
        try:
            index = json.loads(f.read(n).decode("utf-8"))
            files = index["files"]
            if not isinstance(files, list):
                raise ValueError("'files' is not a list")
            for e in files:
                if not all(isinstance(e.get(k), int) and not isinstance(e.get(k), bool) and 0 <= e[k] < 2**62
                           for k in ("offset", "size")):
                    raise ValueError("offset and size must be non-negative integers")
                safe_name(e.get("name"))  # a plain file name: unpacking never writes outside the folder
                if not isinstance(e.get("sha256"), str):
                    raise ValueError("sha256 must be a string")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise _bad(path, f"corrupt index ({e})") from e
    need = max((e["offset"] + e["size"] for e in files), default=0)
    if start + need > total:
        raise _bad(path, f"the file is truncated: {start + need} bytes expected, {total} found")
    return files, start


def pack(files: list[Path], target: Path) -> int:
    """Write ``files`` into ``target`` (atomically) and verify it; returns the byte size."""
    target = Path(target)
    entries, offset = [], 0
    for p in files:
        data = p.read_bytes()
        entries.append({"name": p.name, "offset": offset, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        offset += len(data)
    index = json.dumps({"version": VERSION, "files": entries}, separators=(",", ":")).encode("utf-8")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + _HEAD.pack(VERSION, len(index)) + index)
            for p, e in zip(files, entries):
                data = p.read_bytes()
                if hashlib.sha256(data).hexdigest() != e["sha256"]:
                    raise FacelabError(f"{p} changed while packing", "run pack again when nothing else writes the face set")
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        verify(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target.stat().st_size


def iter_files(path: Path):
    """Yield ``(name, bytes)`` for every file of a pack, checking each hash."""
    path = Path(path)
    files, start = read_index(path)
    with open(path, "rb") as f:
        for e in files:
            f.seek(start + e["offset"])
            data = f.read(e["size"])
            if len(data) != e["size"]:
                raise _bad(path, f"the file is truncated inside {e['name']}")
            if hashlib.sha256(data).hexdigest() != e["sha256"]:
                raise _bad(path, f"{e['name']} is corrupt (checksum mismatch)")
            yield e["name"], data


def verify(path: Path) -> int:
    """Check every file of a pack; returns the number of files."""
    return sum(1 for _ in iter_files(path))


def unpack(path: Path, out_dir: Path, overwrite: bool = False) -> list[Path]:
    """Write every file of the pack into ``out_dir``; the whole pack is checked first."""
    path, out_dir = Path(path), Path(out_dir)
    verify(path)
    files, _ = read_index(path)
    clash = [e["name"] for e in files if (out_dir / e["name"]).exists()]
    if clash and not overwrite:
        raise FacelabError(
            f"{len(clash)} files of the pack already exist in {out_dir} (e.g. {clash[0]})",
            "move them away, or unpack with --overwrite",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    from facelab.fileio import atomic_write_bytes

    written = []
    for name, data in iter_files(path):
        atomic_write_bytes(out_dir / name, data)
        written.append(out_dir / name)
    return written
