"""The Segmenter page: train the workspace's face segmenter (``facelab seg train``) and apply it (``seg apply``)
as jobs, with its preview and loss history.

Like the Training page, everything shown is read from what training writes anyway (``state.json``,
``preview.jpg``: the rows *training faces (drawn labels)*, *src faces*, *dst faces*) and from the job's own
figures (``/api/jobs/{id}/points``, the ``bce`` loss). Stop, Save now and Refresh preview use the core job API
(``/api/jobs/{id}/cancel``, ``/api/jobs/{id}/ask/save|preview``).

API:

- ``GET  /api/seg/forms``: the option forms of ``seg train`` and ``seg apply`` (from ``facelab.seg.options``).
- ``GET  /api/seg/models``: every segmenter under ``model/`` (summaries), and the running seg jobs.
- ``GET  /api/seg/models/{name}?range=all|N&until=I&points=2000``: one segmenter, with its loss history window.
- ``GET  /api/seg/applied?name=segmenter``: per side, how many faces hold an applied mask, of these weights.
- ``POST /api/seg/train`` ``{values}``: start ``seg train`` as a job (step ``seg-train``, writes ``model/<name>``).
- ``POST /api/seg/apply`` ``{values}``: start ``seg apply`` as a job (step ``seg-apply``, writes the sides'
  ``aligned``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import Request

from facelab.errors import FaceFileError, SettingsError
from facelab.faceimage import read_record
from facelab.options import form_fields
from facelab.seg.options import OPTIONS
from facelab.train.checkpoint import CONFIG, PREVIEW, STATE, save_id
from facelab.ui import files
from facelab.ui.app import json_body
from facelab.ui.routes.train import MAX_POINTS, _json, loss_window, parse_range
from facelab.ui.steps import checked_values
from facelab.workspace import Workspace

TRAIN, APPLY = "seg-train", "seg-apply"  # the jobs' step names
SIDES = {"src": ("src",), "dst": ("dst",), "both": ("src", "dst")}


def register(app, state, templates) -> None:
    state.pages.append(("/segmenter", "segmenter", "Segmenter"))
    ws: Workspace = state.ws
    marker = state.marker

    @app.get("/segmenter", include_in_schema=False)
    async def page(request: Request):
        return templates.TemplateResponse(request, "segmenter.html", {
            "title": "Segmenter", "pages": state.pages, "page": "segmenter", "workspace": str(ws.root)})

    @app.get("/api/seg/forms")
    async def forms():
        return {"train": form_fields(OPTIONS["train"]), "apply": form_fields(OPTIONS["apply"])}

    def jobs_of(name: str) -> dict[str, Any]:
        running = state.jobs.running()
        out = {"train": None, "apply": None}
        for j in running:
            if j.get("step") == TRAIN and f"model/{name}" in j.get("writes", []):
                out["train"] = {"id": j["id"], "title": j["title"]}
            elif j.get("step") == APPLY:
                out["apply"] = {"id": j["id"], "title": j["title"]}
        return out

    @app.get("/api/seg/models")
    async def models():
        found = await asyncio.to_thread(list_segmenters, ws)
        names = {m["name"] for m in found}
        for j in state.jobs.running():  # a new segmenter shows from its start, before its first save
            if j.get("step") == TRAIN:
                name = next((w.split("/", 1)[1] for w in j.get("writes", []) if w.startswith("model/")), None)
                if name and name not in names:
                    names.add(name)
                    found.append({"name": name, "unsaved": True, "iteration": 0, "preview": None})
        for m in found:
            m["jobs"] = jobs_of(m["name"])
        return {"models": found, "ranges": [5_000, 10_000, 50_000]}

    @app.get("/api/seg/models/{name}")
    async def model(name: str, range: str = "all", until: int | None = None, points: int = MAX_POINTS):  # noqa: A002
        folder = segmenter_folder(ws, name)
        span = parse_range(range)
        if not 2 <= points <= MAX_POINTS:
            raise SettingsError(f"points: {points} is not within 2..{MAX_POINTS}", f"ask for at most {MAX_POINTS} points")
        found = await asyncio.to_thread(read_segmenter, ws, folder, span, until, points)
        found["jobs"] = jobs_of(name)
        return found

    @app.get("/api/seg/applied")
    async def applied(name: str = "segmenter"):
        folder = segmenter_folder(ws, name)
        return await asyncio.to_thread(applied_counts, ws, save_id(folder))

    @app.post("/api/seg/train")
    async def start_train(request: Request):
        from facelab.stages import seg

        values = check_values("train", (await json_body(request)).get("values") or {})
        settings = seg.SegTrainSettings(**values)  # checks (and refuses) before a job starts
        job = state.jobs.start(TRAIN, f"seg train {settings.name}", {f"model/{settings.name}"},
                               lambda job, log: seg.train(ws, settings, log=log, marker=marker, job=job))
        return job.to_dict()

    @app.post("/api/seg/apply")
    async def start_apply(request: Request):
        from facelab.stages import seg

        values = {o.name: o.default for o in OPTIONS["apply"]}
        values.update(check_values("apply", (await json_body(request)).get("values") or {}))
        segmenter_folder(ws, values["name"])
        writes = {f"data_{s}/aligned" for s in SIDES[values["side"]]}
        job = state.jobs.start(APPLY, f"seg apply {values['side']}", writes,
                               lambda job, log: seg.apply(ws, **values, job=job))
        return job.to_dict()


def check_values(command: str, raw: Any) -> dict[str, Any]:
    """A form's values checked against ``OPTIONS[command]`` (unknown keys refused, empty ones dropped)."""
    if not isinstance(raw, dict):
        raise SettingsError("values: expected an object of option values", "send {values: {...}}")
    return checked_values(OPTIONS[command], raw, f"seg {command}", f"seg {command}: ")


# -- reading segmenter folders


def segmenter_folder(ws: Workspace, name: str) -> Path:
    """The folder of segmenter ``name``; a :class:`files.FileIdError` (404) when there is none."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise files.FileIdError(f"{name!r} is not a segmenter name", "pick one the Segmenter page lists")
    folder = ws.model_dir(name)
    cfg = _json(folder / CONFIG)
    if cfg is None or cfg.get("kind") != "segmenter":
        raise files.FileIdError(f"model/{name} holds no segmenter", "train one first (Start on the Segmenter page)")
    return folder


def list_segmenters(ws: Workspace) -> list[dict[str, Any]]:
    root = ws.model_root
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        cfg = _json(folder / CONFIG)
        if cfg is not None and cfg.get("kind") == "segmenter":
            out.append(_summary(ws, folder, cfg))
    return out


def _summary(ws: Workspace, folder: Path, cfg: dict, state: dict | None = None) -> dict[str, Any]:
    state_path = folder / STATE
    state = _json(state_path) if state is None else state
    config = cfg.get("config") or {}
    preview = folder / PREVIEW
    options = (state or {}).get("options") or cfg.get("options") or {}
    return {"name": folder.name, "resolution": config.get("resolution"), "face_type": config.get("face_type"),
            "iteration": int((state or {}).get("iteration", 0)), "save_id": (state or {}).get("save_id"),
            "saved": state_path.stat().st_mtime if state_path.is_file() else None,
            "batch_size": options.get("batch_size"), "broken": state is None,
            "preview": files.file_id(ws, preview) if preview.is_file() else None,
            "preview_time": preview.stat().st_mtime if preview.is_file() else None}


def read_segmenter(ws: Workspace, folder: Path, span: int | None, until: int | None, max_points: int) -> dict[str, Any]:
    state = _json(folder / STATE) or {}
    summary = _summary(ws, folder, _json(folder / CONFIG) or {}, state)
    loss = loss_window(state.get("loss_history") or [], span, until, max_points)
    loss.update(names=["bce"], range="all" if span is None else span)
    return {**summary, "loss": loss}


def applied_counts(ws: Workspace, model_id: str | None) -> dict[str, Any]:
    """Per side: faces, faces with an applied mask, and those whose mask is of the weights ``model_id`` (applied
    with or without ``--flip-average``)."""
    from facelab.seg.store import FLIP_SUFFIX, mask_info

    out = {}
    for side in ("src", "dst"):
        faces = applied = current = 0
        for p in ws.aligned_paths(side) if ws.aligned_dir(side).is_dir() else []:
            faces += 1
            try:
                info = mask_info(read_record(p))
            except FaceFileError:
                continue
            if info is not None:
                applied += 1
                current += str(info.get("model", "")).removesuffix(FLIP_SUFFIX) == model_id
        out[side] = {"faces": faces, "applied": applied, "current": current}
    return {"model": model_id, "sides": out}
