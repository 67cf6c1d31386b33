"""What the segmenter learns from: faces cut to its face type and size, each with a target mask.

The target of a face is, in order of trust:

1. the polygons the user drew on it (mask editor, or imported from a
   DeepFaceLab face set): a *label*;
2. otherwise the filled hull of its landmarks: a *pseudo-label*, good on
   unobstructed faces, wrong wherever a hand or hair covers the face. The
   augmentation pastes synthetic occluders over faces and cuts them out of the
   target, so even a segmenter trained on pseudo-labels alone learns that
   something in front of the face is not face; the user's labels then fix the
   cases the hull gets wrong.

What the user cut out of a label (the parts of its exclude polygons that end
up not face: a hand, a fringe, a microphone) is also kept as an *occluder*
(:attr:`SegFaces.occluders`): the augmentation pastes these real occluders over
other faces, so one labelled hand teaches every face of the set what a hand in
front of it looks like.

Faces ``(R, R, 3) uint8`` BGR, targets ``(R, R) float32 [0, 1]``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from facelab.align import face_matrix, hull_mask, transform_points
from facelab.errors import FaceFileError, WorkspaceError
from facelab.faceimage import FaceRecord, read_face
from facelab.masks.polygons import EXCLUDE, INCLUDE, Polygon, polygons_of, rasterize, transform_polygons
from facelab.types import FaceType


def cut_matrix(record: FaceRecord, face_type: str, resolution: int) -> np.ndarray:
    """``(2, 3)`` affine from a face file's pixels to the ``face_type`` square of side ``resolution``."""
    size = int(record.size)
    if FaceType.parse(record.face_type) == FaceType.parse(face_type) or len(record.landmarks) != 68:
        mat = np.eye(3)[:2]
    else:
        mat = face_matrix(np.asarray(record.landmarks, np.float64), face_type, size)
    return mat * (resolution / size)


def from_reduced(mat: np.ndarray, reduce: int) -> np.ndarray:
    """``mat`` (from a face file's pixels) taking the pixels of the file decoded at ``1/reduce`` instead
    (:func:`facelab.faceimage.face_from_bytes`: pixel ``q`` is at ``reduce * q + (reduce - 1) / 2``)."""
    k = float(reduce)
    return np.asarray(mat, np.float64) @ np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]])


def reduction_for(record: FaceRecord, face_type: str, resolution: int) -> int:
    """How much smaller (1, 2, 4 or 8) a face file may be decoded and still give at least one of its pixels
    per pixel of the ``face_type`` cut at ``resolution``: the cheap way to read big faces for a small net."""
    scale = abs(float(np.linalg.det(cut_matrix(record, face_type, resolution)[:, :2]))) ** 0.5  # cut px per file px
    k = 1
    while k < 8 and 2 * k * scale <= 1.0:
        k *= 2
    return k


def cut_face(image: np.ndarray, record: FaceRecord, face_type: str, resolution: int,
             reduce: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A face file's image cut to ``face_type`` at ``resolution`` px (edges replicated where the new
    crop reaches outside the old one), and the ``(2, 3)`` face-file -> cut matrix. ``reduce``: the image
    was decoded at ``1/reduce`` of the file's size (the matrix is still the full file's)."""
    mat = cut_matrix(record, face_type, resolution)
    interp = cv2.INTER_AREA if image.shape[0] > resolution * 1.5 else cv2.INTER_LINEAR
    warp = from_reduced(mat, reduce) if reduce != 1 else mat
    return cv2.warpAffine(image, warp, (resolution, resolution), flags=interp, borderMode=cv2.BORDER_REPLICATE), mat


def target_of(record: FaceRecord, mat: np.ndarray, face_type: str, resolution: int) -> tuple[np.ndarray, bool]:
    """The target mask ``(R, R) float32`` of a face in its cut (``mat`` from :func:`cut_face`) and whether
    it is a drawn label (True) or the landmark-hull pseudo-label (False)."""
    polygons = polygons_of(record)
    if polygons:
        return rasterize(transform_polygons(polygons, mat), resolution).astype(np.float32), True
    pts = transform_points(np.asarray(record.landmarks, np.float64), mat)
    return hull_mask(pts, (resolution, resolution), face_type), False


MIN_OCCLUDER_SHARE = 0.004  # an occluder smaller than this share of the face is a slip of the pen, not kept


Occluder = tuple[np.ndarray, np.ndarray, tuple[int, int]]  # patch (h, w, 3) uint8, alpha (h, w) float32, (y, x) in the face


def occluder_of(face: np.ndarray, record: FaceRecord, mat: np.ndarray, target: np.ndarray) -> Occluder | None:
    """What a labelled face's exclude polygons cut out (inside an exclude polygon and not face in the end):
    ``(patch, alpha, (y, x))`` cropped to it, with where it was in the face, or None when there is none."""
    excludes = [Polygon(INCLUDE, p.points) for p in polygons_of(record) if p.kind == EXCLUDE]
    if not excludes:
        return None
    r = face.shape[0]
    alpha = rasterize(transform_polygons(excludes, mat), r) * (target < 0.5)
    if alpha.mean() < MIN_OCCLUDER_SHARE:
        return None
    ys, xs = np.nonzero(alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0)[y0:y1, x0:x1]  # a soft edge, not a cut-out outline
    return face[y0:y1, x0:x1].copy(), alpha.astype(np.float32), (int(y0), int(x0))


@dataclass
class SegFaces:
    """The faces of a training set, loaded: ``faces (N, R, R, 3) uint8``, ``targets (N, R, R) uint8`` (255 =
    face; a quarter of float32's memory, which counts for 10,000 faces: :meth:`target` gives one as float32),
    ``labelled (N,) bool`` (drawn polygons vs hull), ``paths``, ``skipped`` (unreadable files, one message each),
    the ``face_type`` they are cut to, and the real ``occluders`` the labels cut out (:func:`occluder_of`)."""

    faces: np.ndarray
    targets: np.ndarray
    labelled: np.ndarray
    paths: list[Path]
    skipped: list[str]
    face_type: str = "whole"
    occluders: list[Occluder] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> "SegFaces":
        """The faces at the indices ``keep``; the face type, the skipped files and the occluders (cut from
        the labels, which a subset of labelled faces keeps) go along."""
        keep = np.asarray(keep, np.int64)
        return replace(self, faces=self.faces[keep], targets=self.targets[keep], labelled=self.labelled[keep],
                       paths=[self.paths[i] for i in keep])

    def target(self, i: int) -> np.ndarray:
        """Face ``i``'s target as ``(R, R) float32 [0, 1]``."""
        return self.targets[i].astype(np.float32) / 255


def _load(path: Path, face_type: str, resolution: int):
    try:
        image, record = read_face(path)
    except FaceFileError as e:
        return e
    face, mat = cut_face(image, record, face_type, resolution)
    target, labelled = target_of(record, mat, face_type, resolution)
    occluder = occluder_of(face, record, mat, target) if labelled else None
    return face, (target * 255 + 0.5).astype(np.uint8), labelled, occluder


def load_faces(paths: list[Path], face_type: str, resolution: int) -> SegFaces:
    """Load face files as training faces (unreadable ones are left out and named in ``skipped``)."""
    if not paths:
        raise WorkspaceError("no aligned faces to train the segmenter on",
                             "run `facelab extract src` / `facelab extract dst` first, or pass --faces DIR")
    with ThreadPoolExecutor(4) as pool:  # cv2 decoding releases the GIL
        loaded = list(pool.map(lambda p: _load(Path(p), face_type, resolution), paths))
    kept = [(Path(p), x) for p, x in zip(paths, loaded) if not isinstance(x, FaceFileError)]
    skipped = [x.message for x in loaded if isinstance(x, FaceFileError)]
    if not kept:
        raise WorkspaceError(f"none of the {len(paths)} faces can be read (e.g. {skipped[0]})", "re-run `facelab extract`")
    return SegFaces(np.stack([x[0] for _, x in kept]), np.stack([x[1] for _, x in kept]),
                    np.array([x[2] for _, x in kept], bool), [p for p, _ in kept], skipped, str(face_type),
                    [x[3] for _, x in kept if x[3] is not None])
