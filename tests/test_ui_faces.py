"""The Face sets page: its API (listing, thumbnails, detail, trash with undo/redo, orders as jobs, the real sort)
through the guarded app, and the page itself in headless chromium (load a face grid, delete and undo; open a face).
Real faces only: ``ws`` is a fresh copy of the sample-faces workspace (30 faces a side, tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")

from facelab.faceimage import read_face, read_record, write_face  # noqa: E402
from facelab.faceset import browse, detail, features  # noqa: E402
from facelab.ui.routes import faces  # noqa: E402

from tests.ui_helpers import ORIGIN, client, wait_for  # noqa: E402




def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


def column(listing: dict, name: str) -> list:
    k = listing["fields"].index(name)
    return [row[k] for row in listing["faces"]]


# --- listing ---------------------------------------------------------------------------------------------------


def test_the_listing_is_one_compact_row_per_face_in_name_order(ws, marker):
    c = client(ws, marker)
    r = c.get("/api/faces/src")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["fields"] == list(faces.FIELDS) and data["prefix"] == "data_src/aligned/"
    assert data["count"] == data["total"] == 30 and data["in_trash"] == 0
    paths = ws.aligned_paths("src")
    assert column(data, "name") == [p.name for p in paths]
    entries = {e.name: e for e in browse.list_faces(ws, "src")}
    for row in data["faces"]:
        e = entries[row[0]]
        assert isinstance(row, list) and len(row) == len(faces.FIELDS)
        assert row[2:5] == [e.source, e.face_index, e.faces_in_frame]
        assert row[5] == round(e.blur_score, 1) and row[8] is None
        assert row[1] == faces.version(ws.aligned_dir("src") / row[0])
    # compact: about 80 bytes a face, so 10,000 faces are under a megabyte
    assert len(r.content) / 30 < 120


def test_sort_and_filters_of_the_listing(ws, marker):
    c = client(ws, marker)
    by_blur = c.get("/api/faces/src", params={"sort": "blur"}).json()
    assert column(by_blur, "name") == [e.name for e in browse.list_faces(ws, "src", sort="blur")]
    blur = column(by_blur, "blur")
    assert blur == sorted(blur, reverse=True)

    lowest = c.get("/api/faces/src", params={"blur_lowest": "10"}).json()
    assert lowest["count"] == 3 and lowest["total"] == 30
    assert sorted(column(lowest, "blur")) == sorted(blur)[:3]

    # a second face cut from the frame of face 3: the "several faces in a frame" filter finds both
    a, b = ws.aligned_paths("src")[3], ws.aligned_paths("src")[4]
    rec = read_record(a)
    write_face(a.with_name(f"{Path(rec.source_filename).stem}_1.jpg"), read_face(b)[0],
               read_record(b).replace(source_filename=rec.source_filename, face_index=1))
    several = c.get("/api/faces/src", params={"several": "1"}).json()
    assert sorted(column(several, "name")) == sorted([a.name, f"{Path(rec.source_filename).stem}_1.jpg"])
    assert column(several, "in_frame") == [2, 2]

    for params in ({"sort": "hist"}, {"sort": "shuffle"}, {"blur_lowest": "0"}, {"blur_lowest": "ten"}, {"where": "frames"}):
        r = c.get("/api/faces/src", params=params)
        assert r.status_code == 400 and r.json()["error"], params
    assert c.get("/api/faces/left").status_code == 400


def test_a_listing_with_a_measure_limit_refuses_to_decode_more_faces_than_that(ws):
    with pytest.raises(browse.MeasureNeeded) as e:
        browse.list_faces(ws, "src", measure_limit=29)
    assert (e.value.count, e.value.total) == (30, 30) and not ws.face_list_cache("src").exists()
    assert len(browse.list_faces(ws, "src", measure_limit=30)) == 30
    assert len(browse.list_faces(ws, "src", measure_limit=0)) == 30  # all measured now


def test_a_first_listing_of_many_unmeasured_faces_runs_as_a_job(ws, marker, monkeypatch):
    monkeypatch.setattr(faces, "MEASURE_IN_REQUEST", 5)
    c = client(ws, marker)
    first = c.get("/api/faces/dst").json()
    assert first["measuring"] and column(first, "name") == [p.name for p in ws.aligned_paths("dst")]
    assert column(first, "blur") == [None] * 30  # names and versions only, meanwhile
    again = c.get("/api/faces/dst").json()
    assert again.get("measuring") in (None, first["measuring"])  # never a second job for the same faces
    job = wait_for(c, first["measuring"])
    assert job["state"] == "done" and job["total"] == 30 and job["step"] == "face-list"
    after = c.get("/api/faces/dst").json()
    assert "measuring" not in after and None not in column(after, "blur")


# --- images -------------------------------------------------------------------------------------------------


def test_thumbnails_come_from_the_disk_cache_with_year_long_headers_keyed_by_the_version(ws, marker):
    c = client(ws, marker)
    face = ws.aligned_paths("src")[0]
    fid = f"data_src/aligned/{face.name}"
    v = faces.version(face)
    r = c.get(f"/api/faces/thumb/{fid}", params={"v": v, "px": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert r.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    cached = list((ws.thumbs_dir("src") / "64").glob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.content
    assert c.get(f"/api/faces/thumb/{fid}", params={"px": 64}).headers["cache-control"] == "no-cache"  # no version
    again = c.get(f"/api/faces/thumb/{fid}", params={"v": v, "px": 64}, headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304
    # the face rewritten: a new version, the old URL's answer may not be kept
    image, rec = read_face(face)
    write_face(face, cv2.GaussianBlur(image, (9, 9), 0), rec)
    assert faces.version(face) != v
    stale = c.get(f"/api/faces/thumb/{fid}", params={"v": v, "px": 64})
    assert stale.headers["cache-control"] == "no-cache" and stale.content != r.content
    for bad in ("data_src/aligned/../aligned/x.jpg", "data_src/frames/00001.png", "etc/passwd", "data_src/aligned/nope.jpg"):
        assert c.get(f"/api/faces/thumb/{bad}").status_code in (400, 404), bad
    assert c.get(f"/api/faces/thumb/{fid}", params={"px": 5000}).status_code == 400


def test_face_detail_overlay_mask_and_source_frame(ws, marker):
    c = client(ws, marker)
    face = ws.aligned_paths("src")[2]
    fid = f"data_src/aligned/{face.name}"
    d = c.get(f"/api/faces/detail/{fid}").json()
    want = json.loads(json.dumps(detail.face_detail(ws, fid)))
    assert {k: d[k] for k in want} == want and d["version"] == faces.version(face)
    assert d["source_frame"] == f"data_src/{read_record(face).source_filename}"

    overlay = c.get(f"/api/faces/overlay/{fid}", params={"v": d["version"]})
    assert overlay.headers["content-type"] == "image/jpeg" and "immutable" in overlay.headers["cache-control"]
    drawn = cv2.imdecode(np.frombuffer(overlay.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == detail.face_overlay(ws, fid).shape
    mask = c.get(f"/api/faces/mask/{fid}")
    assert mask.headers["content-type"] == "image/png"
    assert np.array_equal(cv2.imdecode(np.frombuffer(mask.content, np.uint8), cv2.IMREAD_UNCHANGED), detail.face_mask(ws, fid))
    frame = c.get(f"/api/faces/frame/{d['source_frame']}", params={"px": 200, "v": d["source_frame_version"]})
    assert frame.status_code == 200 and "immutable" in frame.headers["cache-control"]
    assert max(cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR).shape[:2]) == 200
    for bad in ("data_src/aligned/nope.jpg", "data_src/../secret.jpg", "data_src/.facelab/face_list.json"):
        assert c.get(f"/api/faces/detail/{bad}").status_code in (400, 404), bad
    assert c.get("/api/faces/detail/data_src/aligned/nope.jpg").status_code == 404
    assert c.get("/api/faces/frame/data_src/aligned/" + face.name).status_code == 400  # a face is not a frame
    assert c.get("/api/faces/frame/data_src/../../x.png").status_code in (400, 404)


def test_frames_without_a_face_are_listed_as_frames(ws, marker):
    frame = ws.frame_paths("dst")[4].name
    ws.no_face_list("dst").write_text(f"{frame}\n00999.png\n../../etc/passwd\n")
    c = client(ws, marker)
    r = c.get("/api/faces/dst/no-face").json()
    assert [f["id"] for f in r["frames"]] == [f"data_dst/{frame}"] and "--manual-fix" in r["hint"]
    assert c.get("/api/faces/dst").json()["no_face"] == 1
    assert c.get(f"/api/faces/frame/data_dst/{frame}").status_code == 200


# --- delete, restore, undo, redo ---------------------------------------------------------------------------


def test_delete_undo_redo_restore_round_trip_through_the_api_is_byte_identical(ws, marker):
    c = client(ws, marker)
    aligned, trash_dir = ws.aligned_dir("dst"), ws.trash_dir("dst")
    before = digests(aligned)
    names = [p.name for p in ws.aligned_paths("dst")[3:6]]

    r = c.post("/api/faces/dst/delete", json={"names": names}, headers=ORIGIN).json()
    assert sorted(to for _, to in r["action"]["moved"]) == sorted(f"data_dst/aligned_trash/{n}" for n in names)
    assert r["in_trash"] == 3 and r["history"]["undo"][-1] == {"id": r["action"]["id"], "kind": "delete", "faces": 3}
    assert c.get("/api/faces/dst", params={"where": "trash"}).json()["count"] == 3
    assert c.get("/api/faces/dst").json()["count"] == 27

    r = c.post("/api/faces/dst/undo", headers=ORIGIN).json()
    assert r["action"]["op"] == "undo" and digests(aligned) == before and r["in_trash"] == 0
    r = c.post("/api/faces/dst/redo", headers=ORIGIN).json()
    assert r["action"]["op"] == "redo" and sorted(digests(trash_dir)) == sorted(names)
    r = c.post("/api/faces/dst/restore", json={"names": names[:2]}, headers=ORIGIN).json()
    assert r["action"]["kind"] == "restore" and r["in_trash"] == 1
    r = c.post("/api/faces/dst/undo", headers=ORIGIN).json()  # undo the restore: back to the trash
    assert r["in_trash"] == 3
    c.post("/api/faces/dst/restore", json={"names": names}, headers=ORIGIN)
    assert digests(aligned) == before and digests(trash_dir) == {}
    assert c.get("/api/faces/dst/history").json()["redo"] == []
    c.post("/api/faces/dst/undo", headers=ORIGIN)
    c.post("/api/faces/dst/undo", headers=ORIGIN)
    c.post("/api/faces/dst/undo", headers=ORIGIN)
    nothing = c.post("/api/faces/dst/undo", headers=ORIGIN).json()
    assert nothing["action"] is None and digests(aligned) == before  # everything undone back to the start


def test_bad_names_and_ids_are_refused_and_nothing_moves(ws, marker, tmp_path):
    c = client(ws, marker)
    before = digests(ws.aligned_dir("src"))
    good = ws.aligned_paths("src")[0].name
    for body in ({"names": ["../../outside.jpg"]}, {"names": [good, "sub/x.jpg"]}, {"names": ["notes.txt"]},
                 {"names": [".hidden.jpg"]}, {"names": ["/etc/passwd"]}, {"names": []}, {"names": "x.jpg"},
                 {"names": [3]}, {}, {"names": [good, "a\\b.jpg"]}):
        r = c.post("/api/faces/src/delete", json=body, headers=ORIGIN)
        assert 400 <= r.status_code < 500 and r.json()["error"], body
        r = c.post("/api/faces/src/restore", json=body, headers=ORIGIN)
        assert 400 <= r.status_code < 500, body
    assert c.post("/api/faces/src/delete", content=b"not json", headers=ORIGIN).status_code == 400
    assert c.post("/api/faces/left/delete", json={"names": [good]}, headers=ORIGIN).status_code == 400
    assert c.post("/api/faces/src/delete", json={"names": [good]}).status_code == 403  # no Origin: not the page's
    assert digests(ws.aligned_dir("src")) == before
    assert not ws.trash_dir("src").exists() or not any(ws.trash_dir("src").iterdir())
    missing = c.post("/api/faces/src/delete", json={"names": ["99999_0.jpg"]}, headers=ORIGIN).json()
    assert missing["action"]["moved"] == [] and missing["action"]["missing"] == ["99999_0.jpg"]


# --- orders and the real sort -----------------------------------------------------------------------------


def test_cheap_orders_answer_at_once_and_costly_ones_run_as_a_job(ws, marker):
    c = client(ws, marker)
    before = digests(ws.aligned_dir("src"))
    r = c.post("/api/faces/src/order", json={"method": "final", "target": 20}, headers=ORIGIN).json()
    plan = browse.sort_plan(ws, "src", "final", target=20)
    assert (r["order"], r["trash"], r["skipped"]) == (plan.order, plan.trash, plan.skipped) and len(r["trash"]) == 10

    started = c.post("/api/faces/src/order", json={"method": "hist"}, headers=ORIGIN).json()
    job = wait_for(c, started["job"]["id"])
    assert job["state"] == "done" and job["step"] == "face-order" and job["total"] == 30  # progress on the Jobs page
    result = c.get(f"/api/faces/order/{job['id']}").json()
    assert result["state"] == "done" and result["order"] == browse.sort_order(ws, "src", "hist")
    assert digests(ws.aligned_dir("src")) == before  # an order renames nothing
    for body in ({"method": "shuffle"}, {"method": "final", "target": 0}, {"method": "identity"},
                 {"method": "identity", "reference": "../../x.jpg"}, {"method": "blur", "target": True}):
        assert c.post("/api/faces/src/order", json=body, headers=ORIGIN).status_code == 400, body
    assert c.get("/api/faces/order/j999").status_code == 404


def test_the_identity_order_compares_with_a_face_picked_in_the_grid(ws, marker):
    from facelab.stages.sort import reference_embedding

    c = client(ws, marker)
    ref = ws.aligned_paths("dst")[7]
    started = c.post("/api/faces/dst/order", json={"method": "identity", "reference": f"data_dst/aligned/{ref.name}"},
                     headers=ORIGIN).json()
    assert ref.name in started["job"]["title"]
    job = wait_for(c, started["job"]["id"])
    assert job["state"] == "done", job
    order = c.get(f"/api/faces/order/{job['id']}").json()["order"]
    assert order == browse.sort_order(ws, "dst", "identity", reference=reference_embedding(ref))
    assert order[0] == ref.name  # the reference itself is the closest


def test_cancelling_an_order_job_stops_after_the_faces_in_flight(ws, marker, monkeypatch):
    calls = []
    fn, pixels = features.FEATURES["histogram"]

    def slow(image, record):  # 30 faces on 2 threads: 1.5 s in all
        calls.append(1)
        time.sleep(0.1)
        return fn(image, record)

    monkeypatch.setitem(features.FEATURES, "histogram", (slow, pixels))
    monkeypatch.setattr(features.os, "cpu_count", lambda: 2)
    c = client(ws, marker)
    job_id = c.post("/api/faces/src/order", json={"method": "hist"}, headers=ORIGIN).json()["job"]["id"]
    while not calls:
        time.sleep(0.01)
    assert c.post(f"/api/jobs/{job_id}/cancel", headers=ORIGIN).status_code == 200
    assert wait_for(c, job_id, timeout=30)["state"] == "cancelled"
    assert len(calls) < 10  # not all 30 faces: the faces not started yet were dropped
    assert c.get(f"/api/faces/order/{job_id}").json()["state"] == "cancelled"


def test_apply_this_order_runs_the_sort_step_as_a_job(ws, marker):
    c = client(ws, marker)
    plan = browse.sort_plan(ws, "src", "blur")
    job = c.post("/api/faces/src/apply-sort", json={"method": "blur"}, headers=ORIGIN).json()
    assert job["step"] == "sort" and job["writes"] == ["data_src/aligned"]
    done = wait_for(c, job["id"])
    assert done["state"] == "done" and done["summary"]["line"].startswith("sort src by blur")
    renamed = column(c.get("/api/faces/src").json(), "name")
    assert [read_record(ws.aligned_dir("src") / n).extra["original_filename"] for n in renamed] == plan.order
    # identity takes its reference by face id too
    ref = f"data_src/aligned/{renamed[5]}"
    job = c.post("/api/faces/src/apply-sort", json={"method": "identity", "reference": ref}, headers=ORIGIN).json()
    assert wait_for(c, job["id"])["state"] == "done"
    assert c.post("/api/faces/src/apply-sort", json={"method": "identity", "reference": "/etc/passwd"},
                  headers=ORIGIN).status_code == 400


def test_the_page_is_in_the_navigation_and_loads_no_inline_script(ws, marker):
    c = client(ws, marker)
    html = c.get("/faces").text
    assert '<script type="module" src="/static/js/faces.js">' in html and "<script>" not in html
    assert " style=" not in html and "onclick=" not in html
    assert 'href="/faces"' in c.get("/").text
    for method in ("blur", "hist", "identity", "final"):
        assert f'value="{method}"' in html


# --- in the browser -----------------------------------------------------------------------------------------


def grid_names(page) -> list[str]:
    """The names of the faces in the grid's cells, in grid order (cells are reused, so not in DOM order)."""
    return page.eval_on_selector_all(".fcell:not([hidden])", """els => els.map(e => [Number(e.dataset.i),
        e.querySelector('.cap').textContent]).sort((a, b) => a[0] - b[0]).map(x => x[1])""")


def test_load_a_face_grid_delete_and_undo(page, live_ui, tmp_path):
    ws = live_ui.ws
    before = digests(ws.aligned_dir("src"))
    page.click("nav a[data-page=faces]")
    page.wait_for_function("() => document.querySelectorAll('.fcell:not([hidden]) img').length === 30")
    page.wait_for_function("() => [...document.querySelectorAll('.fcell:not([hidden]) img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.inner_text("#count") == "30 faces"
    names = grid_names(page)
    assert names == [p.name for p in ws.aligned_paths("src")]

    page.click(".fcell >> nth=4")
    page.click(".fcell >> nth=9", modifiers=["Control"])
    assert page.inner_text("#count") == "30 faces · 2 selected"
    page.keyboard.press("Delete")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('28 faces')")
    left = grid_names(page)
    assert names[4] not in left and names[9] not in left and len(left) == 28
    assert sorted(p.name for p in ws.trash_dir("src").iterdir()) == sorted([names[4], names[9]])

    page.click("[data-view=trash]")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('2 in the trash')")
    assert sorted(grid_names(page)) == sorted([names[4], names[9]])
    page.click("[data-view=aligned]")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('28 faces')")

    # Ctrl+Z by the key's position (event.code): a Russian layout's "я" is on the Z key
    page.evaluate("""() => document.querySelector('#grid').dispatchEvent(new KeyboardEvent('keydown',
                     {code: 'KeyZ', key: 'я', ctrlKey: true, bubbles: true}))""")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('30 faces')")
    assert grid_names(page) == names and digests(ws.aligned_dir("src")) == before
    assert "2 selected" in page.inner_text("#count")  # the faces that came back are selected
    page.keyboard.press("Control+Shift+KeyZ")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('28 faces')")
    page.click("#undo")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('30 faces')")
    assert digests(ws.aligned_dir("src")) == before
    page.screenshot(path=str(tmp_path / "faces.png"))


def test_open_a_face_and_see_its_detail(page, live_ui):
    ws = live_ui.ws
    page.goto(live_ui.base + "/faces")
    page.wait_for_selector(".fcell img")
    page.click("[data-side=dst]")
    page.wait_for_function("() => [...document.querySelectorAll('.fcell:not([hidden]) img')].every(i => i.src.includes('/data_dst/'))")
    page.click(".fcell >> nth=0")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    face = ws.aligned_paths("dst")[2]
    rec = read_record(face)
    page.wait_for_selector("#detail table.meta")
    assert page.inner_text("#detail .fname") == face.name
    meta = page.inner_text("#detail table.meta")
    assert rec.source_filename in meta and "full" in meta and "blur score" in meta
    page.wait_for_function("() => { const i = document.querySelector('#detail .frame img'); return i && i.complete && i.naturalWidth > 0; }")
    page.click("#detail [data-show=overlay]")
    page.wait_for_function("() => { const i = document.querySelector('#detail img.big'); return i.src.includes('/overlay/') && i.complete && i.naturalWidth === 256; }")
    page.click("#detail [data-show=mask]")
    page.wait_for_function("() => { const i = document.querySelector('#detail img.big'); return i.src.includes('/mask/') && i.complete && i.naturalWidth === 128; }")
    # arrows move through the faces with the panel open
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.querySelector('#detail .fname').textContent === {json.dumps(ws.aligned_paths('dst')[3].name)}")
    page.keyboard.press("Escape")
    page.wait_for_selector("#detail", state="hidden")


def test_only_the_rows_near_the_viewport_exist(browser, live_ui):
    context = browser.new_context(viewport={"width": 700, "height": 520})
    page = context.new_page()
    page.goto(live_ui.url)
    page.goto(live_ui.base + "/faces")
    page.wait_for_function("() => document.querySelector('#count').textContent.startsWith('30 faces')")
    page.select_option("#zoom", "192")
    shown = page.eval_on_selector_all(".fcell:not([hidden])", "els => els.length")
    assert 0 < shown < 30
    page.focus("#grid")
    page.keyboard.press("End")  # to the last face: it is made when scrolled to
    last = live_ui.ws.aligned_paths("src")[-1].name
    page.wait_for_function(f"() => [...document.querySelectorAll('.fcell:not([hidden]) .cap')].some(e => e.textContent === {json.dumps(last)})")
    assert page.eval_on_selector_all(".fcell:not([hidden])", "els => els.length") < 30
    context.close()
