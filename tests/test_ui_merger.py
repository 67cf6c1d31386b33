"""The UI's Interactive merger page (facelab.ui.routes.merge) with a real trained model: its API (the session's
marked pixels, bad requests, the plan applied to a frame, a range or all frames and kept as `merge` keeps it,
render-the-rest as a job) and the page in a browser."""

from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")

from facelab.merge.compose import MergeSettings  # noqa: E402
from facelab.merge.options import SETTINGS  # noqa: E402
from facelab.merge.ranges import FrameRange, MergePlan  # noqa: E402
from facelab.merge.session import MergeSession  # noqa: E402
from facelab.provenance.verify import verify_file  # noqa: E402
from facelab.provenance.watermark import detect_frames  # noqa: E402
from facelab.stages import merge as stage  # noqa: E402
from facelab.workspace import Workspace  # noqa: E402

from tests.ui_helpers import ORIGIN, client, wait_for  # noqa: E402


@pytest.fixture()
def ws(trained_quick_ws, tmp_path) -> Workspace:
    """A fresh copy of the trained workspace (the sample faces: 30 dst frames 360x288, numbered 1, 3, ... 59; also
    the workspace of conftest's ``live_ui`` and ``page``)."""
    shutil.copytree(trained_quick_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")



def render(c, frame, settings=None, **more):
    return c.post("/api/merger/render", json={"model": "quick", "gpu": None, "frame": frame, "settings": settings or {}, **more},
                  headers=ORIGIN)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)



def test_the_page_offers_every_declared_merge_option_and_the_trained_model(ws, marker):
    c = client(ws, marker)
    info = c.get("/api/merger").json()
    assert [f["name"] for f in info["fields"]] == [o.name for o in SETTINGS]
    assert info["groups"] == list(dict.fromkeys(o.group for o in SETTINGS))
    assert [(m["name"], m["gpu"], m["iteration"]) for m in info["models"]] == [("quick", None, 3)]
    assert info["masks"][0] == "learned*dst" and "dst" in info["masks"] and len(set(info["masks"])) == len(info["masks"])
    assert info["plan"] == {**MergePlan().to_dict(), "saved": False}
    frames = c.get("/api/merger/frames", params={"model": "quick"}).json()["frames"]
    assert [f["n"] for f in frames] == list(range(1, 60, 2)) and all(f["faces"] == 1 for f in frames)
    assert c.get(f"/files/{frames[0]['file']}").content == (ws.frames_dir("dst") / "00001.png").read_bytes()
    html = c.get("/merger").text
    assert 'href="/merger"' in html and '<script type="module" src="/static/js/merger.js">' in html
    assert "<script>" not in html and " style=" not in html


def test_a_render_is_the_sessions_marked_frame(ws, marker, tmp_path):
    c = client(ws, marker)
    settings = MergeSettings(mode="overlay", erode=10, blur=20, color="lct-m")
    r = render(c, 7, settings.to_dict(), format="png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-facelab-source"] == "00007.png" and r.headers["x-facelab-faces"] == "1"
    assert float(r.headers["x-facelab-draft-scale"]) in (0.25, 0.5, 0.75, 1.0)
    session = MergeSession(ws, "quick", c.app.app.state.merger_sessions.device, marker=marker)
    shown = session.render(7, settings, side_by_side=True)
    assert np.array_equal(decode(r.content), shown.image)  # the exact pixels, watermark included
    (tmp_path / "png.png").write_bytes(r.content)
    report = verify_file(tmp_path / "png.png")
    assert report.marked and report.manifest.valid and report.watermark.found and report.synthetic_tags

    live = render(c, 7, settings.to_dict())  # the page's live view: JPEG, marked too
    assert live.headers["content-type"] == "image/jpeg"
    (tmp_path / "live.jpg").write_bytes(live.content)
    report = verify_file(tmp_path / "live.jpg")
    assert report.manifest.valid and report.watermark.found and report.synthetic_tags
    psnr = cv2.PSNR(decode(live.content), shown.image)
    assert psnr > 35, psnr

    both = render(c, 7, settings.to_dict(), view="side_by_side")
    assert decode(both.content).shape == shown.side_by_side.shape and detect_frames([decode(both.content)]).found
    mask = render(c, 7, settings.to_dict(), view="mask")
    assert mask.headers["content-type"] == "image/png" and np.array_equal(decode(mask.content), shown.mask)
    draft = render(c, 7, settings.to_dict(), scale=0.5)
    assert draft.headers["x-facelab-scale"] == "0.5" and "x-facelab-draft-scale" not in draft.headers
    assert decode(draft.content).shape[:2] == (144, 180)
    alpha = render(c, 7, {"alpha": True})  # RGBA has no JPEG: PNG
    assert alpha.headers["content-type"] == "image/png" and decode(alpha.content).shape[2] == 4


def test_bad_requests_are_refused_with_what_to_do(ws, marker):
    c = client(ws, marker)
    r = render(c, 2)  # the frames are 1, 3, 5 ...
    assert r.status_code == 400 and "no dst frame 2" in r.json()["error"] and "1 to 59" in r.json()["hint"]
    for body, word in (({"model": "nope"}, "no trained model"), ({"model": "../model"}, "no trained model"),
                       ({"settings": {"erode": 999}}, "erode"), ({"settings": {"bogus": 1}}, "bogus"), ({"settings": {"blur": None}}, "blur"),
                       ({"view": "x"}, "view"), ({"format": "gif"}, "format"), ({"scale": 0.1}, "scale"),
                       ({"gpu": "x"}, "gpu")):
        r = c.post("/api/merger/render", json={"model": "quick", "frame": 3, **body}, headers=ORIGIN)
        assert r.status_code == 400 and word in r.json()["error"], (body, r.json())
    assert c.post("/api/merger/render", json={"model": "quick", "frame": 3}).status_code == 403  # no Origin
    assert c.get("/api/merger/frames", params={"model": "nope"}).status_code == 400
    for body in ({"frame": 3, "frames": "9-2"}, {"frame": "3", "frames": "all"}, {"frame": 3, "settings": {"blur": -999}}):
        assert c.post("/api/merger/plan", json=body, headers=ORIGIN).status_code == 400, body
    assert c.post("/api/merger/plan/forget", json={"frames": "3-3"}, headers=ORIGIN).status_code == 400


def test_settings_applied_to_a_frame_a_range_or_all_are_kept_and_the_rest_is_rendered_with_them(ws, marker):
    c = client(ws, marker)
    apply = lambda frame, settings, frames: c.post("/api/merger/plan", json={  # noqa: E731
        "frame": frame, "settings": settings, "frames": frames}, headers=ORIGIN)
    shown = MergeSettings().to_dict()
    r = apply(5, {**shown, "erode": 12}, "5-5").json()  # this frame
    assert r["changed"] == {"erode": 12} and r["saved"]
    apply(9, {**shown, "color": "none", "blur": 30}, "9-15")  # a range
    apply(11, {**shown, "color": "none", "blur": 30, "mode": "overlay"}, "all")  # all: only what differs from frame 11's
    plan = stage.saved_plan(ws)
    assert plan.default == MergeSettings(mode="overlay")
    assert plan.settings_for(5) == MergeSettings(mode="overlay", erode=12)
    assert plan.settings_for(13) == MergeSettings(mode="overlay", color="none", blur=30)
    assert c.get("/api/merger/plan").json() == {**plan.to_dict(), "saved": True}
    assert c.post("/api/merger/plan/forget", json={"frames": "5-5"}, headers=ORIGIN).json()["ranges"] == \
        [{"frames": "9-15", "settings": {"blur": 30, "color": "none"}}]

    job = c.post("/api/merger/render-rest", json={"model": "quick", "gpu": None}, headers=ORIGIN).json()
    assert job["step"] == "merge" and "data_dst/merged" in job["writes"]
    assert c.get("/api/jobs").json()[0]["id"] == job["id"]  # on the Jobs page
    done = wait_for(c, job["id"])
    assert done["state"] == "done", done
    assert done["summary"]["counts"]["merged"] == 30
    plan = stage.saved_plan(ws)
    assert plan.ranges == ((FrameRange(9, 15), (("blur", 30), ("color", "none"))),)  # the run kept the saved plan
    session = MergeSession(ws, "quick", "cpu", marker=marker)
    for n in (7, 13):  # what merge wrote is what the page showed for these settings
        written = cv2.imread(str(ws.merged_dir / f"{n:05d}.png"))
        assert np.array_equal(written, session.render(n, plan.settings_for(n)).image), n

    # a change applied to one frame later: the next render of the rest redoes that frame only
    apply(13, {**plan.settings_for(13).to_dict(), "sharpen": 20}, "13-13")
    again = wait_for(c, c.post("/api/merger/render-rest", json={"model": "quick"}, headers=ORIGIN).json()["id"])
    assert again["summary"]["counts"]["merged"] == 1 and again["summary"]["counts"]["skipped"] == 29


def test_the_plan_cannot_change_while_a_merge_runs(ws, marker):
    c = client(ws, marker)
    hold = threading.Event()
    state = c.app.app.state.ui
    state.jobs.start("merge", "merge", {"data_dst/merged"}, lambda job, log: hold.wait(30))
    try:
        r = c.post("/api/merger/plan", json={"frame": 3, "settings": {"erode": 3}, "frames": "all"}, headers=ORIGIN)
        assert r.status_code == 409 and "merge is running" in r.json()["error"]
        assert stage.saved_plan(ws) is None
        assert c.post("/api/merger/render-rest", json={"model": "quick"}, headers=ORIGIN).status_code == 409
    finally:
        hold.set()


# --- the page in a browser ----------------------------------------------------------------------------------


def _shown(page) -> tuple[str, str]:
    img = page.locator("#mg-image")
    return img.get_attribute("data-seq"), img.get_attribute("src")


def test_move_the_frame_slider_or_an_option_and_see_the_frame_change(page, live_ui, tmp_path):
    page.goto(live_ui.base + "/merger")
    page.wait_for_selector("#mg-image[data-seq='1']", timeout=60_000)
    seq, src = _shown(page)
    assert page.locator("#mg-image").get_attribute("data-frame") == "1"
    assert page.evaluate("() => document.getElementById('mg-image').naturalWidth") == 360
    page.focus("#mg-frame")
    page.keyboard.press("ArrowRight")  # the scrubber: the next frame (3)
    page.wait_for_function("() => document.getElementById('mg-image').dataset.frame === '3'")
    seq2, src2 = _shown(page)
    assert src2 != src and int(seq2) > int(seq)
    page.locator("#mg-viewer").click()  # the page has the keys, not the slider
    page.keyboard.press("KeyW")  # DFL's W: erode + 1
    # the image's src is set before it decodes and data-seq after, so wait for both to move on (a render of frame 3
    # still queued from the scrubber may finish first)
    page.wait_for_function(f"() => {{ const i = document.getElementById('mg-image'); "
                           f"return +i.dataset.seq > {seq2} && i.getAttribute('src') !== {src2!r}; }}")
    assert page.locator("#mg-o-erode").input_value() == "1"
    assert "erode 1" in page.locator("#mg-pending").inner_text()
    page.select_option("#mg-o-mode", "overlay")
    page.click("#mg-apply-all")
    page.wait_for_selector("#mg-plan li:has-text('mode overlay')")
    assert stage.saved_plan(live_ui.ws).default == MergeSettings(mode="overlay", erode=1)
    page.screenshot(path=str(tmp_path / "merger.png"))
    assert page.evaluate("() => performance.getEntriesByName('merger-update').length") >= 3
