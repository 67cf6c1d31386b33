"""Include and exclude polygons drawn on an aligned face: the mask editor's data (DeepFaceLab's ``seg_ie_polys``).

Stored in the face file's own metadata (:mod:`facelab.faceimage`), in the
record's ``extra`` under :data:`POLYGONS_KEY`, as a JSON list in drawing order::

    "mask_polygons": [{"kind": "include", "points": [[x, y], [x, y], [x, y], ...]},
                      {"kind": "exclude", "points": [...]}]

Points are face-image pixels (``x`` right, ``y`` down; integer values are
pixel centres, as OpenCV draws), rounded to 0.001 px, and may lie outside the
image. A polygon has at least 3 points. A face without polygons has no key.

Rasterizing (:func:`rasterize`) follows DeepFaceLab: start from 0, fill each
polygon in order, include with 1 and exclude with 0 (so a later polygon wins
where they overlap), points truncated to integers as DeepFaceLab does, 8-connected
edges included. DeepFaceLab 2 sorts a face's polygons, includes first, when it
reads them; the importer (:func:`from_dfl`) does the same, so an imported mask
is the one DeepFaceLab 2 trained on. Exporting writes them in facelab's order,
which DeepFaceLab 2 sorts again: a face whose exclude polygon is drawn before
an include one overlapping it looks different there.

When a face is cut again from its frame (``faceset resize``, ``extract
--smooth``), its polygons move with the pixels (:func:`remap_extra`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from facelab.checks import check_affine
from facelab.errors import FaceFileError
from facelab.faceimage import FaceRecord, read_record, rewrite_record

POLYGONS_KEY = "mask_polygons"
INCLUDE, EXCLUDE = "include", "exclude"
KINDS = (INCLUDE, EXCLUDE)
MAX_COORD = 65536.0  # px: far beyond any face (8192 at most), still safe for OpenCV's int32 drawing
DFL_TYPES = {1: INCLUDE, 0: EXCLUDE}  # DeepFaceLab's SegIEPolyType (and the seed's IEPolys type)


@dataclass(frozen=True, eq=False)
class Polygon:
    """One polygon: ``kind`` ``"include"`` or ``"exclude"``; ``points`` ``(N, 2) float32`` (N >= 3) in
    face-image pixels (a read-only copy of what was given). ``ValueError`` for anything else."""

    kind: str
    points: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"polygon kind must be 'include' or 'exclude', got {self.kind!r}")
        try:
            pts = np.array(self.points, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):
            raise ValueError("polygon points: expected (N, 2) numbers") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError(f"polygon points: expected (N, 2) with N >= 3, got {pts.shape}")
        if not np.isfinite(pts).all() or np.abs(pts).max() > MAX_COORD:
            raise ValueError(f"polygon points must be finite and within {MAX_COORD:g} px")
        pts.flags.writeable = False
        object.__setattr__(self, "points", pts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Polygon) and self.kind == other.kind and np.array_equal(self.points, other.points)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "points": np.round(self.points.astype(np.float64), 3).tolist()}

    @classmethod
    def from_json(cls, d: Any) -> "Polygon":
        if not isinstance(d, dict) or set(d) != {"kind", "points"}:
            raise ValueError("a polygon must be an object with 'kind' and 'points'")
        return cls(d["kind"], d["points"])


def polygons_of(record: FaceRecord) -> list[Polygon]:
    """The polygons of a face record, in drawing order (``[]`` when it has none); ``ValueError`` if the
    stored value is not a list of valid polygons."""
    return _parse(record.extra.get(POLYGONS_KEY))


def _parse(value: Any) -> list[Polygon]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"extra.{POLYGONS_KEY} must be a list, got {type(value).__name__}")
    out = []
    for i, d in enumerate(value):
        try:
            out.append(Polygon.from_json(d))
        except ValueError as e:
            raise ValueError(f"extra.{POLYGONS_KEY}[{i}]: {e}") from None
    return out


def with_polygons(record: FaceRecord, polygons: Sequence[Polygon]) -> FaceRecord:
    """``record`` with ``polygons`` (replacing any); an empty list removes the key."""
    for p in polygons:
        if not isinstance(p, Polygon):
            raise TypeError(f"expected Polygon, got {type(p).__name__}")
    extra = {k: v for k, v in record.extra.items() if k != POLYGONS_KEY}
    if polygons:
        extra[POLYGONS_KEY] = [p.to_json() for p in polygons]
    return record.replace(extra=extra)


def read_polygons(path: str | Path) -> list[Polygon]:
    """The polygons stored in a face file. Raises :class:`FaceFileError` for a file that is not a face or
    whose polygons are not valid."""
    record = read_record(path)
    try:
        return polygons_of(record)
    except ValueError as e:
        raise FaceFileError(f"{path} has mask polygons facelab cannot read: {e}",
                            "draw them again in the mask editor (saving replaces them)") from None


def write_polygons(path: str | Path, polygons: Sequence[Polygon]) -> None:
    """Store ``polygons`` (in drawing order; ``[]`` removes them) in a face file, atomically.

    Only the metadata segment changes: the pixels (JPEG scan data or PNG chunks) and every other
    field of the record are written back as they were.
    """
    rewrite_record(path, with_polygons(read_record(path), list(polygons)))


def rasterize(polygons: Iterable[Polygon], size: int | tuple[int, int]) -> np.ndarray:
    """The mask the polygons draw: ``(H, W) float32`` in ``{0, 1}`` (``size`` is ``H = W`` or ``(H, W)``).

    Starts from 0 and fills each polygon in order, include with 1, exclude with 0 (module docstring).
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    if not (int(h) > 0 and int(w) > 0):
        raise ValueError(f"rasterize: expected a positive size, got {size!r}")
    mask = np.zeros((int(h), int(w)), np.float32)
    for p in polygons:
        if not isinstance(p, Polygon):
            raise TypeError(f"rasterize: expected Polygon, got {type(p).__name__}")
        cv2.fillPoly(mask, [p.points.astype(np.int32)], 1.0 if p.kind == INCLUDE else 0.0)
    return mask


def transform_polygons(polygons: Iterable[Polygon], mat: np.ndarray) -> list[Polygon]:
    """The polygons moved by a ``(2, 3)`` affine (old face pixels -> new face pixels)."""
    m = check_affine(mat, "transform_polygons mat")
    return [Polygon(p.kind, p.points.astype(np.float64) @ m[:, :2].T + m[:, 2]) for p in polygons]


def remap_extra(extra: dict[str, Any], old_mat: np.ndarray, new_mat: np.ndarray, new_size: int | None = None) -> dict[str, Any]:
    """``extra`` of a face re-cut from its frame: polygons drawn on the face cut with ``old_mat`` (frame ->
    face) moved onto the face cut with ``new_mat``, and the segmenter's applied mask (``facelab seg apply``)
    warped onto the new face of side ``new_size`` (dropped when no size is given: a stale mask of another
    crop is worse than none). Unreadable polygons are left as they are."""
    from facelab.seg import store

    to_new = np.vstack([check_affine(new_mat), [0, 0, 1]]) @ np.linalg.inv(np.vstack([check_affine(old_mat), [0, 0, 1]]))
    out = extra  # unchanged (the same object) unless there is something to move
    if store.KEY in out:
        out = dict(extra)
        entry = out.pop(store.KEY)
        if new_size is not None and isinstance(entry, dict) and isinstance(entry.get("png"), str):
            try:
                old = store.decode_mask(entry["png"])
            except ValueError:
                old = None
            if old is not None:
                k = float(entry.get("face_size") or old.shape[0]) / old.shape[0]  # a mask stored smaller than its face
                from_mask = to_new @ np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]])
                moved = cv2.warpAffine(old, from_mask[:2], (int(new_size), int(new_size)), flags=cv2.INTER_LINEAR, borderValue=0)
                out[store.KEY] = {**entry, "png": store.encode_mask(moved), "face_size": int(new_size)}
    if POLYGONS_KEY not in out:
        return out
    try:
        polygons = _parse(out[POLYGONS_KEY])
    except ValueError:
        return out
    return {**out, POLYGONS_KEY: [p.to_json() for p in transform_polygons(polygons, to_new[:2])]}


# --- DeepFaceLab ----------------------------------------------------------------------------------------


def from_dfl(value: Any, sort: bool = True) -> tuple[list[Polygon], int]:
    """Polygons from DeepFaceLab metadata: ``(polygons, number dropped)``.

    ``value`` is DeepFaceLab 2's ``seg_ie_polys`` (``{"polys": [{"type": 0|1, "pts": (N, 2)}, ...]}``) or the
    older list form ``[(type, pts), ...]`` (DeepFaceLab 2's backward-compatible one, and the seed's
    ``ie_polys``). ``sort``: includes first, then excludes, as DeepFaceLab 2 reads them (keep the order for
    the seed's ``ie_polys``, which it drew as stored). Polygons with an unknown type, fewer than 3 points
    or bad numbers are dropped and counted (DeepFaceLab draws nothing for an empty one either).
    """
    if isinstance(value, dict):  # DeepFaceLab 2: {"polys": [{"type": ..., "pts": ...}, ...]}
        items = value.get("polys")
        if not isinstance(items, (list, tuple)):
            return [], 1
        entries = [(d.get("type"), d.get("pts")) if isinstance(d, dict) else (None, None) for d in items]
    elif isinstance(value, (list, tuple)):  # the older form: [(type, pts), ...]
        entries = [tuple(e) if isinstance(e, (list, tuple)) and len(e) == 2 else (None, None) for e in value]
    else:
        return [], 1
    out, dropped = [], 0
    for kind, pts in entries:
        if isinstance(kind, (bool, np.bool_)) or not isinstance(kind, (int, np.integer)) or int(kind) not in DFL_TYPES:
            dropped += 1
            continue
        try:
            if pts is not None and len(pts) == 0:
                continue  # an empty polygon: DeepFaceLab draws nothing for it either
            out.append(Polygon(DFL_TYPES[int(kind)], np.asarray(pts, np.float64)))
        except (ValueError, TypeError, OverflowError):
            dropped += 1
    if sort:
        out = [p for p in out if p.kind == INCLUDE] + [p for p in out if p.kind == EXCLUDE]
    return out, dropped


def to_dfl(polygons: Sequence[Polygon]) -> dict[str, Any] | None:
    """DeepFaceLab 2's ``seg_ie_polys`` value for ``polygons`` (None for none, as DeepFaceLab stores it)."""
    if not polygons:
        return None
    kinds = {v: k for k, v in DFL_TYPES.items()}
    return {"polys": [{"type": kinds[p.kind], "pts": np.array(p.points, np.float32)} for p in polygons]}


__all__ = ["EXCLUDE", "INCLUDE", "KINDS", "POLYGONS_KEY", "Polygon", "from_dfl", "polygons_of", "rasterize",
           "read_polygons", "remap_extra", "to_dfl", "transform_polygons", "with_polygons", "write_polygons"]
