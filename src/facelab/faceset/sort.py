"""Sort methods and the safe renaming of a face folder.

A method turns the faces of a folder into ``(order, trash)``: indices of the
faces to keep, first to last, and of the faces to move to ``aligned_trash``.
:func:`apply` then renames the kept files to ``00000_<original stem>.jpg`` ...
in two phases (every file to a temporary name, then to its final name) under
a journal, so a run killed at any point loses no file, and the next sort (or
:func:`recover`) finishes the interrupted renaming. Every face keeps its first
name in ``extra["original_filename"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelab.face_checks import safe_name
from facelab.errors import FaceFileError
from facelab.faceimage import read_record, rewrite_record
from facelab.faceset import features, renames

JOURNAL = "sort_journal.json"
TMP_PREFIX = ".sorting-"


@dataclass(frozen=True)
class Method:
    name: str
    features: tuple[str, ...]
    help: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("blur", ("sharpness",), "sharpest first, blurriest last (variance of the Laplacian inside the face hull)"),
        Method("motion-blur", ("motion_sharpness",), "faces with strong directional (motion) blur last"),
        Method("face-yaw", ("pose",), "head turned to the image's left first, to the right last"),
        Method("face-pitch", ("pose",), "head raised first, lowered last"),
        Method("source-rect-size", ("rect_size",), "largest detected face (in the frame) first"),
        Method("hist", ("histogram",), "look-alikes together (nearest-neighbour chain by colour histogram)"),
        Method("hist-dissim", ("histogram",), "faces with many near-duplicates (by colour histogram) last"),
        Method("brightness", ("hsv",), "brightest first"),
        Method("hue", ("hsv",), "by mean hue of the face, highest first"),
        Method("black", ("outside",), "faces cut by the frame border (black or replicated edge) last"),
        Method("origname", ("origin",), "by source frame name, then face index"),
        Method("oneface", ("origin",), "frames that gave more than one face: all their faces to aligned_trash"),
        Method("absdiff", ("thumbnail",), "similar pictures together (nearest-neighbour chain by absolute pixel difference)"),
        Method("identity", ("identity",), "closest to the --reference person first"),
        Method("final", ("pose", "sharpness"), "keep --target faces balanced over yaw and pitch, sharpest in each bin; rest to trash"),
    ]
}


# --- ordering ------------------------------------------------------------


def _descending(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def _ascending(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (values[i], i))


def greedy_chain(dist_to: Callable[[int, np.ndarray], np.ndarray], n: int, start: int = 0) -> list[int]:
    """Nearest-neighbour chain: start at ``start``, always step to the closest face not yet visited.

    ``dist_to(i, rest)`` returns the distances from face ``i`` to faces ``rest``.
    """
    if n == 0:
        return []
    order = [start]
    rest = np.array([i for i in range(n) if i != start], np.int64)
    while rest.size:
        d = dist_to(order[-1], rest)
        j = int(np.argmin(d))
        order.append(int(rest[j]))
        rest = np.delete(rest, j)
    return order


BLOCK_ELEMENTS = 1 << 22  # distances held at once by the histogram methods (32 MiB of float64)
NEIGHBOURS = 32  # nearest faces remembered per face by the histogram chain


def hist_roots(hists: np.ndarray) -> np.ndarray:
    """Square roots of ``(N, 3, bins)`` histograms: what :func:`hist_distances` takes."""
    return np.sqrt(hists.astype(np.float64))


def hist_distances(roots_a: np.ndarray, roots_b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` Bhattacharyya distances summed over the B, G, R histograms,
    from their square roots (:func:`hist_roots`)."""
    d = np.zeros((len(roots_a), len(roots_b)))
    for c in range(roots_a.shape[1]):
        bc = roots_a[:, c] @ roots_b[:, c].T
        d += np.sqrt(np.clip(1.0 - bc, 0.0, None))
    return d


def _row_blocks(n: int, width: int) -> list[slice]:
    step = max(1, BLOCK_ELEMENTS // max(width, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def hist_dissimilarity(roots: np.ndarray) -> np.ndarray:
    """Each face's summed histogram distance to every face, computed a block of rows at a
    time: memory stays ``O(N)``, where the ``(N, N)`` matrix of 30,000 faces would take 7 GB."""
    return np.concatenate([hist_distances(roots[b], roots).sum(1) for b in _row_blocks(len(roots), len(roots))])


def hist_chain(roots: np.ndarray, start: int = 0, k: int = NEIGHBOURS) -> list[int]:
    """:func:`greedy_chain` by histogram distance in ``O(N * k)`` memory.

    Each face's ``k`` nearest faces are found first, a block of rows at a time. A step takes
    the nearest unvisited face of that list when it is closer than the list's last entry:
    then no face outside the list can be closer, so the chain is the one the full distance
    matrix gives (ties to the lower index). Only when every listed face is visited (or the
    candidate ties the list's edge) are the distances to all unvisited faces computed.
    """
    n = len(roots)
    if n == 0:
        return []
    k = min(k, n - 1)
    near = np.zeros((n, k), np.int64)
    near_d = np.zeros((n, k))
    edge = np.full(n, np.inf)
    if k:
        for b in _row_blocks(n, n):
            d = hist_distances(roots[b], roots)
            d[np.arange(d.shape[0]), np.arange(b.start, b.stop)] = np.inf
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
            pd = np.take_along_axis(d, part, 1)
            ranked = np.lexsort((part, pd), axis=1)  # by distance, then index
            near[b] = np.take_along_axis(part, ranked, 1)
            near_d[b] = np.take_along_axis(pd, ranked, 1)
            edge[b] = pd.max(1)
    visited = np.zeros(n, bool)
    visited[start] = True
    pointer = np.zeros(n, np.int64)
    order = [start]
    cur = start
    for _ in range(n - 1):
        p = pointer[cur]
        while p < k and visited[near[cur, p]]:
            p += 1
        pointer[cur] = p
        nxt = -1
        if p < k and near_d[cur, p] < edge[cur]:
            nxt = int(near[cur, p])
        if nxt < 0:
            rest = np.flatnonzero(~visited)
            nxt = int(rest[np.argmin(hist_distances(roots[cur:cur + 1], roots[rest])[0])])
        visited[nxt] = True
        order.append(nxt)
        cur = nxt
    return order


def balanced_quota(counts: list[int], total: int) -> list[int]:
    """Share ``total`` over bins holding ``counts`` items as evenly as possible (water filling):
    every bin gets ``min(count, level)``, the leftovers go to the fullest bins."""
    counts = [int(c) for c in counts]
    if total >= sum(counts):
        return counts
    quota = [0] * len(counts)
    left = total
    open_bins = [i for i, c in enumerate(counts) if c > 0]
    while left > 0 and open_bins:
        share = left // len(open_bins)
        if share == 0:
            # fewer items left than bins: one more to each of the fullest remaining bins
            for i in sorted(open_bins, key=lambda i: (-(counts[i] - quota[i]), i))[:left]:
                quota[i] += 1
            break
        for i in open_bins:
            take = min(share, counts[i] - quota[i])
            quota[i] += take
            left -= take
        open_bins = [i for i in open_bins if quota[i] < counts[i]]
    return quota


def final_selection(yaw: np.ndarray, pitch: np.ndarray, sharp: np.ndarray, target: int, yaw_bins: int = 32, pitch_bins: int = 8) -> tuple[list[int], list[int]]:
    """Keep ``target`` faces spread evenly over yaw bins, and within a yaw bin over pitch bins;
    the sharpest faces of each (yaw, pitch) cell are kept. Kept faces are ordered by yaw."""
    n = len(yaw)
    if n <= target:
        return _ascending(list(yaw)), []

    def bins(v: np.ndarray, k: int) -> np.ndarray:
        lo, hi = float(v.min()), float(v.max())
        if hi - lo < 1e-6:
            return np.zeros(len(v), np.int64)
        return np.minimum(((v - lo) / (hi - lo) * k).astype(np.int64), k - 1)

    ybin = bins(yaw, yaw_bins)
    pbin = bins(pitch, pitch_bins)  # one pitch scale for the whole set
    members = [np.flatnonzero(ybin == b) for b in range(yaw_bins)]
    quota = balanced_quota([len(m) for m in members], target)
    kept: list[int] = []
    for m, q in zip(members, quota):
        if q == 0:
            continue
        cells = [m[pbin[m] == b] for b in range(pitch_bins)]
        cell_quota = balanced_quota([len(c) for c in cells], q)
        for c, cq in zip(cells, cell_quota):
            if cq:
                kept += [int(i) for i in c[np.argsort(-sharp[c], kind="stable")[:cq]]]
    keep = set(kept)
    order = sorted(kept, key=lambda i: (yaw[i], -sharp[i]))
    return order, [i for i in range(n) if i not in keep]


def order_faces(method: str, feats: list[dict[str, Any]], target: int = 2000, reference: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """``(order, trash)`` for ``method`` from the features of each face (see :data:`METHODS`)."""
    n = len(feats)
    if method == "blur":
        return _descending([f["sharpness"] for f in feats]), []
    if method == "motion-blur":
        return _descending([f["motion_sharpness"] for f in feats]), []
    if method == "face-yaw":
        return _ascending([f["pose"][0] for f in feats]), []
    if method == "face-pitch":
        return _descending([f["pose"][1] for f in feats]), []
    if method == "source-rect-size":
        return _descending([f["rect_size"] for f in feats]), []
    if method in ("hist", "hist-dissim"):
        if n == 0:
            return [], []
        roots = hist_roots(np.stack([f["histogram"] for f in feats]))
        if method == "hist":
            return hist_chain(roots), []
        return _descending(list(hist_dissimilarity(roots))), []
    if method == "brightness":
        return _descending([f["hsv"][0] for f in feats]), []
    if method == "hue":
        return _descending([f["hsv"][1] for f in feats]), []
    if method == "black":
        return _ascending([f["outside"] for f in feats]), []
    if method == "origname":
        return sorted(range(n), key=lambda i: feats[i]["origin"]), []
    if method == "oneface":
        per_frame: dict[str, int] = {}
        for f in feats:
            per_frame[f["origin"][0]] = per_frame.get(f["origin"][0], 0) + 1
        order = sorted(range(n), key=lambda i: feats[i]["origin"])
        keep = [i for i in order if per_frame[feats[i]["origin"][0]] == 1]
        return keep, [i for i in order if per_frame[feats[i]["origin"][0]] > 1]
    if method == "absdiff":
        if n == 0:
            return [], []
        thumbs = np.stack([f["thumbnail"] for f in feats])
        return greedy_chain(lambda i, rest: np.abs(thumbs[rest] - thumbs[i]).sum(1), n), []
    if method == "identity":
        if reference is None:
            raise ValueError("identity sort needs a reference embedding")
        emb = np.stack([f["identity"] for f in feats]) if n else np.zeros((0, 128), np.float32)
        return _ascending(list(np.linalg.norm(emb - reference, axis=1))), []
    if method == "final":
        yaw = np.array([f["pose"][0] for f in feats])
        pitch = np.array([f["pose"][1] for f in feats])
        sharp = np.array([f["sharpness"] for f in feats])
        return final_selection(yaw, pitch, sharp, target)
    raise ValueError(f"unknown sort method {method!r}")


def rank(paths: list[Path], method: str, *, target: int = 2000, reference: np.ndarray | None = None, workers: int = 0,
         description: str = "sort", errors: list[FaceFileError] | None = None) -> tuple[list[int], list[int], list[int]]:
    """Order face files by ``method`` without touching them: ``(readable, order, trash)``.

    ``readable`` indexes ``paths`` (the files whose features could be computed; with ``errors`` given the
    others' errors are appended there, else the first is raised); ``order`` and ``trash`` index ``readable``,
    as :func:`order_faces` returns them. ``facelab sort`` renames from this; the UI shows it as it is.
    """
    feats = features.compute(paths, list(METHODS[method].features), workers, description=description,
                             errors=errors) if paths else []
    readable = [k for k, f in enumerate(feats) if f is not None]
    order, trash = order_faces(method, [feats[k] for k in readable], target=target, reference=reference)
    return readable, order, trash


# --- renaming ------------------------------------------------------------


def _stored_name(record) -> str | None:
    """``extra["original_filename"]`` when it is a plain file name (the reader checks it; checked again here
    because this name becomes a path)."""
    name = record.extra.get("original_filename")
    try:
        return safe_name(name) if name else None
    except ValueError:
        return None


def original_name(path: Path, record=None) -> str:
    """The face's first name: ``extra["original_filename"]``, else its current name."""
    record = record if record is not None else read_record(path)
    return _stored_name(record) or path.name


def remember_original_name(path: Path, record) -> str:
    """Store the face's current name as its original name unless one is stored already
    (a face sorted before always has one, so its current, prefixed name is never taken)."""
    stored = _stored_name(record)
    if stored:
        return stored
    name = path.name
    rewrite_record(path, record.replace(extra={**record.extra, "original_filename": name}))
    return name


def _unique(folder: Path, name: str, taken: set[str], free: set[str] = frozenset()) -> Path:
    """``folder/name``, or ``folder/<stem>_<k><suffix>``: a name not in ``taken`` and not on disk
    (names in ``free`` count as free on disk: they are being moved away)."""
    stem, suffix = os.path.splitext(name)
    candidate, k = name, 1
    while candidate in taken or (candidate not in free and (folder / candidate).exists()):
        candidate = f"{stem}_{k}{suffix}"
        k += 1
    taken.add(candidate)
    return folder / candidate


def recover(folder: Path, journal: Path, warnings: list[str] | None = None) -> int:
    """Finish a renaming that was interrupted; returns how many files it moved."""
    return renames.finish(journal, [folder], TMP_PREFIX, warnings)


def apply(folder: Path, paths: list[Path], order: list[int], trash: list[int], trash_dir: Path, journal: Path, names: list[str],
          warnings: list[str] | None = None) -> None:
    """Move ``trash`` faces to ``trash_dir`` and rename the ``order`` faces to ``NNNNN_<original stem><ext>``.

    ``names`` are the original names of ``paths`` (already stored in their metadata); a name that is not a
    plain file name is never used (the face keeps its current name), so no face leaves ``folder`` except
    for ``trash_dir``. Each file move is one ``os.replace``; the journal makes the renaming resumable.
    """
    names = [_plain(n, p) for n, p in zip(names, paths)]
    if trash:
        trash_dir.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        for i in trash:
            target = _unique(trash_dir, os.path.splitext(names[i])[0] + paths[i].suffix.lower(), taken)
            if target.parent != trash_dir:
                raise ValueError(f"refusing to move {paths[i]} to {target}")
            os.replace(paths[i], target)
    width = max(5, len(str(max(len(order) - 1, 0))))
    moving = {p.name for p in paths}
    occupied = {p.name for p in folder.iterdir() if p.name not in moving}  # faces left out (unreadable) keep theirs
    moves = []
    for rank, i in enumerate(order):
        stem = os.path.splitext(names[i])[0]
        moves.append((paths[i], _unique(folder, f"{rank:0{width}d}_{stem}{paths[i].suffix.lower()}", occupied, moving)))
    renames.rename_all(moves, journal, TMP_PREFIX, folders=[folder], warnings=warnings)


def _plain(name: str, path: Path) -> str:
    try:
        return safe_name(name)
    except ValueError:
        return path.name
