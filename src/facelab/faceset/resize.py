"""``facelab faceset resize``: cut the faces again from their frames at another size or face type."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facelab import align
from facelab.errors import WorkspaceError
from facelab.face_checks import safe_name
from facelab.faceimage import FaceRecord, face_bytes, read_face
from facelab.fileio import atomic_write_bytes, read_image
from facelab.masks.polygons import remap_extra
from facelab.types import FaceType



def _resample_ok(old: FaceRecord, new_mat: np.ndarray, size: int) -> np.ndarray | None:
    """old-face px -> new-face px when the new face lies inside the old one and is not enlarged."""
    m_old = np.vstack([np.asarray(old.image_to_face_mat, np.float64), [0, 0, 1]])
    m_new = np.vstack([new_mat, [0, 0, 1]])
    to_new = (m_new @ np.linalg.inv(m_old))[:2]
    scale = float(np.sqrt(abs(np.linalg.det(to_new[:, :2]))))
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    back = align.transform_points(corners, align.invert_affine(to_new))
    inside = bool(np.all(back >= -1.0) and np.all(back <= old.size + 1.0))
    return to_new if scale <= 1.0 + 1e-6 and inside else None


def resize_face(path: Path, frames_dir: Path, size: int, face_type: str | None = None, jpeg_quality: int = 95) -> str:
    """Re-cut one face at ``size`` (and ``face_type``); returns 'frame' or 'resampled'."""
    image, rec = read_face(path)
    ftype = FaceType.parse(face_type or rec.face_type).value
    src_lm = np.asarray(rec.source_landmarks, np.float64)
    mat = align.face_matrix(src_lm, ftype, size)
    frame_path = Path(frames_dir) / safe_name(rec.source_filename)  # checked by the reader; never a path
    how = "frame"
    if frame_path.is_file():
        face = align.warp_image(read_image(frame_path), mat, size)
    else:
        to_new = _resample_ok(rec, mat, size)
        if to_new is None:
            raise WorkspaceError(
                f"cannot resize {path.name}: its frame {frame_path} is missing and the face itself is too small for the new size/type",
                "put the frame back (run `facelab frames`), or resize only down within the same face type",
            )
        face = cv2.warpAffine(image, to_new, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        how = "resampled"
    new = rec.replace(
        face_type=ftype, size=int(size), image_to_face_mat=mat, landmarks=align.transform_points(src_lm, mat),
        extra=remap_extra(rec.extra, rec.image_to_face_mat, mat, size),  # mask polygons and the applied mask move with the pixels
    )
    atomic_write_bytes(path, face_bytes(face, new, path.suffix, jpeg_quality))
    return how
