"""The checks every face record passes before facelab uses it.

A face file is input from outside: face sets are shared, edited and imported
from DeepFaceLab. Reading one either gives a record whose every field is sane
or fails with ``ValueError`` (which :mod:`facelab.faceimage` turns into a
:class:`~facelab.errors.FaceFileError` naming the file). Sane means:

- the JSON document is an object, at most :data:`MAX_DOCUMENT_BYTES` long and
  :data:`MAX_DEPTH` levels deep, with finite numbers, integers under 2**63 in
  magnitude and strings that are valid Unicode (no lone surrogates);
- ``face_type`` is a :class:`~facelab.types.FaceType` name; ``size``,
  ``source_size`` are positive integers within :data:`MAX_SIDE`;
- ``source_filename`` (and ``extra.original_filename``) is a plain file name
  (:func:`safe_name`): never a path, so no name taken from metadata can point
  outside the face set or its frames folder;
- landmarks are ``(68, 2)`` finite points within a margin of their image,
  spanning at least a pixel both ways (not collapsed to a point or a line);
  ``image_to_face_mat`` is a finite, invertible ``2x3`` affine; ``source_rect``
  four finite numbers; ``face_index`` a small non-negative integer.

Nothing here touches native code (OpenCV, dlib): checked values only get there.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import numpy as np

from facelab.types import FaceType

MAX_DOCUMENT_BYTES = 4_000_000
MAX_DEPTH = 16
MAX_SIDE = 65536  # pixels, for frame sizes
MAX_FACE_SIZE = 8192  # pixels, side of an aligned face (extract and resize stop at 2048)
MAX_NAME_BYTES = 255
MAX_FACE_INDEX = 9999
N_LANDMARKS = 68
_INT_LIMIT = 2**63
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_name(name: Any) -> str:
    """``name`` if it is a plain file name that stays inside any folder it is joined to, else ``ValueError``.

    Refused: non-strings, empty names, ``.``/``..``, names starting with ``.``
    (facelab hides dot files), ``/`` or ``\\`` anywhere, a drive letter or any
    ``:`` (Windows drives, NTFS streams), control characters, lone surrogates
    and names over 255 UTF-8 bytes.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"file name {name!r} is not a non-empty string")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"file name {name!r} is not valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"file name is {len(encoded)} bytes long (at most {MAX_NAME_BYTES})")
    if "/" in name or "\\" in name:
        raise ValueError(f"file name {name!r} is a path (contains a slash)")
    if name in (".", "..") or name.startswith("."):
        raise ValueError(f"file name {name!r} starts with a dot")
    if _DRIVE.match(name) or ":" in name:
        raise ValueError(f"file name {name!r} contains ':' (a drive letter or stream)")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise ValueError(f"file name {name!r} contains control characters")
    return name


def check_json_tree(doc: Any, max_depth: int = MAX_DEPTH) -> None:
    """``ValueError`` unless ``doc`` is plain JSON data within the limits above (walks iteratively:
    a deep document cannot exhaust the Python stack here)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"metadata is nested more than {max_depth} levels deep")
        if isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ValueError("metadata object key is not a string")
                _check_str(k)
                stack.append((x, depth + 1))
        elif isinstance(v, list):
            if depth < max_depth and all(type(x) is float for x in v):  # a row of numbers (landmarks, matrices)
                if not all(map(math.isfinite, v)):
                    raise ValueError("metadata holds a non-finite number")
                continue
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, str):
            _check_str(v)
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            if abs(v) >= _INT_LIMIT:
                raise ValueError("metadata holds an integer too large")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError("metadata holds a non-finite number")
        else:
            raise ValueError(f"metadata holds a {type(v).__name__}, not plain JSON")


def _check_str(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("metadata holds a string that is not valid Unicode (lone surrogate)") from None


def _int(d: dict, key: str, lo: int, hi: int) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key} must be an integer in {lo}..{hi}, got {_short(v)}")
    return v


def _numbers(v: Any, shape: tuple[int, ...], key: str, bound: float) -> np.ndarray:
    if not isinstance(v, list):
        raise ValueError(f"{key} must be a list, got {_short(v)}")
    try:
        a = np.asarray(v, np.float64)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{key} is not a list of numbers") from None
    if a.shape != shape:
        raise ValueError(f"{key} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{key} holds non-finite numbers")
    if np.any(np.abs(a) > bound):
        raise ValueError(f"{key} holds values beyond {bound:g}")
    return a


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def check_landmarks(v: Any, key: str, width: float, height: float) -> np.ndarray:
    """``(68, 2)`` finite points within one image size of the ``width x height`` image."""
    a = _numbers(v, (N_LANDMARKS, 2), key, 4 * MAX_SIDE)
    lo = np.array([-width, -height])
    hi = np.array([2 * width, 2 * height])
    if np.any(a < lo) or np.any(a > hi):
        raise ValueError(f"{key} lie far outside their {width:g}x{height:g} image")
    if np.ptp(a, axis=0).min() < 1.0:  # a face's points span pixels both ways; collapsed ones break fits and masks
        raise ValueError(f"{key} are collapsed to a point or a line")
    return a


def validate_document(d: Any) -> dict[str, Any]:
    """The checked face-record document (a new dict with every field of :class:`FaceRecord`)."""
    if not isinstance(d, dict):
        raise ValueError(f"face metadata must be a JSON object, got {type(d).__name__}")
    check_json_tree(d)
    version = d.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"format_version must be a non-negative integer, got {_short(version)}")
    missing = [k for k in ("face_type", "size", "source_filename", "source_size", "source_rect", "source_landmarks",
                           "landmarks", "image_to_face_mat") if k not in d]
    if missing:
        raise ValueError("face metadata is incomplete: no " + ", ".join(missing))
    face_type = d["face_type"]
    if face_type not in {t.value for t in FaceType}:
        raise ValueError(f"unknown face type {_short(face_type)}")
    size = _int(d, "size", 1, MAX_FACE_SIZE)
    name = safe_name(d["source_filename"])
    src_size = d["source_size"]
    if not (isinstance(src_size, list) and len(src_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SIDE for v in src_size)
            and (src_size[0] > 0) == (src_size[1] > 0)):
        raise ValueError(f"source_size must be two integers in 1..{MAX_SIDE} (or 0, 0: unknown), got {_short(src_size)}")
    w, h = src_size
    bw, bh = (w, h) if w > 0 else (MAX_SIDE, MAX_SIDE)  # unknown frame size: bound by the largest frame
    rect = _numbers(d["source_rect"], (4,), "source_rect", 4 * MAX_SIDE)
    src_lm = check_landmarks(d["source_landmarks"], "source_landmarks", bw, bh)
    lm = check_landmarks(d["landmarks"], "landmarks", size, size)
    mat = _numbers(d["image_to_face_mat"], (2, 3), "image_to_face_mat", 1e7)
    det = float(np.linalg.det(mat[:, :2]))
    if not abs(det) > 1e-12:
        raise ValueError("image_to_face_mat is not invertible")
    face_index = _int({"face_index": d.get("face_index", 0)}, "face_index", 0, MAX_FACE_INDEX)
    extra = d.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"extra must be a JSON object, got {type(extra).__name__}")
    if "original_filename" in extra:
        try:
            safe_name(extra["original_filename"])
        except ValueError as e:
            raise ValueError(f"extra.original_filename: {e}") from None
    if "raw_landmarks" in extra:
        check_landmarks(extra["raw_landmarks"], "extra.raw_landmarks", bw, bh)
    return {
        "format_version": version, "face_type": face_type, "size": size, "source_filename": name,
        "source_size": [w, h], "source_rect": rect.tolist(), "source_landmarks": src_lm, "landmarks": lm,
        "image_to_face_mat": mat, "face_index": face_index, "extra": dict(extra),
    }
