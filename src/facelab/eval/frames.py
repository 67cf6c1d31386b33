"""Which output frame goes with which dst frame, and which dst face was swapped.

Output frames are ``data_dst/merged/<stem>.png`` (paired with the dst frame of the
same stem) or, when those are gone, the frames of ``result.<ext>`` in order (the
k-th video frame with the k-th dst frame, as ``facelab video`` wrote them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelab.errors import FaceFileError, MediaError, SettingsError, WorkspaceError
from facelab.faceimage import FaceRecord, read_record
from facelab.fileio import read_image
from facelab.workspace import Workspace

SOURCES = ("auto", "merged", "result")
RESULT_EXTENSIONS = ("mp4", "mov", "mkv", "avi", "webm")


@dataclass
class FramePairs:
    """Dst frames and the output frames made from them.

    Attributes:
        source: ``"merged"`` or the result video's file name.
        dst: dst frame paths, in order.
        merged: merged frame paths (same order), or ``None`` when the frames come from ``video``.
        video: the result video, when the frames come from it.
        warnings: what did not pair up.
    """

    source: str
    dst: list[Path]
    merged: list[Path] | None = None
    video: Path | None = None
    warnings: list[str] = field(default_factory=list)
    first: int = 0  # position in data_dst (and in the video) of the first pair: a window of the clip, :meth:`window`

    def window(self, first: int, last: int | None) -> FramePairs:
        """The pairs of dst frames ``first`` to ``last`` (0-based, inclusive; None or past the end: to the end)."""
        end = len(self.dst) if last is None else min(last + 1, len(self.dst))
        if not 0 <= first < end:
            raise SettingsError(f"eval.frames: frame {first + 1} is past the last of the {len(self.dst)} measured frames",
                                f"give a range within 1:{len(self.dst)}")
        merged = self.merged[first:end] if self.merged is not None else None
        return FramePairs(self.source, self.dst[first:end], merged, self.video, list(self.warnings), self.first + first)

    def __len__(self) -> int:
        return len(self.dst)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.dst]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(index, dst frame, output frame)``, both ``(H, W, 3) uint8`` BGR of the same size."""
        if self.merged is not None:
            for i, (d, m) in enumerate(zip(self.dst, self.merged)):
                dst = read_image(d)
                yield i, dst, _fit(_read_output(m), dst.shape, m.name, self.first + i)
            return
        from facelab.media.video import iter_frames

        assert self.video is not None
        for j, _, frame in iter_frames(self.video):
            i = j - self.first
            if i < 0:
                continue
            if i >= len(self.dst):
                break
            dst = read_image(self.dst[i])
            yield i, dst, _fit(frame, dst.shape, f"{self.video.name} frame {j}", j)

    def load(self, indices: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The ``(dst, output)`` frames of some indices (the video is decoded up to the last one)."""
        out = {}
        if self.merged is not None:
            for i in sorted(indices):
                dst = read_image(self.dst[i])
                out[i] = (dst, _fit(_read_output(self.merged[i]), dst.shape, self.merged[i].name, self.first + i))
            return out
        for i, d, o in self:
            if i in indices:
                out[i] = (d, o)
            if len(out) == len(indices):
                break
        return out


def _read_output(path: Path) -> np.ndarray:
    return read_image(path)  # an RGBA merge (--alpha) is read as BGR: the colour is what is measured


def _fit(frame: np.ndarray, shape: tuple[int, ...], what: str, index: int) -> np.ndarray:
    """An output frame checked against its dst frame's size; a video frame padded by the encoder (odd sizes
    get one more row or column) is cut back."""
    h, w = shape[:2]
    fh, fw = frame.shape[:2]
    if (fh, fw) == (h, w):
        return frame
    if h <= fh <= h + 1 and w <= fw <= w + 1:
        return np.ascontiguousarray(frame[:h, :w])
    raise MediaError(f"{what} is {fw}x{fh}, its dst frame (number {index + 1} in data_dst) is {w}x{h}",
                     "the output was not made from these dst frames: run `facelab merge` (and `facelab video`) again")


def find_result(ws: Workspace) -> Path | None:
    for ext in RESULT_EXTENSIONS:
        if ws.result_path(ext).is_file():
            return ws.result_path(ext)
    return None


def pair_frames(ws: Workspace, source: str = "auto") -> FramePairs:
    """Pair the dst frames with the output frames (see module docstring).

    ``source``: ``auto`` (merged frames if there are any, else the result video), ``merged`` or ``result``.

    Raises:
        WorkspaceError: no dst frames, or no output of the kind asked for.
    """
    if source not in SOURCES:
        raise SettingsError(f"source: {source!r} is not a frame source", "use auto, merged or result")
    ws.require_exists()
    dst = ws.require_frames("dst")
    merged_dir = ws.merged_dir
    merged = sorted(p for p in merged_dir.glob("*.png") if not p.name.startswith(".")) if merged_dir.is_dir() else []
    if source == "merged" or (source == "auto" and merged):
        if not merged:
            raise WorkspaceError(f"{merged_dir} has no merged frames", "run `facelab merge` first")
        by_stem = {p.stem: p for p in merged}
        pairs = [(d, by_stem[d.stem]) for d in dst if d.stem in by_stem]
        warnings = []
        if not pairs:
            raise WorkspaceError(f"none of the merged frames in {merged_dir} has a dst frame of the same name in {ws.frames_dir('dst')}",
                                 "run `facelab merge` again for these dst frames")
        if len(pairs) < len(dst):
            warnings.append(f"{len(dst) - len(pairs)} dst frame(s) have no merged frame and are not measured (e.g. "
                            f"{next(d.name for d in dst if d.stem not in by_stem)}); run `facelab merge` to finish them")
        extra = len(merged) - len(pairs)
        if extra:
            warnings.append(f"{extra} merged frame(s) have no dst frame of the same name and are not measured")
        return FramePairs("merged", [d for d, _ in pairs], [m for _, m in pairs], warnings=warnings)
    video = find_result(ws)
    if video is None:
        if source == "result":
            raise WorkspaceError(f"no result video (result.mp4) in {ws.root}", "run `facelab video` first")
        raise WorkspaceError(f"no merged frames in {merged_dir} and no result video in {ws.root}", "run `facelab merge` first")
    from facelab.media.video import probe

    count = probe(video).frame_count
    warnings = []
    if count and count != len(dst):
        warnings.append(f"{video.name} has {count} frames and data_dst {len(dst)}: the first {min(count, len(dst))} are paired in order")
    n = min(count, len(dst)) if count else len(dst)
    return FramePairs(video.name, dst[:n], video=video, warnings=warnings)


def swapped_faces(ws: Workspace) -> tuple[dict[str, FaceRecord], list[str]]:
    """The dst face measured in each frame: ``frame file name -> record``, and warnings.

    The merge swaps every face in ``data_dst/aligned``; eval measures one per frame, the one with the
    lowest face index (a face the user deleted from the set was not swapped and is not measured)."""
    groups: dict[str, list[FaceRecord]] = defaultdict(list)
    bad: list[str] = []
    for path in ws.require_aligned("dst"):
        try:
            rec = read_record(path)
        except FaceFileError:
            bad.append(path.name)
            continue
        if len(rec.source_landmarks) == 68:
            groups[rec.source_filename].append(rec)
    warnings = []
    if bad:
        warnings.append(f"{len(bad)} dst face file(s) could not be read and were ignored (e.g. {bad[0]})")
    several = sum(1 for recs in groups.values() if len(recs) > 1)
    if several:
        warnings.append(f"{several} frame(s) have several swapped faces: only the first of each is measured")
    return {name: min(recs, key=lambda r: r.face_index) for name, recs in groups.items()}, warnings
