"""Training preview: a grid of faces and a loss graph, labelled as synthetic.

Columns: src, src reconstructed, dst, dst reconstructed, dst->src swap; one row
per sample; a log-scale loss history below. Drawn with OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from facelab.provenance.marker import Marker

COLUMNS = ("src", "src rec", "dst", "dst rec", "dst->src")


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` float in ``[0, 1]`` -> ``(N, H, W, 3) uint8``."""
    return (t.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def render_faces(model, src: np.ndarray, dst: np.ndarray, device: torch.device) -> np.ndarray:
    """Rows of ``src | src rec | dst | dst rec | swap`` for ``(N, R, R, 3) uint8`` faces."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        s = torch.from_numpy(src).to(device).permute(0, 3, 1, 2).float() / 255
        d = torch.from_numpy(dst).to(device).permute(0, 3, 1, 2).float() / 255
        s_rec, _, d_rec, _ = model(s, d)
        swap, _ = model.swap(d)
    model.train(was_training)
    cols = [src, _to_uint8(s_rec), dst, _to_uint8(d_rec), _to_uint8(swap)]
    return np.vstack([np.hstack([c[i] for c in cols]) for i in range(len(src))])


def loss_graph(history: list, width: int, height: int = 120) -> np.ndarray:
    """Log-scale plot of ``[[iteration, src, dst], ...]``: src in orange, dst in blue."""
    img = np.full((height, width, 3), 32, np.uint8)
    if len(history) < 2:
        cv2.putText(img, "loss graph: not enough data yet", (8, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1, cv2.LINE_AA)
        return img
    h = np.asarray(history, np.float64)
    vals = np.log10(np.clip(h[:, 1:3], 1e-6, None))
    lo, hi = vals.min(), vals.max()
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    x = (h[:, 0] - h[0, 0]) / max(h[-1, 0] - h[0, 0], 1) * (width - 1)
    for col, color in ((0, (0, 160, 255)), (1, (255, 160, 0))):
        y = (height - 16) - (vals[:, col] - lo) / (hi - lo) * (height - 24)
        pts = np.stack([x, y], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, color, 1, cv2.LINE_AA)
    text = f"iter {int(h[-1, 0])}  src {h[-1, 1]:.4f}  dst {h[-1, 2]:.4f}  (log scale)"
    cv2.putText(img, text, (6, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (230, 230, 230), 1, cv2.LINE_AA)
    return img


def make_preview(model, src: np.ndarray, dst: np.ndarray, history: list, device: torch.device, cell: int = 128) -> np.ndarray:
    """The whole preview image ``(H, W, 3) uint8`` BGR; faces scaled to ``cell`` px."""
    grid = render_faces(model, src, dst, device)
    r = src.shape[1]
    if cell != r:
        grid = cv2.resize(grid, (grid.shape[1] * cell // r, grid.shape[0] * cell // r), interpolation=cv2.INTER_NEAREST if cell > r else cv2.INTER_AREA)
    header = np.full((18, grid.shape[1], 3), 32, np.uint8)
    for i, name in enumerate(COLUMNS):
        cv2.putText(header, name, (i * cell + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack([header, grid, loss_graph(history, grid.shape[1])])


def preview_jpeg(image: np.ndarray, marker: Marker) -> bytes:
    """JPEG bytes of a preview (it shows swaps): invisibly watermarked, labelled as synthetic media and
    carrying a C2PA manifest signed by ``marker``."""
    return marker.jpeg(image, "preview.jpg", 90)
