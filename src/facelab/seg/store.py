"""The segmenter's mask inside a face file: a compact PNG in the face record's metadata.

``facelab seg apply`` writes, for each face, ``record.extra["seg_mask"]``::

    {"png": "<base64 of an 8-bit grayscale PNG>", "face_size": <the face image's side>,
     "model": "<the segmenter's save id>[+flip]", "face_type": "<the segmenter's face type>",
     "uncertainty": <0..1>}

The mask covers the face image (255 = face), so any reader can use it without
knowing the segmenter: at the image's size, or at ``1/2``, ``1/4`` or ``1/8`` of
it when the segmenter saw no more detail than that (a 256 px segmenter on a 512
px face: a quarter of the pixels to warp and compress). :func:`mask_of` always
returns it at the face's size; pixel ``q`` of a mask ``k`` times smaller is
centred on ``k * q + (k - 1) / 2`` of the face (cv2's resize convention). ``facelab seg remove`` takes the key out.
Training uses it in place of the landmark hull; the polygons the user drew
(:mod:`facelab.masks.polygons`) are separate and never touched by apply/remove.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab.errors import FaceFileError
from facelab.faceimage import FaceRecord, read_record, rewrite_record

KEY = "seg_mask"
LEVELS = 16
FLIP_SUFFIX = "+flip"  # after the save id in "model": applied with `seg apply --flip-average` (mirror pass averaged in)


def encode_mask(mask: np.ndarray) -> str:
    """``(H, W) uint8`` (or float ``[0, 1]``) mask -> base64 PNG text (quantised to :data:`LEVELS` + 1 levels)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask: expected (H, W) mask, got {mask.shape}")
    m = np.clip(mask.astype(np.float32) / 255, 0, 1) if mask.dtype == np.uint8 else np.clip(mask.astype(np.float32), 0, 1)
    # 17 levels (0, 1/16 ... 1) are plenty for a soft edge and compress about 5x better than 256; run-length
    # coding at level 1 is as small as zlib's best here and some 50x faster
    levels = (np.round(m * LEVELS) * (255 / LEVELS) + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".png", levels, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise ValueError("encode_mask: PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def decode_mask(text: str, size: int | None = None) -> np.ndarray:
    """Base64 PNG text -> ``(H, W) uint8`` mask; ``ValueError`` if it is not one (of side ``size`` when given)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, AttributeError):
        raise ValueError("the stored segmentation mask is not base64 text") from None
    mask = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE) if raw.startswith(b"\x89PNG") else None
    if mask is None:
        raise ValueError("the stored segmentation mask is not a PNG image")
    if size is not None and mask.shape != (size, size):
        raise ValueError(f"the stored segmentation mask is {mask.shape[1]}x{mask.shape[0]}, the face is {size}x{size}")
    return mask


def has_mask(record: FaceRecord) -> bool:
    return isinstance(record.extra.get(KEY), dict)


def mask_of(record: FaceRecord) -> np.ndarray | None:
    """The applied mask ``(S, S) uint8`` (``S`` = the face's size), or None when there is none.

    Raises:
        FaceFileError: the record has a mask entry that cannot be read.
    """
    entry = record.extra.get(KEY)
    if entry is None:
        return None
    try:
        if not isinstance(entry, dict) or not isinstance(entry.get("png"), str):
            raise ValueError("the stored segmentation mask entry is malformed")
        size = int(record.size)
        mask = decode_mask(entry["png"])
        side = mask.shape[0]
        if mask.shape[1] != side or not any(side == -(-size // k) or side == size // k for k in (1, 2, 4, 8)):
            raise ValueError(f"the stored segmentation mask is {mask.shape[1]}x{side}, the face is {size}x{size}")
        return mask if side == size else cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR)
    except ValueError as e:
        raise FaceFileError(f"face {record.source_filename} #{record.face_index}: {e}",
                            "run `facelab seg remove` and `facelab seg apply` on this side again") from None


def mask_info(record: FaceRecord) -> dict[str, Any] | None:
    """The applied mask's entry without its pixels (model id, face type), or None."""
    entry = record.extra.get(KEY)
    return {k: v for k, v in entry.items() if k != "png"} if isinstance(entry, dict) else None


def with_mask(record: FaceRecord, mask: np.ndarray, model_id: str, face_type: str, **info: Any) -> FaceRecord:
    """A copy of ``record`` holding ``mask`` (``(S, S)``, the face's size ``S`` or ``S / k`` for ``k`` in 2, 4,
    8: see the module docstring) as its applied mask; ``info``: further JSON values kept with it (``uncertainty``)."""
    size = int(record.size)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or not any(
            mask.shape[0] in (size // k, -(-size // k)) for k in (1, 2, 4, 8)):
        raise ValueError(f"with_mask: expected a ({size}, {size}) mask or one 2, 4 or 8 times smaller, got {mask.shape}")
    extra = dict(record.extra)
    extra[KEY] = {"png": encode_mask(mask), "face_size": size, "model": str(model_id), "face_type": str(face_type), **info}
    return record.replace(extra=extra)


def without_mask(record: FaceRecord) -> FaceRecord:
    extra = {k: v for k, v in record.extra.items() if k != KEY}
    return record.replace(extra=extra)


def remove_mask_file(path: str | Path) -> bool:
    """Take the applied mask out of one face file; whether there was one."""
    record = read_record(path)
    if not has_mask(record):
        return False
    rewrite_record(path, without_mask(record))
    return True
