"""The UI server's core without a browser: the token/cookie/Host/Origin guard, files by id, the steps' forms,
jobs (start, conflict, cancel, resume), the event stream, and steps started from the command line."""

from __future__ import annotations

import json
import os
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from starlette.testclient import TestClient  # noqa: E402

from facelab.errors import SettingsError  # noqa: E402
from facelab.ui.app import create_app  # noqa: E402
from facelab.ui.security import COOKIE  # noqa: E402

from tests.ui_helpers import BASE, ORIGIN, client, wait_for  # noqa: E402




# --- who may talk to the server ---------------------------------------------------------------------------


def test_without_the_token_every_request_is_refused(ws, marker):
    c = TestClient(create_app(ws, "secret", marker=marker), base_url=BASE)
    for path in ("/", "/api/workspace", "/api/jobs", "/static/ui.css", "/files/data_src/aligned/x.jpg"):
        r = c.get(path)
        assert r.status_code == 403 and "open the address" in r.text, path
    assert c.get("/?token=wrong", follow_redirects=False).status_code == 403
    c.cookies.set(COOKIE, "wrong")
    assert c.get("/api/workspace").status_code == 403


def test_the_start_url_token_becomes_a_strict_httponly_cookie_and_leaves_the_address(ws, marker):
    c = TestClient(create_app(ws, "secret", marker=marker), base_url=BASE)
    r = c.get("/jobs?token=secret&x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/jobs?x=1"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=secret") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    c.cookies.set(COOKIE, "secret")
    assert c.get("/jobs").status_code == 200


def test_foreign_host_and_origin_are_refused_and_changes_need_an_origin(ws, marker):
    c = client(ws, marker)
    assert c.get("/", headers={"host": "attacker.example:7860"}).status_code == 421  # DNS rebinding
    assert c.get("/api/workspace", headers={"origin": "http://attacker.example"}).status_code == 403
    assert c.post("/api/steps/video", json={}, headers={"origin": "http://attacker.example"}).status_code == 403
    assert c.post("/api/steps/video", json={}).status_code == 403  # no Origin: not from the UI's page
    assert c.get("/", headers={"host": "localhost:7860"}).status_code == 200


def test_every_response_has_the_strict_security_headers(ws, marker):
    c = client(ws, marker)
    for r in (c.get("/"), c.get("/static/js/api.js"), c.get("/api/steps"), c.get("/nothing-here")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_pages_load_no_inline_script_or_style(ws, marker):
    c = client(ws, marker)
    pages = [path for path, _, _ in c.app.app.state.ui.pages]
    assert len(pages) >= 4
    for path in pages:
        html = c.get(path).text
        assert "<script>" not in html and " style=" not in html and "onclick=" not in html
        assert '<script type="module" src="/static/js/' in html


# --- files by id ---------------------------------------------------------------------------------------------


def test_files_are_served_by_workspace_id_and_ids_that_leave_the_workspace_are_refused(ws, marker, tmp_path):
    c = client(ws, marker)
    face = ws.aligned_paths("src")[0]
    fid = face.relative_to(ws.root).as_posix()
    r = c.get(f"/files/{fid}")
    assert r.status_code == 200 and r.content == face.read_bytes() and r.headers["content-type"] == "image/jpeg"
    secret = tmp_path / "secret.png"
    secret.write_bytes(face.read_bytes())
    (ws.root / "link.png").symlink_to(secret)
    for bad in ("../secret.png", "data_src/../../secret.png", "%2e%2e/secret.png", "/etc/passwd", "link.png",
                "data_src\\aligned\\x.jpg", "data_src//aligned/x.jpg"):
        r = c.get(f"/files/{bad}")
        assert r.status_code in (403, 404), bad
        assert r.content != face.read_bytes()
    (ws.root / "notes.txt").write_text("not an image")
    assert c.get("/files/notes.txt").status_code == 404


def test_a_tiff_frame_is_shown_as_png(ws, marker):
    # A plate's 16-bit TIFF frame (browsers show no TIFF): the UI sends it as PNG, the same pixels in 8 bits.
    face = cv2.imread(str(ws.aligned_paths("src")[0]))
    plate = ws.frames_dir("dst") / "plate.1001.tif"
    cv2.imwrite(str(plate), face.astype(np.uint16) * 257)
    r = client(ws, marker).get(f"/files/{plate.relative_to(ws.root).as_posix()}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert np.array_equal(cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED), face)
    plate.unlink()


def test_file_id_resolution_unit(ws):
    from facelab.ui.files import FileIdError, file_id, resolve

    face = ws.aligned_paths("dst")[0]
    assert resolve(ws, file_id(ws, face)) == face.resolve()
    for bad in ("", "..", "a/../../b", "/abs", "x\x00y"):
        with pytest.raises(FileIdError):
            resolve(ws, bad)


# --- steps and their forms -------------------------------------------------------------------------------------


def test_each_step_form_is_its_commands_declared_options_without_paths(ws, marker):
    from pathlib import Path

    from typer.main import get_command

    from facelab.cli import app
    from facelab.ui.steps import STEPS

    forms = {s["name"]: s for s in client(ws, marker).get("/api/steps").json()}
    assert list(forms) == ["frames", "denoise", "extract", "sort", "train", "merge", "video", "eval", "export"]
    commands = get_command(app).commands
    for name, form in forms.items():
        declared = [*STEPS[name].first, *(o for o in commands[name].callback.options if o.kind is not Path and not o.hidden)]
        names = [f["name"] for f in form["fields"]]
        assert set(names) <= {o.name for o in declared}, name
        assert all(f["help"] == next(o.help for o in declared if o.name == f["name"]) for f in form["fields"])
    assert {"batch_size", "resolution", "archi", "pixel_loss"} <= {f["name"] for f in forms["train"]["fields"]}
    assert forms["extract"]["sides"] == ["src", "dst"] and forms["train"]["sides"] == []
    assert [f["name"] for f in forms["export"]["fields"]] == ["model", "format", "fp16", "gpu"]  # not --out (a path)
    assert not {"config", "reference", "pretrain", "video"} & {f["name"] for s in forms.values() for f in s["fields"]}


def test_a_step_with_bad_values_is_refused_before_it_starts(ws, marker):
    c = client(ws, marker)
    for body, what in (({"side": "src", "values": {"size": 5}}, "size"), ({"side": "src", "values": {"nosuch": 1}}, "nosuch"),
                       ({"side": "left", "values": {}}, "side"), ({"values": {"batch_size": 0}}, "batch_size")):
        step = "train" if "batch_size" in body["values"] else "extract"
        r = c.post(f"/api/steps/{step}", json=body, headers=ORIGIN)
        assert r.status_code == 400 and what in r.json()["error"], (body, r.json())
    assert c.get("/api/jobs").json() == []


# --- jobs ----------------------------------------------------------------------------------------------------------


def test_a_step_runs_as_a_job_and_reports_its_summary(ws, marker):
    c = client(ws, marker)
    r = c.post("/api/steps/sort", json={"side": "src", "values": {"by": "hist"}}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    job = wait_for(c, r.json()["id"])
    assert job["state"] == "done", job
    assert job["summary"]["line"].startswith("sort") and job["total"] == job["done"] == 30


def test_export_runs_from_the_page_and_its_file_downloads_and_a_path_is_refused(trained_quick_ws, marker, tmp_path):
    import shutil

    from facelab.export import player_check
    from facelab.workspace import Workspace

    shutil.copytree(trained_quick_ws.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    c = client(ws, marker)
    job = wait_for(c, c.post("/api/steps/export", json={"values": {"model": "quick"}}, headers=ORIGIN).json()["id"])
    assert job["state"] == "done", job
    out = ws.model_root / "quick.dfm"
    assert job["summary"]["files"] == ["model/quick.dfm"] and player_check(out).resolution == 32
    r = c.get("/files/model/quick.dfm")
    assert r.status_code == 200 and r.content == out.read_bytes()
    assert r.headers["content-type"] == "application/octet-stream" and "quick.dfm" in r.headers["content-disposition"]
    assert c.get("/files/model/quick/weights.safetensors").status_code == 404  # weights stay out of reach
    for bad, error in (("../data_src", "not a valid folder name"), (str(ws.model_dir("quick")), "not a valid folder name"),
                       ("nosuch", "no model")):  # a name under model/, never a path
        job = wait_for(c, c.post("/api/steps/export", json={"values": {"model": bad}}, headers=ORIGIN).json()["id"])
        assert job["state"] == "failed" and error in job["error"], (bad, job)
    assert sorted(p.name for p in ws.model_root.iterdir()) == ["quick", "quick.dfm"]


def test_a_model_name_never_leads_out_of_model(ws, trained_quick_ws, marker):
    # the merge took `ws.model_dir(<absolute path>)`, which is that path: a model folder anywhere on the disk
    elsewhere = trained_quick_ws.model_dir("quick")
    for bad in (str(elsewhere), "../../" + elsewhere.name, "..", ".hidden", "a\\b", ""):
        with pytest.raises(SettingsError, match="not a valid folder name"):
            ws.model_dir(bad)
    assert ws.model_dir("quick") == ws.model_root / "quick"
    merged = ws.root / "data_dst" / "merged"
    before = sorted(merged.rglob("*")) if merged.exists() else []
    c = client(ws, marker)
    for step in ("merge", "eval"):
        job = wait_for(c, c.post(f"/api/steps/{step}", json={"values": {"name": str(elsewhere)}}, headers=ORIGIN).json()["id"])
        assert job["state"] == "failed" and "not a valid folder name" in job["error"], (step, job)
    assert (sorted(merged.rglob("*")) if merged.exists() else []) == before


def test_two_jobs_writing_the_same_files_never_run_at_once_and_a_cancel_keeps_the_work(ws, marker, monkeypatch):
    from facelab.ui import steps

    c = client(ws, marker)
    release = threading.Event()

    def slow(ws_, side, values, job, log, marker_):
        from facelab.progress import track

        for _ in track(range(100), 100, f"slow {side}"):
            release.wait(0.05)
        return None

    monkeypatch.setitem(steps.STEPS, "sort", steps.Step("sort", "Sort faces", ("src", "dst"), slow))
    first = c.post("/api/steps/sort", json={"side": "src", "values": {}}, headers=ORIGIN).json()
    second = c.post("/api/steps/sort", json={"side": "src", "values": {}}, headers=ORIGIN)
    assert second.status_code == 409 and "writes the same files" in second.json()["error"]
    other_side = c.post("/api/steps/sort", json={"side": "dst", "values": {}}, headers=ORIGIN)
    assert other_side.status_code == 200  # dst's faces are other files
    assert c.post(f"/api/jobs/{first['id']}/cancel", headers=ORIGIN).status_code == 200
    assert wait_for(c, first["id"])["state"] == "cancelled"
    c.post(f"/api/jobs/{other_side.json()['id']}/cancel", headers=ORIGIN)
    assert c.post("/api/jobs/nosuch/cancel", headers=ORIGIN).status_code == 400


def test_cancelling_extract_halfway_then_running_it_again_gives_every_face(ws8, marker):
    c = client(ws8, marker)
    started = c.post("/api/steps/extract", json={"side": "dst", "values": {"size": 64}}, headers=ORIGIN).json()
    while c.get(f"/api/jobs/{started['id']}").json()["done"] < 2:
        time.sleep(0.05)
    c.post(f"/api/jobs/{started['id']}/cancel", headers=ORIGIN)
    cancelled = wait_for(c, started["id"])
    assert cancelled["state"] in ("cancelled", "done")
    again = c.post("/api/steps/extract", json={"side": "dst", "values": {"size": 64}}, headers=ORIGIN).json()
    done = wait_for(c, again["id"])
    assert done["state"] == "done", done
    assert len(ws8.aligned_paths("dst")) == 7  # seven GRID frames with a face, one picture without


def test_the_event_stream_sends_the_jobs(ws, marker):
    c = client(ws, marker)
    c.post("/api/steps/sort", json={"side": "dst", "values": {"by": "hist"}}, headers=ORIGIN)
    with c.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        buf = ""
        for chunk in r.iter_text():
            buf += chunk
            if "\n\n" in buf:
                break
    event, data = buf.split("\n")[:2]
    assert event == "event: jobs"
    jobs = json.loads(data[len("data: "):])
    assert jobs[0]["title"] == "sort dst"


def test_a_step_started_from_the_command_line_shows_and_can_be_cancelled(ws, marker):
    from facelab import jobs

    token = jobs.CancelToken()
    status = jobs.StatusFile(lambda: ws.jobs_dir, "extract", ["extract", "dst"], token, min_interval=0)
    status(jobs.Event("extract dst", 3, 30, 1.5))
    c = client(ws, marker)
    listed = [j for j in c.get("/api/jobs").json() if j["external"]]
    assert len(listed) == 1 and listed[0]["id"] == f"pid{os.getpid()}" and listed[0]["done"] == 3
    assert listed[0]["writes"] == ["data_dst/aligned"]
    conflict = c.post("/api/steps/extract", json={"side": "dst", "values": {}}, headers=ORIGIN)
    assert conflict.status_code == 409
    assert c.post(f"/api/jobs/pid{os.getpid()}/cancel", headers=ORIGIN).status_code == 200
    status(jobs.Event("extract dst", 4, 30, 1.5))
    assert token.cancelled
    status.close()
    assert not any(j["external"] for j in c.get("/api/jobs").json())


def test_status_files_of_dead_processes_are_dropped(ws):
    from facelab import jobs

    ws.jobs_dir.mkdir(parents=True, exist_ok=True)
    (ws.jobs_dir / "999999999.json").write_text(json.dumps({"pid": 999999999, "command": "train"}))
    assert jobs.read_status_files(ws.jobs_dir) == []
    assert not (ws.jobs_dir / "999999999.json").exists()


def test_the_workspace_overview_counts_and_names_the_next_step(ws, marker):
    o = client(ws, marker).get("/api/workspace").json()
    assert o["sides"]["src"]["faces"] == 30 and o["sides"]["dst"]["faces"] == 30
    assert o["next"]["step"] == "train"


def test_the_ui_command_has_its_declared_flags():
    from typer.testing import CliRunner

    from facelab.cli import app

    r = CliRunner().invoke(app, ["ui", "--help"])
    assert r.exit_code == 0 and "--no-browser" in r.output and "--port" in r.output


def test_the_servers_own_work_is_not_listed_as_a_command_line_step(ws, monkeypatch):
    # `facelab ui` runs inside the CLI's job, whose events feed the status file that lists command-line steps;
    # work done inside a request (measuring a small face list) showed as "(command line, pid <the server>)"
    import sys

    import uvicorn

    from facelab import cli, jobs

    seen = {}

    def fake_run(app, **kw):  # stands in for the server: a request's work reports to the job it finds
        list(jobs.current().track(range(3), 3, "face list src"))
        seen["status files"] = sorted(p.name for p in ws.jobs_dir.glob("*.json")) if ws.jobs_dir.is_dir() else []
        seen["listed"] = [j["title"] for j in app.app.state.ui.jobs.all()]

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["facelab", "-w", str(ws.root), "ui", "--no-browser", "--port", "7990"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code in (0, None)
    assert seen == {"status files": [], "listed": []}


def test_a_training_job_saves_and_backs_up_when_asked_and_a_cancel_saves_it(ws, marker):
    c = client(ws, marker)
    job = c.post("/api/steps/train", json={"values": {"batch_size": 2, "iterations": 100000, "device": "cpu",
                                                       "save_every_minutes": 600.0, "backups": 0}}, headers=ORIGIN).json()
    folder = ws.model_dir("quick")
    end = time.monotonic() + 120
    while not (folder / "state.json").exists():  # asked until the first step ran (before that there is nothing)
        assert time.monotonic() < end and c.get(f"/api/jobs/{job['id']}").json()["state"] == "running"
        c.post(f"/api/jobs/{job['id']}/ask/save", headers=ORIGIN)
        time.sleep(0.5)
    assert c.post(f"/api/jobs/{job['id']}/ask/backup", headers=ORIGIN).status_code == 200
    while not list((folder / "backups").glob("*")) if (folder / "backups").exists() else True:
        assert time.monotonic() < end
        time.sleep(0.2)
    assert c.post(f"/api/jobs/{job['id']}/ask/nonsense", headers=ORIGIN).status_code == 400
    c.post(f"/api/jobs/{job['id']}/cancel", headers=ORIGIN)
    done = wait_for(c, job["id"])
    assert done["state"] == "cancelled" and done["summary"]["counts"]["iteration"] >= 1
    saved = json.loads((folder / "state.json").read_text())
    assert saved["iteration"] == done["summary"]["counts"]["iteration"]  # the cancel saved the last step
    assert c.post(f"/api/jobs/{job['id']}/ask/save", headers=ORIGIN).status_code == 400  # not running any more


def test_stopping_the_server_cancels_the_running_jobs_and_waits_for_them(ws, marker, monkeypatch):
    from facelab.ui import steps

    seen = []

    def slow(ws_, side, values, job, log, marker_):
        from facelab.progress import track

        for i in track(range(1000), 1000, "slow"):
            seen.append(i)
            time.sleep(0.01)

    monkeypatch.setitem(steps.STEPS, "sort", steps.Step("sort", "Sort faces", ("src", "dst"), slow))
    c = client(ws, marker)
    job = c.post("/api/steps/sort", json={"side": "src", "values": {}}, headers=ORIGIN).json()
    manager = c.app.app.state.ui.jobs
    assert manager.stop_all(timeout=30) == []
    assert manager.get(job["id"]).state == "cancelled"
    assert len(seen) < 1000  # the loop stopped at the cancel, not at its end
