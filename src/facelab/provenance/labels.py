"""Metadata labels that say an output is synthetic (IPTC digital source type).

Every image and video facelab writes carries these: PNG ``tEXt`` chunks and
JPEG comments for images, container tags for videos. (An invisible watermark
and a signed C2PA manifest are added on top of this by later work.)
"""

from __future__ import annotations

import struct
import zlib

from facelab import __version__

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
STATEMENT = "Synthetic media: face replaced by facelab (AI-generated, trainedAlgorithmicMedia)"
SOFTWARE = f"facelab {__version__}"

# Keys written into PNG tEXt chunks and video container metadata.
IMAGE_LABELS = {
    "Software": SOFTWARE,
    "Comment": STATEMENT,
    "DigitalSourceType": DIGITAL_SOURCE_TYPE,
    "facelab:synthetic": "true",
}
VIDEO_TAGS = {
    "comment": STATEMENT,
    "description": STATEMENT,
    "encoder": SOFTWARE,
    "synthetic": "true",
    "digital_source_type": DIGITAL_SOURCE_TYPE,
}

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF)


def label_png(png: bytes) -> bytes:
    """Return PNG bytes with the synthetic-media ``tEXt`` chunks inserted after IHDR."""
    if not png.startswith(_PNG_SIG):
        raise ValueError("label_png: not PNG data")
    ihdr_end = len(_PNG_SIG) + 8 + struct.unpack(">I", png[8:12])[0] + 4
    chunks = b"".join(_png_chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("latin-1")) for k, v in IMAGE_LABELS.items())
    return png[:ihdr_end] + chunks + png[ihdr_end:]


def label_jpeg(jpeg: bytes) -> bytes:
    """Return JPEG bytes with a COM segment carrying the synthetic-media statement."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("label_jpeg: not JPEG data")
    text = (STATEMENT + "; DigitalSourceType=" + DIGITAL_SOURCE_TYPE).encode("utf-8")
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def png_labels(png: bytes) -> dict[str, str]:
    """Read the ``tEXt`` chunks of PNG bytes as a dict (for ``facelab verify`` and tests)."""
    out: dict[str, str] = {}
    i = len(_PNG_SIG)
    while i + 8 <= len(png):
        length, ctype = struct.unpack(">I4s", png[i : i + 8])
        if ctype == b"tEXt":
            key, _, value = png[i + 8 : i + 8 + length].partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if ctype == b"IEND":
            break
        i += 12 + length
    return out


def is_labelled_png(png: bytes) -> bool:
    return png_labels(png).get("DigitalSourceType") == DIGITAL_SOURCE_TYPE
