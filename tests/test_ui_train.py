"""The Training page's API without a browser: the model list, one model's loss history (range and decimation) and
preview history as workspace file ids, which job trains which model, and the trainer's per-second figures."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")


from tests.ui_helpers import ORIGIN, client  # noqa: E402



@pytest.fixture(scope="module")
def trained(sample_faces_ws, marker, tmp_path_factory):
    """The sample-faces workspace with a `quick` model trained twice (to 20, then on to 30 iterations) with preview
    history: two kept previews."""
    from facelab.stages import train
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("ui_train") / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    for target in (20, 30):
        train.run(ws, train.TrainSettings(iterations=target, batch_size=2, device="cpu", preview_history=True, backups=0),
                  log=lambda _line: None, marker=marker)
    return ws


@pytest.fixture()
def tws(trained, tmp_path):
    """A fresh copy of :func:`trained`, free to change."""
    from facelab.workspace import Workspace

    shutil.copytree(trained.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def test_the_training_page_is_in_the_navigation_and_loads_no_inline_script_or_style(ws, marker):
    c = client(ws, marker)
    html = c.get("/train").text
    assert '<a href="/train" class="active" data-page="train">Training</a>' in html
    assert '<script type="module" src="/static/js/train.js">' in html
    assert "<script>" not in html and " style=" not in html and "onclick=" not in html
    for module in ("train.js", "chart.js"):
        js = c.get(f"/static/js/{module}").text
        assert "innerHTML" not in js and "eval(" not in js  # text nodes only; nothing the CSP would refuse
    assert 'href="/train"' in c.get("/").text


def test_the_model_list_names_each_model_with_its_iteration_target_and_preview_by_file_id(tws, marker):
    c = client(tws, marker)
    r = c.get("/api/train/models")
    assert r.status_code == 200
    doc = r.json()
    assert str(tws.root) not in r.text and "/tmp" not in r.text  # ids, never paths
    assert doc["columns"] == ["src", "src rec", "dst", "dst rec", "dst->src"] and doc["ranges"] == [5000, 10000, 50000]
    (m,) = doc["models"]
    saved = json.loads((tws.model_dir("quick") / "state.json").read_text())
    assert (m["name"], m["prefix"], m["architecture"], m["iteration"], m["target"]) == ("quick", "", "quick", 30, 30)
    assert m["iteration"] == saved["iteration"] and m["batch_size"] == 2 and m["job"] is None
    assert m["preview"] == "model/quick/preview.jpg"
    image = c.get(f"/files/{m['preview']}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"


def test_one_model_has_its_preview_history_sorted_by_iteration_as_file_ids(tws, marker):
    c = client(tws, marker)
    folder = tws.model_dir("quick")
    # a variant of another GPU beside it has previews of its own, which are not this model's
    shutil.copyfile(folder / "previews" / "preview_00000020.jpg", folder / "previews" / "gpu1_preview_00000025.jpg")
    d = c.get("/api/train/models/quick").json()
    assert d["history"] == [[20, "model/quick/previews/preview_00000020.jpg"], [30, "model/quick/previews/preview_00000030.jpg"]]
    for _, fid in d["history"]:
        assert c.get(f"/files/{fid}").status_code == 200
    assert d["loss"]["names"] == ["src", "dst"] and d["loss"]["points"][-1][0] == 30 and d["loss"]["total"] == 3


def test_the_loss_history_is_cut_to_the_range_and_averaged_down_to_at_most_2000_points(tws, marker):
    c = client(tws, marker)
    path = tws.model_dir("quick") / "state.json"
    state = json.loads(path.read_text())
    rows = [[10 * (i + 1), round(1 / (1 + i), 6), round(0.5 + 0.1 * np.sin(i / 50), 6)] for i in range(12_000)]
    state["loss_history"] = rows
    path.write_text(json.dumps(state))
    every = c.get("/api/train/models/quick", params={"range": "all"}).json()["loss"]
    assert every["total"] == 12_000 and every["decimated"] and len(every["points"]) == 2000
    # 12,000 rows into 2,000 points: runs of 6, each the mean of its rows at the iteration of its last row
    first = np.mean(np.asarray(rows[:6])[:, 1:], 0)
    assert every["points"][0][0] == 60 and np.allclose(every["points"][0][1:], first, atol=1e-6)
    assert every["points"][-1][0] == 120_000
    last5k = c.get("/api/train/models/quick", params={"range": "5000"}).json()["loss"]
    assert last5k["total"] == 500 and not last5k["decimated"] and last5k["points"] == rows[-500:]
    earlier = c.get("/api/train/models/quick", params={"range": "5000", "until": 60_000}).json()["loss"]
    assert earlier["points"] == [r for r in rows if 55_000 < r[0] <= 60_000]
    last50k = c.get("/api/train/models/quick", params={"range": "50000"}).json()["loss"]
    assert last50k["total"] == 5000 and len(last50k["points"]) <= 2000 and last50k["points"][-1][0] == 120_000
    assert last50k["points"][0][0] > 70_000
    few = c.get("/api/train/models/quick", params={"points": 100}).json()["loss"]
    assert len(few["points"]) == 100


def test_bad_model_names_ranges_and_prefixes_are_refused(tws, marker):
    c = client(tws, marker)
    assert c.get("/api/train/models/nosuch").status_code == 404
    assert c.get("/api/train/models/..").status_code == 404
    assert c.get("/api/train/models/.hidden").status_code == 404
    assert c.get("/api/train/models/quick", params={"range": "0"}).status_code == 400
    assert c.get("/api/train/models/quick", params={"range": "lots"}).status_code == 400
    assert c.get("/api/train/models/quick", params={"prefix": "../"}).status_code == 400
    assert c.get("/api/train/models/quick", params={"points": 5000}).status_code == 400
    assert c.get("/api/train/models/quick", params={"prefix": "gpu3_"}).status_code == 404


def test_loss_window_unit():
    from facelab.ui.routes.train import loss_window

    assert loss_window([], None) == {"points": [], "total": 0, "decimated": False}
    rows = [[10, 1.0, 2.0], [20, 3.0, 4.0], [30, 5.0, 6.0], [40, 7.0, 8.0]]
    assert loss_window(rows, None)["points"] == rows
    assert loss_window(rows, 20)["points"] == rows[2:]  # iterations 21..40
    assert loss_window(rows, None, max_points=2)["points"] == [[20, 2.0, 3.0], [40, 6.0, 7.0]]
    assert loss_window(rows, 15, until=20)["points"] == [[10, 1.0, 2.0], [20, 3.0, 4.0]]


def test_which_job_trains_which_model_a_command_line_run_by_its_name(tws):
    from facelab.ui.jobs import _named, writes_of
    from facelab.ui.routes.train import training_job

    assert _named(["train", "--model", "sae", "--name=mine", "-w", "x"]) == {"model": "sae", "name": "mine"}
    cli = {"id": "pid7", "step": "train", "external": True, "title": "train (command line)",
           "writes": sorted(writes_of("train", None, _named(["train", "--name", "mine"])))}
    ui = {"id": "j1", "step": "train", "external": False, "title": "train", "writes": ["model/quick"]}
    other = {"id": "j2", "step": "sort", "writes": ["data_src/aligned"]}
    assert training_job([other, cli, ui], "mine") == {"id": "pid7", "external": True, "title": "train (command line)"}
    assert training_job([other, cli, ui], "quick")["id"] == "j1"
    assert training_job([other], "quick") is None


def test_a_training_job_shows_on_its_model_from_the_start_reports_figures_each_second_and_a_stop_saves(tws, marker):
    c = client(tws, marker)
    job = c.post("/api/steps/train", json={"values": {"name": "fresh", "batch_size": 2, "device": "cpu",
                                                       "backups": 0}}, headers=ORIGIN).json()
    fresh = next(m for m in c.get("/api/train/models").json()["models"] if m["name"] == "fresh")
    assert fresh["unsaved"] and fresh["job"] == {"id": job["id"], "external": False, "title": "train"}
    quick = next(m for m in c.get("/api/train/models").json()["models"] if m["name"] == "quick")
    assert quick["job"] is None  # another model's job is not this one's
    end = time.monotonic() + 120
    points = []
    while len(points) < 2:  # figures about every second, from the steps the trainer takes anyway
        assert time.monotonic() < end, "no figures from the training job"
        points = c.get(f"/api/jobs/{job['id']}/points").json()["points"]
        time.sleep(0.3)
    (it0, v0), (it1, v1) = points[:2]
    assert 0 < it0 < it1 and set(v0) == {"src", "dst", "ms"} and v0["ms"] > 0 and 0 < v0["src"] < 1
    assert c.get(f"/api/jobs/{job['id']}/points", params={"since": 1}).json()["points"][0] == points[1]
    c.post(f"/api/jobs/{job['id']}/cancel", headers=ORIGIN)
    while (done := c.get(f"/api/jobs/{job['id']}").json())["state"] == "running":
        assert time.monotonic() < end
        time.sleep(0.2)
    assert done["state"] == "cancelled"
    saved = json.loads((tws.model_dir("fresh") / "state.json").read_text())
    assert saved["iteration"] == done["done"] == done["summary"]["counts"]["iteration"]
    fresh = next(m for m in c.get("/api/train/models").json()["models"] if m["name"] == "fresh")
    assert fresh["iteration"] == saved["iteration"] and fresh["job"] is None and "unsaved" not in fresh


def test_the_runner_reports_figures_without_extra_steps(tmp_path):
    """Figures events carry the mean losses of the steps since the last one; log events carry only the line."""
    from facelab import jobs
    from facelab.train import runner

    class Task:
        loss_names = ("src", "dst")
        steps = 0

        def start(self, state): pass

        def step(self, iteration):
            self.steps += 1
            return (1.0 + iteration, 2.0)

        def checked(self, iteration, loss): return None

        def preview(self, state):
            p = tmp_path / "p.jpg"
            p.write_bytes(b"x")
            return p

        def close(self): pass

    events, task = [], Task()
    job = jobs.Job(on_event=events.append, min_interval=0)
    with jobs.running(job):
        runner.run(task, {}, runner.Schedule(target_iteration=5, log_every_seconds=3600, figures_every_seconds=0),
                   log=lambda _line: None)
    figures = [e for e in events if e.values]
    assert task.steps == 5 and [e.done for e in figures] == [1, 2, 3, 4, 5]
    assert [e.values["src"] for e in figures] == [1.0, 2.0, 3.0, 4.0, 5.0] and all(e.values["dst"] == 2.0 for e in figures)
    assert all(e.values["ms"] > 0 and e.rate > 0 and e.total == 5 and not e.message for e in figures)
