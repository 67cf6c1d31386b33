"""How much the swapped faces look like the src person (issue 4's quality check).

For each merged dst frame, find the face again (RetinaFace + dlib landmarks),
take its dlib identity embedding, and compare its distance to the mean
embedding of the src face set with its distance to the mean of the dst face
set. Prints the share of frames closer to src.

    python benchmarks/bench_identity.py workspace
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from facelab.detect import create_detector
from facelab.faceimage import read_face
from facelab.fileio import read_image
from facelab.identity import distance, embed_face
from facelab.landmarks import create_landmarker
from facelab.workspace import Workspace


def mean_embedding(paths: list[Path], step: int) -> np.ndarray:
    embs = []
    for p in paths[::step]:
        img, rec = read_face(p)
        embs.append(embed_face(img, rec.landmarks))
    return np.mean(embs, 0)


def main(root: str) -> None:
    ws = Workspace(Path(root))
    src_mean = mean_embedding(ws.require_aligned("src"), 10)
    dst_mean = mean_embedding(ws.require_aligned("dst"), 3)
    det, lm = create_detector(threads=2), create_landmarker()
    closer, rows = 0, []
    merged = sorted(ws.merged_dir.glob("*.png"))
    for p in merged:
        frame = read_image(p)
        found = det(frame)
        if not found:
            continue
        e = embed_face(frame, lm(frame, found[0]))
        ds, dd = float(distance(e, src_mean)), float(distance(e, dst_mean))
        rows.append((ds, dd))
        closer += ds < dd
    rows_a = np.array(rows)
    print(f"frames: {len(merged)}, faces found: {len(rows)}")
    print(f"mean distance to src {rows_a[:, 0].mean():.3f}, to dst {rows_a[:, 1].mean():.3f} (src vs dst sets: {float(distance(src_mean, dst_mean)):.3f})")
    print(f"closer to src than to dst: {closer}/{len(rows)} = {100 * closer / max(len(rows), 1):.0f} %")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "workspace")
