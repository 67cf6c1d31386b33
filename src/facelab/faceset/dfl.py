"""DeepFaceLab face sets: import (read without executing anything) and export.

DeepFaceLab ("DFL") stores an aligned face as a JPEG whose APP15 segment
(marker ``FF EF``) holds a *Python pickle* of a dict such as::

    {"face_type": "whole_face", "landmarks": ndarray(68, 2),
     "source_filename": "00001.png", "source_rect": [x0, y0, x1, y1],
     "source_landmarks": ndarray(68, 2), "image_to_face_mat": ndarray(2, 3),
     "eyebrows_expand_mod": 1.0, "xseg_mask": ..., "seg_ie_polys": ...}

Unpickling with :mod:`pickle` can run any code the file's author chose, so
facelab never calls :func:`pickle.loads` on such data. :func:`safe_unpickle`
is a small interpreter of the pickle opcodes (protocols 2 to 5, binary
opcodes only) that builds only ``None``, booleans, ints, floats, strings,
bytes, tuples, lists, dicts, sets and numpy arrays / numpy scalars of plain
numeric or string dtypes. It never imports a module and never calls a
callable from the data: the only "globals" it accepts are the numpy names
that numpy uses to describe an array (``numpy.core.multiarray._reconstruct``,
``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
``numpy.core.multiarray.scalar``, ``numpy._core.multiarray.scalar``,
``numpy._core.numeric._frombuffer`` (and their ``numpy.core`` spellings)) plus
``_codecs.encode(text, "latin1")`` and ``set``/``frozenset`` (how protocol 2
writes bytes and sets), each carried out by facelab's own code; it
builds those arrays itself from their raw bytes with :func:`numpy.frombuffer`
(object dtypes are refused). A file asking for anything else raises
:class:`UnsafePickleError` and is skipped by the importer, which names it.

Mask polygons drawn in DFL's XSeg editor (``seg_ie_polys``; the seed's
``ie_polys``) become facelab's (:mod:`facelab.masks.polygons`, in the record's
``extra["mask_polygons"]``), and export writes facelab's back as ``seg_ie_polys``.

Export writes DFL's format for people who still train in DeepFaceLab. That
is the only place facelab writes a pickle, and only on explicit request
(``facelab faceset export-dfl``); the pickle holds plain types and numpy
arrays only.
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab import align
from facelab.errors import FaceFileError, FacelabError
from facelab.face_checks import safe_name, validate_document
from facelab.faceimage import FaceRecord, face_bytes, read_face
from facelab.fileio import atomic_write_bytes, encode_image
from facelab.masks.polygons import POLYGONS_KEY, from_dfl, polygons_of, to_dfl

_APP15 = 0xEF
_APP9 = 0xE9
_FACELAB_MAGIC = b"FACELAB\x00"

# DFL face type names -> facelab face types (and back)
DFL_TO_FACELAB = {
    "half_face": "half",
    "midfull_face": "mid",
    "mid_full_face": "mid",
    "full_face": "full",
    "full_face_no_align": "full",
    "whole_face": "whole",
    "head": "head",
    "head_no_align": "head",
}
FACELAB_TO_DFL = {"half": "half_face", "mid": "midfull_face", "full": "full_face", "whole": "whole_face", "head": "head"}


class UnsafePickleError(ValueError):
    """The pickle asks for something the restricted reader does not build."""


# --- restricted pickle interpreter --------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    # protocol 5 (numpy >= 1.16): _frombuffer(bytes, dtype, shape, order)
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    # protocol 2 writes bytes as _codecs.encode(text, "latin1") and sets as set([...])
    ("_codecs", "encode"): "codecs_encode",
    ("builtins", "set"): "set",
    ("__builtin__", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("__builtin__", "frozenset"): "frozenset",
}


@dataclass(eq=False)
class _Global:
    kind: str  # value of _ALLOWED_GLOBALS


@dataclass(eq=False)
class _DtypeStub:
    spec: str
    dtype: np.dtype | None = None


@dataclass(eq=False)
class _ArrayStub:
    value: np.ndarray | None = None


@dataclass(eq=False)
class _Mark:
    pass


_MARK = _Mark()
_MAX_DEPTH = 64


def _make_dtype(spec: Any, state: Any = None) -> np.dtype:
    if not isinstance(spec, str):
        raise UnsafePickleError(f"numpy dtype spec must be a string, got {type(spec).__name__}")
    try:
        dt = np.dtype(spec)
    except TypeError as e:
        raise UnsafePickleError(f"unknown numpy dtype {spec!r}") from e
    if dt.kind not in "biufcSU":
        raise UnsafePickleError(f"numpy dtype {spec!r} is not a plain numeric/string type")
    if state is not None:
        if not isinstance(state, tuple) or len(state) < 2:
            raise UnsafePickleError("malformed numpy dtype state")
        if len(state) >= 5 and (state[2] is not None or state[3] is not None or state[4] is not None):
            raise UnsafePickleError("structured or sub-array numpy dtypes are not supported")
        order = state[1]
        if order in ("<", ">"):
            dt = dt.newbyteorder(order)
        elif order not in ("|", "="):
            raise UnsafePickleError(f"bad numpy byte order {order!r}")
    return dt


def _dtype_of(obj: Any) -> np.dtype:
    if isinstance(obj, _DtypeStub):
        return obj.dtype if obj.dtype is not None else _make_dtype(obj.spec)
    raise UnsafePickleError("expected a numpy dtype")


def _call(fn: Any, args: Any) -> Any:
    if not isinstance(fn, _Global) or not isinstance(args, tuple):
        raise UnsafePickleError("the pickle calls something that is not an allowed numpy constructor")
    if fn.kind == "codecs_encode":
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise UnsafePickleError("malformed _codecs.encode call")
        return args[0].encode("latin-1")
    if fn.kind in ("set", "frozenset"):
        items = args[0] if args else []
        if len(args) > 1 or not isinstance(items, list):
            raise UnsafePickleError("malformed set construction")
        made = {_hashable(v) for v in items}
        return made if fn.kind == "set" else frozenset(made)
    if fn.kind == "frombuffer":
        if len(args) != 4 or not isinstance(args[0], (bytes, bytearray)) or args[3] not in ("C", "F"):
            raise UnsafePickleError("malformed numpy _frombuffer call")
        stub = _ArrayStub()
        _build(stub, (1, args[2], args[1], args[3] == "F", args[0]))
        return stub
    if fn.kind == "dtype":
        if not args:
            raise UnsafePickleError("numpy.dtype() without arguments")
        return _DtypeStub(args[0])
    if fn.kind == "reconstruct":
        if len(args) < 1 or not (isinstance(args[0], _Global) and args[0].kind == "ndarray"):
            raise UnsafePickleError("numpy _reconstruct of something other than ndarray")
        return _ArrayStub()
    if fn.kind == "scalar":
        if len(args) != 2 or not isinstance(args[1], (bytes, bytearray)):
            raise UnsafePickleError("malformed numpy scalar")
        dt = _dtype_of(args[0])
        if len(args[1]) != dt.itemsize:
            raise UnsafePickleError("numpy scalar has the wrong number of bytes")
        return np.frombuffer(bytes(args[1]), dt)[0]
    raise UnsafePickleError("the pickle calls numpy.ndarray directly")


def _build(obj: Any, state: Any) -> None:
    if isinstance(obj, _DtypeStub):
        obj.dtype = _make_dtype(obj.spec, state)
        return
    if isinstance(obj, _ArrayStub):
        if not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("malformed numpy array state")
        _version, shape, dtype, fortran, raw = state
        dt = _dtype_of(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise UnsafePickleError("malformed numpy array shape")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("numpy array data is not raw bytes (object arrays are refused)")
        # a dimension needs data behind it (which keeps it far below 2**63); an empty array, such as a
        # DFL polygon with no points ((0, 2) float32), may still have small dimensions
        if any(s > max(len(raw), 1 << 16) for s in shape):
            raise UnsafePickleError("numpy array shape does not match its data")
        count = 1
        for s in shape:
            count *= s
        if count * dt.itemsize != len(raw):
            raise UnsafePickleError("numpy array data length does not match its shape")
        arr = np.frombuffer(bytes(raw), dt).reshape(shape, order="F" if fortran else "C")
        obj.value = arr.copy()
        return
    raise UnsafePickleError(f"the pickle sets the state of a {type(obj).__name__}")


_MAX_NODES = 200_000  # values in the fully expanded metadata (a real DFL face has a few hundred)
_MAX_BYTES = 32_000_000  # bytes of arrays, strings and bytes in it, counted as if every shared one were copied


def _finish(obj: Any) -> Any:
    """Replace placeholders by the arrays they stand for; refuse leftovers.

    A pickle can reference one object from many places (its memo), so a few
    hundred bytes can describe a structure that is exponentially large when
    expanded ("billion laughs"). The expanded size is first measured without
    expanding (each shared object's size is computed once) and refused over
    :data:`_MAX_NODES` values or :data:`_MAX_BYTES`; then each shared object is
    converted once and shared again in the result, never copied.
    """
    nodes, nbytes = _expanded_size(obj, {}, 0)
    if nodes > _MAX_NODES or nbytes > _MAX_BYTES:
        raise UnsafePickleError(f"the metadata expands to {nodes} values / {nbytes} bytes (shared references): too large")
    return _convert(obj, {}, 0)


def _expanded_size(obj: Any, seen: dict[int, tuple[int, int]], depth: int) -> tuple[int, int]:
    if depth > _MAX_DEPTH:
        raise UnsafePickleError("the pickle is nested too deeply")
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _ArrayStub):
        size = (1 + (obj.value.size if obj.value is not None else 0), obj.value.nbytes if obj.value is not None else 0)
    elif isinstance(obj, (str, bytes, bytearray)):
        size = (1, len(obj))
    elif isinstance(obj, dict):
        parts = [_expanded_size(v, seen, depth + 1) for kv in obj.items() for v in kv]
        size = (1 + sum(n for n, _ in parts), sum(b for _, b in parts))
    elif isinstance(obj, (list, tuple, set, frozenset)):
        parts = [_expanded_size(v, seen, depth + 1) for v in obj]
        size = (1 + sum(n for n, _ in parts), sum(b for _, b in parts))
    else:
        size = (1, 8)
    seen[key] = size
    return size


def _convert(obj: Any, done: dict[int, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise UnsafePickleError("the pickle is nested too deeply")
    key = id(obj)
    if key in done:
        return done[key]
    if isinstance(obj, _ArrayStub):
        if obj.value is None:
            raise UnsafePickleError("numpy array without data")
        out = obj.value
    elif isinstance(obj, _DtypeStub):
        out = _dtype_of(obj)
    elif isinstance(obj, (_Global, _Mark)):
        raise UnsafePickleError("the pickle leaves a bare global on the stack")
    elif isinstance(obj, dict):
        out = {_convert(k, done, depth + 1): _convert(v, done, depth + 1) for k, v in obj.items()}
    elif isinstance(obj, list):
        out = [_convert(v, done, depth + 1) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_convert(v, done, depth + 1) for v in obj)
    elif isinstance(obj, (set, frozenset)):
        out = type(obj)(_convert(v, done, depth + 1) for v in obj)
    else:
        return obj
    done[key] = out
    return out


def _hashable(v: Any) -> Any:
    if isinstance(v, (_ArrayStub, _DtypeStub, _Global, list, dict, set)):
        raise UnsafePickleError("unhashable dict key or set item")
    return v


def safe_unpickle(data: bytes) -> Any:
    """Decode a pickle of plain data and numpy arrays without executing anything.

    Raises:
        UnsafePickleError: the pickle uses an opcode or global outside the
            small allowed set (for example ``os.system`` via ``REDUCE``),
            or is malformed/truncated.
    """
    mv = memoryview(data)
    pos = 0
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(mv):
            raise UnsafePickleError("the pickle is truncated")
        out = bytes(mv[pos : pos + n])
        pos += n
        return out

    def pop_mark() -> list[Any]:
        if not marks:
            raise UnsafePickleError("malformed pickle (no MARK)")
        k = marks.pop()
        items = stack[k:]
        del stack[k:]
        return items

    def pop() -> Any:
        if not stack:
            raise UnsafePickleError("malformed pickle (stack underflow)")
        return stack.pop()

    def top() -> Any:
        if not stack:
            raise UnsafePickleError("malformed pickle (empty stack)")
        return stack[-1]

    def glob(module: str, name: str) -> _Global:
        kind = _ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise UnsafePickleError(f"the pickle asks for {module}.{name}, which is not allowed")
        return _Global(kind)

    while True:
        op = take(1)
        if op == b"\x80":  # PROTO
            proto = take(1)[0]
            if proto > 5:
                raise UnsafePickleError(f"unsupported pickle protocol {proto}")
        elif op == b"\x95":  # FRAME
            take(8)
        elif op == b".":  # STOP
            result = pop()
            return _finish(result)
        elif op == b"}":
            stack.append({})
        elif op == b"]":
            stack.append([])
        elif op == b")":
            stack.append(())
        elif op == b"\x8f":  # EMPTY_SET
            stack.append(set())
        elif op == b"(":  # MARK
            marks.append(len(stack))
        elif op in (b"s", b"u"):  # SETITEM / SETITEMS
            items = [pop(), pop()][::-1] if op == b"s" else pop_mark()
            d = top()
            if not isinstance(d, dict) or len(items) % 2:
                raise UnsafePickleError("malformed pickle (SETITEM)")
            for i in range(0, len(items), 2):
                d[_hashable(items[i])] = items[i + 1]
        elif op in (b"a", b"e"):  # APPEND / APPENDS
            items = [pop()] if op == b"a" else pop_mark()
            lst = top()
            if not isinstance(lst, list):
                raise UnsafePickleError("malformed pickle (APPEND)")
            lst.extend(items)
        elif op == b"\x90":  # ADDITEMS
            items = pop_mark()
            s = top()
            if not isinstance(s, set):
                raise UnsafePickleError("malformed pickle (ADDITEMS)")
            s.update(_hashable(v) for v in items)
        elif op == b"\x91":  # FROZENSET
            items = pop_mark()
            stack.append(frozenset(_hashable(v) for v in items))
        elif op == b"t":  # TUPLE
            items = pop_mark()
            stack.append(tuple(items))
        elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1..3
            n = op[0] - 0x84
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif op == b"J":
            stack.append(struct.unpack("<i", take(4))[0])
        elif op == b"K":
            stack.append(take(1)[0])
        elif op == b"M":
            stack.append(struct.unpack("<H", take(2))[0])
        elif op == b"\x8a":  # LONG1
            n = take(1)[0]
            stack.append(int.from_bytes(take(n), "little", signed=True))
        elif op == b"\x8b":  # LONG4
            n = struct.unpack("<i", take(4))[0]
            if n > 1 << 16:
                raise UnsafePickleError("integer too large")
            stack.append(int.from_bytes(take(n), "little", signed=True))
        elif op == b"G":
            stack.append(struct.unpack(">d", take(8))[0])
        elif op == b"N":
            stack.append(None)
        elif op == b"\x88":
            stack.append(True)
        elif op == b"\x89":
            stack.append(False)
        elif op == b"\x8c":  # SHORT_BINUNICODE
            stack.append(take(take(1)[0]).decode("utf-8", "surrogatepass"))
        elif op == b"X":  # BINUNICODE
            stack.append(take(struct.unpack("<I", take(4))[0]).decode("utf-8", "surrogatepass"))
        elif op == b"\x8d":  # BINUNICODE8
            stack.append(take(struct.unpack("<Q", take(8))[0]).decode("utf-8", "surrogatepass"))
        elif op == b"C":  # SHORT_BINBYTES
            stack.append(take(take(1)[0]))
        elif op == b"B":  # BINBYTES
            stack.append(take(struct.unpack("<I", take(4))[0]))
        elif op == b"\x8e":  # BINBYTES8
            stack.append(take(struct.unpack("<Q", take(8))[0]))
        elif op == b"\x96":  # BYTEARRAY8
            stack.append(bytearray(take(struct.unpack("<Q", take(8))[0])))
        elif op == b"U":  # SHORT_BINSTRING (protocol 2 str)
            stack.append(take(take(1)[0]).decode("latin-1"))
        elif op == b"T":  # BINSTRING
            stack.append(take(struct.unpack("<i", take(4))[0]).decode("latin-1"))
        elif op == b"\x94":  # MEMOIZE
            memo[len(memo)] = top()
        elif op == b"q":  # BINPUT
            memo[take(1)[0]] = top()
        elif op == b"r":  # LONG_BINPUT
            memo[struct.unpack("<I", take(4))[0]] = top()
        elif op in (b"h", b"j"):  # BINGET / LONG_BINGET
            key = take(1)[0] if op == b"h" else struct.unpack("<I", take(4))[0]
            if key not in memo:
                raise UnsafePickleError("malformed pickle (memo)")
            stack.append(memo[key])
        elif op == b"\x93":  # STACK_GLOBAL
            name, module = pop(), pop()
            if not isinstance(module, str) or not isinstance(name, str):
                raise UnsafePickleError("malformed pickle (STACK_GLOBAL)")
            stack.append(glob(module, name))
        elif op == b"c":  # GLOBAL "module\nname\n"
            module = _readline(take, 256)
            name = _readline(take, 256)
            stack.append(glob(module, name))
        elif op == b"R":  # REDUCE
            args = pop()
            fn = pop()
            stack.append(_call(fn, args))
        elif op == b"b":  # BUILD
            state = pop()
            _build(top(), state)
        else:
            raise UnsafePickleError(f"pickle opcode {op!r} is not allowed")


def _readline(take, limit: int) -> str:
    out = bytearray()
    while True:
        c = take(1)
        if c == b"\n":
            return out.decode("ascii", "replace")
        out += c
        if len(out) > limit:
            raise UnsafePickleError("malformed pickle (GLOBAL)")


# --- JPEG segments ------------------------------------------------------------


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Header segments ``(marker, payload)`` up to (not including) SOS and the SOS offset."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    i, segs = 2, []
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"corrupt JPEG header at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xDA:
            return segs, i
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2 or i + 2 + length > len(data):
            raise ValueError("JPEG header is truncated")
        segs.append((marker, data[i + 4 : i + 2 + length]))
        i += 2 + length
    raise ValueError("JPEG header is truncated")


def _assemble(segs: list[tuple[int, bytes]], rest: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    for marker, payload in segs:
        if len(payload) + 2 > 0xFFFF:
            raise ValueError("JPEG segment too large (DeepFaceLab metadata over 64 KB)")
        out += bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return bytes(out) + rest


def read_dfl_dict(data: bytes) -> dict[str, Any]:
    """The metadata dict of a DFL JPEG, decoded by :func:`safe_unpickle`."""
    segs, _ = _segments(data)
    payloads = [p for m, p in segs if m == _APP15]
    if not payloads:
        raise ValueError("no DeepFaceLab metadata (APP15 segment)")
    d = safe_unpickle(b"".join(payloads) if len(payloads) > 1 else payloads[0])
    if not isinstance(d, dict):
        raise ValueError("DeepFaceLab metadata is not a dict")
    return d


def _arr(v: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        a = np.asarray(v, np.float64)
    except (OverflowError, TypeError) as e:
        raise ValueError(f"not an array of numbers ({e})") from None
    if shape is not None and a.shape != shape:
        raise ValueError(f"expected shape {shape}, got {a.shape}")
    return a


def dfl_to_record(d: dict[str, Any], image_shape: tuple[int, ...], name: str) -> FaceRecord:
    """Build a facelab record from a DFL metadata dict and the face image size."""
    dfl_type = str(d.get("face_type", ""))
    if dfl_type not in DFL_TO_FACELAB:
        raise ValueError(f"unsupported DeepFaceLab face type {dfl_type!r}")
    h, w = image_shape[:2]
    if "landmarks" not in d:
        raise ValueError("no landmarks")
    landmarks = _arr(d["landmarks"])
    if landmarks.ndim != 2 or landmarks.shape[1] != 2 or landmarks.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got shape {landmarks.shape}")
    src_lm = d.get("source_landmarks")
    mat = d.get("image_to_face_mat")
    if mat is not None:
        mat = _arr(mat, (2, 3))
    if src_lm is not None:
        src_lm = _arr(src_lm, landmarks.shape)
        if mat is None:
            mat = align.umeyama(src_lm, landmarks)
    elif mat is not None:
        src_lm = align.transform_points(landmarks, align.invert_affine(mat)).astype(np.float64)
    else:
        raise ValueError("neither source_landmarks nor image_to_face_mat")
    rect = d.get("source_rect")
    if rect is None or len(rect) != 4:
        xs, ys = src_lm[:, 0], src_lm[:, 1]
        rect = (xs.min(), ys.min(), xs.max(), ys.max())
    extra: dict[str, Any] = {"imported_from": "deepfacelab", "dfl_face_type": dfl_type, "original_filename": name}
    mod = d.get("eyebrows_expand_mod")
    if isinstance(mod, (int, float, np.number)):
        extra["dfl_eyebrows_expand_mod"] = float(mod)
    if d.get("xseg_mask") is not None:
        extra["dfl_had_xseg_mask"] = True  # not converted (facelab masks are its own)
    # DFL 2 sorts its polygons (includes first) as it reads them; the seed's ie_polys were drawn as stored
    drawn, sort = (d["seg_ie_polys"], True) if d.get("seg_ie_polys") is not None else (d.get("ie_polys"), False)
    if drawn is not None:
        polygons, dropped = from_dfl(drawn, sort=sort)
        if polygons:
            extra[POLYGONS_KEY] = [p.to_json() for p in polygons]
        if dropped:
            extra["dfl_polygons_dropped"] = dropped
    record = FaceRecord(
        face_type=DFL_TO_FACELAB[dfl_type],
        size=int(w if w == h else max(w, h)),
        source_filename=_frame_name(d.get("source_filename"), name),
        source_size=(0, 0),  # DFL does not store the frame size
        source_rect=tuple(float(v) for v in _arr(rect, (4,))),  # type: ignore[arg-type]
        source_landmarks=src_lm.astype(np.float32),
        landmarks=landmarks.astype(np.float32),
        image_to_face_mat=mat,
        face_index=0,
        extra=extra,
    )
    # the same checks as reading a facelab face: NaN, inf or huge numbers never enter facelab metadata
    validate_document(json.loads(json.dumps(record.to_dict())))
    return record


def _frame_name(value: Any, fallback: str) -> str:
    """DFL's ``source_filename`` as a plain file name: a path keeps only its last part (either slash);
    anything still unusable becomes the face file's own name."""
    if isinstance(value, str) and value:
        last = value.replace("\\", "/").rsplit("/", 1)[-1]
        try:
            return safe_name(last)
        except ValueError:
            pass
    return fallback


@dataclass
class ImportResult:
    imported: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (DFL file name, name it got: its own was taken)
    unchanged: list[str] = field(default_factory=list)  # imported before: the same face is there already


def import_dfl(src_dir: Path, out_dir: Path) -> ImportResult:
    """Convert every DFL face JPEG in ``src_dir`` into a facelab face in ``out_dir``.

    The JPEG pixels are kept as they are (the facelab APP9 segment is added, the
    APP15 pickle removed). Files whose metadata cannot be read safely are skipped
    and named; one bad file never stops the others. No file in ``out_dir`` is
    ever overwritten: a face whose name is taken (by an earlier face, or by
    ``a.jpg`` beside ``a.jpeg``) gets a free name, listed in ``renamed``; a face
    already imported byte for byte is left as it is.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise FacelabError(f"{src_dir} is not a folder", "give the folder of a DeepFaceLab face set (its aligned/ folder)")
    files = sorted(p for p in src_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith("."))
    if not files:
        raise FacelabError(f"{src_dir} has no JPEG faces", "DeepFaceLab face sets are folders of .jpg files")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = ImportResult()
    from facelab.faceimage import embed_jpeg, face_from_bytes

    for p in files:
        try:
            data = p.read_bytes()
            d = read_dfl_dict(data)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError("the image cannot be decoded")
            record = dfl_to_record(d, img.shape, p.name)
            segs, sos = _segments(data)
            plain = _assemble([(m, pl) for m, pl in segs if m != _APP15], data[sos:])
            out = embed_jpeg(plain, record)
            face_from_bytes(out, p.name)  # what is written reads back as a valid face
        except (ValueError, UnsafePickleError, OSError, struct.error, IndexError, TypeError, KeyError,
                OverflowError, RecursionError, MemoryError, FacelabError) as e:
            res.skipped.append((p.name, str(e)[:300] or type(e).__name__))
            continue
        target = out_dir / (p.stem + ".jpg")
        k = 1
        while target.exists():
            if target.read_bytes() == out:
                break
            target = out_dir / f"{p.stem}_{k}.jpg"
            k += 1
        if target.exists():
            res.unchanged.append(p.name)
            continue
        if target.name != p.stem + ".jpg":
            res.renamed.append((p.name, target.name))
        atomic_write_bytes(target, out)
        res.imported.append(target)
    return res


def record_to_dfl(record: FaceRecord) -> dict[str, Any]:
    """DFL's metadata dict (plain types and numpy arrays) for a facelab record; its mask polygons go to
    ``seg_ie_polys`` (left out when there are none or they cannot be read)."""
    try:
        polygons = polygons_of(record)
    except ValueError:
        polygons = []
    out = {
        "face_type": FACELAB_TO_DFL[record.face_type],
        "landmarks": np.asarray(record.landmarks, np.float32),
        "source_filename": record.source_filename,
        "source_rect": [int(round(v)) for v in record.source_rect],
        "source_landmarks": np.asarray(record.source_landmarks, np.float32),
        "image_to_face_mat": np.asarray(record.image_to_face_mat, np.float32),
        "eyebrows_expand_mod": float(record.extra.get("dfl_eyebrows_expand_mod", 1.0)),
    }
    if polygons:
        out["seg_ie_polys"] = to_dfl(polygons)
    return out


def dfl_bytes(image: np.ndarray, record: FaceRecord, jpeg_quality: int = 95, jpeg: bytes | None = None) -> bytes:
    """A DFL face JPEG: the image (``jpeg`` bytes kept as they are when given) + APP15 pickle."""
    payload = pickle.dumps(record_to_dfl(record), protocol=4)
    base = jpeg if jpeg is not None else encode_image(image, ".jpg", jpeg_quality)
    segs, sos = _segments(base)
    segs = [(m, p) for m, p in segs if m != _APP15 and not (m == _APP9 and p.startswith(_FACELAB_MAGIC))]
    at = next((i + 1 for i, (m, _) in enumerate(segs) if m == 0xE0), 0)
    segs.insert(at, (_APP15, payload))
    return _assemble(segs, base[sos:])


def export_dfl(face_paths: list[Path], out_dir: Path, jpeg_quality: int = 95) -> tuple[list[Path], list[str]]:
    """Write each facelab face as a DFL face JPEG (same stem) into ``out_dir``; returns the files written and
    one message per face skipped (unreadable, or a face type DeepFaceLab does not know)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for p in face_paths:
        try:
            image, record = read_face(p)
        except FaceFileError as e:
            skipped.append(e.message)
            continue
        if record.face_type not in FACELAB_TO_DFL:
            skipped.append(f"{p} has face type {record.face_type!r}, which DeepFaceLab does not know")
            continue
        data = p.read_bytes()
        jpeg = data if data[:2] == b"\xff\xd8" else None
        target = out_dir / (p.stem + ".jpg")
        try:
            out = dfl_bytes(image, record, jpeg_quality, jpeg)
        except ValueError as e:  # DFL reads one APP15 segment: metadata over 64 KB (thousands of polygon points)
            skipped.append(f"{p}: {e}")
            continue
        atomic_write_bytes(target, out)
        written.append(target)
    return written, skipped


__all__ = [
    "ImportResult",
    "UnsafePickleError",
    "dfl_bytes",
    "dfl_to_record",
    "export_dfl",
    "face_bytes",
    "import_dfl",
    "read_dfl_dict",
    "record_to_dfl",
    "safe_unpickle",
]
