"""Coverage report: does the src face set cover the poses, lighting and mouth of dst?

A model learns to draw src faces in the poses and light it has seen. dst
frames in poses that no src face shows give blurry or wrong faces there. For
each face this computes yaw/pitch in degrees with :mod:`facelab.faceset.pose` (the same estimate `sort` uses),
a brightness (mean luma inside the landmark hull, 0..255) and the mouth opening (inner lips' gap / eye
distance, as ``facelab eval`` measures it), bins yaw and pitch on a grid, and names the grid cells that hold
dst faces but no src face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facelab.align import hull_mask
from facelab.errors import FaceFileError
from facelab.eval.metrics import mouth_opening
from facelab.faceimage import read_face
from facelab.faceset.pose import yaw_pitch

MOUTH_OPEN = 0.1  # mouth opening (/ eye distance) above which a mouth counts as open
YAW_EDGES = np.linspace(-80.0, 80.0, 9)  # degrees: 8 bins of 20
PITCH_EDGES = np.linspace(-45.0, 45.0, 7)  # degrees: 6 bins of 15


@dataclass
class FaceStats:
    name: str
    yaw: float
    pitch: float
    brightness: float
    mouth: float  # nan where the landmarks give no eye distance


@dataclass
class Coverage:
    src: list[FaceStats]
    dst: list[FaceStats]
    uncovered: list[tuple[tuple[float, float], tuple[float, float], int]] = field(default_factory=list)
    # ((yaw lo, yaw hi), (pitch lo, pitch hi), dst faces there)

    @property
    def uncovered_dst_faces(self) -> int:
        return sum(n for _, _, n in self.uncovered)


def face_stats(path: Path) -> FaceStats:
    image, rec = read_face(path)
    yaw, pitch = yaw_pitch(rec.landmarks)
    mask = hull_mask(rec.landmarks, image.shape[:2], rec.face_type) > 0.5
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    brightness = float(gray[mask].mean()) if mask.any() else float(gray.mean())
    return FaceStats(path.name, yaw, pitch, brightness, mouth_opening(rec.landmarks))


def _bin(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.digitize(values, edges[1:-1]), 0, len(edges) - 2)


def histogram(stats: list[FaceStats]) -> np.ndarray:
    """Face counts per (yaw bin, pitch bin); values past the grid go to its edge bins."""
    h = np.zeros((len(YAW_EDGES) - 1, len(PITCH_EDGES) - 1), np.int64)
    if stats:
        yi = _bin(np.array([s.yaw for s in stats]), YAW_EDGES)
        pi = _bin(np.array([s.pitch for s in stats]), PITCH_EDGES)
        np.add.at(h, (yi, pi), 1)
    return h


def compute(src_paths: list[Path], dst_paths: list[Path]) -> tuple[Coverage, list[str]]:
    warnings: list[str] = []

    def collect(paths: list[Path]) -> list[FaceStats]:
        out = []
        for p in paths:
            try:
                out.append(face_stats(p))
            except FaceFileError as e:
                warnings.append(str(e))
        return out

    cov = Coverage(collect(src_paths), collect(dst_paths))
    hs, hd = histogram(cov.src), histogram(cov.dst)
    for i, j in zip(*np.nonzero((hd > 0) & (hs == 0))):
        cov.uncovered.append(
            ((float(YAW_EDGES[i]), float(YAW_EDGES[i + 1])), (float(PITCH_EDGES[j]), float(PITCH_EDGES[j + 1])), int(hd[i, j]))
        )
    return cov, warnings


def _finite(values: list[float]) -> np.ndarray:
    a = np.asarray(values, np.float64)
    return a[np.isfinite(a)]


def _summary(values: list[float]) -> str:
    a = _finite(values)
    if not a.size:
        return "-"
    return f"{a.min():+.2f} / {np.median(a):+.2f} / {a.max():+.2f}"


def table(cov: Coverage) -> str:
    """Plain-text report: per side min / median / max of yaw, pitch, brightness and mouth opening; how many dst
    faces lie outside src's light and mouth opening; then the pose gaps."""
    rows = [("", "src", "dst"), ("faces", str(len(cov.src)), str(len(cov.dst)))]
    for key, label in (("yaw", "yaw"), ("pitch", "pitch"), ("brightness", "brightness"), ("mouth", "mouth opening")):
        rows.append((f"{label} min/median/max", _summary([getattr(s, key) for s in cov.src]), _summary([getattr(s, key) for s in cov.dst])))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}" for r in rows]
    if cov.src and cov.dst:
        lo, hi = np.percentile([s.brightness for s in cov.src], [5, 95])
        dark = sum(s.brightness < lo for s in cov.dst)
        bright = sum(s.brightness > hi for s in cov.dst)
        lines.append(f"dst faces darker than 95% of src: {dark}; brighter than 95% of src: {bright}")
        src_m, dst_m = (_finite([s.mouth for s in side]) for side in (cov.src, cov.dst))
        if src_m.size and dst_m.size:
            wider = int((dst_m > np.percentile(src_m, 95)).sum())
            lines.append(f"mouth open (> {MOUTH_OPEN:g} of the eye distance): src {np.mean(src_m > MOUTH_OPEN):.0%}, "
                         f"dst {np.mean(dst_m > MOUTH_OPEN):.0%} of faces; dst mouths wider than 95% of src: {wider}")
    if cov.uncovered:
        lines.append(f"dst poses with no src face ({cov.uncovered_dst_faces} dst faces):")
        for (y0, y1), (p0, p1), n in cov.uncovered:
            lines.append(f"  yaw {y0:+.1f}..{y1:+.1f}, pitch {p0:+.1f}..{p1:+.1f}: {n} dst faces")
    else:
        lines.append("every dst pose has src faces")
    return "\n".join(lines)


def plot(cov: Coverage, size: tuple[int, int] = (720, 540)) -> np.ndarray:
    """Scatter of yaw (x) against pitch (y): src blue, dst orange, uncovered cells shaded red."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    m = 60
    x0, x1, y0, y1 = m, w - 20, 30, h - m

    def px(yaw: float, pitch: float) -> tuple[int, int]:
        yaw = float(np.clip(yaw, YAW_EDGES[0], YAW_EDGES[-1]))
        pitch = float(np.clip(pitch, PITCH_EDGES[0], PITCH_EDGES[-1]))
        fx = (yaw - YAW_EDGES[0]) / (YAW_EDGES[-1] - YAW_EDGES[0])
        fy = (pitch - PITCH_EDGES[0]) / (PITCH_EDGES[-1] - PITCH_EDGES[0])
        return int(round(x0 + fx * (x1 - x0))), int(round(y0 + fy * (y1 - y0)))

    for (ya, yb), (pa, pb), _n in cov.uncovered:
        cv2.rectangle(img, px(ya, pa), px(yb, pb), (200, 200, 255), -1)
    for e in YAW_EDGES:
        cv2.line(img, px(e, PITCH_EDGES[0]), px(e, PITCH_EDGES[-1]), (225, 225, 225), 1)
        x, _ = px(e, 0)
        cv2.putText(img, f"{e:+.1f}", (x - 14, h - m + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for e in PITCH_EDGES:
        cv2.line(img, px(YAW_EDGES[0], e), px(YAW_EDGES[-1], e), (225, 225, 225), 1)
        _, y = px(0, e)
        cv2.putText(img, f"{e:+.1f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    for s in cov.dst:
        cv2.circle(img, px(s.yaw, s.pitch), 4, (0, 140, 255), -1, cv2.LINE_AA)  # orange
    for s in cov.src:
        cv2.circle(img, px(s.yaw, s.pitch), 3, (200, 80, 0), -1, cv2.LINE_AA)  # blue
    cv2.putText(img, "yaw (nose to image right ->)", (x0 + 150, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "pitch (down)", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "src", (x1 - 110, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 80, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "dst", (x1 - 70, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 140, 255), 1, cv2.LINE_AA)
    cv2.putText(img, "no src", (x1 - 240, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (120, 120, 230), 1, cv2.LINE_AA)
    return img
