"""The hand-labelled face-segmentation set (tests/data/seg_labels): well formed, and its sources exist."""
import json
from pathlib import Path

import pytest

LABELS = Path(__file__).parent / "data" / "seg_labels" / "labels.json"
FACES = Path("/work/shared/data/faces")
DOC = json.loads(LABELS.read_text())


def test_structure():
    assert DOC["version"] == 1 and "visible face" in DOC["convention"]
    for face in DOC["faces"]:
        assert face["split"] in ("heldout", "train")
        assert isinstance(face["occlusion"], list)
        x0, y0, x1, y1 = face["box"]
        assert x1 > x0 and y1 > y0
        kinds = [p["kind"] for p in face["polygons"]]
        assert kinds and kinds[0] == "include" and set(kinds) <= {"include", "exclude"}
        for poly in face["polygons"]:
            assert len(poly["points"]) >= 3


def test_splits():
    held = [f for f in DOC["faces"] if f["split"] == "heldout"]
    train = [f for f in DOC["faces"] if f["split"] == "train"]
    assert 12 <= len(held) <= 16
    assert len(train) <= 40
    assert sum(1 for f in held if set(f["occlusion"]) - {"glasses"}) >= 6
    # a held-out frame's neighbours (within 40 frames of the same clip) are not trained on
    def frame(f):
        stem = Path(f["source"]).stem
        clip, _, n = stem.rpartition("_f")
        return (Path(f["source"]).parent, clip), int(n) if n.isdigit() else None
    held_frames = [frame(f) for f in held]
    for f in train:
        clip, n = frame(f)
        assert (f["source"], tuple(f["box"])) not in {(h["source"], tuple(h["box"])) for h in held}
        if n is not None:
            assert all(not (c == clip and m is not None and abs(m - n) <= 40) for c, m in held_frames), f["source"]


@pytest.mark.skipif(not FACES.is_dir(), reason="shared real-face data not present")
def test_sources_exist_and_points_inside():
    import cv2

    for face in DOC["faces"]:
        path = FACES / face["source"].partition("#")[0]
        assert path.is_file(), path
        image = cv2.imread(str(path)) if "#" not in face["source"] else None
        if image is None:
            continue
        h, w = image.shape[:2]
        for poly in face["polygons"]:
            if poly["kind"] == "include":
                assert all(0 <= x <= w and 0 <= y <= h for x, y in poly["points"]), face["source"]
