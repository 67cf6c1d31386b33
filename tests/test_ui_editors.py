"""The editors of `facelab ui`: Manual extraction and the Mask editor, through their API (starlette's TestClient)
and in a real browser (the issue's two end-to-end items: draw and save a polygon and read it back from the file;
manual-extract one frame).

The workspace is the sample one (30 real faces a side, 128 px, cut by `facelab extract`); dst's frames are
every second frame of the GRID clip (00001.png, 00003.png, ...).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from starlette.testclient import TestClient  # noqa: E402

from facelab.faceimage import read_face, read_record  # noqa: E402
from facelab.masks.polygons import Polygon, rasterize, read_polygons, write_polygons  # noqa: E402
from facelab.stages import extract  # noqa: E402
from facelab.ui.app import create_app  # noqa: E402
from facelab.ui.security import COOKIE  # noqa: E402

BASE = "http://127.0.0.1:7860"


class Client:
    """A TestClient that sends the UI's Origin with every change (the guard refuses changes without it)."""

    def __init__(self, ws, marker) -> None:
        self.c = TestClient(create_app(ws, "tok", marker=marker), base_url=BASE)
        self.c.cookies.set(COOKIE, "tok")

    def get(self, path, **kw):
        return self.c.get(path, **kw)

    def post(self, path, body):
        return self.c.post(path, json=body, headers={"origin": BASE})

    def put(self, path, body):
        return self.c.put(path, json=body, headers={"origin": BASE})


def ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def refused(r, status: int, text: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert text in body["error"] and body["hint"], body
    return body


def box_of(rec) -> dict:
    x0, y0, x1, y1 = rec.source_rect
    return {"cx": (x0 + x1) / 2, "cy": (y0 + y1) / 2, "size": ((x1 - x0) + (y1 - y0)) / 2}


def test_both_pages_are_in_the_navigation_and_load_no_inline_code(ws, marker):
    c = Client(ws, marker)
    for path, title in (("/manual", "Manual extraction"), ("/masks", "Mask editor")):
        html = c.get(path).text
        assert f'href="{path}"' in c.get("/").text and f"<title>{title} · facelab</title>" in html
        assert "<script>" not in html and " style=" not in html and "onclick=" not in html
        page = path.strip("/")
        assert f'<script type="module" src="/static/js/{page}.js"></script>' in html
    for js in ("manual", "masks", "canvas"):
        assert c.get(f"/static/js/{js}.js").status_code == 200


# --- manual extraction ---------------------------------------------------------------------------------------


def test_manual_frame_lists_pending_deleted_debug_no_face_and_picked(ws, marker):
    extract.write_missing_debug(ws, "dst")
    (ws.aligned_debug_dir("dst") / "00005.jpg").unlink()  # the user deleted a bad frame's debug image
    ws.no_face_list("dst").write_text("00009.png\n")
    c = Client(ws, marker)

    s = ok(c.get("/api/manual/dst"))  # no session yet: the frames waiting for a person
    assert [f["name"] for f in s["frames"]] == ["00005.png", "00009.png"] and s["current"] == "00005.png"
    assert s["lists"] == {"pending": 2, "no_face": 1, "deleted_debug": 1, "all": 30}
    assert s["settings"] == {"face_type": "full", "size": 128, "landmarks": "dlib68", "accurate": True}
    assert [f["name"] for f in ok(c.post("/api/manual/dst/session", {"list": "deleted_debug"}))["frames"]] == ["00005.png"]
    assert [f["name"] for f in ok(c.post("/api/manual/dst/session", {"list": "no_face"}))["frames"]] == ["00009.png"]
    assert ok(c.post("/api/manual/dst/session", {"list": "all"}))["total"] == 30
    # picked by name, stem, number and range (frames that do not exist in a range are simply not there)
    picked = ok(c.post("/api/manual/dst/session", {"list": "pick", "pick": "00059.png, 00003 1  7-11"}))
    assert [f["name"] for f in picked["frames"]] == ["00001.png", "00003.png", "00007.png", "00009.png", "00011.png", "00059.png"]
    assert picked["current"] == "00001.png" and picked["counts"] == {"accepted": 0, "skipped": 0, "pending": 6}
    refused(c.post("/api/manual/dst/session", {"list": "pick", "pick": "2, 00001.png, 500"}), 400, "no frame 2, 500")
    refused(c.post("/api/manual/dst/session", {"list": "pick", "pick": " "}), 400, "no frames picked")
    refused(c.post("/api/manual/dst/session", {"list": "everything"}), 400, "no frame list 'everything'")
    refused(c.get("/api/manual/left"), 400, "unknown side 'left'")

    # a new server on the same workspace resumes the unfinished picked session where it stopped (with the
    # frames waiting for a person added, as ManualSession resumes)
    ok(c.post("/api/manual/dst/skip", {"frame": "00001.png"}))
    again = ok(Client(ws, marker).get("/api/manual/dst"))
    assert [f["name"] for f in again["frames"]][:3] == ["00001.png", "00003.png", "00005.png"] and again["total"] == 7
    assert again["current"] == "00003.png" and again["counts"]["skipped"] == 1


def test_manual_live_landmarks_follow_the_box_and_the_crop_is_the_aligned_faces_square(ws, marker):
    c = Client(ws, marker)
    s = ok(c.post("/api/manual/dst/session", {"list": "pick", "pick": "1"}))
    assert s["lists"]["deleted_debug"] is None  # extracted without debug images: that list has nothing to offer
    refused(c.post("/api/manual/dst/session", {"list": "deleted_debug"}), 400, "holds no debug images")
    rec = read_record(ws.aligned_dir("dst") / "00001_0.jpg")
    frame = ok(c.get("/api/manual/dst/frames/00001.png"))
    assert frame["id"] == "data_dst/00001.png" and (frame["width"], frame["height"]) == (360, 288)
    assert c.get(f"/files/{frame['id']}").status_code == 200
    [stored] = frame["faces"]
    np.testing.assert_allclose(stored["points"], rec.source_landmarks, atol=0.01)

    face_size = float(np.ptp(rec.source_landmarks, axis=0).max())
    for accurate in (False, True):
        r = ok(c.post("/api/manual/dst/landmarks", {"frame": "00001.png", **box_of(rec), "accurate": accurate}))
        pts = np.array(r["points"])
        assert pts.shape == (68, 2) and r["ms"] > 0
        assert np.linalg.norm(pts - rec.source_landmarks, axis=1).mean() < 0.03 * face_size
    # a box placed 8 % off and 10 % too large still finds the face; one in the frame's corner has its points there
    b = box_of(rec)
    off = {"cx": b["cx"] + 0.08 * b["size"], "cy": b["cy"] - 0.08 * b["size"], "size": 1.1 * b["size"]}
    pts = np.array(ok(c.post("/api/manual/dst/landmarks", {"frame": "00001.png", **off, "accurate": False}))["points"])
    assert np.linalg.norm(pts - rec.source_landmarks, axis=1).mean() < 0.03 * face_size
    corner = ok(c.post("/api/manual/dst/landmarks", {"frame": "00001.png", "cx": 40, "cy": 40, "size": 60}))
    assert np.array(corner["points"]).max() < 100 and corner["box"] == [10, 10, 70, 70]

    # the crop of the stored landmarks is the face image's own square: the record's transform maps it onto
    # the corners of the 128 px face (pixel edges at -0.5 and 127.5)
    crop = np.array(ok(c.post("/api/manual/dst/crop", {"points": rec.source_landmarks.tolist()}))["crop"])
    mat = np.asarray(rec.image_to_face_mat, np.float64)
    np.testing.assert_allclose(crop @ mat[:, :2].T + mat[:, 2], [[-0.5, -0.5], [127.5, -0.5], [127.5, 127.5], [-0.5, 127.5]], atol=0.02)

    refused(c.post("/api/manual/dst/landmarks", {"frame": "00001.png", **box_of(rec), "size": 3}), 400, "box size 3 px")
    refused(c.post("/api/manual/dst/landmarks", {"frame": "00001.png", **box_of(rec), "cx": "left"}), 400, "cx: expected a number")
    refused(c.post("/api/manual/dst/landmarks", {"frame": "../00001.png", **box_of(rec)}), 400, "frame: expected")
    refused(c.post("/api/manual/dst/landmarks", {"frame": "00002.png", **box_of(rec)}), 400, "no frame '00002.png'")
    refused(c.post("/api/manual/dst/crop", {"points": [[1, 2]] * 5}), 400, "expected 68")


def test_manual_accept_writes_the_face_as_extract_does_and_moves_on(ws, marker):
    c = Client(ws, marker)
    aligned = ws.aligned_dir("dst")
    original, rec = read_face(aligned / "00003_0.jpg")
    (aligned / "00003_0.jpg").unlink()
    ok(c.post("/api/manual/dst/session", {"list": "pick", "pick": "1-5"}))
    ok(c.post("/api/manual/dst/goto", {"frame": "00003.png"}))

    r = ok(c.post("/api/manual/dst/accept", {"frame": "00003.png", "accurate": True,
                                             "faces": [{"points": rec.source_landmarks.tolist(), "box": list(rec.source_rect)}]}))
    assert r["written"] == ["data_dst/aligned/00003_0.jpg"] and r["status"] == "accepted" and r["current"] == "00005.png"
    image, new = read_face(aligned / "00003_0.jpg")
    assert (new.source_filename, new.size, new.face_type, new.face_index) == ("00003.png", 128, "full", 0)
    np.testing.assert_allclose(new.source_landmarks, rec.source_landmarks, atol=1e-3)
    np.testing.assert_allclose(new.image_to_face_mat, rec.image_to_face_mat, atol=2e-3)  # landmarks stored to 0.001 px
    assert new.extra["accurate"] is True and new.extra["detector_score"] == 1.0
    assert np.abs(image.astype(int) - original.astype(int)).mean() < 1.0  # the same cut, JPEG aside
    assert "00003.png" in extract.done_frames(ws, "dst")

    # several faces a frame (the second one's points dragged), bare points without a box
    shifted = (rec.source_landmarks + [4, -3]).tolist()
    r = ok(c.post("/api/manual/dst/accept", {"frame": "00005.png", "faces": [
        {"points": rec.source_landmarks.tolist(), "box": list(rec.source_rect)}, {"points": shifted}]}))
    assert r["written"] == ["data_dst/aligned/00005_0.jpg", "data_dst/aligned/00005_1.jpg"] and r["current"] == "00001.png"
    second = read_record(aligned / "00005_1.jpg")
    assert second.face_index == 1 and second.source_rect == pytest.approx((*np.min(shifted, 0), *np.max(shifted, 0)), abs=1e-3)
    np.testing.assert_allclose(ok(c.get("/api/manual/dst/frames/00005.png"))["faces"][1]["points"], shifted, atol=0.01)

    # skip, and moving between frames
    assert ok(c.post("/api/manual/dst/skip", {"frame": "00001.png"}))["counts"] == {"accepted": 2, "skipped": 1, "pending": 0}
    assert ok(c.post("/api/manual/dst/goto", {"step": -1}))["current"] == "00005.png"
    assert ok(c.post("/api/manual/dst/goto", {"step": 1}))["current"] == "00005.png"  # the last one stays
    refused(c.post("/api/manual/dst/goto", {"step": 3}), 400, "goto: expected")
    refused(c.post("/api/manual/dst/goto", {"frame": "00007.png"}), 400, "not in this manual extraction session")

    before = {p.name: p.read_bytes() for p in ws.aligned_paths("dst")}
    refused(c.post("/api/manual/dst/accept", {"frame": "00001.png", "faces": [{"points": [[1, 1]] * 68}]}), 400, "face 0 of 00001.png")
    refused(c.post("/api/manual/dst/accept", {"frame": "00001.png", "faces": [{"points": [[1, 2]] * 67}]}), 400, "face 0 points")
    refused(c.post("/api/manual/dst/accept", {"frame": "00001.png", "faces": [{"points": shifted, "box": [5, 5, 1, 1]}]}), 400, "face 0 box")
    refused(c.post("/api/manual/dst/accept", {"frame": "00001.png", "faces": "all"}), 400, "faces: expected a list")
    assert {p.name: p.read_bytes() for p in ws.aligned_paths("dst")} == before


def test_pick_frames_unit():
    from facelab.errors import SettingsError
    from facelab.ui.routes.manual import pick_frames

    names = ["00001.png", "00002.png", "00010.png", "intro.jpg"]
    assert pick_frames("10 1", names) == ["00001.png", "00010.png"]
    assert pick_frames("2-1,intro", names) == ["00001.png", "00002.png", "intro.jpg"]
    assert pick_frames("00002.png,,00002", names) == ["00002.png"]
    with pytest.raises(SettingsError, match="no frame 3-9"):
        pick_frames("3-9", names)
    with pytest.raises(SettingsError, match="no frames picked"):
        pick_frames(None, names)


# --- mask editor ---------------------------------------------------------------------------------------------


def test_mask_faces_polygons_preview_and_moves(ws, marker):
    c = Client(ws, marker)
    name = "00026_0.jpg"  # src's frames are every 25th of its clip: 00001, 00026, ...
    path = ws.aligned_dir("src") / name
    faces = ok(c.get("/api/masks/src/faces"))
    assert faces["counts"] == {"aligned": 30, "confirmed": 0, "skipped": 0}
    assert faces["faces"][0] == {"name": "00001_0.jpg", "place": "aligned", "id": "data_src/aligned/00001_0.jpg", "polygons": 0,
                                 "uncertainty": None, "applied": False}  # no segmenter: no figure

    face = ok(c.get(f"/api/masks/src/faces/{name}"))
    rec = read_record(path)
    assert (face["size"], face["face_type"], face["source"], face["polygons"]) == (128, "full", "00026.png", [])
    np.testing.assert_allclose(face["landmarks"], rec.landmarks, atol=0.01)

    drawn = [{"kind": "include", "points": [[10.25, 12.5], [117, 14], [110.125, 120], [20, 115]]},
             {"kind": "exclude", "points": [[40, 70], [90, 70], [64, 100.5]]}]
    pixels = path.read_bytes()[-2000:]
    assert ok(c.put(f"/api/masks/src/faces/{name}/polygons", {"polygons": drawn}))["polygons"] == 2
    stored = read_polygons(path)
    assert stored == [Polygon(p["kind"], p["points"]) for p in drawn]
    assert path.read_bytes()[-2000:] == pixels  # only the metadata changed
    assert ok(c.get(f"/api/masks/src/faces/{name}"))["polygons"] == drawn
    assert ok(c.get("/api/masks/src/faces"))["faces"][1]["polygons"] == 2

    png = c.post("/api/masks/src/preview", {"size": 128, "polygons": drawn})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    mask = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(mask, (rasterize(stored, 128) * 255).astype(np.uint8))

    # bad polygons are refused and the file keeps what it had
    for bad, text in (([{"kind": "include", "points": [[1, 2], [3, 4]]}], "polygon 0: polygon points"),
                      ([{"kind": "maybe", "points": [[1, 2], [3, 4], [5, 6]]}], "polygon 0: polygon kind"),
                      ("all", "polygons: expected a list")):
        refused(c.put(f"/api/masks/src/faces/{name}/polygons", {"polygons": bad}), 400, text)
    refused(c.post("/api/masks/src/preview", {"size": 0, "polygons": []}), 400, "size: expected")
    assert read_polygons(path) == stored

    # E moves to aligned_confirmed, W to aligned_skipped, and back to aligned (Q/Z)
    assert ok(c.post(f"/api/masks/src/faces/{name}/move", {"to": "confirmed"})) == {
        "name": name, "place": "confirmed", "id": f"data_src/aligned_confirmed/{name}"}
    assert not path.exists() and read_polygons(ws.confirmed_dir("src") / name) == stored
    assert ok(c.get(f"/api/masks/src/faces/{name}"))["place"] == "confirmed"
    listed = ok(c.get("/api/masks/src/faces", params={"place": "confirmed"}))
    assert [f["name"] for f in listed["faces"]] == [name] and listed["counts"]["aligned"] == 29
    assert len(ok(c.get("/api/masks/src/faces", params={"place": "all"}))["faces"]) == 30
    ok(c.put(f"/api/masks/src/faces/{name}/polygons", {"polygons": []}))  # saving works wherever the face is
    assert read_polygons(ws.confirmed_dir("src") / name) == []
    ok(c.post(f"/api/masks/src/faces/{name}/move", {"to": "skipped"}))
    ok(c.post(f"/api/masks/src/faces/{name}/move", {"to": "aligned"}))
    assert path.exists() and not any(ws.skipped_dir("src").iterdir())

    refused(c.post(f"/api/masks/src/faces/{name}/move", {"to": "trash"}), 400, "cannot move a face to 'trash'")
    refused(c.get("/api/masks/src/faces/nope.jpg"), 404, "no face nope.jpg")
    refused(c.get("/api/masks/src/faces/.hidden.jpg"), 400, "bad face file name")
    assert c.get("/api/masks/src/faces/..%2F..%2Fsecret.jpg").status_code == 404  # no route takes a path
    refused(c.get("/api/masks/src/faces", params={"place": "trash"}), 400, "no place 'trash'")


def test_mask_editor_shows_a_face_whose_polygons_cannot_be_read(ws, marker):
    from facelab.faceimage import rewrite_record

    path = ws.aligned_dir("dst") / "00001_0.jpg"
    rec = read_record(path)
    rewrite_record(path, rec.replace(extra={**rec.extra, "mask_polygons": "not a list"}))
    c = Client(ws, marker)
    face = ok(c.get("/api/masks/dst/faces/00001_0.jpg"))
    assert face["polygons"] == [] and "must be a list" in face["broken"]
    assert ok(c.get("/api/masks/dst/faces"))["faces"][0]["polygons"] is None
    ok(c.put("/api/masks/dst/faces/00001_0.jpg/polygons", {"polygons": []}))  # saving replaces them
    assert read_polygons(path) == []


def test_mask_list_reads_each_face_file_once_until_it_changes(ws, marker, monkeypatch):
    from facelab.ui.routes import masks

    reads = []
    real = masks.read_record
    monkeypatch.setattr(masks, "read_record", lambda path: reads.append(path.name) or real(path))
    c = Client(ws, marker)
    first = ok(c.get("/api/masks/dst/faces"))
    assert len(reads) == 30 and all(f["polygons"] == 0 for f in first["faces"])
    reads.clear()
    assert ok(c.get("/api/masks/dst/faces", params={"order": "uncertainty"}))["faces"] == first["faces"]
    assert ok(c.get("/api/masks/dst/faces", params={"place": "all"}))["faces"] == first["faces"]
    assert reads == []  # reopened, reordered: no file read again

    # a face changed outside the page (another tool, another server) is read anew; a moved one is not
    name = first["faces"][3]["name"]
    write_polygons(ws.aligned_dir("dst") / name, [Polygon("include", [[1, 1], [60, 2], [30, 50]])])
    ok(c.post(f"/api/masks/dst/faces/{first['faces'][4]['name']}/move", {"to": "confirmed"}))
    after = ok(c.get("/api/masks/dst/faces", params={"place": "all"}))["faces"]
    assert reads == [name]
    assert [f["polygons"] for f in after if f["name"] == name] == [1]
    assert [f["place"] for f in after if f["name"] == first["faces"][4]["name"]] == ["confirmed"]

    kept = masks._Summaries()  # what it keeps stays bounded: stale entries go once they outnumber the faces
    kept.by_key = {str(k): (0, False, None) for k in range(1100)}
    kept.forget_old({"1"}, faces=100)
    assert len(kept.by_key) == 1100
    kept.forget_old({"1"}, faces=10)
    assert list(kept.by_key) == ["1"]


# --- in the browser: the end-to-end items ---------------------------------------------------------------


def _view(page, selector):
    """The canvas's image-to-screen mapping: page coordinates of image point (x, y) are
    (left + ox + (x + 0.5) * scale, top + oy + (y + 0.5) * scale)."""
    d = page.eval_on_selector(selector, "c => { const r = c.getBoundingClientRect(); return {...c.dataset, left: r.left, top: r.top}; }")
    return {k: float(d[k]) for k in ("scale", "ox", "oy", "left", "top")}


def test_browser_draw_and_save_a_polygon_and_read_it_back_from_the_file(page, live_ui):
    ws = live_ui.ws
    write_polygons(ws.aligned_dir("dst") / "00001_0.jpg", [])
    page.goto(live_ui.base + "/masks?side=dst")
    page.wait_for_selector("#k-canvas[data-scale]")
    page.wait_for_function("() => document.getElementById('k-name').textContent === '00001_0.jpg'")
    # no polygon yet: no black "mask" (seg train takes the hull for such a face), a caption that says so
    assert page.locator("#k-mask").is_hidden() and "landmark hull" in page.locator("#k-mask-cap").text_content()
    v = _view(page, "#k-canvas")
    wanted = [(22, 30), (104, 26), (112, 96), (64, 122), (18, 100)]  # face pixels, roughly around the face
    clicks = [(round(v["left"] + v["ox"] + (x + 0.5) * v["scale"]), round(v["top"] + v["oy"] + (y + 0.5) * v["scale"])) for x, y in wanted]
    for X, Y in clicks:
        page.mouse.click(X, Y)
    page.mouse.click(*clicks[0])  # a click on the first point closes it
    page.wait_for_function("() => document.getElementById('k-mode').textContent === '1 polygon'")
    page.wait_for_function("() => { const m = document.getElementById('k-mask'); return !m.hidden && m.naturalWidth > 0; }")
    assert "your polygons" in page.locator("#k-mask-cap").text_content()
    page.keyboard.press("x")  # save, next face
    page.wait_for_function("() => document.getElementById('k-name').textContent === '00003_0.jpg'")

    [polygon] = read_polygons(ws.aligned_dir("dst") / "00001_0.jpg")
    expected = [((X - v["left"] - v["ox"]) / v["scale"] - 0.5, (Y - v["top"] - v["oy"]) / v["scale"] - 0.5) for X, Y in clicks]
    assert polygon.kind == "include"
    np.testing.assert_allclose(polygon.points, expected, atol=0.002)
    np.testing.assert_allclose(polygon.points, wanted, atol=1.0 / v["scale"])


def test_browser_manual_extract_one_frame(page, live_ui):
    ws = live_ui.ws
    face = ws.aligned_dir("dst") / "00001_0.jpg"
    rec = read_record(face)
    face.unlink()
    page.goto(live_ui.base + "/manual?side=dst&frames=00001.png")
    page.wait_for_function("() => document.getElementById('m-name').textContent === '00001.png'")
    v = _view(page, "#m-canvas")
    box = box_of(rec)
    X, Y = (v["left"] + v["ox"] + (box["cx"] + 0.5) * v["scale"], v["top"] + v["oy"] + (box["cy"] + 0.5) * v["scale"])
    for k in range(12):  # the mouse comes over the face; the box and its landmarks follow
        page.mouse.move(X - 60 + 5 * k, Y - 24 + 2 * k)
    page.mouse.move(X, Y)
    page.wait_for_selector("#m-canvas[data-state=following][data-ready='1']")
    page.mouse.click(X, Y)
    page.wait_for_selector("#m-canvas[data-state=locked][data-ready='1']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#m-frames li.accepted")
    ms = page.get_attribute("#m-ms", "data-ms")
    print(f"box-follow round trip in the browser: median {ms} ms")

    new = read_record(face)
    assert new.source_filename == "00001.png" and new.size == 128 and new.face_index == 0
    size = float(np.ptp(rec.source_landmarks, axis=0).max())
    assert np.linalg.norm(new.source_landmarks - rec.source_landmarks, axis=1).mean() < 0.05 * size
    assert "00001.png" in extract.done_frames(ws, "dst")
