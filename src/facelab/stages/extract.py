"""``facelab extract src|dst``: detect, landmark, align and save every face of every frame.

Pipeline: frames are decoded ahead on a worker thread, detection and landmarks
run on the calling thread (ONNX Runtime and dlib release the GIL), and warping,
JPEG encoding and writing go to worker threads. Each finished frame is appended
to ``.facelab/extract_done.txt``, so an interrupted run continues where it
stopped.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab import align
from facelab.detect import Detection, create_detector, detect_with_rotation, unrotate_box, unrotate_points
from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import FaceRecord, write_face
from facelab.fileio import atomic_write_json, read_image, write_image
from facelab.landmarks import create_landmarker
from facelab.pipeline import prefetch
from facelab.progress import track
from facelab.stages import Summary
from facelab.types import FaceType
from facelab.workspace import Workspace, check_side

@dataclass(frozen=True)
class ExtractSettings:
    """Settings of the extract step (``facelab extract --help`` lists them)."""

    face_type: str = "full"
    size: int = 512
    jpeg_quality: int = 90
    detector: str = "retinaface"
    landmarks: str = "dlib68"
    max_faces: int = 0  # 0 keeps every face of a frame
    min_score: float = 0.7
    rotate: bool = True  # retry rotated frames when nothing is found
    debug: bool = False  # write aligned_debug/<frame>.jpg
    threads: int = 0  # 0: all cores

    def __post_init__(self) -> None:
        FaceType.parse(self.face_type)
        if not 64 <= self.size <= 2048:
            raise SettingsError(f"size={self.size} is out of range", "use 64..2048 (default 512)")
        if not 1 <= self.jpeg_quality <= 100:
            raise SettingsError(f"jpeg_quality={self.jpeg_quality} is out of range", "use 1..100 (default 90)")
        if self.max_faces < 0:
            raise SettingsError(f"max_faces={self.max_faces} is out of range", "use 0 (all) or more")
        if not 0.05 <= self.min_score <= 1.0:
            raise SettingsError(f"min_score={self.min_score} is out of range", "use 0.05..1.0 (default 0.7)")

    def output_key(self) -> dict[str, Any]:
        """The settings that change what the aligned faces look like."""
        return {k: v for k, v in asdict(self).items() if k not in ("debug", "threads")}


@dataclass(frozen=True)
class FoundFace:
    detection: Detection
    landmarks: np.ndarray  # (68, 2) frame pixels


def find_faces(image: np.ndarray, detector, landmarker, settings: ExtractSettings) -> list[FoundFace]:
    """Detect and landmark every face of one ``(H, W, 3) uint8`` BGR frame, largest first."""
    if settings.rotate:
        dets, angle, rotated = detect_with_rotation(detector, image)
    else:
        dets, angle, rotated = detector(image), 0, image
    if settings.max_faces:
        dets = dets[: settings.max_faces]
    found = []
    for d in dets:
        lm = landmarker(rotated, d)
        if angle:
            pts = unrotate_points(d.points, angle, image.shape) if d.points is not None else None
            d = Detection(unrotate_box(d.box, angle, image.shape), d.score, pts)
            lm = unrotate_points(lm, angle, image.shape)
        found.append(FoundFace(d, lm))
    return found


def make_face(image: np.ndarray, found: FoundFace, index: int, frame_name: str, settings: ExtractSettings) -> tuple[np.ndarray, FaceRecord]:
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
        extra={"detector_score": round(found.detection.score, 4)},
    )
    return face, record


def draw_debug(image: np.ndarray, faces: list[FoundFace], settings: ExtractSettings) -> np.ndarray:
    """The frame with each face's box (red), landmarks (green), hull (blue) and crop square (yellow)."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 500))
    for f in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in f.detection.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 255), thick)
        hull = cv2.convexHull(np.round(f.landmarks).astype(np.int32))
        cv2.polylines(out, [hull], True, (255, 0, 0), thick, cv2.LINE_AA)
        for x, y in f.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
        mat = align.face_matrix(f.landmarks, settings.face_type, settings.size)
        s = settings.size
        square = align.transform_points(np.array([[0, 0], [s, 0], [s, s], [0, s]], np.float64), align.invert_affine(mat))
        cv2.polylines(out, [np.round(square).astype(np.int32)], True, (0, 255, 255), thick, cv2.LINE_AA)
    return out


def _done_log(ws: Workspace, side: str) -> Path:
    return ws.state_dir(side) / "extract_done.txt"


def run(ws: Workspace, side: str, settings: ExtractSettings = ExtractSettings(), force: bool = False) -> Summary:
    """Extract aligned faces of ``side`` into ``data_<side>/aligned``. See module docstring."""
    check_side(side)
    start = time.perf_counter()
    frames = ws.require_frames(side)
    aligned, debug_dir, state = ws.aligned_dir(side), ws.aligned_debug_dir(side), ws.state_dir(side)
    for d in (aligned, debug_dir, state):
        d.mkdir(parents=True, exist_ok=True)
    record_path, log_path = state / "extract.json", _done_log(ws, side)

    previous = _read_json(record_path)
    if force:
        for p in list(aligned.glob("*.jpg")) + list(aligned.glob("*.png")) + list(debug_dir.glob("*.jpg")):
            p.unlink()
        log_path.unlink(missing_ok=True)
    elif previous and previous.get("settings") != settings.output_key() and aligned.exists() and any(aligned.iterdir()):
        raise SettingsError(
            f"{aligned} holds faces extracted with other settings ({_diff(previous.get('settings', {}), settings.output_key())})",
            f"run `facelab extract {side} --force` to extract again with the new settings",
        )
    done = set(log_path.read_text().split()) if log_path.exists() else set()
    atomic_write_json(record_path, {"settings": settings.output_key(), "completed": False})

    todo = [p for p in frames if p.name not in done]
    threads = settings.threads or os.cpu_count() or 2
    detector = create_detector(settings.detector, threads=threads, score_threshold=settings.min_score)
    landmarker = create_landmarker(settings.landmarks)

    n_faces = n_with = 0
    no_face: list[str] = []
    # frames whose faces are still being written, oldest first: logged as done once written
    writing: deque[tuple[str, list[Future[None]]]] = deque()
    with ThreadPoolExecutor(max_workers=2) as pool, open(log_path, "a") as log:

        def flush(block: bool) -> None:
            while writing and (block or all(f.done() for f in writing[0][1])):
                name, futs = writing.popleft()
                for f in futs:
                    f.result()  # re-raise a write error (disk full ...) here
                log.write(name + "\n")
                log.flush()

        for path, image in track(prefetch(read_image, todo, pool), len(todo), f"extract {side}"):
            found = find_faces(image, detector, landmarker, settings)
            futs = [pool.submit(_write_face, image, f, i, path, aligned, settings) for i, f in enumerate(found)]
            if settings.debug:
                futs.append(pool.submit(lambda im=image, fs=found, p=path: write_image(debug_dir / f"{p.stem}.jpg", draw_debug(im, fs, settings), 90)))
            n_faces += len(found)
            n_with += bool(found)
            if not found:
                no_face.append(path.name)
            writing.append((path.name, futs))
            flush(block=len(writing) > 8)
        flush(block=True)

    old_no_face = _read_lines(state / "no_face.txt") if done else []
    all_no_face = sorted(set(old_no_face) | set(no_face))
    (state / "no_face.txt").write_text("".join(n + "\n" for n in all_no_face))
    atomic_write_json(record_path, {"settings": settings.output_key(), "completed": True})
    total_faces = len(ws.aligned_paths(side))
    if total_faces == 0:
        raise FacelabError(
            f"no face found in any of the {len(frames)} frames of data_{side}",
            "check that the video shows a face; try --min-score 0.5 for small or dark faces",
        )
    summary = Summary(
        step=f"extract {side}",
        counts={"frames": len(todo), "skipped (already done)": len(frames) - len(todo), "faces": n_faces, "frames without face": len(no_face), "faces in set": total_faces},
        seconds=time.perf_counter() - start,
        outputs=[str(aligned)],
    )
    if no_face:
        summary.warnings.append(f"{len(no_face)} frame(s) without a face (listed in {state / 'no_face.txt'})")
    return summary


def _write_face(image: np.ndarray, found: FoundFace, index: int, frame: Path, aligned: Path, settings: ExtractSettings) -> None:
    face, record = make_face(image, found, index, frame.name, settings)
    write_face(aligned / f"{frame.stem}_{index}.jpg", face, record, settings.jpeg_quality)


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)) or "unknown"
