"""Make the README's pictures of every merge mode, colour transfer and mask on the sample data.

Run after ``facelab demo`` (which trains the demo's ``quick`` model):

    PYTHONPATH=src python tools/make_merge_gallery.py workspace --frame 40

Writes ``docs/images/merge_modes.jpg``, ``merge_colors.jpg`` and ``merge_masks.jpg``:
one tile per setting, cropped around the face of dst frame ``--frame``, the
original first. The pictures show swapped faces, so they are marked like every
facelab output (watermark, labels, C2PA manifest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facelab.fileio import atomic_write_bytes, read_image
from facelab.merge.compose import MergeSettings, aligned_outputs, merge_frame, prepare_faces, run_predictor
from facelab.provenance import Marker, default_marker
from facelab.stages.merge import group_records
from facelab.inference import load_predictor
from facelab.workspace import Workspace

TILE = 220


def crop_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0), 1.7 * max(x1 - x0, y1 - y0)
    h, w = shape[:2]
    a, b = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    return a, b, int(min(a + side, w)), int(min(b + side, h))


def tile(image: np.ndarray, label: str, box: tuple[int, int, int, int] | None) -> np.ndarray:
    if box is not None:
        image = image[box[1]:box[3], box[0]:box[2]]
    image = cv2.resize(image[..., :3], (TILE, TILE), interpolation=cv2.INTER_AREA)
    bar = np.full((24, TILE, 3), 30, np.uint8)
    cv2.putText(bar, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def grid(tiles: list[np.ndarray], cols: int = 4) -> np.ndarray:
    blank = np.zeros_like(tiles[0])
    rows = [np.hstack(tiles[i:i + cols] + [blank] * (cols - len(tiles[i:i + cols]))) for i in range(0, len(tiles), cols)]
    return np.vstack(rows)


def write_marked_jpeg(path: Path, image: np.ndarray, marker: Marker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, marker.jpeg(image, path.name, 90))
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--model", default="quick")
    ap.add_argument("--frame", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = ap.parse_args()
    marker = default_marker()  # as the CLI builds it: the key of $FACELAB_HOME (default ~/.facelab)
    ws = Workspace(args.workspace)
    path = ws.frames_dir("dst") / f"{args.frame:05d}.png"
    frame = read_image(path)
    recs = group_records(ws.require_aligned("dst"))[0][path.name]
    predictor = load_predictor(ws.model_dir(args.model), "cpu")
    box = crop_box(np.asarray(recs[0].source_landmarks), frame.shape)
    original = tile(frame, "dst frame", box)

    def merged(label: str, **kw) -> np.ndarray:
        out, _ = merge_frame(frame, recs, predictor, MergeSettings(**kw))
        return tile(out, label, box)

    prepared = prepare_faces(frame, recs, predictor.resolution, predictor.face_type)
    faces, masks, dst_masks = run_predictor(predictor, prepared, MergeSettings(mode="raw-predict"))
    raw_face, raw_mask = aligned_outputs(prepared, faces, masks, MergeSettings(mode="raw-predict", color="none"))[0]
    modes = [original] + [merged(m, mode=m) for m in ("seamless", "seamless-hist-match", "overlay", "hist-match",
                                                      "hist-match-bw", "raw-rgb")]
    modes += [tile(raw_face, "raw-predict", None), tile(cv2.cvtColor(raw_mask, cv2.COLOR_GRAY2BGR), "raw-predict mask", None)]
    write_marked_jpeg(args.out / "merge_modes.jpg", grid(modes), marker)
    colors = [original] + [merged(c, mode="overlay", color=c) for c in ("none", "rct", "rct-m", "lct-m", "mkl-m", "idt-m", "sot-m")]
    write_marked_jpeg(args.out / "merge_colors.jpg", grid(colors), marker)
    mask_tiles = [original]
    for m in ("learned", "dst", "predicted", "learned*dst"):
        _, mk = merge_frame(frame, recs, predictor, MergeSettings(mode="overlay", mask=m))
        mask_tiles.append(tile(cv2.cvtColor(mk, cv2.COLOR_GRAY2BGR), f"mask {m}", box))
    mask_tiles += [merged("erode 40", mode="overlay", erode=40), merged("face-scale 15", mode="overlay", face_scale=15),
                   merged("bicubic-degrade 60", mode="overlay", bicubic_degrade=60)]
    write_marked_jpeg(args.out / "merge_masks.jpg", grid(mask_tiles), marker)


if __name__ == "__main__":
    main()
