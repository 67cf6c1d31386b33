"""The segmenter in `facelab ui` (issue 13, UI part): the Mask editor's overlay of the segmenter's mask (applied,
or computed live), its least-sure-first order, and the Segmenter page's train / apply jobs; through the API
(starlette's TestClient) and in a real browser.

The workspace is the sample one (30 real faces a side, 128 px); segmenters are trained for 2 iterations at 64 px
on the CPU (they are not good, and need not be: the tests check the plumbing, not the masks).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")

from facelab.faceimage import read_face, read_record, rewrite_record  # noqa: E402
from facelab.seg import store  # noqa: E402
from facelab.stages import seg  # noqa: E402
from tests.ui_helpers import ORIGIN, client, wait_for  # noqa: E402

TINY = {"resolution": 64, "iterations": 2, "batch_size": 2, "device": "cpu"}


def _quiet(_s: str) -> None:
    pass


def _train(ws, marker) -> None:
    seg.train(ws, seg.SegTrainSettings(**TINY), log=_quiet, marker=marker)


def ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def _png(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)


def test_segmask_none_then_live_then_applied(ws, marker):
    c = client(ws, marker)
    name = "00001_0.jpg"
    r = c.get(f"/api/masks/dst/faces/{name}/segmask")
    assert r.status_code == 404 and "no segmenter" in r.json()["error"] and r.json()["hint"]
    face = ok(c.get(f"/api/masks/dst/faces/{name}"))
    assert face["seg"] == {"applied": None, "segmenter": None}

    _train(ws, marker)
    r = c.get(f"/api/masks/dst/faces/{name}/segmask")
    live = _png(r)
    assert live.shape == (128, 128) and r.headers["x-seg-source"] == "live"
    model_id = r.headers["x-seg-model"]
    assert model_id and float(r.headers["x-seg-uncertainty"]) >= 0
    assert ok(c.get(f"/api/masks/dst/faces/{name}"))["seg"] == {"applied": None, "segmenter": model_id}
    # the live figure is kept and shows in the list
    listed = {f["name"]: f for f in ok(c.get("/api/masks/dst/faces"))["faces"]}
    assert listed[name]["uncertainty"] == float(r.headers["x-seg-uncertainty"]) and not listed[name]["applied"]

    # an applied mask wins over the live one, and is returned as stored
    path = ws.aligned_dir("dst") / name
    rec = read_record(path)
    stored = np.zeros((128, 128), np.uint8)
    stored[32:96, 40:88] = 255
    rewrite_record(path, store.with_mask(rec, stored, "m-test", "full", uncertainty=0.5))
    r = c.get(f"/api/masks/dst/faces/{name}/segmask")
    assert r.headers["x-seg-source"] == "applied" and r.headers["x-seg-model"] == "m-test"
    assert r.headers["x-seg-uncertainty"] == "0.5"
    np.testing.assert_array_equal(_png(r), store.mask_of(read_record(path)))
    assert ok(c.get(f"/api/masks/dst/faces/{name}"))["seg"]["applied"] == {"model": "m-test", "face_type": "full",
                                                                         "uncertainty": 0.5}


def test_uncertainty_order(ws, marker):
    c = client(ws, marker)
    paths = ws.aligned_paths("src")
    figures = {paths[3].name: 0.2, paths[10].name: 0.7, paths[20].name: 0.05}
    for p in paths:
        if p.name in figures:
            image, rec = read_face(p)
            rewrite_record(p, store.with_mask(rec, np.full((rec.size, rec.size), 255, np.uint8), "m", "full",
                                              uncertainty=figures[p.name]))
    by_name = ok(c.get("/api/masks/src/faces"))
    assert [f["name"] for f in by_name["faces"]] == [p.name for p in paths]
    r = ok(c.get("/api/masks/src/faces", params={"order": "uncertainty"}))
    names = [f["name"] for f in r["faces"]]
    assert names[:3] == [paths[10].name, paths[3].name, paths[20].name]
    assert names[3:] == [p.name for p in paths if p.name not in figures]  # no figure: after, by name
    assert [f["uncertainty"] for f in r["faces"][:3]] == [0.7, 0.2, 0.05] and r["faces"][3]["uncertainty"] is None
    bad = c.get("/api/masks/src/faces", params={"order": "random"})
    assert bad.status_code == 400 and "no order" in bad.json()["error"]


def test_segmenter_page_trains_applies_and_shows_its_preview(ws, marker):
    c = client(ws, marker)
    forms = ok(c.get("/api/seg/forms"))
    assert {f["name"] for f in forms["train"]} >= {"name", "iterations", "resolution", "batch_size", "device"}
    assert {f["name"] for f in forms["apply"]} == {"name", "side", "device", "batch_size"}
    assert ok(c.get("/api/seg/models"))["models"] == []
    assert c.get("/api/seg/models/segmenter").status_code == 404
    refused = c.post("/api/seg/train", json={"values": {"resolution": 640}}, headers=ORIGIN)
    assert refused.status_code == 400 and "resolution" in refused.json()["error"]
    assert c.post("/api/seg/train", json={"values": {"nope": 1}}, headers=ORIGIN).status_code == 400
    assert c.post("/api/seg/apply", json={"values": {}}, headers=ORIGIN).status_code == 404  # nothing to apply yet

    job = ok(c.post("/api/seg/train", json={"values": TINY}, headers=ORIGIN))
    assert job["step"] == "seg-train" and job["writes"] == ["model/segmenter"]
    done = wait_for(c, job["id"])
    assert done["state"] == "done", done
    assert done["summary"]["counts"]["iteration"] == 2 and done["preview_file"] == "model/segmenter/preview.jpg"
    [m] = ok(c.get("/api/seg/models"))["models"]
    assert m["name"] == "segmenter" and m["resolution"] == 64 and m["iteration"] == 2
    assert m["preview"] == "model/segmenter/preview.jpg"
    img = c.get(f"/files/{m['preview']}")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    preview = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_COLOR)
    assert preview.shape[1] == 8 * 128 and preview.shape[0] > 2 * 128  # the src and dst rows at least
    d = ok(c.get("/api/seg/models/segmenter"))
    assert d["loss"]["names"] == ["bce"] and d["save_id"]
    assert ok(c.get("/api/train/models"))["models"] == []  # not a face-swap model: not on the Training page

    job = ok(c.post("/api/seg/apply", json={"values": {"side": "dst", "device": "cpu"}}, headers=ORIGIN))
    assert job["step"] == "seg-apply" and job["writes"] == ["data_dst/aligned"]
    done = wait_for(c, job["id"])
    assert done["state"] == "done" and done["summary"]["counts"]["applied"] == 30, done
    a = ok(c.get("/api/seg/applied"))
    assert a["model"] == d["save_id"] and a["sides"]["dst"] == {"faces": 30, "applied": 30, "current": 30}
    assert a["sides"]["src"]["applied"] == 0
    r = c.get("/api/masks/dst/faces/00001_0.jpg/segmask")
    assert r.headers["x-seg-source"] == "applied" and r.headers["x-seg-model"] == d["save_id"]
    order = ok(c.get("/api/masks/dst/faces", params={"order": "uncertainty"}))["faces"]
    figures = [f["uncertainty"] for f in order]
    assert None not in figures and figures == sorted(figures, reverse=True)
