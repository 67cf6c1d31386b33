"""The Training page: the workspace's face-swap models, their loss history and previews, and the job training each.

Everything here is read from what training already writes (``state.json`` at each save, ``preview.jpg`` and
``previews/<prefix>preview_<iteration>.jpg`` at each preview) and from the job's own figures
(``/api/jobs/{id}/points``), so an open page adds no work to the training loop. Starting, stopping and the
Save now / Backup now / refresh-preview requests use the core API (``POST /api/steps/train``,
``/api/jobs/{id}/cancel``, ``/api/jobs/{id}/ask/...``).

API:

- ``GET /api/train/models``: ``{"models": [summary, ...], "columns": [...]}``, one summary per model (and per
  ``gpuN_`` variant), plus a placeholder for a running training job whose model has no save yet.
- ``GET /api/train/models/{name}?prefix=&range=all|N&until=I&points=2000``: one model with its preview history
  and its loss history of the last ``N`` iterations before ``until`` (default: the last saved), averaged over
  neighbours down to at most ``points`` points.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request

from facelab.errors import SettingsError
from facelab.train.checkpoint import CONFIG, PREVIEW, PREVIEWS, STATE, SWAP
from facelab.train.preview import COLUMNS
from facelab.ui import files
from facelab.workspace import Workspace

MAX_POINTS = 2000  # loss-history points sent per request at most (a canvas is about as wide)
RANGES = (5_000, 10_000, 50_000)  # the page's range switch besides "all" (the seed's L key cycles through them)
_PREFIX = re.compile(r"^(gpu\d+_)?$")


def register(app, state, templates) -> None:
    state.pages.append(("/train", "train", "Training"))
    ws: Workspace = state.ws

    @app.get("/train", include_in_schema=False)
    async def page(request: Request):
        return templates.TemplateResponse(request, "train.html", {
            "title": "Training", "pages": state.pages, "page": "train", "workspace": str(ws.root)})

    @app.get("/api/train/models")
    async def models():
        found = await asyncio.to_thread(list_models, ws)
        running = state.jobs.running()
        for m in found:
            m["job"] = training_job(running, m["name"])
        names = {m["name"] for m in found}
        for job in running:  # a new model shows from its start, before its first save
            name = trained_model(job)
            if name is not None and name not in names:
                names.add(name)
                found.append({"name": name, "prefix": "", "architecture": None, "iteration": 0, "saved": None,
                              "target": None, "preview": None, "unsaved": True, "job": training_job(running, name)})
        return {"models": found, "columns": list(COLUMNS), "ranges": list(RANGES)}

    @app.get("/api/train/models/{name}")
    async def model(name: str, prefix: str = "", range: str = "all", until: int | None = None,  # noqa: A002
                    points: int = MAX_POINTS):
        folder = model_folder(ws, name, prefix)
        span = parse_range(range)
        if not 2 <= points <= MAX_POINTS:
            raise SettingsError(f"points: {points} is not within 2..{MAX_POINTS}", f"ask for at most {MAX_POINTS} points")
        found = await asyncio.to_thread(read_model, ws, folder, prefix, span, until, points)
        found["job"] = training_job(state.jobs.running(), name)
        return found


# -- reading model folders


def model_folder(ws: Workspace, name: str, prefix: str = "") -> Path:
    """The folder of model ``name`` (a plain folder name under ``model/``); a :class:`files.FileIdError` (404)
    for a name that is not one, or a folder without that model."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise files.FileIdError(f"{name!r} is not a model name", "pick a model the Training page lists")
    if not _PREFIX.match(prefix):
        raise SettingsError(f"prefix: {prefix!r} is not a model variant prefix", "leave it empty, or gpuN_")
    folder = ws.model_dir(name)
    if not (folder / (prefix + CONFIG)).is_file():
        raise files.FileIdError(f"model/{name} holds no {prefix}{CONFIG}", "train it first, or reload the page")
    return folder


def parse_range(text: str) -> int | None:
    """``"all"`` -> None, else a positive whole number of iterations."""
    if text == "all":
        return None
    try:
        span = int(text)
    except ValueError:
        span = 0
    if span < 1:
        raise SettingsError(f"range: {text!r} is neither 'all' nor a number of iterations >= 1",
                            f"use all or one of {', '.join(map(str, RANGES))}")
    return span


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    """A summary of every face-swap model (and ``gpuN_`` variant) under ``model/``, by name."""
    out = []
    root = ws.model_root
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        for config in sorted(folder.glob(f"*{CONFIG}")):
            prefix = config.name[: -len(CONFIG)]
            if not _PREFIX.match(prefix):
                continue
            summary = _summary(ws, folder, prefix)
            if summary is not None:
                out.append(summary)
    return out


def _summary(ws: Workspace, folder: Path, prefix: str, state: dict | None = None) -> dict[str, Any] | None:
    cfg = _json(folder / (prefix + CONFIG))
    if cfg is None:
        return {"name": folder.name, "prefix": prefix, "broken": True}
    if cfg.get("kind", SWAP) != SWAP:  # an enhancer trains with its own step
        return None
    state_path = folder / (prefix + STATE)
    state = _json(state_path) if state is None else state
    if state is None:
        return {"name": folder.name, "prefix": prefix, "architecture": cfg.get("model"), "broken": True}
    options = state.get("options") if isinstance(state.get("options"), dict) else cfg.get("options") or {}
    preview = folder / (prefix + PREVIEW)
    return {"name": folder.name, "prefix": prefix, "architecture": cfg.get("model"),
            "resolution": (cfg.get("config") or {}).get("resolution"), "iteration": int(state.get("iteration", 0)),
            "saved": state_path.stat().st_mtime, "elapsed_seconds": state.get("elapsed_seconds"),
            "target": options.get("target_iteration"), "batch_size": options.get("batch_size"),
            "preview": files.file_id(ws, preview) if preview.is_file() else None,
            "preview_time": preview.stat().st_mtime if preview.is_file() else None}


def preview_history(ws: Workspace, folder: Path, prefix: str = "") -> list[list]:
    """``[[iteration, file id], ...]`` of the model's kept previews, by iteration."""
    pattern = re.compile(rf"^{re.escape(prefix)}preview_(\d+)\.jpg$")
    found = []
    for p in (folder / PREVIEWS).iterdir() if (folder / PREVIEWS).is_dir() else []:
        m = pattern.match(p.name)
        if m and p.is_file():
            found.append([int(m.group(1)), files.file_id(ws, p)])
    return sorted(found)


def loss_window(history: list, span: int | None, until: int | None = None, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """The rows ``[iteration, loss, ...]`` of ``history`` within the last ``span`` iterations up to ``until`` (None:
    all, and up to the last row), averaged over runs of neighbours down to at most ``max_points`` rows (each keeps
    the iteration of its last row)."""
    rows = np.asarray([r for r in history if isinstance(r, (list, tuple)) and len(r) >= 2], np.float64)
    if rows.size == 0:
        return {"points": [], "total": 0, "decimated": False}
    end = rows[-1, 0] if until is None else float(until)
    keep = rows[:, 0] <= end
    if span is not None:
        keep &= rows[:, 0] > end - span
    rows = rows[keep]
    total = len(rows)
    if total > max_points:
        edges = np.linspace(0, total, max_points + 1).round().astype(int)
        sums = np.add.reduceat(rows[:, 1:], edges[:-1], axis=0)
        means = sums / np.diff(edges)[:, None]
        rows = np.column_stack([rows[edges[1:] - 1, 0], means])
    points = [[int(r[0]), *(round(float(v), 6) for v in r[1:])] for r in rows]
    return {"points": points, "total": total, "decimated": total > max_points}


def read_model(ws: Workspace, folder: Path, prefix: str, span: int | None, until: int | None,
               max_points: int = MAX_POINTS) -> dict[str, Any]:
    """One model: its summary, preview history, and loss history in the window (see :func:`loss_window`)."""
    state = _json(folder / (prefix + STATE)) or {}
    summary = _summary(ws, folder, prefix, state) or {"name": folder.name, "prefix": prefix, "broken": True}
    loss = loss_window(state.get("loss_history") or [], span, until, max_points)
    loss.update(names=["src", "dst"], range="all" if span is None else span)
    return {**summary, "history": preview_history(ws, folder, prefix), "loss": loss}


# -- which job trains a model


def trained_model(job: dict[str, Any]) -> str | None:
    """The model folder a running job's ``writes`` say it trains (``model/<name>``), or None."""
    if job.get("step") != "train":
        return None
    return next((w.split("/", 1)[1] for w in job.get("writes", []) if w.startswith("model/")), None)


def training_job(running: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """``{"id", "external", "title"}`` of the running job that trains model ``name``, or None."""
    for job in running:
        if trained_model(job) == name:
            return {"id": job["id"], "external": bool(job.get("external")), "title": job.get("title", "")}
    return None
