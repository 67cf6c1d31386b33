"""The faces of a side as the UI's face-set page lists them: entries, filters, and the orders of the sort methods.

Listing 10,000 faces must not decode 10,000 files every time. What the list
shows of a face (source frame, face index, pose, blur score ...) is kept in the
side's :meth:`~facelab.workspace.Workspace.face_list_cache`, keyed by the file's
inode, modification time and size: ``facelab sort`` renaming a face, or a move
to the trash and back, keeps the key; rewriting the face makes a new one. The
values come from the functions ``facelab sort`` uses (:mod:`facelab.faceset.features`),
so an order made from them is the order ``sort`` makes (:func:`sort_plan`).
Faces are named by their ids (:mod:`facelab.faceset.faceid`).
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import FaceFileError, SettingsError, WorkspaceError
from facelab.faceimage import read_face
from facelab.faceset import features
from facelab.faceset import sort as fsort
from facelab.faceset.faceid import face_id, frame_path
from facelab.faceset.files import face_files
from facelab.fileio import atomic_write_bytes, path_lock
from facelab.progress import track
from facelab.workspace import Workspace, check_side

CACHE_FORMAT = 1  # bump when a cached value changes meaning (a new blur measure ...)
CACHED_FEATURES = frozenset({"sharpness", "pose", "rect_size", "origin"})  # sort features the cache holds
CHEAP_METHODS = tuple(m for m, spec in fsort.METHODS.items() if set(spec.features) <= CACHED_FEATURES)
"""Sort methods computed from the cache alone (:func:`list_faces` takes them; :func:`sort_plan` takes every method)."""
WHERE = ("aligned", "trash")


@dataclass(frozen=True, slots=True)
class FaceEntry:
    """One face of a listing.

    Attributes:
        id: the face's id (``data_src/aligned/00012_0.jpg``).
        name: its file name.
        source: name of the frame it was cut from; ``None`` when the file cannot be read as a face.
        face_index: index of the face within that frame.
        faces_in_frame: faces of the same listing cut from the same frame (0 for an unreadable file).
        blur_score: sharpness as ``sort --by blur`` measures it (variance of the Laplacian inside the
            landmark hull); low means blurry.
        yaw, pitch: head pose in degrees (:mod:`facelab.faceset.pose`).
        face_type, size: the face's type and pixel size.
        error: why the file cannot be read as a face, else ``None``.
    """

    id: str
    name: str
    source: str | None = None
    face_index: int | None = None
    faces_in_frame: int = 0
    blur_score: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    face_type: str | None = None
    size: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FaceFilter:
    """Which faces a listing keeps (all of the given conditions hold).

    Attributes:
        several_faces: only faces whose source frame gave more than one face.
        blur_below: only faces with a blur score below this.
        blur_lowest_percent: only the blurriest ``(0, 100]`` percent of the readable faces.
        unreadable: only files that cannot be read as faces.
    """

    several_faces: bool = False
    blur_below: float | None = None
    blur_lowest_percent: float | None = None
    unreadable: bool = False

    def __post_init__(self) -> None:
        p = self.blur_lowest_percent
        if p is not None and not (isinstance(p, (int, float)) and 0 < p <= 100):
            raise SettingsError(f"blur_lowest_percent must be in (0, 100], got {p!r}", "give a percentage such as 10")
        if self.blur_below is not None and not (isinstance(self.blur_below, (int, float)) and math.isfinite(self.blur_below)):
            raise SettingsError(f"blur_below must be a number, got {self.blur_below!r}", "give a blur score such as 50")


@dataclass(frozen=True)
class SortPlan:
    """What ``facelab sort --by METHOD`` would do, with no file touched: ``order`` the names it keeps,
    first to last; ``trash`` those it would move to ``aligned_trash``; ``skipped`` unreadable files it leaves."""

    order: list[str]
    trash: list[str]
    skipped: list[str]


# --- the cache of per-face values --------------------------------------------------------------------

def file_key(path: Path, st: os.stat_result) -> str:
    """A face file's identity for a cache of values read from it: inode, modification time and size. A rename or
    a move within the file system keeps it; facelab's writes (atomic: a new file renamed over the old) change it."""
    who = str(st.st_ino) if st.st_ino else path.name  # some file systems have no inode numbers
    return f"{who}-{st.st_mtime_ns}-{st.st_size}"


_FIELDS = {"source": str, "index": int, "type": str, "size": int, "blur": float, "yaw": float, "pitch": float, "rect": float}


def _valid(entry: Any) -> bool:
    """Whether a cache entry read back has every value with its type (a damaged cache is measured again)."""
    if not isinstance(entry, dict):
        return False
    if "error" in entry:
        return isinstance(entry["error"], str)
    for k, t in _FIELDS.items():
        v = entry.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float) if t is float else t):
            return False
    return True


def _measure(path: Path) -> dict[str, Any]:
    """The cached values of one face file (``{"error": message}`` when it cannot be read as a face)."""
    try:
        image, record = read_face(path)
    except FaceFileError as e:
        return {"error": e.message}
    yaw, pitch = features.pose(None, record)
    return {"source": record.source_filename, "index": int(record.face_index), "type": record.face_type,
            "size": int(record.size), "blur": float(features.sharpness(image, record)), "yaw": float(yaw),
            "pitch": float(pitch), "rect": float(features.rect_size(None, record))}


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("faces"), dict):
        return {}
    return doc["faces"]


CHUNK = 2000  # faces measured between two writes of the cache, so a first listing cut short keeps most of its work


class MeasureNeeded(WorkspaceError):
    """A listing called with ``measure_limit`` would decode more faces than that: ``count`` of ``total``."""

    def __init__(self, count: int, total: int) -> None:
        super().__init__(f"{count} of {total} faces are not measured yet", "list them once without a limit (a job)")
        self.count, self.total = count, total


def _face_values(ws: Workspace, side: str, paths: list[Path], workers: int = 0,
                 measure_limit: int | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, cached values)`` of each of ``paths`` that still exists (face files of the side's ``aligned``
    or ``aligned_trash``), measuring on ``workers`` threads (0: all cores) and storing what the cache lacks.
    Values are ``{"error": message}`` for a file that cannot be read as a face. Writing the cache drops the
    entries of files in neither folder, so it does not grow."""
    cache_path = ws.face_list_cache(check_side(side))
    with path_lock(cache_path):
        cache = _load(cache_path)
        keyed = _keyed(paths)
        todo = [(p, key) for p, key in keyed if not _valid(cache.get(key))]
        if measure_limit is not None and len(todo) > measure_limit:
            raise MeasureNeeded(len(todo), len(keyed))
        pool_size = workers if workers > 0 else (os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            measured = track(pool.map(_measure, [p for p, _ in todo]), len(todo), f"face list {side}")
            try:
                for k, values in enumerate(measured):
                    cache[todo[k][1]] = values
                    if (k + 1) % CHUNK == 0 or k + 1 == len(todo):
                        _save(ws, side, cache, keyed)
            except BaseException:  # a cancelled job: stop after the faces in flight, keep what was measured
                pool.shutdown(cancel_futures=True)
                _save(ws, side, cache, keyed)
                raise
        return [(p, cache[key]) for p, key in keyed]


def _keyed(paths: list[Path]) -> list[tuple[Path, str]]:
    out = []
    for p in paths:
        try:
            out.append((p, file_key(p, p.stat())))
        except FileNotFoundError:
            continue  # moved away while we listed
    return out


def _save(ws: Workspace, side: str, cache: dict[str, Any], keyed: list[tuple[Path, str]]) -> None:
    live = {key for _, key in keyed}
    listed = {p.parent for p, _ in keyed}
    for folder in (ws.aligned_dir(side), ws.trash_dir(side)):
        if folder not in listed:
            live.update(key for _, key in _keyed(face_files(folder)))
    doc = {"format": CACHE_FORMAT, "faces": {k: v for k, v in cache.items() if k in live}}
    path = ws.face_list_cache(side)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"), shared=True)


# --- listing -----------------------------------------------------------------------------------------


def _entry(prefix: str, path: Path, v: dict[str, Any], per_frame: dict[str, int]) -> FaceEntry:
    if "error" in v:
        return FaceEntry(prefix + path.name, path.name, error=v["error"])
    return FaceEntry(prefix + path.name, path.name, v["source"], v["index"], per_frame[v["source"]], float(v["blur"]),
                     float(v["yaw"]), float(v["pitch"]), v["type"], v["size"])


def _feats(v: dict[str, Any]) -> dict[str, Any]:
    """The sort features (:mod:`facelab.faceset.features` names) of a cached entry."""
    return {"sharpness": v["blur"], "pose": (v["yaw"], v["pitch"]), "rect_size": v["rect"], "origin": (v["source"], v["index"])}


def _paths(ws: Workspace, side: str, where: str) -> list[Path]:
    check_side(side)
    if where not in WHERE:
        raise SettingsError(f"where must be one of {', '.join(WHERE)}, got {where!r}", "use 'aligned' or 'trash'")
    return ws.aligned_paths(side) if where == "aligned" else face_files(ws.trash_dir(side))


def list_faces(ws: Workspace, side: str, *, where: str = "aligned", sort: str | None = None,
               filters: FaceFilter = FaceFilter(), workers: int = 0, measure_limit: int | None = None) -> list[FaceEntry]:
    """The faces of ``data_<side>/aligned`` (``where="trash"``: ``aligned_trash``) as :class:`FaceEntry` s.

    ``sort``: ``None`` or ``"name"`` (file name order), or one of :data:`CHEAP_METHODS` (the order
    ``facelab sort`` would give, faces it would trash after the others). Unreadable files come last.
    The first listing of a large set measures every face (reported as progress to the current job);
    later ones read the cache. ``measure_limit``: raise :class:`MeasureNeeded` instead when more faces
    than that are not measured yet (the UI then runs the first listing as a job). A packed face set
    (``aligned.faceset``) is not unpacked: it lists nothing.
    """
    if sort not in (None, "name") and sort not in CHEAP_METHODS:
        raise SettingsError(f"the face list cannot sort by {sort!r}",
                            f"use 'name' or one of {', '.join(CHEAP_METHODS)}; sort_plan() computes the others")
    paths = _paths(ws, side, where)
    found = _face_values(ws, side, paths, workers, measure_limit)
    values = [v for _, v in found]
    per_frame: dict[str, int] = {}
    for v in values:
        if "error" not in v:
            per_frame[v["source"]] = per_frame.get(v["source"], 0) + 1
    folder = ws.aligned_dir(side) if where == "aligned" else ws.trash_dir(side)
    prefix = face_id(ws, folder) + "/"
    entries = [_entry(prefix, p, v, per_frame) for p, v in found]
    if sort not in (None, "name"):
        readable = [k for k, e in enumerate(entries) if e.error is None]
        order, trash = fsort.order_faces(sort, [_feats(values[k]) for k in readable])
        entries = [entries[readable[i]] for i in order + trash] + [e for e in entries if e.error is not None]
    return _filtered(entries, filters)


def _filtered(entries: list[FaceEntry], f: FaceFilter) -> list[FaceEntry]:
    if f.unreadable:
        entries = [e for e in entries if e.error is not None]
    if f.several_faces:
        entries = [e for e in entries if e.faces_in_frame > 1]
    if f.blur_below is not None:
        entries = [e for e in entries if e.blur_score is not None and e.blur_score < f.blur_below]
    if f.blur_lowest_percent is not None:
        scored = sorted((e for e in entries if e.blur_score is not None), key=lambda e: (e.blur_score, e.name))
        lowest = {e.id for e in scored[: math.ceil(len(scored) * f.blur_lowest_percent / 100)]}
        entries = [e for e in entries if e.id in lowest]
    return entries


def frames_without_face(ws: Workspace, side: str) -> list[str]:
    """Ids of the side's frames where ``facelab extract`` found no face (its ``no_face.txt``) that are still
    there, sorted. These are frames, not faces: :func:`frame_path` opens them."""
    try:
        lines = ws.no_face_list(check_side(side)).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for name in sorted(set(n.strip() for n in lines)):
        try:
            out.append(face_id(ws, frame_path(ws, f"{face_id(ws, ws.frames_dir(side))}/{name}")))
        except WorkspaceError:
            continue  # a frame deleted since, or a line that is not a frame name
    return out


# --- orders ------------------------------------------------------------------------------------------


def sort_plan(ws: Workspace, side: str, method: str, *, target: int = 2000, reference: np.ndarray | None = None,
              workers: int = 0) -> SortPlan:
    """What ``facelab sort <side> --by <method>`` would do to ``data_<side>/aligned``, renaming nothing.

    :data:`CHEAP_METHODS` come from the face list's cache; the others compute their features as ``sort``
    does (decoding every face; kept in memory for the process). ``reference`` (``identity``): the person's
    embedding, as :func:`facelab.stages.sort.reference_embedding` gives it. One difference: a file whose
    record reads but whose pixels do not is ``skipped`` here, where sort's record-only methods (``origname``,
    ``face-yaw`` ...) would still order it.
    """
    if method not in fsort.METHODS:
        raise SettingsError(f"unknown sort method {method!r}", f"use one of {', '.join(fsort.METHODS)}")
    if method == "identity" and reference is None:
        raise SettingsError("the identity order needs a reference embedding", "pass reference=reference_embedding(image)")
    paths = _paths(ws, side, "aligned")
    if method in CHEAP_METHODS:
        found = _face_values(ws, side, paths, workers)
        paths, values = [p for p, _ in found], [v for _, v in found]
        readable = [k for k, v in enumerate(values) if "error" not in v]
        order, trash = fsort.order_faces(method, [_feats(values[k]) for k in readable], target=target)
    else:
        readable, order, trash = fsort.rank(paths, method, target=target, reference=reference, workers=workers,
                                            description=f"order {side} by {method}", errors=[])
    kept = set(readable)
    return SortPlan([paths[readable[i]].name for i in order], [paths[readable[i]].name for i in trash],
                    [p.name for k, p in enumerate(paths) if k not in kept])


def sort_order(ws: Workspace, side: str, method: str, **kwargs: Any) -> list[str]:
    """The names of ``data_<side>/aligned`` in the order ``facelab sort --by <method>`` would give them,
    renaming nothing: the faces it keeps, then those it would trash, then unreadable files
    (keywords as :func:`sort_plan`)."""
    plan = sort_plan(ws, side, method, **kwargs)
    return plan.order + plan.trash + plan.skipped
