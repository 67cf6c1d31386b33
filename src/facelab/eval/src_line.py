"""The src footage's own detail: how sharp a swap of this src could be at best (``sharpness_src_line``).

A swap shows the src face, so it cannot be more detailed than the src footage itself. For each dst face,
:class:`SrcLine` takes the src face nearest in (yaw, pitch), gives it the dst face's colours as the merge
does (Reinhard in Lab inside the landmark hulls), blends it into the dst frame as the merge's overlay mode
does (inside the dst hull, feathered by the merge's default edge) and returns eval's sharpness of that
frame over the dst frame's: the ``sharpness_ratio`` a perfect model of the src footage would score there.

With the model's face type and resolution R (``facelab eval --name`` reads them from the model folder), the
same face is also sent through R x R pixels first (``sharpness_src_line_model``): what a perfect model of
that size could paint. A src line under the 0.70 target says the footage (or the model's size), not the
training, is what keeps the swap soft (docs/eval.md, "What the footage allows"). Noise and compression
blocks in the src faces count as detail here, so the line is a guide, not a bound.

::

    line = SrcLine(ws.aligned_paths("src"))
    as_shot, at_model = line.ratio(dst_frame, dst_landmarks_in_frame, sharpness_of_dst_frame)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facelab.align import face_matrix, hull_mask, transform_points, unwarp_image, warp_image
from facelab.color import rct
from facelab.errors import FacelabError
from facelab.eval import metrics as M
from facelab.faceimage import read_face, read_record

WORK = 256
"""Side of the aligned square the src face is colour-matched at (above a face's size in most footage)."""
FACE_TYPE = "full"
"""The crop's face type without a model (every face type's crop holds the 68-point hull the face is blended in)."""
WIDER = "whole"
"""The wider region ``identity_src_line_whole`` pastes for models of a narrower face type: the face and the
forehead above the brows (DeepFaceLab's whole face)."""
NARROW = ("half", "mid", "full")
"""Face types whose blend region leaves the forehead to dst."""
SAMPLE = 400
"""Src faces (evenly spaced over the set) the nearest pose is chosen from."""


def through(face: np.ndarray, r: int) -> np.ndarray:
    """``face`` (square, uint8) after a trip through ``r x r`` pixels and back to its own size: the most a model
    of resolution ``r`` can paint of it."""
    small = cv2.resize(face, (r, r), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, face.shape[1::-1], interpolation=cv2.INTER_CUBIC)


def blend_in(frame: np.ndarray, face: np.ndarray, mat: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """``frame`` (uint8 BGR) with the aligned ``face`` (uint8, ``(S, S, 3)``, frame -> face affine ``mat``)
    blended inside ``hull`` (``(S, S)`` {0, 1}, the dst face's landmark hull) feathered inward by the merge's
    default edge: the merge's overlay mode with the hull as the mask."""
    from facelab.merge.blend import erode_blur_mask
    from facelab.merge.compose import feather_width

    soft = erode_blur_mask(np.asarray(hull, np.float32), 0, feather_width(0))
    m = np.clip(unwarp_image(soft, mat, frame.shape[:2]), 0.0, 1.0)[..., None]
    out = frame.astype(np.float32) * (1 - m) + unwarp_image(face, mat, frame.shape[:2]).astype(np.float32) * m
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Pasted:
    """A dst frame with the nearest-pose src face blended in (:meth:`SrcLine.paste`): the frame, and the
    colour-matched src face (uint8, ``WORK`` square), its frame -> face affine, the dst hull it went into and
    the src face file it came from."""

    frame: np.ndarray
    face: np.ndarray
    mat: np.ndarray
    hull: np.ndarray
    source: Path


class SrcLine:
    """Nearest-pose src faces blended into dst frames; :meth:`ratio` per dst face.

    Args:
        paths: the src aligned face files (unreadable ones and faces without 68 points are left out).
        face_type: the model's face type (the crop the model sees).
        resolution: the model's resolution R, or None: then :meth:`ratio`'s second figure is NaN.
        sample: at most this many faces, evenly spaced over ``paths``, are candidates.
    """

    def __init__(self, paths: list[Path], face_type: str = FACE_TYPE, resolution: int | None = None,
                 sample: int = SAMPLE) -> None:
        self.face_type, self.resolution = face_type, resolution
        idx = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int)) if paths else []
        self.paths: list[Path] = []
        poses = []
        for i in idx:
            try:
                rec = read_record(paths[i])
            except FacelabError:
                continue
            if len(rec.source_landmarks) == 68 and len(rec.landmarks) == 68:
                self.paths.append(paths[i])
                poses.append(M.head_pose(np.asarray(rec.source_landmarks, np.float64))[:2])
        self.poses = np.asarray(poses, np.float64).reshape(-1, 2)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def cut(self, face_type: str) -> SrcLine | None:
        """The same src faces cut and blended as ``face_type`` (a wider region than this line's), or None when
        this line's region is not narrower than ``whole``."""
        if self.face_type not in NARROW:
            return None
        line = copy.copy(self)
        line.face_type, line.resolution, line._cache = face_type, None, {}
        return line

    def _face(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Src face ``j`` cut to the WORK crop: ``(float32 BGR in [0, 1], hull {0, 1})``."""
        if j not in self._cache:
            image, rec = read_face(self.paths[j])
            lm = np.asarray(rec.landmarks, np.float64)
            mat = face_matrix(lm, self.face_type, WORK)
            self._cache[j] = (warp_image(image, mat, WORK).astype(np.float32) / 255.0,
                              hull_mask(transform_points(lm, mat), (WORK, WORK), self.face_type))
        return self._cache[j]

    def paste(self, dst: np.ndarray, landmarks: np.ndarray) -> Pasted | None:
        """``dst`` (uint8 BGR frame) with its face (``landmarks``, ``(68, 2)`` frame pixels) replaced by the
        nearest-pose src face, colour-matched and blended in as the merge does; None without src faces."""
        if not len(self):
            return None
        ld = np.asarray(landmarks, np.float64)
        j = int(np.linalg.norm(self.poses - np.asarray(M.head_pose(ld)[:2]), axis=1).argmin())
        s_face, s_hull = self._face(j)
        mat = face_matrix(ld, self.face_type, WORK)
        d_face = warp_image(dst, mat, WORK).astype(np.float32) / 255.0
        d_hull = hull_mask(transform_points(ld, mat), (WORK, WORK), self.face_type)
        face = (np.clip(rct(s_face, d_face, s_hull, d_hull), 0, 1) * 255 + 0.5).astype(np.uint8)
        return Pasted(blend_in(dst, face, mat, d_hull), face, mat, d_hull, self.paths[j])

    def ratio(self, dst: np.ndarray, landmarks: np.ndarray, reference: float,
              pasted: Pasted | None = None) -> tuple[float, float]:
        """Sharpness, inside the inner face, of ``dst`` (uint8 BGR frame) with its face (``landmarks``,
        ``(68, 2)`` frame pixels) replaced by the nearest-pose src face, over ``reference`` (the dst frame's
        own sharpness there): ``(as the src face is, after a trip through the model's R x R)``. NaN without
        src faces or with a zero reference (the second also without a resolution). ``pasted``: what
        :meth:`paste` gave for this frame, if the caller has it already."""
        nan = float("nan")
        if not len(self) or not reference > 0:
            return nan, nan
        p = pasted if pasted is not None else self.paste(dst, landmarks)
        inner = M.inner_face(np.asarray(landmarks, np.float64), dst.shape)
        as_shot = M.sharpness(p.frame, inner) / reference
        if not self.resolution:
            return as_shot, nan
        return as_shot, M.sharpness(blend_in(dst, through(p.face, int(self.resolution)), p.mat, p.hull), inner) / reference
