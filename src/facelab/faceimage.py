"""Face metadata stored inside the aligned face image itself.

Each aligned face is a normal JPEG (or PNG) that any viewer opens; its facelab
metadata travels inside the file, so renaming, sorting, copying or moving a
face keeps it. The format is documented here and in ``docs/face-format.md``:

JPEG
    One or more APP9 segments (marker ``FF E9``) placed right after SOI. Each
    payload is ``b"FACELAB\\0"``, one byte format major version, one byte chunk
    index, one byte chunk count, then a slice of the UTF-8 JSON document. The
    JSON is split over several segments when it is longer than one segment
    holds (about 64 KB).
PNG
    One ``iTXt`` chunk with keyword ``facelab`` (uncompressed, no language tag)
    holding the same JSON, placed before ``IEND``.

The JSON document is :meth:`FaceRecord.to_dict`: plain numbers, strings and
lists, with ``"format_version"``. Readers migrate older versions forward
(:func:`_migrate`). Nothing here executes code from a file (no pickle).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import FaceFileError
from facelab.face_checks import MAX_DOCUMENT_BYTES, validate_document
from facelab.fileio import atomic_write_bytes, encode_image

FORMAT_VERSION = 1
_MAGIC = b"FACELAB\x00"
_APP9 = 0xE9
_CHUNK = 65533 - 2 - len(_MAGIC) - 3  # segment length field counts itself
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_KEY = b"facelab"


@dataclass(frozen=True)
class FaceRecord:
    """Where an aligned face came from and how it was cut.

    Attributes:
        face_type: face type name (:class:`facelab.types.FaceType` value).
        size: side of the aligned square image in pixels.
        source_filename: name of the frame the face was cut from (``00001.png``).
        source_size: ``(width, height)`` of that frame.
        source_rect: detector box ``(x0, y0, x1, y1)`` in frame pixels.
        source_landmarks: ``(68, 2)`` landmarks in frame pixels.
        landmarks: ``(68, 2)`` landmarks in aligned-face pixels.
        image_to_face_mat: ``(2, 3)`` affine, frame pixels -> face pixels.
        face_index: index of the face within its frame (0 = first).
        extra: further keys (mask polygons, scores ...) kept as plain JSON.
    """

    face_type: str
    size: int
    source_filename: str
    source_size: tuple[int, int]
    source_rect: tuple[float, float, float, float]
    source_landmarks: np.ndarray
    landmarks: np.ndarray
    image_to_face_mat: np.ndarray
    face_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "face_type": self.face_type,
            "size": int(self.size),
            "source_filename": self.source_filename,
            "source_size": [int(v) for v in self.source_size],
            "source_rect": [round(float(v), 3) for v in self.source_rect],
            "source_landmarks": np.round(np.asarray(self.source_landmarks, np.float64), 3).tolist(),
            "landmarks": np.round(np.asarray(self.landmarks, np.float64), 3).tolist(),
            "image_to_face_mat": np.asarray(self.image_to_face_mat, np.float64).tolist(),
            "face_index": int(self.face_index),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Any) -> "FaceRecord":
        """Build a record from its JSON document, checking every field (see :func:`validate_document`).

        Raises ``ValueError`` (with what is wrong) for anything that is not a complete, sane record.
        """
        if not isinstance(d, dict):
            raise ValueError(f"face metadata must be a JSON object, got {type(d).__name__}")
        d = validate_document(_migrate(dict(d)))
        return cls(
            face_type=d["face_type"],
            size=d["size"],
            source_filename=d["source_filename"],
            source_size=tuple(d["source_size"]),  # type: ignore[arg-type]
            source_rect=tuple(float(v) for v in d["source_rect"]),  # type: ignore[arg-type]
            source_landmarks=np.asarray(d["source_landmarks"], np.float32),
            landmarks=np.asarray(d["landmarks"], np.float32),
            image_to_face_mat=np.asarray(d["image_to_face_mat"], np.float64).reshape(2, 3),
            face_index=d["face_index"],
            extra=d["extra"],
        )

    def replace(self, **changes: Any) -> "FaceRecord":
        return replace(self, **changes)


def _migrate(d: dict[str, Any]) -> dict[str, Any]:
    """Bring an older metadata document up to :data:`FORMAT_VERSION`."""
    version = d.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"format_version must be a non-negative integer, got {str(version)[:40]!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"face metadata version {version} is newer than this facelab understands ({FORMAT_VERSION}): upgrade facelab")
    # version 1 is the first; later versions add their steps here
    d["format_version"] = FORMAT_VERSION
    return d


# --- JPEG -------------------------------------------------------------------


def _jpeg_segments(data: bytes):
    """Yield ``(marker, payload_start, payload_end)`` for header segments up to SOS."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file (no SOI marker)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"corrupt JPEG header at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if length < 2 or end > len(data):
            raise ValueError("JPEG header is truncated")
        yield marker, i + 4, end
        if marker == 0xDA:  # start of scan: image data follows
            return
        i = end
    raise ValueError("JPEG header is truncated")


def embed_jpeg(jpeg: bytes, record: FaceRecord) -> bytes:
    """Return ``jpeg`` with the record's APP9 segments (replacing any old ones)."""
    body = json.dumps(record.to_dict(), separators=(",", ":")).encode("utf-8")
    parts = [body[i : i + _CHUNK] for i in range(0, len(body), _CHUNK)] or [b""]
    if len(parts) > 255:
        raise ValueError("face metadata is too large for a JPEG")
    segs = []
    for k, part in enumerate(parts):
        payload = _MAGIC + bytes([FORMAT_VERSION, k, len(parts)]) + part
        segs.append(b"\xff" + bytes([_APP9]) + struct.pack(">H", len(payload) + 2) + payload)
    # keep every original segment except our own; put ours after APP0 (JFIF) if present
    out = bytearray(b"\xff\xd8")
    insert_at = None
    pos = 2
    for marker, start, end in _jpeg_segments(jpeg):
        seg = jpeg[start - 4 : end]
        if marker == _APP9 and jpeg[start : start + len(_MAGIC)] == _MAGIC:
            pos = end
            continue
        out += seg
        if marker == 0xE0 and insert_at is None:
            insert_at = len(out)
        pos = end
    if insert_at is None:
        insert_at = 2
    out[insert_at:insert_at] = b"".join(segs)
    out += jpeg[pos:]
    return bytes(out)


def _extract_jpeg(data: bytes) -> dict[str, Any] | None:
    chunks: dict[int, bytes] = {}
    count = 0
    for marker, start, end in _jpeg_segments(data):
        if marker == _APP9 and data[start : start + len(_MAGIC)] == _MAGIC:
            h = start + len(_MAGIC)
            _version, index, count = data[h], data[h + 1], data[h + 2]
            chunks[index] = data[h + 3 : end]
    if not chunks:
        return None
    if sorted(chunks) != list(range(count)):
        raise ValueError("facelab metadata segments are incomplete")
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ValueError("JPEG image data is truncated (no end-of-image marker)")
    return _parse_json(b"".join(chunks[i] for i in range(count)))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"face metadata holds {name}, which is not a number facelab accepts")


def _parse_json(raw: bytes) -> Any:
    """The metadata JSON: at most MAX_DOCUMENT_BYTES, no NaN/Infinity."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"face metadata is {len(raw)} bytes long (at most {MAX_DOCUMENT_BYTES})")
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


# --- PNG --------------------------------------------------------------------


def _png_chunks(data: bytes):
    if not data.startswith(_PNG_SIG):
        raise ValueError("not a PNG file")
    i = len(_PNG_SIG)
    while i + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[i : i + 8])
        end = i + 12 + length
        if end > len(data):
            raise ValueError("PNG file is truncated")
        yield ctype, i, end
        if ctype == b"IEND":
            return
        i = end
    raise ValueError("PNG file is truncated (no IEND chunk)")


def embed_png(png: bytes, record: FaceRecord) -> bytes:
    text = json.dumps(record.to_dict(), separators=(",", ":")).encode("utf-8")
    payload = _PNG_KEY + b"\x00\x00\x00\x00\x00" + text  # keyword, NUL, flag, method, lang NUL, key NUL
    chunk = struct.pack(">I", len(payload)) + b"iTXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + payload) & 0xFFFFFFFF)
    out = bytearray(_PNG_SIG)
    for ctype, start, end in _png_chunks(png):
        body = png[start:end]
        if ctype == b"iTXt" and png[start + 8 : start + 8 + len(_PNG_KEY) + 1] == _PNG_KEY + b"\x00":
            continue
        if ctype == b"IEND":
            out += chunk
        out += body
    return bytes(out)


def _extract_png(data: bytes) -> dict[str, Any] | None:
    found = None
    for ctype, start, end in _png_chunks(data):
        if ctype == b"iTXt" and data[start + 8 : start + 8 + len(_PNG_KEY) + 1] == _PNG_KEY + b"\x00":
            text = data[start + 8 + len(_PNG_KEY) + 5 : end - 4]
            found = _parse_json(text)
    return found


# --- public API -------------------------------------------------------------


def record_from_bytes(data: bytes, name: str = "<bytes>") -> FaceRecord:
    """Parse the facelab metadata of an encoded face image."""
    try:
        if data.startswith(_PNG_SIG):
            d = _extract_png(data)
        elif data.startswith(b"\xff\xd8"):
            d = _extract_jpeg(data)
        else:
            raise ValueError("not a JPEG or PNG file")
        if d is None:
            raise FaceFileError(
                f"{name} has no facelab face metadata",
                "it is not an aligned face made by `facelab extract`; remove it from the aligned folder",
            )
        return FaceRecord.from_dict(d)
    except FaceFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, struct.error) as e:
        # ValueError covers JSON and UTF-8 decoding; RecursionError a document nested too deep for the parser
        why = "metadata is nested too deep" if isinstance(e, RecursionError) else str(e)[:300]
        raise FaceFileError(f"{name} is not a valid face file: {why}",
                            "delete it, or re-run `facelab extract` to make it again") from None


def read_record(path: str | Path) -> FaceRecord:
    """Read only the metadata of a face file (no pixel decoding)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FaceFileError(f"cannot read face file {path}: {e.strerror}") from e
    return record_from_bytes(data, str(path))


def image_dimensions(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from an encoded JPEG's frame header or a PNG's IHDR, without decoding pixels."""
    if data.startswith(_PNG_SIG):
        for ctype, start, end in _png_chunks(data):
            if ctype != b"IHDR" or end - start < 20:
                raise ValueError("PNG file has no valid IHDR chunk")
            return struct.unpack(">II", data[start + 8 : start + 16])
        raise ValueError("PNG file has no IHDR chunk")
    for marker, start, end in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and end - start >= 5:
            h, w = struct.unpack(">HH", data[start + 1 : start + 5])
            return w, h
    raise ValueError("JPEG file has no frame header")


REDUCE_FLAGS = {1: "IMREAD_COLOR", 2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def face_from_bytes(data: bytes, name: str = "<bytes>", reduce: int = 1) -> tuple[np.ndarray, FaceRecord]:
    """Decode an encoded face file: ``((size, size, 3) uint8 BGR image, FaceRecord)``.

    The pixel size is checked against the record before any pixel is decoded, so
    a file that claims a huge image cannot make the decoder allocate it.
    ``reduce``: see :func:`image_from_bytes`.
    """
    record = record_from_bytes(data, name)
    return image_from_bytes(data, record, name, reduce), record


def image_from_bytes(data: bytes, record: FaceRecord, name: str = "<bytes>", reduce: int = 1) -> np.ndarray:
    """The pixels of an encoded face file whose ``record`` was parsed already (:func:`record_from_bytes`),
    checked against it: ``(size, size, 3) uint8`` BGR.

    ``reduce`` (1, 2, 4 or 8) decodes at ``1/reduce`` of the size (a JPEG that much faster: its decoder
    scales in the DCT); a side is ``size / reduce`` pixels, rounded up for JPEG and down for PNG, and the
    centre of pixel ``q`` of the reduced image is at ``reduce * q + (reduce - 1) / 2`` in the full one.
    """
    import cv2

    if reduce not in REDUCE_FLAGS:
        raise ValueError(f"image_from_bytes: reduce must be one of {sorted(REDUCE_FLAGS)}, got {reduce}")
    try:
        w, h = image_dimensions(data)
    except (ValueError, struct.error) as e:
        raise FaceFileError(f"{name} is not a valid face file: {e}", "delete it, or re-run `facelab extract`") from None
    if (w, h) != (record.size, record.size):
        raise FaceFileError(f"{name} is {w}x{h} pixels but its metadata is for a {record.size} px face",
                            "an editor resized it: run `facelab faceset restore-meta` after editing, or re-extract it")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), getattr(cv2, REDUCE_FLAGS[reduce]))
    if image is None or image.shape[0] not in (h // reduce, -(-h // reduce)) or image.shape[1] not in (w // reduce, -(-w // reduce)):
        raise FaceFileError(f"{name} has metadata but its pixels cannot be decoded", "delete it, or re-run `facelab extract`")
    return image


def read_face(path: str | Path, reduce: int = 1) -> tuple[np.ndarray, FaceRecord]:
    """Read a face file: ``((H, W, 3) uint8 BGR image, FaceRecord)`` (``reduce``: see :func:`face_from_bytes`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FaceFileError(f"cannot read face file {path}: {e.strerror}") from e
    return face_from_bytes(data, str(path), reduce)


def face_bytes(image: np.ndarray, record: FaceRecord, ext: str = ".jpg", jpeg_quality: int = 90) -> bytes:
    """Encode ``(H, W, 3) uint8`` BGR ``image`` with ``record`` embedded."""
    encoded = encode_image(image, ext, jpeg_quality)
    return embed_png(encoded, record) if ext.lower() == ".png" else embed_jpeg(encoded, record)


def write_face(path: str | Path, image: np.ndarray, record: FaceRecord, jpeg_quality: int = 90) -> None:
    """Write a face file atomically (temporary name, then rename)."""
    path = Path(path)
    atomic_write_bytes(path, face_bytes(image, record, path.suffix, jpeg_quality))


def rewrite_record(path: str | Path, record: FaceRecord) -> None:
    """Replace the metadata of an existing face file without re-encoding its pixels."""
    path = Path(path)
    data = path.read_bytes()
    new = embed_png(data, record) if data.startswith(_PNG_SIG) else embed_jpeg(data, record)
    atomic_write_bytes(path, new)
