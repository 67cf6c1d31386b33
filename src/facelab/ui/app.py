"""The UI's web app: pages, the JSON API, the event stream and workspace files by id.

``create_app(ws, token, host, port, marker)`` returns the FastAPI app wrapped in the security guard
(:class:`facelab.ui.security.Guard`); :func:`facelab.ui.server.serve` runs it. Pages are server-rendered
templates that load one plain JavaScript module each from ``/static``; everything they show comes from
``/api/...``. Pages of their own (faces, training, merger, editors) add their routes with
:func:`facelab.ui.routes.register`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from facelab.errors import FacelabError, SettingsError
from facelab.fileio import encode_image, read_image
from facelab.provenance.marker import Marker
from facelab.ui import files
from facelab.ui.jobs import JobConflict, JobManager, writes_of
from facelab.ui.overview import overview
from facelab.ui.security import Guard, allowed_hosts
from facelab.ui.steps import STEPS
from facelab.workspace import Workspace

HERE = Path(__file__).parent
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4",
               ".webp": "image/webp"}
SHOWN_AS_PNG = (".tif", ".tiff", ".bmp")
"""Frame formats ``/files`` converts to PNG (a plate's frames; browsers show none of them)."""
DOWNLOADS = (".dfm", ".onnx")
"""Suffixes ``/files`` serves as a download: the exported models (`facelab export`, the Workspace page's Export)."""
PAGES = (("/", "workspace", "Workspace"), ("/jobs", "jobs", "Jobs"))
"""``(path, template, title)`` of the pages in the navigation bar, in order (routes modules add theirs)."""


class UIState:
    """What every request handler shares: the workspace, its jobs, and the marker for what the UI writes."""

    def __init__(self, ws: Workspace, marker: Marker) -> None:
        self.ws, self.marker, self.jobs = ws, marker, JobManager(ws)
        self.pages: list[tuple[str, str, str]] = list(PAGES)


def create_app(ws: Workspace, token: str, host: str = "127.0.0.1", port: int = 7860, *, marker: Marker):
    """The ASGI app for workspace ``ws``: FastAPI routes behind the token/Host/Origin guard."""
    from facelab.ui import routes

    app = FastAPI(title="facelab", docs_url=None, redoc_url=None, openapi_url=None)
    state = UIState(ws, marker)
    app.state.ui = state
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(FacelabError)
    async def facelab_error(request: Request, e: FacelabError):
        status = 409 if isinstance(e, JobConflict) else 404 if isinstance(e, files.FileIdError) else 400
        return JSONResponse({"error": e.message, "hint": e.hint}, status_code=status)

    def page(template: str, title: str):
        async def render(request: Request):
            return templates.TemplateResponse(request, f"{template}.html", {
                "title": title, "pages": state.pages, "page": template, "workspace": str(ws.root)})
        return render

    for path, template, title in PAGES:
        app.get(path, include_in_schema=False)(page(template, title))

    # -- workspace and steps

    @app.get("/api/workspace")
    async def workspace_overview():
        return await asyncio.to_thread(overview, ws)

    @app.get("/api/steps")
    async def steps():
        return [s.form() for s in STEPS.values()]

    @app.post("/api/steps/{name}")
    async def start_step(name: str, request: Request):
        step = STEPS.get(name)
        if step is None:
            raise SettingsError(f"no step {name!r}", f"steps: {', '.join(STEPS)}")
        body = await json_body(request)
        side = body.get("side")
        if step.sides and side not in step.sides:
            raise SettingsError(f"{name}: side {side!r} is not one of {', '.join(step.sides)}", "pick src or dst")
        values = step.values(dict(body.get("values") or {}))
        title = f"{name} {side}" if step.sides else name
        job = state.jobs.start(name, title, writes_of(name, side, values),
                               lambda job, log: step.run(ws, side if step.sides else None, values, job, log, marker))
        return job.to_dict()

    # -- jobs

    @app.get("/api/jobs")
    async def list_jobs():
        return state.jobs.all()

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str, since: int | None = None):
        job = state.jobs.get(job_id)
        if job is None:
            raise files.FileIdError(f"no job {job_id}", "reload the Jobs page")
        return job.to_dict(since=since)

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str):
        if not state.jobs.cancel(job_id):
            raise SettingsError(f"job {job_id} is not running", "reload the Jobs page")
        return {"cancelled": job_id}

    @app.post("/api/jobs/{job_id}/ask/{what}")
    async def ask_job(job_id: str, what: str):
        """Ask a running training job to save, back up or draw a preview now (between two iterations)."""
        if what not in ("save", "backup", "preview"):
            raise SettingsError(f"cannot ask a job for {what!r}", "ask for save, backup or preview")
        if not state.jobs.ask(job_id, what):
            raise SettingsError(f"job {job_id} is not running", "reload the page")
        return {"asked": what}

    @app.get("/api/jobs/{job_id}/points")
    async def job_points(job_id: str, since: int = 0):
        """The job's figures (training losses and ms per iteration) from index ``since`` on."""
        job = state.jobs.get(job_id)
        if job is None:
            raise files.FileIdError(f"no job {job_id}", "reload the page")
        return {"points": job.points[since:], "next": len(job.points)}

    @app.get("/api/events")
    async def events(request: Request):
        """Server-sent events: a ``jobs`` message with every job whenever one changes (at most 5 a second), and a
        keep-alive comment every 15 s."""

        async def stream():
            version, last_sent = -1, 0.0
            seen_lines: dict[str, int] = {}
            while not await request.is_disconnected():
                current = await asyncio.to_thread(state.jobs.wait, version, 1.0)
                loop_time = asyncio.get_running_loop().time()
                if current != version or loop_time - last_sent > 5:
                    version, last_sent = current, loop_time
                    out = []
                    for j in state.jobs.all():
                        if not j["external"]:
                            full = state.jobs.get(j["id"])
                            j = full.to_dict(since=seen_lines.get(j["id"], max(0, full.log_seq - 50)))
                            seen_lines[j["id"]] = j["log_seq"]
                        out.append(j)
                    yield f"event: jobs\ndata: {json.dumps(out)}\n\n"
                    await asyncio.sleep(0.2)
                elif loop_time - last_sent > 15:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    # -- workspace files by id

    @app.get("/files/{fid:path}")
    async def workspace_file(fid: str):
        path = files.resolve(ws, fid)
        if path.suffix.lower() in DOWNLOADS:
            return FileResponse(path, media_type="application/octet-stream", filename=path.name,
                                headers={"cache-control": "no-cache"})
        if path.suffix.lower() in SHOWN_AS_PNG:  # a plate's TIFF or BMP frame: browsers show neither
            png = await asyncio.to_thread(lambda: encode_image(read_image(path), ".png"))
            return Response(png, media_type="image/png", headers={"cache-control": "no-cache"})
        media = MEDIA_TYPES.get(path.suffix.lower())
        if media is None:
            raise files.FileIdError(f"{fid}: the UI shows images and videos only (and gives exported models)",
                                    "open other files from the workspace folder")
        return FileResponse(path, media_type=media, headers={"cache-control": "no-cache"})

    routes.register(app, state, templates)
    return Guard(app, token, allowed_hosts(host, port))


async def json_body(request: Any) -> dict:
    """The request body as a JSON object; a SettingsError (400) for anything else."""
    try:
        body = await request.json()
    except ValueError as e:
        raise SettingsError(f"the request body is not JSON: {e}", "send a JSON object") from None
    if not isinstance(body, dict):
        raise SettingsError("the request body is not a JSON object", "send a JSON object")
    return body
