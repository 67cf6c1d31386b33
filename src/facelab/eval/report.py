"""Eval results: stable names, targets, the JSON file and the side-by-side comparison of two runs.

JSON (``version`` 1)::

    {"version": 1,
     "meta": {"facelab": "...", "workspace": "...", "source": "merged", "model": ..., "created": "..."},
     "summary": {"frames": 75, "sharpness_ratio": 0.41, ...},          # SUMMARY_KEYS, null = not measured
     "targets": {"sharpness_ratio": {"op": ">=", "value": 0.7, "met": false}, ...},
     "frames": [{"frame": "00001.png", "sharpness_ratio": 0.40, ...}, ...]}

Names never change meaning: a new measure gets a new key, so any two runs compare.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab.errors import FacelabError

VERSION = 1

SUMMARY_KEYS = (
    "frames", "faces", "face_found_share",
    "sharpness_ratio", "sharpness_src_line", "sharpness_src_line_model",
    "expression_error", "expression_floor", "pose_error_deg", "pose_floor_deg",
    "pose_tracking_deg", "pose_offset_yaw_deg", "pose_offset_pitch_deg", "pose_offset_roll_deg",
    "expression_tracking", "expression_offset",
    "identity_distance", "identity_closer_share", "identity_src_line", "identity_src_line_whole",
    "mouth_corr", "mouth_gain", "eye_corr", "jitter_ratio",
    "background_change", "seam_ratio", "color_flicker", "color_diff_mean", "color_diff_p95",
    "src_faces_used",
    "recon_src_ssim", "recon_src_psnr", "recon_dst_ssim", "recon_dst_psnr", "recon_src_faces", "recon_dst_faces",
    "eval_seconds",
)
"""Every summary key, in the order they are shown."""

POSE_MARGIN = 1.0
"""The pose target is the measured noise floor plus this many degrees."""

TARGETS: dict[str, tuple[str, float | str]] = {
    "sharpness_ratio": (">=", 0.70),
    "expression_error": ("<=", 0.05),
    "pose_error_deg": ("<=", "pose_floor_deg + 1.0"),
    "identity_distance": ("<=", 0.50),
    "identity_closer_share": (">=", 0.95),
    "mouth_corr": (">=", 0.85),
    "jitter_ratio": ("<=", 1.15),
}
"""Issue 10's targets. A string value is a rule on other summary figures (resolved per run)."""

SHARPNESS_EXCESS = 1.5
"""A sharpness ratio over this, and over this many times the src line, is read as a pattern, not detail."""


def sharpness_pattern(summary: dict[str, Any]) -> tuple[float, float | None] | None:
    """``(sharpness_ratio, what the src footage allows)`` where the swap is far sharper than dst and than its src
    footage allows: an untrained or diverging model paints a checker pattern or noise, which the Laplacian reads
    as sharpness (a 20-iteration LIAEF128 scored 7.9 against a src line of 0.68). None where it is not."""
    ratio = _finite(summary.get("sharpness_ratio"))
    ref = next((v for v in (_finite(summary.get("sharpness_src_line_model")), _finite(summary.get("sharpness_src_line")))
                if v is not None and v > 0), None)
    if ratio is None or not ratio > max(SHARPNESS_EXCESS, SHARPNESS_EXCESS * (ref or 0.0)):
        return None
    return ratio, ref


BETTER: dict[str, str] = {
    "face_found_share": "higher", "sharpness_ratio": "higher", "identity_closer_share": "higher",
    "mouth_corr": "higher", "eye_corr": "higher",
    "recon_src_ssim": "higher", "recon_src_psnr": "higher", "recon_dst_ssim": "higher", "recon_dst_psnr": "higher",
    "expression_error": "lower", "pose_error_deg": "lower",
    "pose_tracking_deg": "lower", "expression_tracking": "lower", "identity_distance": "lower", "jitter_ratio": "lower",
    "background_change": "lower", "color_flicker": "lower", "color_diff_mean": "lower", "color_diff_p95": "lower",
    "eval_seconds": "lower",
    "seam_ratio": "nearer 1", "mouth_gain": "nearer 1",
}
"""Which way each figure improves; figures not listed (counts, noise floors) are context, not quality."""

LABELS: dict[str, str] = {
    "frames": "frames measured", "faces": "frames with a swapped face", "face_found_share": "face found in output",
    "sharpness_ratio": "sharpness, output / dst", "sharpness_src_line": "sharpness the src footage allows, / dst",
    "sharpness_src_line_model": "the same through the model's resolution", "expression_error": "expression error / inter-ocular",
    "expression_floor": "expression noise floor", "pose_error_deg": "head pose error (deg)",
    "pose_floor_deg": "head pose noise floor (deg)",
    "pose_tracking_deg": "head pose error, clip offset removed (deg)",
    "pose_offset_yaw_deg": "pose offset, yaw (deg)", "pose_offset_pitch_deg": "pose offset, pitch (deg)",
    "pose_offset_roll_deg": "pose offset, roll (deg)",
    "expression_tracking": "expression error, clip offset removed", "expression_offset": "expression offset (face shape)",
    "identity_distance": "identity distance to src (median)",
    "identity_closer_share": "closer to src than to dst",
    "identity_src_line": "identity distance a src face itself scores there (median)",
    "identity_src_line_whole": "the same with the forehead too (whole face)", "mouth_corr": "mouth opening correlation",
    "mouth_gain": "mouth opening gain (1 = opens as wide as dst)",
    "eye_corr": "eye opening correlation", "jitter_ratio": "landmark jitter, output / dst",
    "background_change": "background change (grey levels)", "seam_ratio": "seam gradient ratio",
    "color_flicker": "face colour flicker (Lab)", "color_diff_mean": "colour difference a*b*, mean",
    "color_diff_p95": "colour difference a*b*, 95th pct", "src_faces_used": "src faces in the identity",
    "recon_src_ssim": "reconstruction SSIM, src", "recon_src_psnr": "reconstruction PSNR dB, src",
    "recon_dst_ssim": "reconstruction SSIM, dst", "recon_dst_psnr": "reconstruction PSNR dB, dst",
    "recon_src_faces": "held-out src faces", "recon_dst_faces": "held-out dst faces", "eval_seconds": "eval time (s)",
}


class EvalFileError(FacelabError):
    """An eval JSON file cannot be read or is not one."""


def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def resolve_targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{key: {"op", "value", "met"}}`` for this run (``rule`` too where the value comes from other figures;
    ``met`` is ``None`` when the figure or its target could not be measured)."""
    out: dict[str, dict[str, Any]] = {}
    for key, (op, target) in TARGETS.items():
        entry: dict[str, Any] = {"op": op}
        if isinstance(target, str):
            floor = _finite(summary.get("pose_floor_deg"))
            entry["rule"] = target
            value = None if floor is None else floor + POSE_MARGIN
        else:
            value = float(target)
        entry["value"] = value
        v = _finite(summary.get(key))
        entry["met"] = None if v is None or value is None else (v >= value if op == ">=" else v <= value)
        out[key] = entry
    return out


@dataclass
class EvalResult:
    """One eval run: ``summary`` (SUMMARY_KEYS), ``frames`` (per-frame rows), ``meta``; not serialised:
    ``pairs`` and ``boxes`` (for the report's images) and ``warnings``."""

    summary: dict[str, Any]
    frames: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    pairs: Any = None
    boxes: list | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        return resolve_targets(self.summary)

    def missed(self) -> list[str]:
        """``"key value (target op value)"`` for each target not met."""
        return [f"{k} {fmt(self.summary.get(k))} (target {t['op']} {fmt(t['value'])})"
                for k, t in self.targets.items() if t["met"] is False]

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "meta": self.meta,
                "summary": {k: _clean(self.summary.get(k)) for k in SUMMARY_KEYS},
                "targets": _clean(self.targets), "frames": _clean(self.frames)}


def _clean(x: Any) -> Any:
    """JSON-safe copy: nan and inf become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if hasattr(x, "item"):
        x = x.item()
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def fmt(v: Any) -> str:
    """A figure as shown in tables: 3 significant digits, ``-`` when not measured."""
    f = _finite(v)
    if f is None:
        return "-"
    if float(f).is_integer() and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.3g}" if abs(f) < 1000 else f"{f:.0f}"


def write_json(result: EvalResult, path: Path) -> None:
    from facelab.fileio import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result.to_json(), indent=1, allow_nan=False).encode("utf-8"))


def load_json(path: Path) -> dict[str, Any]:
    """Read an eval JSON file; raise :class:`EvalFileError` naming it when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise EvalFileError(f"{path} does not exist", "give the path of a file written by `facelab eval --json FILE`")
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise EvalFileError(f"{path} is not a readable JSON file ({e})", "give a file written by `facelab eval --json FILE`") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict) or "version" not in doc:
        raise EvalFileError(f"{path} is not an eval result (no version or summary)", "give a file written by `facelab eval --json FILE`")
    if not isinstance(doc["version"], int) or doc["version"] > VERSION:
        raise EvalFileError(f"{path} has eval format version {doc['version']!r}; this facelab reads up to {VERSION}", "upgrade facelab")
    return doc


def _better(key: str, a: float | None, b: float | None) -> str:
    way = BETTER.get(key)
    if way is None or a is None or b is None:
        return ""
    if way == "nearer 1":
        a, b = -abs(a - 1), -abs(b - 1)
    elif way == "lower":
        a, b = -a, -b
    scale = max(abs(a), abs(b), 1e-12)
    if abs(a - b) <= 1e-3 * scale:  # differences in the fourth digit are noise
        return "="
    return "B" if b > a else "A"


def compare(a: dict[str, Any], b: dict[str, Any], name_a: str = "A", name_b: str = "B") -> list[str]:
    """Lines of a table of two eval JSON documents: metric, A, B, B - A, which is better (A, B or =).

    Rows: every summary key either run measured, in :data:`SUMMARY_KEYS` order, then unknown keys (a newer facelab)."""
    sa, sb = a.get("summary", {}), b.get("summary", {})
    keys = [k for k in SUMMARY_KEYS if k in sa or k in sb] + sorted((set(sa) | set(sb)) - set(SUMMARY_KEYS))
    rows = [("metric", name_a, name_b, "B-A", "better")]
    patterns = [name for name, summary in ((name_a, sa), (name_b, sb)) if sharpness_pattern(summary)]
    for k in keys:
        va, vb = _finite(sa.get(k)), _finite(sb.get(k))
        if va is None and vb is None:
            continue
        diff = f"{vb - va:+.3g}" if va is not None and vb is not None else "-"
        better = "?" if k == "sharpness_ratio" and patterns else _better(k, va, vb)
        rows.append((k, fmt(va), fmt(vb), diff, better))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    if patterns:
        lines.append(f"? sharpness_ratio of {' and '.join(patterns)} is over {SHARPNESS_EXCESS:g} and over {SHARPNESS_EXCESS:g}x "
                     "what its src footage allows: a pattern or noise the model paints, not detail, so it is not ranked")
    return lines
