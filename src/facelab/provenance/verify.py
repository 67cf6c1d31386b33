"""Check a file for every mark facelab puts on its outputs: watermark, C2PA manifest, metadata labels.

Used by ``facelab verify``. Each mark is checked on its own, because each can be
lost on its own: re-encoding drops the manifest and the labels but keeps the
watermark; cropping removes the watermark but not the labels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from facelab.errors import MediaError
from facelab.provenance.labels import (
    DIGITAL_SOURCE_TYPE,
    IMAGE_LABELS,
    VIDEO_TAGS,
    png_labels,
)
from facelab.provenance.manifest import NO_MANIFEST, ManifestReport, read_manifest

if TYPE_CHECKING:
    from facelab.provenance.watermark import Detection

__all__ = ["IMAGE_SUFFIXES", "MODEL_SUFFIXES", "VIDEO_SUFFIXES", "VerifyReport", "read_model_tags", "read_tags", "verify_file"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".webm")
MODEL_SUFFIXES = (".dfm", ".onnx")  # `facelab export`: the labels are the ONNX file's metadata
MODEL_NOTE = ("a model file: no pixels to watermark and no manifest, its metadata labels say what it is. The faces "
              "`facelab merge --onnx` swaps with an exported swap model are marked; other players do not add facelab's marks")


@dataclass(frozen=True)
class VerifyReport:
    """Which synthetic-media marks a file carries.

    Attributes:
        watermark: a ``facelab.provenance.watermark.Detection`` (found, score, frames,
            threshold), or None when the watermark could not be checked (see ``notes``).
        manifest: the C2PA manifest check.
        tags: facelab's metadata labels found in the file (PNG ``tEXt`` chunks, the
            JPEG comment, video container tags), ``str -> str``; empty when none.
        notes: why a check was skipped.
    """

    watermark: Detection | None
    manifest: ManifestReport
    tags: dict[str, str]
    notes: tuple[str, ...] = field(default=())

    @property
    def synthetic_tags(self) -> bool:
        """The metadata labels say the file is synthetic."""
        t = self.tags
        return (
            DIGITAL_SOURCE_TYPE in (t.get("DigitalSourceType"), t.get("digital_source_type"))
            or t.get("facelab:synthetic") == "true"
            or t.get("facelab.synthetic") == "true"
            or t.get("synthetic") == "true"
        )

    @property
    def marked(self) -> bool:
        """Any mark says synthetic: watermark found, a manifest declaring AI-generated content, or the labels.

        A C2PA manifest counts only when it declares the content synthetic (a camera's
        manifest is not a mark); it counts even when invalid, since it still says so.
        """
        return (self.watermark is not None and self.watermark.found) or (self.manifest.found and self.manifest.synthetic) or self.synthetic_tags


def _kind(path: Path) -> str:
    """``"image"``, ``"video"`` or ``"model"`` from the suffix, else (image or video) by probing the content."""
    suffix = path.suffix.lower()
    if suffix in MODEL_SUFFIXES:
        return "model"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")) or head[8:12] == b"WEBP":
        return "image"
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                return "video"
    except (av.FFmpegError, UnicodeDecodeError):
        pass
    raise MediaError(f"{path} is neither an image nor a video facelab can read", "give a PNG/JPEG image or a video such as MP4")


def _jpeg_comments(data: bytes) -> list[str]:
    """Texts of the COM segments of JPEG bytes (up to the start of scan)."""
    out = []
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no more headers
            break
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xFE:
            out.append(data[i + 4 : i + 2 + length].decode("utf-8", "replace"))
        i += 2 + length
    return out


def _ours(found: dict[str, str], keys: dict[str, str], specific: tuple[str, ...]) -> dict[str, str]:
    """The labels among ``found`` that facelab writes: its specific keys, and generic ones (comment, software) naming facelab."""
    return {k: v for k, v in found.items() if k in keys and (k in specific or "facelab" in v.lower())}


def read_tags(path: Path, kind: str | None = None) -> dict[str, str]:
    """facelab's metadata labels in an image or video file (empty dict when there are none).

    PNG: the ``tEXt`` keys of :data:`IMAGE_LABELS`; JPEG: a comment carrying the digital
    source type (as ``Comment`` and ``DigitalSourceType``); video: the container tags
    of :data:`VIDEO_TAGS`. Generic keys (comment, software, encoder) count only when
    their value names facelab, so another program's comment is not reported.
    """
    path = Path(path)
    kind = kind or _kind(path)
    if kind == "video":
        from facelab.media.video import read_video_tags

        return _ours(read_video_tags(path), VIDEO_TAGS, ("synthetic", "digital_source_type"))
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _ours(png_labels(data), IMAGE_LABELS, ("DigitalSourceType", "facelab:synthetic"))
    if data.startswith(b"\xff\xd8"):
        for text in _jpeg_comments(data):
            if DIGITAL_SOURCE_TYPE in text:
                statement, _, source = text.partition("; DigitalSourceType=")
                return {"Comment": statement, "DigitalSourceType": source.strip() or DIGITAL_SOURCE_TYPE}
    return {}


def read_model_tags(path: Path) -> dict[str, str]:
    """The ``facelab.*`` metadata of an exported model (``facelab export``: ``facelab.synthetic``,
    ``facelab.notice``, ``facelab.version``, ``facelab.kind`` ...); empty for another program's ONNX file.
    :class:`MediaError` for a file that is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise MediaError(f"{path} is not an ONNX model file ({str(e).splitlines()[0][:120]})",
                         "give the .dfm / .onnx file `facelab export` wrote") from e
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("facelab.")}


def verify_file(path: Path, max_seconds: float | None = None) -> VerifyReport:
    """Check one image or video for facelab's watermark, C2PA manifest and metadata labels.

    Args:
        path: an image (PNG, JPEG, ...), a video (MP4, MOV, ...) or an exported model (``.dfm``, ``.onnx``:
            its metadata labels only); the type is taken from the suffix, or from the content when the
            suffix is unknown.
        max_seconds: for videos, look for the watermark in the first ``max_seconds`` only.

    Returns:
        A :class:`VerifyReport`; ``report.marked`` says whether any mark was found.

    Raises:
        FacelabError: the file does not exist or is not a readable image or video.
    """
    from facelab.provenance import watermark

    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path} does not exist", "check the path")
    if not path.is_file():
        raise MediaError(f"{path} is not a file", "give image or video files, not folders")
    try:
        kind = _kind(path)
    except OSError as e:
        raise MediaError(f"{path} cannot be read ({e.strerror or e})", "check the file's permissions") from e
    if kind == "model":
        return VerifyReport(watermark=None, manifest=NO_MANIFEST, tags=read_model_tags(path), notes=(MODEL_NOTE,))
    manifest = read_manifest(path)
    tags = read_tags(path, kind)
    notes = []
    try:
        detection = watermark.detect_video(path, max_seconds=max_seconds) if kind == "video" else watermark.detect_image(path)
    except ValueError as e:  # too small to check, mixed aspect ratios
        detection = None
        notes.append(f"watermark not checked: {e}")
    except MediaError as e:
        # Pixels that do not decode (e.g. a damaged or tampered file) are worth reporting
        # when the file still carries a manifest or labels; otherwise the file is unreadable.
        if not (manifest.found or tags):
            raise
        detection = None
        notes.append(f"watermark not checked: {e}")
    return VerifyReport(watermark=detection, manifest=manifest, tags=tags, notes=tuple(notes))
