"""Set one metadata value in a finished MP4/MOV file, in place.

Why this exists: libavformat overwrites the container tag ``encoder`` with its
own name ("Lavf62...") when it writes the header, whatever the caller set, and
PyAV offers no way to change the tags after that. The synthetic-media labels
must carry facelab's name there, so after writing we edit the value inside
``moov/udta/meta`` (the ``keys`` + ``ilst`` boxes that ``movflags=use_metadata_tags``
writes). The ``moov`` box is at the end of the file (no faststart), so resizing
it moves no sample data and the chunk offsets stay valid.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path


def _boxes(data: bytes, start: int, end: int):
    """Yield ``(type, offset, header_size, size)`` of the boxes in ``data[start:end]``."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            return
        yield kind, i, header, size
        i += size


def _child(data: bytes, start: int, end: int, kind: bytes):
    for k, off, header, size in _boxes(data, start, end):
        if k == kind:
            return off, header, size
    return None


def set_mp4_tag(path: str | Path, key: str, value: str) -> bool:
    """Replace the value of metadata ``key`` in an MP4/MOV written with ``use_metadata_tags``.

    Returns ``False`` (file untouched) if the layout is not the expected one.
    """
    path = Path(path)
    with open(path, "rb+") as f:
        file_size = os.fstat(f.fileno()).st_size
        # Find the top-level moov box; it must be the last box.
        pos, moov_off, moov_size = 0, None, 0
        while pos + 8 <= file_size:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = file_size - pos
            if size < 8:
                return False
            if kind == b"moov":
                moov_off, moov_size = pos, size
            pos += size
        if moov_off is None or moov_off + moov_size != file_size or moov_size > 64 << 20:
            return False
        f.seek(moov_off)
        moov = bytearray(f.read(moov_size))
        if struct.unpack(">I", moov[:4])[0] == 1:
            return False  # 64-bit moov: never written for our sizes
        sizes = [0]  # offsets of the 32-bit size fields of the ancestors of the value
        udta = _child(moov, 8, len(moov), b"udta")
        if udta is None:
            return False
        sizes.append(udta[0])
        meta = _child(moov, udta[0] + udta[1], udta[0] + udta[2], b"meta")
        if meta is None:
            return False
        sizes.append(meta[0])
        body = meta[0] + meta[1] + 4  # meta is a full box (version + flags)
        keys = _child(moov, body, meta[0] + meta[2], b"keys")
        ilst = _child(moov, body, meta[0] + meta[2], b"ilst")
        if keys is None or ilst is None:
            return False
        sizes.append(ilst[0])
        # keys: version/flags, count, then (size, namespace, name) entries; index is 1-based.
        k = keys[0] + keys[1] + 4
        count = struct.unpack(">I", moov[k : k + 4])[0]
        k += 4
        index = None
        for n in range(1, count + 1):
            entry_size = struct.unpack(">I", moov[k : k + 4])[0]
            if moov[k + 8 : k + entry_size].decode("utf-8", "replace") == key:
                index = n
                break
            k += entry_size
        if index is None:
            return False
        item = _child(moov, ilst[0] + ilst[1], ilst[0] + ilst[2], struct.pack(">I", index))
        if item is None:
            return False
        sizes.append(item[0])
        data_box = _child(moov, item[0] + item[1], item[0] + item[2], b"data")
        if data_box is None:
            return False
        d_off, d_header, d_size = data_box
        payload = value.encode("utf-8")
        # data box: header, type indicator (1 = UTF-8), locale, value.
        new_box = struct.pack(">I4sII", 16 + len(payload), b"data", 1, 0) + payload
        delta = len(new_box) - d_size
        moov[d_off : d_off + d_size] = new_box
        for off in sizes:
            old = struct.unpack(">I", moov[off : off + 4])[0]
            moov[off : off + 4] = struct.pack(">I", old + delta)
        f.seek(moov_off)
        f.write(moov)
        f.truncate()
    return True
