"""The Face sets page: a side's faces as a grid, sorted and filtered, with delete to the trash, restore, undo
and redo, and one face in detail.

The API is a thin layer over :mod:`facelab.faceset` (browse, faceid, detail, thumbs, trash); faces are named by
their ids (``data_src/aligned/00012_0.jpg``) and every id or name from the client goes through the library's
checks (:func:`facelab.faceset.faceid.locate`, :func:`facelab.faceset.trash.delete_faces` ...), never through a
path of our own.

- ``GET /api/faces/{side}``: the listing, compact: one short array per face (``fields`` names the columns), so
  10,000 faces are one small JSON document. A first listing that would decode many faces runs as a job
  (``measure``) and answers with the names only meanwhile.
- ``GET /api/faces/thumb/{id}?v=VERSION&px=128``: the face's JPEG thumbnail from the disk cache. ``VERSION``
  (the listing's ``version`` column: inode, mtime and size) makes the URL name one version of the file, so the
  answer may be cached for a year; without it (or with an old one) the browser must ask again.
- ``GET /api/faces/detail/{id}``, ``overlay/{id}``, ``mask/{id}``, ``frame/{frame id}``: one face in detail.
- ``POST /api/faces/{side}/order``: the order a sort method gives, renaming nothing; the methods the listing's
  cache answers (:data:`facelab.faceset.browse.CHEAP_METHODS`) answer at once, the others run as a job whose
  result ``GET /api/faces/order/{job}`` gives. ``POST /api/faces/{side}/apply-sort`` runs the real sort step.
- ``POST /api/faces/{side}/delete|restore|undo|redo``, ``GET /api/faces/{side}/history``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from facelab.errors import SettingsError
from facelab.fileio import encode_image
from facelab.faceset import browse, detail, thumbs, trash
from facelab.faceset import sort as fsort
from facelab.faceset.faceid import FaceNotFound, face_id, frame_path, locate
from facelab.faceset.files import face_files
from facelab.stages import Summary
from facelab.ui.files import FileIdError
from facelab.workspace import Workspace, check_side

MEASURE_IN_REQUEST = 300
"""A listing that would decode more faces than this runs as a job (with progress and Cancel) instead of
inside the request; later listings read the cache."""
FIELDS = ("name", "version", "source", "index", "in_frame", "blur", "yaw", "pitch", "error")
YEAR = "private, max-age=31536000, immutable"
MAX_NAMES = 100_000
KEPT_ORDERS = 8  # results of finished order jobs kept for the page to fetch


def version(path: Path) -> str:
    """What a URL of ``path``'s images carries so a new version of the file gets a new URL: inode, mtime, size."""
    st = path.stat()
    who = f"{st.st_ino:x}" if st.st_ino else path.name
    return f"{who}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _row(e: browse.FaceEntry, folder: Path) -> list[Any] | None:
    try:
        v = version(folder / e.name)
    except FileNotFoundError:
        return None  # moved since it was listed
    r1 = (lambda x: None if x is None else round(x, 1))
    return [e.name, v, e.source, e.face_index, e.faces_in_frame, r1(e.blur_score), r1(e.yaw), r1(e.pitch), e.error]


def _folder(ws: Workspace, side: str, where: str) -> Path:
    return ws.aligned_dir(side) if where == "aligned" else ws.trash_dir(side)


def _files(ws: Workspace, side: str, where: str) -> list[Path]:
    return ws.aligned_paths(side) if where == "aligned" else face_files(ws.trash_dir(side))


def listing(ws: Workspace, side: str, where: str, sort: str | None, filters: browse.FaceFilter,
            measure_limit: int | None = None) -> dict[str, Any]:
    """The page's listing of a side's ``aligned`` (or ``trash``) folder: ``faces`` rows of :data:`FIELDS`
    (those the filters keep), ``total`` the faces of the folder; :class:`browse.MeasureNeeded` when more than
    ``measure_limit`` faces would have to be measured first."""
    entries = browse.list_faces(ws, side, where=where, sort=sort, filters=filters, measure_limit=measure_limit)
    folder = _folder(ws, side, where)
    rows = [r for r in (_row(e, folder) for e in entries) if r is not None]
    total = len(_files(ws, side, where)) if filters != browse.FaceFilter() else len(rows)
    return {"side": side, "where": where, "sort": sort or "name", "prefix": face_id(ws, folder) + "/",
            "fields": list(FIELDS), "faces": rows, "count": len(rows), "total": total, **counts(ws, side)}


def names_only(ws: Workspace, side: str, where: str) -> dict[str, Any]:
    """The listing before the faces are measured: names and versions, the other columns empty."""
    rows = []
    for p in _files(ws, side, where):
        try:
            rows.append([p.name, version(p), None, None, 0, None, None, None, None])
        except FileNotFoundError:
            continue
    return {"side": side, "where": where, "sort": "name", "prefix": face_id(ws, _folder(ws, side, where)) + "/",
            "fields": list(FIELDS), "faces": rows, "count": len(rows), "total": len(rows), **counts(ws, side)}


def counts(ws: Workspace, side: str) -> dict[str, Any]:
    trash_dir = ws.trash_dir(side)
    in_trash = len(face_files(trash_dir)) if trash_dir.is_dir() else 0
    return {"in_trash": in_trash, "no_face": len(browse.frames_without_face(ws, side)), "history": trash.history(ws, side)}


def filters_of(q: dict[str, str]) -> browse.FaceFilter:
    def number(key: str) -> float | None:
        raw = q.get(key)
        if raw in (None, ""):
            return None
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a number, got {raw[:40]!r}", "give a number such as 10") from None

    return browse.FaceFilter(several_faces=q.get("several") in ("1", "true"), blur_lowest_percent=number("blur_lowest"),
                             blur_below=number("blur_below"), unreadable=q.get("unreadable") in ("1", "true"))


def _names(body: dict[str, Any]) -> list[str]:
    names = body.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SettingsError("give the faces as {\"names\": [\"00012_0.jpg\", ...]}", "select one face or more")
    if len(names) > MAX_NAMES:
        raise SettingsError(f"{len(names)} names in one request (at most {MAX_NAMES})", "delete them in parts")
    return names


def action_dict(a: trash.Action | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"id": a.id, "op": a.op, "kind": a.kind, "moved": [list(m) for m in a.moved], "missing": a.missing}


def image_response(data: bytes, media: str, v: str | None, current: str, request: Request) -> Response:
    """``data`` with cache headers: cached for a year when the URL names the current version ``current``."""
    etag = f'"{current}"'
    headers = {"etag": etag, "cache-control": YEAR if v == current else "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)


def _px(px: int) -> int:
    if not thumbs.SIZES[0] <= px <= thumbs.SIZES[1]:
        raise SettingsError(f"px must be {thumbs.SIZES[0]}..{thumbs.SIZES[1]}, got {px}", "use e.g. 128")
    return px


def _method(body: dict[str, Any]) -> tuple[str, int]:
    method, target = body.get("method"), body.get("target", 2000)
    if method not in fsort.METHODS:
        raise SettingsError(f"unknown sort method {str(method)[:40]!r}", f"use one of {', '.join(fsort.METHODS)}")
    if isinstance(target, bool) or not isinstance(target, int) or target < 1:
        raise SettingsError(f"target must be a whole number of faces, 1 or more, got {target!r}", "e.g. 2000")
    return method, target


def _reference(ws: Workspace, side: str, method: str, body: dict[str, Any]) -> Path | None:
    """The reference face's file for ``identity`` (a face id from the grid, checked by ``locate``)."""
    if method != "identity":
        return None
    ref = body.get("reference")
    if not ref:
        raise SettingsError("the identity order needs a reference face", "open a face and choose 'Sort by likeness'")
    return locate(ws, ref)[1]


def register(app, state, templates) -> None:
    ws: Workspace = state.ws
    state.pages.append(("/faces", "faces", "Face sets"))
    orders: dict[str, dict[str, Any]] = {}  # order job id -> its result (the last KEPT_ORDERS)

    @app.exception_handler(FaceNotFound)
    async def not_found(request: Request, e: FaceNotFound):
        return JSONResponse({"error": e.message, "hint": e.hint}, status_code=404)

    @app.get("/faces", include_in_schema=False)
    async def page(request: Request):
        methods = [{"name": m.name, "help": m.help, "cheap": m.name in browse.CHEAP_METHODS} for m in fsort.METHODS.values()]
        return templates.TemplateResponse(request, "faces.html", {
            "title": "Face sets", "pages": state.pages, "page": "faces", "workspace": str(ws.root), "methods": methods})

    # -- listing

    @app.get("/api/faces/{side}")
    async def list_faces(side: str, request: Request):
        """The listing; ``{"measuring": job, ...names only}`` while a first listing measures the faces."""
        q = dict(request.query_params)
        check_side(side)
        where = q.get("where", "aligned")
        sort = q.get("sort") or None
        filters = filters_of(q)
        if where not in browse.WHERE:
            raise SettingsError(f"where must be one of {', '.join(browse.WHERE)}, got {where[:40]!r}", "use aligned or trash")
        job = running_measure(side)  # it holds the side's face list: wait for it with the names only
        if job is None:
            try:
                out = await asyncio.to_thread(listing, ws, side, where, sort, filters, MEASURE_IN_REQUEST)
            except browse.MeasureNeeded:
                job = measure(side, where)
        if job is not None:
            return {**await asyncio.to_thread(names_only, ws, side, where), "measuring": job}
        # plain JSON of plain values: skips FastAPI's per-value encoder (a tenth of a second at 10,000 faces)
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")

    def running_measure(side: str) -> str | None:
        """The id of the running job that measures ``side``'s faces, if any."""
        return next((j["id"] for j in state.jobs.running() if f"faces-list/{side}" in j["writes"]), None)

    def measure(side: str, where: str) -> str:
        """Start the job measuring ``side``'s faces (the first listing of a large set) and return its id."""
        def work(job, log):
            from facelab import jobs

            start = time.perf_counter()
            with jobs.running(job):
                n = len(browse.list_faces(ws, side, where=where))
            return Summary(f"face list {side}", counts={"faces": n}, seconds=time.perf_counter() - start)

        return state.jobs.start("face-list", f"measure {side} faces (blur, pose) for the face list", {f"faces-list/{side}"},
                                work).id

    @app.get("/api/faces/{side}/no-face")
    async def no_face(side: str):
        """Frames where extract found no face (frames, not faces), with their image versions."""
        ids = await asyncio.to_thread(browse.frames_without_face, ws, check_side(side))
        frames = []
        for fid in ids:
            try:
                frames.append({"id": fid, "name": fid.rpartition("/")[2], "version": version(frame_path(ws, fid))})
            except (FileNotFoundError, FaceNotFound):
                continue
        return {"side": side, "frames": frames,
                "hint": f"`facelab extract {side} --manual-fix` lists them for manual extraction (manual_todo.json); "
                        f"`--redo-deleted-debug` with other options extracts them again"}

    # -- images

    @app.get("/api/faces/thumb/{fid:path}")
    def thumbnail(fid: str, request: Request, v: str | None = None, px: int = 128):
        # a plain function (FastAPI runs it on its thread pool): one thread hop for the whole request, where an
        # async handler with FileResponse took several; a thumbnail is a few kilobytes, read at once
        _, path = locate(ws, fid)
        current = version(path)
        etag = f'"{current}-{px}"'
        headers = {"etag": etag, "cache-control": YEAR if v == current else "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        try:
            data = thumbs.thumbnail(ws, fid, _px(px)).read_bytes()
        except FileNotFoundError:  # pruned between made and read: make it again
            data = thumbs.thumbnail(ws, fid, px).read_bytes()
        return Response(data, media_type="image/jpeg", headers=headers)

    @app.get("/api/faces/detail/{fid:path}")
    async def face_detail(fid: str):
        out = await asyncio.to_thread(detail.face_detail, ws, fid)
        out["version"] = version(locate(ws, fid)[1])
        if out["source_frame"]:
            out["source_frame_version"] = version(frame_path(ws, out["source_frame"]))
        return out

    @app.get("/api/faces/overlay/{fid:path}")
    async def overlay(fid: str, request: Request, v: str | None = None):
        current = version(locate(ws, fid)[1])
        data = await asyncio.to_thread(lambda: encode_image(detail.face_overlay(ws, fid), ".jpg", 92))
        return image_response(data, "image/jpeg", v, current, request)

    @app.get("/api/faces/mask/{fid:path}")
    async def mask(fid: str, request: Request, v: str | None = None):
        current = version(locate(ws, fid)[1])
        data = await asyncio.to_thread(lambda: encode_image(detail.face_mask(ws, fid), ".png"))
        return image_response(data, "image/png", v, current, request)

    @app.get("/api/faces/frame/{frame:path}")
    async def frame(frame: str, request: Request, v: str | None = None, px: int = 480):
        path = frame_path(ws, frame)
        current = version(path)

        def shrink() -> bytes:
            return encode_image(thumbs.thumbnail_image(path.read_bytes(), _px(px), frame), ".jpg", thumbs.QUALITY)

        return image_response(await asyncio.to_thread(shrink), "image/jpeg", v, current, request)

    # -- orders

    @app.post("/api/faces/{side}/order")
    async def order(side: str, request: Request):
        """``{"method", "order", "trash", "skipped"}`` at once for a cheap method, else ``{"job": ...}``."""
        from facelab.ui.app import json_body

        body = await json_body(request)
        check_side(side)
        method, target = _method(body)
        reference = _reference(ws, side, method, body)
        if method in browse.CHEAP_METHODS:
            plan = await asyncio.to_thread(browse.sort_plan, ws, side, method, target=target)
            return {"method": method, "order": plan.order, "trash": plan.trash, "skipped": plan.skipped}

        named = threading.Event()  # the job's id is known (set right after start; a tiny set may finish first)
        box: dict[str, str] = {}

        def work(job, log):
            from facelab import jobs
            from facelab.stages.sort import reference_embedding

            start = time.perf_counter()
            with jobs.running(job):
                emb = reference_embedding(reference) if reference is not None else None
                plan = browse.sort_plan(ws, side, method, target=target, reference=emb)
            named.wait(10)
            orders[box["id"]] = {"method": method, "order": plan.order, "trash": plan.trash, "skipped": plan.skipped}
            for old in list(orders)[:-KEPT_ORDERS]:
                orders.pop(old, None)  # two order jobs may finish at once
            return Summary(f"order {side} by {method} (nothing renamed)", counts={"faces": len(plan.order) + len(plan.trash)},
                           seconds=time.perf_counter() - start)

        title = f"order {side} by {method}" + (f" (like {reference.name})" if reference is not None else "")
        started = state.jobs.start("face-order", title, {f"faces-order/{side}"}, work)
        box["id"] = started.id
        named.set()
        return {"job": started.to_dict()}

    @app.get("/api/faces/order/{job_id}")
    async def order_result(job_id: str):
        job = state.jobs.get(job_id)
        if job is None or job.step != "face-order":
            raise FileIdError(f"no order job {job_id}", "sort again")
        if job.state == "done" and job_id in orders:
            return {"state": "done", **orders[job_id]}
        return {"state": job.state, "error": job.error, "hint": job.hint}

    @app.post("/api/faces/{side}/apply-sort")
    async def apply_sort(side: str, request: Request):
        """Run the sort step (renames the files, ``final``/``oneface`` move faces to the trash) as a job."""
        from facelab.ui.app import json_body
        from facelab.ui.jobs import writes_of
        from facelab.ui.steps import STEPS

        body = await json_body(request)
        check_side(side)
        method, target = _method(body)
        step = STEPS["sort"]
        values = step.values({"by": method, "target": target})
        reference = _reference(ws, side, method, body)
        if reference is not None:
            values["reference"] = reference  # a face of the set, found by its id (the form takes no paths)
        job = state.jobs.start("sort", f"sort {side}", writes_of("sort", side, values),
                               lambda job, log: step.run(ws, side, values, job, log, state.marker))
        return job.to_dict()

    # -- trash

    async def act(side: str, fn, *args) -> dict[str, Any]:
        check_side(side)
        action = await asyncio.to_thread(fn, ws, side, *args)
        return {"action": action_dict(action), **await asyncio.to_thread(counts, ws, side)}

    @app.post("/api/faces/{side}/delete")
    async def delete(side: str, request: Request):
        from facelab.ui.app import json_body

        return await act(side, trash.delete_faces, _names(await json_body(request)))

    @app.post("/api/faces/{side}/restore")
    async def restore(side: str, request: Request):
        from facelab.ui.app import json_body

        return await act(side, trash.restore_faces, _names(await json_body(request)))

    @app.post("/api/faces/{side}/undo")
    async def undo(side: str):
        return await act(side, trash.undo)

    @app.post("/api/faces/{side}/redo")
    async def redo(side: str):
        return await act(side, trash.redo)

    @app.get("/api/faces/{side}/history")
    async def history(side: str):
        return await asyncio.to_thread(trash.history, ws, check_side(side))

