"""Draw, view and edit the hand-labelled face-segmentation polygons (tests/data/seg_labels/labels.json).

A labelling aid, not part of facelab: the polygons are drawn by a person looking at the
renders this writes, then moved vertex by vertex until they follow the face outline.

    python tools/seg_label_view.py list
    python tools/seg_label_view.py view 3            # -> /tmp/seg_view/03_<name>.png
    python tools/seg_label_view.py view all
    python tools/seg_label_view.py set 3 0 "x,y x,y x,y ..."     # replace polygon 0 of face 3
    python tools/seg_label_view.py move 3 0 5 x,y               # move vertex 5 of polygon 0
    python tools/seg_label_view.py insert 3 0 5 x,y             # insert a vertex before vertex 5
    python tools/seg_label_view.py delete 3 0 5                 # delete vertex 5
    python tools/seg_label_view.py add 3 exclude "x,y x,y ..."  # append a polygon
    python tools/seg_label_view.py mask 3 out.png               # the painted 0/1 mask, source size

Render: the crop around the face's box, scaled up to about 640 px, twice side by side:
left the plain image with a coordinate grid labelled in SOURCE pixels, right the same
with the polygons (include green, exclude red; fill, outline, numbered vertices).
Sources are paths under the shared faces folder (``FACELAB_FACES`` or
/work/shared/data/faces); a ``path.mpg#frame=N`` source is read with OpenCV.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = Path(os.environ.get("SEG_LABELS", ROOT / "tests/data/seg_labels/labels.json"))
FACES = Path(os.environ.get("FACELAB_FACES", "/work/shared/data/faces"))
OUT = Path(os.environ.get("SEG_VIEW_OUT", "/tmp/seg_view"))


def read_source(source: str) -> np.ndarray:
    """The BGR image a label's ``source`` names (a still, or ``video#frame=N``)."""
    path, _, frag = source.partition("#")
    if frag:
        n = int(frag.split("=")[1])
        cap = cv2.VideoCapture(str(FACES / path))
        for _ in range(n + 1):
            ok, image = cap.read()
            if not ok:
                raise ValueError(f"{source}: no frame {n}")
        cap.release()
        return image
    image = cv2.imread(str(FACES / path))
    if image is None:
        raise FileNotFoundError(FACES / path)
    return image


def paint_mask(face: dict, shape: tuple[int, int]) -> np.ndarray:
    """DeepFaceLab's rule: polygons in order, include paints 1, exclude paints 0 (sub-pixel, 8x)."""
    mask = np.zeros(shape[:2], np.uint8)
    for poly in face["polygons"]:
        pts = np.round(np.asarray(poly["points"], np.float64) * 8).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1 if poly["kind"] == "include" else 0, lineType=cv2.LINE_8, shift=3)
    return mask


def _label(image: np.ndarray, text: str, org: tuple[int, int]) -> None:
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)


def name(i: int, face: dict) -> str:
    return f"{i:02d}_" + Path(face["source"].replace("#frame=", "_f")).stem


def view_frame(face: dict, shape, region=None, width: int = 640):
    """``(cx0, cy0, cx1, cy1, scale)`` of the render's crop."""
    h, w = shape[:2]
    x0, y0, x1, y1 = region or face["box"]
    m = 0 if region else 0.2 * max(x1 - x0, y1 - y0)
    cx0, cy0 = int(max(0, x0 - m)), int(max(0, y0 - m))
    cx1, cy1 = int(min(w, x1 + m)), int(min(h, y1 + m))
    return cx0, cy0, cx1, cy1, width / (cx1 - cx0)


def render(i: int, face: dict, width: int = 640, region=None) -> Path:
    image = read_source(face["source"])
    h, w = image.shape[:2]
    x0, y0, x1, y1 = region or face["box"]
    m = 0 if region else 0.2 * max(x1 - x0, y1 - y0)
    cx0, cy0 = int(max(0, x0 - m)), int(max(0, y0 - m))
    cx1, cy1 = int(min(w, x1 + m)), int(min(h, y1 + m))
    s = width / (cx1 - cx0)
    crop = cv2.resize(image[cy0:cy1, cx0:cx1], None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)

    def to_view(p):
        return (int(round((p[0] - cx0) * s)), int(round((p[1] - cy0) * s)))

    step = next(st for st in (2, 5, 10, 20, 50, 100) if st * s >= 28)
    grid = crop.copy()
    for gx in range((cx0 // step + 1) * step, cx1, step):
        major = gx % (step * 2) == 0
        X = to_view((gx, 0))[0]
        cv2.line(grid, (X, 0), (X, grid.shape[0]), (255, 255, 0) if major else (160, 160, 0), 1)
    for gy in range((cy0 // step + 1) * step, cy1, step):
        major = gy % (step * 2) == 0
        Y = to_view((0, gy))[1]
        cv2.line(grid, (0, Y), (grid.shape[1], Y), (255, 255, 0) if major else (160, 160, 0), 1)
    grid = cv2.addWeighted(crop, 0.5, grid, 0.5, 0)
    for gx in range((cx0 // step + 1) * step, cx1, step):
        if gx % (step * 2) == 0:
            X = to_view((gx, 0))[0]
            _label(grid, str(gx), (X + 2, 14))
            _label(grid, str(gx), (X + 2, grid.shape[0] - 22))
    for gy in range((cy0 // step + 1) * step, cy1, step):
        if gy % (step * 2) == 0:
            Y = to_view((0, gy))[1]
            _label(grid, str(gy), (2, Y - 3))
            _label(grid, str(gy), (grid.shape[1] - 30, Y - 3))

    over = crop.copy()
    fill = crop.copy()
    mask = paint_mask(face, image.shape)[cy0:cy1, cx0:cx1]
    mask = cv2.resize(mask, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    fill[mask > 0] = (0.75 * fill[mask > 0] + 0.25 * np.array([0, 255, 0])).astype(np.uint8)
    over = fill
    for poly in face["polygons"]:
        colour = (0, 255, 0) if poly["kind"] == "include" else (0, 0, 255)
        pts = [to_view(p) for p in poly["points"]]
        cv2.polylines(over, [np.array(pts, np.int32)], True, colour, 1, cv2.LINE_AA)
    for pi, poly in enumerate(face["polygons"]):
        colour = (0, 255, 0) if poly["kind"] == "include" else (0, 0, 255)
        for vi, p in enumerate(poly["points"]):
            P = to_view(p)
            cv2.circle(over, P, 2, colour, -1)
            cv2.putText(over, f"{vi}" if pi == 0 else f"{pi}.{vi}", (P[0] + 3, P[1] - 3),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
    sheet = np.hstack([grid, np.full((crop.shape[0], 4, 3), 255, np.uint8), over])
    for pi, poly in enumerate(face["polygons"]):
        print(f"  poly {pi} {poly['kind']}: " + " ".join(f"{vi}:{x:.0f},{y:.0f}" for vi, (x, y) in enumerate(poly["points"])))
    cv2.putText(sheet, f"{i} {face['source']} {face['split']} {face['occlusion']}", (4, sheet.shape[0] - 6),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{name(i, face)}.png"
    cv2.imwrite(str(out), sheet)
    return out


def load() -> dict:
    return json.loads(LABELS.read_text())


def save(doc: dict) -> None:
    for face in doc["faces"]:
        for poly in face["polygons"]:
            poly["points"] = [[round(float(x), 1), round(float(y), 1)] for x, y in poly["points"]]
    text = json.dumps(doc, indent=1)
    # one vertex per line is unreadable: keep each polygon's points on one line
    import re
    text = re.sub(r"\[\s+(-?[\d.]+),\s+(-?[\d.]+)\s+\]", r"[\1, \2]", text)
    text = re.sub(r'"points": \[\s+((?:\[[^\]]*\],?\s*)+)\]',
                  lambda mt: '"points": [' + re.sub(r"\s+", " ", mt.group(1)).strip() + "]", text)
    LABELS.write_text(text + "\n")


def parse_points(text: str) -> list[list[float]]:
    return [[float(v) for v in p.split(",")] for p in text.split()]


def main(argv: list[str]) -> None:
    cmd, *args = argv
    doc = load()
    faces = doc["faces"]
    if cmd == "list":
        for i, f in enumerate(faces):
            print(i, f["source"], f["box"], f["split"], f["occlusion"], [len(p["points"]) for p in f["polygons"]])
    elif cmd == "view":
        ids = range(len(faces)) if args[0] == "all" else [int(a) for a in args]
        for i in ids:
            print(render(i, faces[i]))
    elif cmd == "zoom":  # zoom i x0,y0,x1,y1: a render of one region (source pixels)
        print(render(int(args[0]), faces[int(args[0])], region=[float(v) for v in args[1].split(",")]))
    elif cmd == "setv":  # setv i pi "X,Y ...": points read off the default render (either panel), in view pixels
        i, pi = int(args[0]), int(args[1])
        image = read_source(faces[i]["source"])
        cx0, cy0, cx1, cy1, sc = view_frame(faces[i], image.shape)
        pts = [[(x - 644 if x >= 644 else x) / sc + cx0, y / sc + cy0] for x, y in parse_points(args[2])]
        if pi == len(faces[i]["polygons"]):
            faces[i]["polygons"].append({"kind": args[3], "points": pts})
        else:
            faces[i]["polygons"][pi]["points"] = pts
        save(doc)
        print(render(i, faces[i]))
    elif cmd == "set":
        i, pi, pts = int(args[0]), int(args[1]), parse_points(args[2])
        faces[i]["polygons"][pi]["points"] = pts
        save(doc)
        print(render(i, faces[i]))
    elif cmd in ("move", "insert"):
        i, pi, vi, p = int(args[0]), int(args[1]), int(args[2]), parse_points(args[3])[0]
        pts = faces[i]["polygons"][pi]["points"]
        if cmd == "move":
            pts[vi] = p
        else:
            pts.insert(vi, p)
        save(doc)
        print(render(i, faces[i]))
    elif cmd == "delete":
        i, pi, vi = int(args[0]), int(args[1]), int(args[2])
        del faces[i]["polygons"][pi]["points"][vi]
        save(doc)
        print(render(i, faces[i]))
    elif cmd == "add":
        i, kind, pts = int(args[0]), args[1], parse_points(args[2])
        faces[i]["polygons"].append({"kind": kind, "points": pts})
        save(doc)
        print(render(i, faces[i]))
    elif cmd == "mask":
        i = int(args[0])
        image = read_source(faces[i]["source"])
        cv2.imwrite(args[1], paint_mask(faces[i], image.shape) * 255)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
