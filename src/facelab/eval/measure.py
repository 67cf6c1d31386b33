"""Measure a finished merge: every paired frame, then the clip (see ``docs/eval.md``).

Per frame, the swapped face is found again in the dst frame, in the output frame
and in a mildly perturbed copy of the dst frame, each time with facelab's own
tools (RetinaFace, then dlib's 68 points from the detected box); the detection
kept is the one overlapping the dst face record's box most (IoU >= 0.3), so a
frame with several people measures the face that was swapped. The perturbed copy
gives the noise floor: how far the same tools move on the *same* face after the
kind of change a merge and an encoder make (watermark, slight blur, JPEG).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facelab.detect import Detection
from facelab.eval import metrics as M
from facelab.eval.embed import Embedder, EmbeddingCache
from facelab.eval.frames import FramePairs
from facelab.eval.src_line import FACE_TYPE, WIDER, Pasted, SrcLine
from facelab.errors import FacelabError
from facelab.faceimage import FaceRecord, read_face
from facelab.progress import track

MATCH_IOU = 0.3
"""A detection is the swapped face when its box overlaps the dst record's box at least this much."""
HULL_MARGIN = 0.25
"""Background = outside the 68-point face hull grown by this many inter-ocular distances."""
PERTURB_BLUR, PERTURB_JPEG = 0.7, 75
"""Noise-floor perturbation of a dst frame: facelab's watermark, Gaussian blur (sigma, px), JPEG quality."""
SRC_SAMPLE = 40
"""Src faces (evenly spaced over the set) averaged into the src identity."""
LINE_EVERY = 3
"""``identity_src_line`` is measured on every third frame (two embeddings each; the median is a guide)."""

# frame columns that rank a frame as bad for the report's "worst frames": how bad each value is (higher = worse)
WORST_BY: dict[str, Callable[[float], float]] = {
    "identity_distance": lambda v: v, "expression_error": lambda v: v, "pose_error_deg": lambda v: v,
    "sharpness_ratio": lambda v: -v, "color_diff_p95": lambda v: v,
    "seam_ratio": lambda v: abs(float(np.log(v))) if v > 0 else float("nan"),  # a seam either way from 1
}


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def perturb(frame: np.ndarray) -> np.ndarray:
    """A dst frame changed as a merge and an encoder change it: watermark, blur (sigma 0.7 px), JPEG at quality 75."""
    from facelab.provenance.watermark import MIN_SIZE, embed

    out = embed(frame) if min(frame.shape[:2]) >= MIN_SIZE else frame
    out = cv2.GaussianBlur(out, (0, 0), PERTURB_BLUR)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, PERTURB_JPEG])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def watermarked(frame: np.ndarray) -> np.ndarray:
    """The frame with facelab's watermark (what a merge writes outside the face); the frame itself if too small."""
    from facelab.provenance.watermark import MIN_SIZE, embed

    return embed(frame) if min(frame.shape[:2]) >= MIN_SIZE else frame


class FaceFinder:
    """Find the swapped face in a frame: ``find(image, box) -> (68, 2) landmarks or None``."""

    def __init__(self, detector: Callable, landmarker: Callable) -> None:
        self.detector, self.landmarker = detector, landmarker

    def find(self, image: np.ndarray, box: tuple[float, ...]) -> tuple[np.ndarray | None, tuple[float, ...] | None]:
        found = self.detector(image)
        if not found:
            return None, None
        best = max(found, key=lambda d: box_iou(d.box, box))
        if box_iou(best.box, box) < MATCH_IOU:
            return None, None
        return np.asarray(self.landmarker(image, best), np.float64), tuple(float(v) for v in best.box)

    def from_box(self, image: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
        return np.asarray(self.landmarker(image, Detection(tuple(box), 1.0)), np.float64)


@dataclass
class Measured:
    """What :func:`measure` found.

    Attributes:
        rows: one dict per frame (the columns of ``docs/eval.md``); ``nan`` where undefined.
        summary: the clip's figures (stable snake_case keys).
        boxes: per frame, the dst face box ``(x0, y0, x1, y1)`` used for the report's crops, or ``None``.
        warnings: what could not be measured.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, float]
    boxes: list[tuple[float, ...] | None]
    warnings: list[str] = field(default_factory=list)


def src_identity(paths: list, embedder: Embedder, sample: int = SRC_SAMPLE) -> list[Future]:
    """Start embedding up to ``sample`` src faces, evenly spaced over ``paths`` (unreadable ones skipped);
    returns the futures (their mean is the src identity)."""
    idx = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(int))
    futures = []
    for i in idx:
        try:
            image, rec = read_face(paths[i])
        except FacelabError:  # an unreadable src face (FaceFileError, MediaError) is left out
            continue
        if len(rec.landmarks) == 68:
            futures.append(embedder.submit(image, rec.landmarks, EmbeddingCache.key("src", paths[i], rec.landmarks)))
    return futures


def _line_key(pasted: Pasted, face_type: str, dst_path, landmarks: np.ndarray) -> str:
    """Cache key of a src line's frame: the dst frame and face, the src face pasted in and the region."""
    st = pasted.source.stat()
    return EmbeddingCache.key(f"line-{face_type}-{pasted.source.name}-{st.st_size}-{st.st_mtime_ns}", dst_path, landmarks)


def _nan_row(name: str, face: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"frame": name, "face": face, "found": False}
    for key in ("sharpness_dst", "sharpness_out", "sharpness_ratio", "sharpness_src_line", "sharpness_src_line_model",
                "expression_error", "expression_floor",
                "yaw_dst", "pitch_dst", "roll_dst", "yaw_out", "pitch_out", "roll_out", "pose_error_deg", "pose_floor_deg",
                "pose_tracking_deg", "expression_tracking", "identity_distance", "identity_dst_distance",
                "identity_src_line", "identity_src_line_whole", "mouth_dst", "mouth_out", "eye_dst", "eye_out",
                "jitter_dst", "jitter_out", "background_change", "seam_ratio", "color_flicker", "color_diff_mean",
                "color_diff_p95", "score"):
        row[key] = float("nan")
    row["closer_to_src"] = None
    return row


def _read_blend_mask(mask_dir, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask_dir is None:
        return None
    path = mask_dir / f"{name.rsplit('.', 1)[0]}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    return mask if mask is not None and mask.shape == shape[:2] else None


def measure(pairs: FramePairs, records: dict[str, FaceRecord], finder: FaceFinder, src_faces: list,
            workers: int = 2, mask_dir=None, progress: bool = True, cache: EmbeddingCache | None = None,
            model_size: tuple[str, int] | None = None) -> Measured:
    """Measure every frame pair, then the clip.

    Args:
        pairs: dst and output frames (:func:`facelab.eval.frames.pair_frames`).
        records: the swapped dst face of each frame, by frame file name.
        finder: face detection and landmarks.
        src_faces: the src aligned face files (the src identity is their mean embedding; the nearest-pose
            one to each dst face, blended into the dst frame, gives ``sharpness_src_line`` and
            ``identity_src_line``, and cut wider over the forehead ``identity_src_line_whole``:
            :mod:`facelab.eval.src_line`).
        workers: CPU threads for identity embeddings, computed beside the measuring (0: in turn with it).
        mask_dir: ``data_dst/merged_mask`` (the blend masks, for the seam); None or missing masks: the
            68-point hull's edge is used instead.
        progress: draw a progress bar (on a terminal).
        cache: embeddings of unchanged dst frames and src faces from earlier runs; saved back when done.
        model_size: the model's ``(face_type, resolution)``, for ``sharpness_src_line_model``; None: not measured.
    """
    rows: list[dict[str, Any]] = []
    boxes: list[tuple[float, ...] | None] = []
    lm_dst = np.full((len(pairs), 68, 2), np.nan)
    lm_out = np.full((len(pairs), 68, 2), np.nan)
    offsets = np.full((len(pairs), 3), np.nan)
    pose_diff = np.full((len(pairs), 3), np.nan)
    residual = np.full((len(pairs), len(M.INNER), 2), np.nan)
    pending: list[tuple[int, Any, Any]] = []
    lines: list[tuple[int, Any, Any]] = []  # the src lines' embeddings per frame: the model's region, wider
    seam_from_hull = 0
    src_line = SrcLine(list(src_faces), *(model_size or (FACE_TYPE, None)))
    wider = src_line.cut(WIDER)
    with Embedder(workers, cache) as embedder:
        # the src faces go first, so they are embedded while the first frames are read
        src_futures = src_identity(src_faces, embedder)
        items = iter(pairs)
        for i, dst, out in (track(items, len(pairs), "eval") if progress else items):
            name = pairs.names[i]
            rec = records.get(name)
            row = _nan_row(name, rec is not None)
            rows.append(row)
            boxes.append(None)
            if rec is None:  # nothing was swapped here: the whole frame should be untouched
                row["background_change"] = M.background_change(out, [dst, watermarked(dst)], np.ones(dst.shape[:2], bool))
                continue
            box = tuple(float(v) for v in rec.source_rect)
            ld, dbox = finder.find(dst, box)
            if ld is None:  # the detector misses the dst face now: fall back to the recorded box
                ld, dbox = finder.from_box(dst, box), box
            boxes[i] = dbox
            lm_dst[i] = ld
            pose_d = M.head_pose(ld)
            row.update(yaw_dst=pose_d[0], pitch_dst=pose_d[1], roll_dst=pose_d[2], mouth_dst=M.mouth_opening(ld), eye_dst=M.eye_opening(ld))
            lp, _ = finder.find(perturb(dst), dbox)
            if lp is not None:
                row["pose_floor_deg"] = M.pose_error(M.head_pose(lp), pose_d)
                row["expression_floor"] = M.expression_error(lp, ld)
            blend = _read_blend_mask(mask_dir, name, dst.shape)
            if blend is None or not blend.any():
                blend = None
            seam_from_hull += blend is None
            # pixel measures over the dst face's regions (they do not need the output face to be found)
            pixels, offsets[i] = _face_pixels(dst, out, ld, blend)
            row.update(pixels)
            pasted = src_line.paste(dst, ld)
            row["sharpness_src_line"], row["sharpness_src_line_model"] = src_line.ratio(dst, ld, row["sharpness_dst"], pasted)
            if src_futures and pasted is not None and i % LINE_EVERY == 0:  # the line's identity, whatever the output
                wide = wider.paste(dst, ld) if wider is not None else pasted
                lines.append((i, *(embedder.submit(p.frame, ld, _line_key(p, line.face_type, pairs.dst[i], ld))
                                   for p, line in ((pasted, src_line), (wide, wider or src_line)))))
            lo, _ = finder.find(out, dbox)
            if lo is None:
                continue
            row["found"] = True
            lm_out[i] = lo
            pose_o = M.head_pose(lo)
            pose_diff[i], residual[i] = M.pose_difference(pose_o, pose_d), M.expression_residual(lo, ld)
            row.update(yaw_out=pose_o[0], pitch_out=pose_o[1], roll_out=pose_o[2], pose_error_deg=M.pose_error(pose_o, pose_d),
                       expression_error=float(np.linalg.norm(residual[i], axis=1).mean()),  # = M.expression_error(lo, ld)
                       mouth_out=M.mouth_opening(lo), eye_out=M.eye_opening(lo))
            if src_futures:
                pending.append((i, embedder.submit(out, lo), embedder.submit(dst, ld, EmbeddingCache.key("dst", pairs.dst[i], ld))))
        src_used = len(src_futures)
        src_mean = np.mean([f.result() for f in src_futures], 0) if src_futures else None
        for i, fo, fd in pending:
            eo, ed = fo.result(), fd.result()
            rows[i]["identity_distance"] = float(np.linalg.norm(eo - src_mean))
            rows[i]["identity_dst_distance"] = float(np.linalg.norm(eo - ed))
            rows[i]["closer_to_src"] = bool(rows[i]["identity_distance"] < rows[i]["identity_dst_distance"])
        for i, fl, fw in lines:
            rows[i]["identity_src_line"] = float(np.linalg.norm(fl.result() - src_mean))
            rows[i]["identity_src_line_whole"] = float(np.linalg.norm(fw.result() - src_mean))
    if cache is not None:
        cache.save()
    jd, jo = M.jitter(lm_dst), M.jitter(lm_out)
    flicker = M.color_flicker(offsets)
    for i, row in enumerate(rows):
        row["jitter_dst"], row["jitter_out"], row["color_flicker"] = float(jd[i]), float(jo[i]), float(flicker[i])
    pose_steady, pose_moving = M.steady_and_moving(pose_diff)
    expr_steady, expr_moving = M.steady_and_moving(residual)
    for i, row in enumerate(rows):
        if row["found"]:
            row["pose_tracking_deg"] = float(np.abs(pose_moving[i]).mean())
            row["expression_tracking"] = float(np.linalg.norm(expr_moving[i], axis=1).mean())
    _score(rows)
    warnings = []
    if seam_from_hull and mask_dir is not None:
        warnings.append(f"{seam_from_hull} frame(s) have no blend mask in merged_mask/: their seam is read on the face hull's edge")
    summary = summarize(rows)
    summary["src_faces_used"] = src_used
    summary.update(pose_offset_yaw_deg=float(pose_steady[0]), pose_offset_pitch_deg=float(pose_steady[1]),
                   pose_offset_roll_deg=float(pose_steady[2]),
                   expression_offset=float(np.linalg.norm(expr_steady, axis=1).mean()))
    return Measured(rows, summary, boxes, warnings)


def _face_pixels(dst: np.ndarray, out: np.ndarray, ld: np.ndarray, blend: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
    """The frame's pixel measures around the dst face with landmarks ``ld``: sharpness, colour, seam (on
    ``blend``, the merge's mask, else the 68-point hull's edge) and background change; plus the face's
    Lab offset (output - dst) for the flicker. Everything but the background is computed on a crop around
    the face, which keeps the cost independent of the frame size."""
    h, w = dst.shape[:2]
    iod = M.inter_ocular(ld)
    margin = HULL_MARGIN * iod
    pad = margin + 8  # filters (blur sigma 2, Sobel, Laplacian) see real pixels at the region's edge
    x0, y0 = np.floor(ld.min(0) - pad).astype(int)
    x1, y1 = np.ceil(ld.max(0) + pad).astype(int) + 1
    if blend is not None:
        bx, by, bw, bh = cv2.boundingRect((blend > 0).astype(np.uint8))
        x0, y0, x1, y1 = min(x0, bx - 8), min(y0, by - 8), max(x1, bx + bw + 8), max(y1, by + bh + 8)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    d, o, lc = dst[y0:y1, x0:x1], out[y0:y1, x0:x1], ld - (x0, y0)
    inner, hull = M.inner_face(lc, d.shape), M.hull_region(lc, d.shape)
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = ~M.dilate(hull, margin)
    sd, so = M.sharpness(d, inner), M.sharpness(o, inner)
    cmean, cp95 = M.color_difference(o, d, inner)
    band = M.seam_band(blend[y0:y1, x0:x1] if blend is not None else hull.astype(np.float32))
    row = {"background_change": M.background_change(out, [dst, watermarked(dst)], outside),
           "sharpness_dst": sd, "sharpness_out": so, "sharpness_ratio": so / sd if sd > 0 else float("nan"),
           "color_diff_mean": cmean, "color_diff_p95": cp95, "seam_ratio": M.seam_ratio(o, d, band)}
    return row, M.mean_lab(o, inner) - M.mean_lab(d, inner)


def _score(rows: list[dict[str, Any]]) -> None:
    """``score`` in [0, 1] per frame with a dst face: the mean over :data:`WORST_BY` of the frame's rank among
    all frames (0 = best, 1 = worst); a frame whose output face was not found scores 1."""
    ranks = []
    for key, badness in WORST_BY.items():
        v = np.array([badness(r[key]) if r["found"] and np.isfinite(r[key]) else np.nan for r in rows], np.float64)
        ok = np.isfinite(v)
        rank = np.full(len(rows), np.nan)
        n = int(ok.sum())
        if n == 1:
            rank[ok] = 0.5
        elif n > 1:
            order = np.argsort(np.argsort(v[ok], kind="stable"), kind="stable")
            rank[ok] = order / (n - 1)
        ranks.append(rank)
    stacked = np.vstack(ranks) if ranks else np.zeros((0, len(rows)))
    for i, row in enumerate(rows):
        if not row["face"]:
            continue
        if not row["found"]:
            row["score"] = 1.0
            continue
        col = stacked[:, i]
        row["score"] = float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")


def _finite(values) -> np.ndarray:
    v = np.asarray([x for x in values if x is not None], np.float64)
    return v[np.isfinite(v)]


def _nanmean(values) -> float:
    v = _finite(values)
    return float(v.mean()) if v.size else float("nan")


def _nanmedian(values) -> float:
    v = _finite(values)
    return float(np.median(v)) if v.size else float("nan")


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The clip's figures from the frame rows (definitions in ``docs/eval.md``)."""
    faces = [r for r in rows if r["face"]]
    found = [r for r in faces if r["found"]]

    def col(key: str, among=found) -> list[float]:
        return [r[key] for r in among]

    closer = [r["closer_to_src"] for r in found if r["closer_to_src"] is not None]
    both = [r for r in rows if np.isfinite(r["jitter_dst"]) and np.isfinite(r["jitter_out"])]
    jd, jo = _nanmean(col("jitter_dst", both)), _nanmean(col("jitter_out", both))
    mouth_dst, mouth_out = (np.array([r[k] for r in rows], np.float64) for k in ("mouth_dst", "mouth_out"))
    return {
        "frames": len(rows),
        "faces": len(faces),
        "face_found_share": len(found) / len(faces) if faces else float("nan"),
        "sharpness_ratio": _nanmean(col("sharpness_ratio", faces)),
        "sharpness_src_line": _nanmean(col("sharpness_src_line", faces)),
        "sharpness_src_line_model": _nanmean(col("sharpness_src_line_model", faces)),
        "expression_error": _nanmean(col("expression_error")),
        "expression_floor": _nanmean(col("expression_floor", faces)),
        "pose_error_deg": _nanmean(col("pose_error_deg")),
        "pose_floor_deg": _nanmean(col("pose_floor_deg", faces)),
        "pose_tracking_deg": _nanmean(col("pose_tracking_deg")),
        "expression_tracking": _nanmean(col("expression_tracking")),
        "identity_distance": _nanmedian(col("identity_distance")),
        "identity_closer_share": float(np.mean(closer)) if closer else float("nan"),
        "identity_src_line": _nanmedian(col("identity_src_line", faces)),
        "identity_src_line_whole": _nanmedian(col("identity_src_line_whole", faces)),
        "mouth_corr": M.correlation(mouth_dst, mouth_out),
        "mouth_gain": M.gain(mouth_dst, mouth_out),
        "eye_corr": M.correlation(np.array([r["eye_dst"] for r in rows]), np.array([r["eye_out"] for r in rows])),
        "jitter_ratio": jo / jd if jd > 0 else float("nan"),
        "background_change": _nanmean(col("background_change", rows)),
        "seam_ratio": _nanmean(col("seam_ratio", faces)),
        "color_flicker": _nanmean(col("color_flicker", faces)),
        "color_diff_mean": _nanmean(col("color_diff_mean", faces)),
        "color_diff_p95": _nanmean(col("color_diff_p95", faces)),
    }
