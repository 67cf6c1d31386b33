"""Hand-labelled face-segmentation sets: polygons drawn on *source images*, cut into aligned faces.

A label file (``tests/data/seg_labels/labels.json`` is facelab's own) lists faces as::

    {"source": "person_b_clm_webcam/frames/cap12_f01240.jpg",   # or "clip.mp4#frame=N"
     "box": [x0, y0, x1, y1],            # rough face box, picks the face in a group photo
     "split": "train" | "heldout", "occlusion": ["hand", ...],
     "polygons": [{"kind": "include" | "exclude", "points": [[x, y], ...]}, ...]}   # source pixels

Polygons in source pixels do not depend on any crop: :func:`load_labelled` finds
the face with facelab's detector and landmarks, cuts it like ``facelab
extract`` at any face type and size, and moves the polygons into the face's
pixels, as :class:`facelab.masks.polygons.Polygon` (what the mask editor
stores) and as a rasterised ground-truth mask.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facelab.faceimage import FaceRecord
from facelab.masks.polygons import Polygon, rasterize, transform_polygons, with_polygons


@dataclass
class LabelledFace:
    """One labelled face, cut: ``image (S, S, 3) uint8``, its ``record`` (the polygons in its metadata),
    ``truth (S, S) float32 {0, 1}`` and the label's ``split``, ``occlusion`` and ``source``."""

    image: np.ndarray
    record: FaceRecord
    truth: np.ndarray
    split: str
    occlusion: list[str] = field(default_factory=list)
    source: str = ""


def read_source(root: Path, source: str) -> np.ndarray:
    """The ``(H, W, 3) uint8`` BGR image a label names (a file, or ``video#frame=N``)."""
    path, _, frame = source.partition("#frame=")
    full = root / path
    if not frame:
        image = cv2.imread(str(full), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read {full}")
        return image
    from facelab.media import iter_frames

    for i, _, image in iter_frames(full):  # upright, as the frames step writes them
        if i == int(frame):
            return image
    raise FileNotFoundError(f"{full} has no frame {frame}")


def _overlap(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def load_labelled(label_file: Path, root: Path, face_type: str = "whole", size: int = 256,
                  splits: tuple[str, ...] = ("train", "heldout")) -> tuple[list[LabelledFace], list[str]]:
    """Cut every labelled face of ``label_file`` (sources under ``root``); also the labels that could not be
    used (source missing, no face found at the box), one message each."""
    from facelab.detect import create_detector
    from facelab.find_faces import FindOptions, find_faces, make_face
    from facelab.landmarks import create_landmarker

    doc = json.loads(Path(label_file).read_text())
    settings = FindOptions(face_type=face_type, size=size)  # extract's defaults
    detector = create_detector("retinaface", score_threshold=0.3)
    landmarker = create_landmarker("dlib68")
    out, missed = [], []
    for entry in doc["faces"]:
        if entry["split"] not in splits:
            continue
        try:
            image = read_source(root, entry["source"])
        except FileNotFoundError as e:
            missed.append(str(e))
            continue
        found = find_faces(image, detector, landmarker, settings)
        best = max(found, key=lambda f: _overlap(f.detection.box, entry["box"]), default=None)
        if best is None or _overlap(best.detection.box, entry["box"]) < 0.3:
            missed.append(f"{entry['source']}: no face found at {entry['box']}")
            continue
        face, record = make_face(image, best, 0, Path(entry["source"]).name, settings)
        polygons = transform_polygons([Polygon.from_json(p) for p in entry["polygons"]], record.image_to_face_mat)
        record = with_polygons(record, polygons)
        out.append(LabelledFace(face, record, rasterize(polygons, size).astype(np.float32), entry["split"],
                                list(entry.get("occlusion", [])), entry["source"]))
    return out, missed
