"""The eval report as one self-contained HTML file (no scripts, no external files).

Contents: the summary table with targets, per-frame curves as inline SVG
(identity, sharpness, yaw, pitch, mouth and eye opening of dst against output),
and the six worst frames (highest ``score``, see :mod:`facelab.eval.measure`)
as dst | output crops. The crops show swapped faces, so each is marked like every
image facelab writes: invisible watermark, IPTC labels and a signed C2PA
manifest inside the JPEG; the page itself carries the IPTC digital source type
in its ``<meta>`` tags and says in words that it shows synthetic media.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facelab.eval.report import LABELS, SUMMARY_KEYS, EvalResult, fmt
from facelab.provenance.marker import Marker

WORST = 6
CROP_HEIGHT = 200
_COLOURS = {"dst": "#1f77b4", "output": "#d62728", "other": "#2ca02c", "fourth": "#9467bd"}


def _svg_chart(title: str, series: list[tuple[str, list[float], str]], lines: list[tuple[float, str]] = (),
               width: int = 760, height: int = 170) -> str:
    """An inline SVG line chart of per-frame values (``nan`` breaks a line), with horizontal reference lines."""
    left, right, top, bottom = 46, 10, 22, 22
    values = [v for _, ys, _ in series for v in ys if v is not None and math.isfinite(v)]
    values += [v for v, _ in lines]
    n = max((len(ys) for _, ys, _ in series), default=0)
    out = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{left}" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    if not values or n == 0:
        out.append(f'<text x="{left}" y="{height // 2}" font-size="12">not measured</text></svg>')
        return "".join(out)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    pw, ph = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (pw * i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    for v in (lo + pad, hi - pad):
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{fmt(v)}</text>')
    out.append(f'<text x="{left}" y="{height - 6}" font-size="10">frame 1</text>')
    out.append(f'<text x="{left + pw}" y="{height - 6}" font-size="10" text-anchor="end">frame {n}</text>')
    placed: dict[str, list[float]] = {"end": [], "start": []}  # label heights on the right and on the left
    for v, label in lines:
        side = "end" if all(abs(y(v) - other) >= 11 for other in placed["end"]) else "start"  # a near line: left
        placed[side].append(y(v))
        tx = left + pw - 2 if side == "end" else left + 2
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#888" stroke-dasharray="4 3"/>'
                   f'<text x="{tx}" y="{y(v) - 3:.1f}" font-size="10" text-anchor="{side}" fill="#666">{html.escape(label)}</text>')
    legend_x = left + max(260, round(7.5 * len(title)) + 16)  # clear of the bold title
    for name, ys, colour in series:
        segments, cur = [], []
        for i, v in enumerate(ys):
            if v is not None and math.isfinite(v):
                cur.append(f"{x(i):.1f},{y(v):.1f}")
            elif cur:
                segments.append(cur)
                cur = []
        if cur:
            segments.append(cur)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.8" fill="{colour}"/>')
            else:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(seg)}"/>')
        out.append(f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{legend_x + 14}" y="15" font-size="11">{html.escape(name)}</text>')
        legend_x += 30 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def _col(frames: list[dict[str, Any]], key: str) -> list[float]:
    out = []
    for r in frames:
        v = r.get(key)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None else float("nan"))
    return out


def charts(result: EvalResult) -> list[str]:
    f = result.frames
    dst, out, other = _COLOURS["dst"], _COLOURS["output"], _COLOURS["other"]
    # the src lines are measured on every third frame: drawn as their medians
    src_lines = [(v, f"src's own face here {fmt(v)}" if key == "identity_src_line" else f"with the forehead {fmt(v)}")
                 for key in ("identity_src_line", "identity_src_line_whole")
                 for v in [result.summary.get(key)] if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(src_lines) == 2 and abs(src_lines[0][0] - src_lines[1][0]) < 1e-9:
        src_lines = src_lines[:1]  # a whole-face model: one region
    return [
        _svg_chart("Identity: embedding distance of the output face", [("to mean src", _col(f, "identity_distance"), out),
                   ("to this frame's dst face", _col(f, "identity_dst_distance"), dst)],
                   [(0.5, "target 0.5"), (0.6, "same person 0.6"), *src_lines]),
        _svg_chart("Sharpness: output / dst (inner face)", [("output / dst", _col(f, "sharpness_ratio"), out),
                   ("src footage / dst", _col(f, "sharpness_src_line"), other),
                   ("through the model's size", _col(f, "sharpness_src_line_model"), _COLOURS["fourth"])],
                   [(0.7, "target 0.7"), (1.0, "1")]),
        _svg_chart("Yaw (deg)", [("dst", _col(f, "yaw_dst"), dst), ("output", _col(f, "yaw_out"), out)]),
        _svg_chart("Pitch (deg)", [("dst", _col(f, "pitch_dst"), dst), ("output", _col(f, "pitch_out"), out)]),
        _svg_chart("Head pose error (deg)", [("output vs dst", _col(f, "pose_error_deg"), out),
                   ("noise floor", _col(f, "pose_floor_deg"), other)]),
        _svg_chart("Mouth opening / inter-ocular", [("dst", _col(f, "mouth_dst"), dst), ("output", _col(f, "mouth_out"), out)]),
        _svg_chart("Eye opening (aspect ratio)", [("dst", _col(f, "eye_dst"), dst), ("output", _col(f, "eye_out"), out)]),
    ]


def worst_frames(result: EvalResult, count: int = WORST) -> list[int]:
    """Indices of the ``count`` frames with the highest score (worst first)."""
    scored = [(r["score"], i) for i, r in enumerate(result.frames)
              if isinstance(r.get("score"), float) and math.isfinite(r["score"])]
    return [i for _, i in sorted(scored, key=lambda t: (-t[0], t[1]))[:count]]


def side_by_side(dst: np.ndarray, out: np.ndarray, box: tuple[float, ...] | None, height: int = CROP_HEIGHT) -> np.ndarray:
    """``(height, W, 3) uint8``: the same square crop around ``box`` (1.8x its larger side) of dst and output, labelled."""
    h, w = dst.shape[:2]
    if box is None:
        crop = (0, 0, w, h)
    else:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = 1.8 * max(box[2] - box[0], box[3] - box[1])
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        crop = (x0, y0, int(min(w, cx + side / 2)), int(min(h, cy + side / 2)))
    tiles = []
    for img, label in ((dst, "dst"), (out, "output")):
        t = img[crop[1]:crop[3], crop[0]:crop[2]]
        k = height / t.shape[0]
        t = cv2.resize(t, (max(1, round(t.shape[1] * k)), height), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
        cv2.putText(t, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(t, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(t)
    gap = np.full((height, 4, 3), 255, np.uint8)
    return np.hstack([tiles[0], gap, tiles[1]])


def marked_jpeg(image: np.ndarray, title: str, marker: Marker) -> bytes:
    """JPEG bytes of an image showing a swap: watermarked, IPTC-labelled, with a C2PA manifest signed by ``marker``."""
    from facelab.provenance.watermark import MIN_SIZE

    if min(image.shape[:2]) < MIN_SIZE:
        k = MIN_SIZE / min(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * k), round(image.shape[0] * k)), interpolation=cv2.INTER_CUBIC)
    return marker.jpeg(image, title, 88)


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1000px;color:#222}
.banner{background:#fff3cd;border:1px solid #e0c36c;padding:8px 12px;margin-bottom:16px}
table{border-collapse:collapse;margin-bottom:20px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child,td.key{text-align:left}.met{color:#1a7f37}.miss{color:#c62828;font-weight:bold}
code{font-size:90%}.frame{margin:10px 0 18px}.frame img{display:block;margin-top:4px}"""


def render(result: EvalResult, images: dict[int, tuple[np.ndarray, np.ndarray]], marker: Marker) -> str:
    """The report's HTML text; ``images`` holds the ``(dst, output)`` frames of :func:`worst_frames`, which
    ``marker`` marks as synthetic."""
    from facelab.provenance.labels import DIGITAL_SOURCE_TYPE, SOFTWARE, STATEMENT

    esc = html.escape
    meta = result.meta
    targets = result.targets
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>facelab eval: {esc(str(meta.get('workspace', '')))}</title>",
             f'<meta name="generator" content="{esc(SOFTWARE)}">',
             f'<meta name="DigitalSourceType" content="{esc(DIGITAL_SOURCE_TYPE)}">',
             f'<meta property="iptc:digitalsourcetype" content="{esc(DIGITAL_SOURCE_TYPE)}">',
             f'<meta name="description" content="{esc(STATEMENT)}">',
             f"<style>{_CSS}</style></head><body>",
             f'<div class="banner">{esc(STATEMENT)}. The images below show face swaps; each carries facelab\'s watermark and a signed C2PA manifest.</div>',
             "<h1>facelab eval</h1>",
             f"<p>Workspace <code>{esc(str(meta.get('workspace', '')))}</code>, output frames from <code>{esc(str(meta.get('source', '')))}</code>,"
             f" made {esc(str(meta.get('created', '')))} by {esc(str(meta.get('facelab', '')))}."
             " Definitions of every figure: <code>docs/eval.md</code>.</p>",
             "<h2>Summary</h2>", '<table id="summary"><tr><th>metric</th><th>key</th><th>value</th><th>target</th><th></th></tr>']
    for key in SUMMARY_KEYS:
        value = result.summary.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value) and key.startswith("recon_")):
            continue
        t = targets.get(key)
        target = f"{t['op']} {fmt(t['value'])}" if t else ""
        status = "" if not t or t["met"] is None else ('<span class="met">met</span>' if t["met"] else '<span class="miss">missed</span>')
        parts.append(f'<tr><td>{esc(LABELS.get(key, key))}</td><td class="key"><code>{key}</code></td><td>{fmt(value)}</td>'
                     f"<td>{esc(target)}</td><td>{status}</td></tr>")
    parts.append("</table>")
    if result.warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul>")
    parts.append("<h2>Per frame</h2>")
    parts += [f"<div>{svg}</div>" for svg in charts(result)]
    worst = worst_frames(result)
    parts.append(f"<h2>The {len(worst)} worst frames</h2>"
                 "<p>Ranked by <code>score</code>: the mean, over identity distance, expression error, pose error, sharpness"
                 " (low is bad), colour difference (95th percentile) and seam ratio (its distance from 1), of the frame's rank among all frames"
                 " (0 best, 1 worst); a frame whose output face was not found scores 1.</p>")
    for i in worst:
        r = result.frames[i]
        if i not in images:
            continue
        dst, out = images[i]
        box = result.boxes[i] if result.boxes else None
        jpeg = marked_jpeg(side_by_side(dst, out, box), f"eval_{r['frame']}.jpg", marker)
        facts = ", ".join(f"{k.replace('_', ' ')} {fmt(r.get(k))}" for k in
                          ("score", "identity_distance", "expression_error", "pose_error_deg", "sharpness_ratio", "color_diff_p95", "seam_ratio"))
        parts.append(f'<div class="frame"><b>{esc(r["frame"])}</b>: {esc(facts)}'
                     f'<img alt="dst and output of {esc(r["frame"])}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}"></div>')
    parts.append(f"<p><small>{esc(STATEMENT)}</small></p></body></html>")
    return "\n".join(parts)


def write_html(result: EvalResult, path: Path, marker: Marker) -> None:
    """Write the report (reads the worst frames' images again through ``result.pairs``; ``marker`` marks them)."""
    from facelab.fileio import atomic_write_bytes

    worst = worst_frames(result)
    images = result.pairs.load(set(worst)) if result.pairs is not None and worst else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, render(result, images, marker).encode("utf-8"))
