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
    html = c.get("/segmenter").text
    assert 'href="/segmenter"' in c.get("/").text and "<title>Segmenter · facelab</title>" in html
    assert '<script type="module" src="/static/js/segmenter.js"></script>' in html
    assert "<script>" not in html and " style=" not in html and "onclick=" not in html
    forms = ok(c.get("/api/seg/forms"))
    assert {f["name"] for f in forms["train"]} >= {"name", "iterations", "resolution", "batch_size", "device"}
    assert {f["name"] for f in forms["apply"]} == {"name", "side", "device", "batch_size", "force", "flip_average"}
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
    # applied again with the mirror pass: other masks of the same weights, still counted as current
    job = ok(c.post("/api/seg/apply", json={"values": {"side": "dst", "device": "cpu", "flip_average": True}}, headers=ORIGIN))
    assert wait_for(c, job["id"])["summary"]["counts"]["applied"] == 30
    assert ok(c.get("/api/seg/applied"))["sides"]["dst"] == {"faces": 30, "applied": 30, "current": 30}
    assert c.get("/api/masks/dst/faces/00001_0.jpg/segmask").headers["x-seg-model"] == d["save_id"] + "+flip"


# --- in a browser ------------------------------------------------------------------------------------------------


def test_browser_mask_editor_overlay_and_least_sure(page, live_ui, marker, tmp_path):
    ws = live_ui.ws
    _train(ws, marker)
    seg.apply(ws, side="dst", device="cpu")
    figures = {p.name: store.mask_info(read_record(p))["uncertainty"] for p in ws.aligned_paths("dst")}
    # a 2-iteration segmenter's mask is a grey haze: give the first face a crisp one, to see it in the screenshot
    first = ws.aligned_dir("dst") / "00001_0.jpg"
    rec = read_record(first)
    ellipse = cv2.ellipse(np.zeros((128, 128), np.uint8), (64, 70), (38, 50), 0, 0, 360, 255, -1)
    info = store.mask_info(rec)
    rewrite_record(first, store.with_mask(rec, ellipse, info["model"], info["face_type"], uncertainty=info["uncertainty"]))
    page.goto(live_ui.base + "/masks?side=dst")
    page.wait_for_function("() => document.getElementById('k-name').textContent === '00001_0.jpg'")
    page.wait_for_selector("#k-canvas[data-seg=applied][data-seg-shown='1']")
    facts = page.inner_text("#k-facts")
    assert "applied mask" in facts and f"{figures['00001_0.jpg']:.3f}" in facts
    page.screenshot(path=str(tmp_path / "overlay_on.png"))
    page.keyboard.press("m")
    page.wait_for_selector("#k-canvas[data-seg-shown='0']")
    assert not page.is_checked("#k-seg")
    page.screenshot(path=str(tmp_path / "overlay_off.png"))
    page.click("#k-seg")  # the checkbox does the same
    page.wait_for_selector("#k-canvas[data-seg-shown='1']")
    on, off = (cv2.imread(str(tmp_path / f"overlay_{s}.png")).astype(int) for s in ("on", "off"))
    v = page.eval_on_selector("#k-canvas", "c => { const r = c.getBoundingClientRect(); "
                              "return {...c.dataset, left: r.left, top: r.top}; }")
    at = lambda x, y: (round(float(v["top"]) + float(v["oy"]) + (y + 0.5) * float(v["scale"])),  # noqa: E731
                       round(float(v["left"]) + float(v["ox"]) + (x + 0.5) * float(v["scale"])))
    inside, outside = at(64, 70), at(6, 6)
    blue = lambda im, yx: im[yx][0] - (im[yx][1] + im[yx][2]) / 2  # noqa: E731  (BGR)
    assert blue(on, inside) - blue(off, inside) > 30  # tinted blue where the mask is
    assert np.abs(on[outside] - off[outside]).max() <= 2  # untouched outside it
    # U: the least sure unlabelled face first (00001_0 is where we are: the next in the order after it)
    order = sorted(figures, key=lambda n: (-figures[n], n))
    expected = [n for n in order if figures[n] < figures["00001_0.jpg"] or
                (figures[n] == figures["00001_0.jpg"] and n > "00001_0.jpg")]
    if not expected:  # 00001_0 was the least sure one: nothing after it
        return
    page.keyboard.press("u")
    page.wait_for_function(f"() => document.getElementById('k-name').textContent === '{expected[0]}'")
    if len(expected) > 1:
        page.keyboard.press("u")
        page.wait_for_function(f"() => document.getElementById('k-name').textContent === '{expected[1]}'")


def test_browser_segmenter_page_trains_and_shows_the_preview(page, live_ui, tmp_path):
    page.goto(live_ui.base + "/segmenter")
    page.wait_for_selector("#seg-train-form [name=iterations]")
    assert page.inner_text("#seg-state") == "not trained yet"
    # each option's help sits in its row (the editors' key-help overlay style once caught every form's help)
    assert page.eval_on_selector("#seg-train-form .field .help", "e => getComputedStyle(e).position") == "static"
    assert page.is_disabled("#seg-apply") and page.is_disabled("#seg-stop")
    for name, value in (("iterations", "2"), ("resolution", "64"), ("batch_size", "2")):
        page.fill(f"#seg-train-form [name={name}]", value)
    page.select_option("#seg-train-form [name=device]", "cpu") if page.eval_on_selector(
        "#seg-train-form [name=device]", "e => e.tagName") == "SELECT" else page.fill("#seg-train-form [name=device]", "cpu")
    # the model's detail is not fetched again while it trains: the figures come from the job, also the
    # iteration it saved at when it ends (before, the page read 0 until the detail came back)
    page.route("**/api/seg/models/*", lambda route: route.abort())
    page.click("#seg-start")
    page.wait_for_function("() => document.getElementById('seg-state').textContent === 'finished (saved)'", timeout=120_000)
    page.wait_for_selector("#sp-img:not([hidden])")
    page.wait_for_function("() => document.getElementById('sp-img').naturalWidth > 0")
    assert page.inner_text("#ss-iter") == "2"
    page.unroute("**/api/seg/models/*")
    page.keyboard.press("p")  # not training: P loads the model's detail again
    page.wait_for_function("() => !document.getElementById('seg-apply').disabled")
    assert page.inner_text("#ss-iter") == "2"
    page.screenshot(path=str(tmp_path / "segmenter.png"), full_page=True)
    page.click("#seg-apply")
    page.wait_for_function("() => document.getElementById('ss-applied').textContent === '60 / 60'", timeout=120_000)
    assert store.has_mask(read_record(live_ui.ws.aligned_paths("src")[0]))
