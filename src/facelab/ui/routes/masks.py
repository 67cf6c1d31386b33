"""The Mask editor page: include and exclude polygons drawn on aligned faces (SPEC section 5, "Mask editor").

The polygons live in each face file's own metadata (:mod:`facelab.masks.polygons`), where the trainable
segmentation reads them; the seed's moves to ``aligned_confirmed`` and ``aligned_skipped`` are
:func:`facelab.stages.mask_editor.move_face`. Writes and moves of one side are serialised by the side's lock.

API (``side`` is ``src`` or ``dst``; a face is named by its file name, found in whichever of ``aligned``,
``aligned_confirmed`` and ``aligned_skipped`` holds it):

- ``GET  /api/masks/{side}/faces?place=aligned|confirmed|skipped|all&order=name|uncertainty``: the faces, each
  with its place, image id, number of polygons and the segmenter's uncertainty about it (from the mask
  ``facelab seg apply`` wrote, else from a live mask this server already computed, else null), and how many
  faces each place holds. ``order=uncertainty``: least sure first, faces without a figure last (by name).
- ``GET  /api/masks/{side}/faces/{name}``: one face: image id, size, face type, landmarks (face pixels),
  polygons, and ``seg``: its applied mask's model id and uncertainty (``applied``, or null) and the save id of
  the workspace's segmenter (``segmenter``, or null).
- ``GET  /api/masks/{side}/faces/{name}/segmask``: the segmenter's mask of the face (PNG, white = face, the
  face's size): the applied one, else computed live with ``model/segmenter`` (:mod:`facelab.ui.seglive`);
  headers ``x-seg-source`` (``applied`` or ``live``), ``x-seg-model``, ``x-seg-uncertainty``. 404 when the
  face has no applied mask and the workspace no segmenter.
- ``PUT  /api/masks/{side}/faces/{name}/polygons`` ``{polygons: [{kind, points}]}``: store them (``[]``
  removes them).
- ``POST /api/masks/{side}/faces/{name}/move`` ``{to: confirmed|skipped|aligned}``.
- ``POST /api/masks/{side}/preview`` ``{size, polygons}``: the mask they rasterize to, as the trainer sees
  it (PNG, white = face).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import Request
from fastapi.responses import Response

from facelab.errors import FaceFileError, FacelabError, SettingsError
from facelab.face_checks import safe_name
from facelab.faceimage import read_record
from facelab.faceset.browse import file_key
from facelab.masks.polygons import Polygon, polygons_of, rasterize, write_polygons
from facelab.stages.mask_editor import PLACES, move_face, review_dirs
from facelab.seg.store import mask_info, mask_of
from facelab.ui import files
from facelab.ui.app import json_body
from facelab.ui.seglive import LiveSegmenter
from facelab.workspace import Workspace, check_side

MAX_PREVIEW = 2048  # px: the largest mask preview drawn (faces are 8192 at most; the page shows it small)
ORDERS = ("name", "uncertainty")


def register(app, state, templates) -> None:
    ws: Workspace = state.ws
    locks = {"src": threading.Lock(), "dst": threading.Lock()}
    live = state.seg_live = getattr(state, "seg_live", None) or LiveSegmenter(ws)
    summaries = {"src": _Summaries(), "dst": _Summaries()}
    state.pages.append(("/masks", "masks", "Mask editor"))

    @app.get("/masks", include_in_schema=False)
    async def masks_page(request: Request):
        return templates.TemplateResponse(request, "masks.html", {
            "title": "Mask editor", "pages": state.pages, "page": "masks", "workspace": str(ws.root)})

    def locked(side: str, work):
        lock = locks[check_side(side)]

        def run():
            with lock:
                return work()

        return asyncio.to_thread(run)

    @app.get("/api/masks/{side}/faces")
    async def list_faces(side: str, place: str = "aligned", order: str = "name"):
        if place not in (*PLACES, "all"):
            raise SettingsError(f"no place {place!r}", f"places: {', '.join(PLACES)}, all")
        if order not in ORDERS:
            raise SettingsError(f"no order {order!r}", f"orders: {', '.join(ORDERS)}")
        return await locked(side, lambda: _list(ws, side, place, order, live, summaries[side]))

    @app.get("/api/masks/{side}/faces/{name}")
    async def get_face(side: str, name: str):
        def read() -> dict:
            place, path = _find(ws, side, name)
            rec = _record(path)
            try:
                polygons = [p.to_json() for p in polygons_of(rec)]
                broken = None
            except ValueError as e:  # shown, and replaced by the next save
                polygons, broken = [], str(e)
            return {"name": path.name, "place": place, "id": files.file_id(ws, path), "version": path.stat().st_mtime_ns,
                    "size": rec.size, "face_type": rec.face_type, "source": rec.source_filename,
                    "landmarks": np.round(np.asarray(rec.landmarks, np.float64), 2).tolist(),
                    "polygons": polygons, "broken": broken,
                    "seg": {"applied": _info(rec), "segmenter": live.model_id()}}

        return await locked(side, read)

    @app.get("/api/masks/{side}/faces/{name}/segmask")
    async def segmask(side: str, name: str):
        def find():
            _, path = _find(ws, side, name)
            rec = _record(path)
            try:
                mask = mask_of(rec)
            except FaceFileError as e:
                raise FacelabError(e.message, e.hint) from None
            return path, rec, mask

        path, rec, mask = await locked(side, find)
        if mask is not None:
            info = mask_info(rec) or {}
            source, model, unsure = "applied", str(info.get("model", "")), info.get("uncertainty")
        else:
            try:
                found = await asyncio.to_thread(live.mask, path)
            except FaceFileError as e:
                raise FacelabError(e.message, e.hint) from None
            except FileNotFoundError:
                raise files.FileIdError(f"{path.name} was moved or deleted meanwhile", "reload the page") from None
            if found is None:
                raise files.FileIdError(f"{path.name} has no applied mask and the workspace no segmenter (model/segmenter)",
                                        "train one on the Segmenter page (or `facelab seg train`), then apply it")
            source, model, unsure, mask = "live", found.model_id, found.uncertainty, found.mask

        def encode() -> bytes:
            return cv2.imencode(".png", mask)[1].tobytes()

        headers = {"cache-control": "no-store", "x-seg-source": source, "x-seg-model": model,
                   "x-seg-uncertainty": "" if unsure is None else str(unsure)}
        return Response(await asyncio.to_thread(encode), media_type="image/png", headers=headers)

    @app.put("/api/masks/{side}/faces/{name}/polygons")
    async def put_polygons(side: str, name: str, request: Request):
        polygons = _polygons((await json_body(request)).get("polygons"))

        def write() -> dict:
            _, path = _find(ws, side, name)
            write_polygons(path, polygons)
            return {"name": path.name, "polygons": len(polygons), "version": path.stat().st_mtime_ns}

        return await locked(side, write)

    @app.post("/api/masks/{side}/faces/{name}/move")
    async def move(side: str, name: str, request: Request):
        to = (await json_body(request)).get("to")
        if to not in PLACES:
            raise SettingsError(f"cannot move a face to {to!r}", f"use one of {', '.join(PLACES)}")

        def go() -> dict:
            path = move_face(ws, side, name, to)
            return {"name": path.name, "place": to, "id": files.file_id(ws, path)}

        return await locked(side, go)

    @app.post("/api/masks/{side}/preview")
    async def preview(side: str, request: Request):
        check_side(side)
        body = await json_body(request)
        size = body.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PREVIEW:
            raise SettingsError(f"size: expected a whole number of pixels in 1..{MAX_PREVIEW}, got {size!r}", "send the face's size")
        polygons = _polygons(body.get("polygons"))

        def draw() -> bytes:
            ok, png = cv2.imencode(".png", (rasterize(polygons, size) * 255).astype(np.uint8))
            return png.tobytes()

        return Response(await asyncio.to_thread(draw), media_type="image/png", headers={"cache-control": "no-store"})


def _info(rec) -> dict[str, Any] | None:
    info = mask_info(rec)
    if info is None:
        return None
    u = info.get("uncertainty")
    return {"model": str(info.get("model", "")), "face_type": info.get("face_type"),
            "uncertainty": float(u) if isinstance(u, (int, float)) and not isinstance(u, bool) else None}


class _Summaries:
    """What the face list shows of each face file of one side (polygon count, applied mask, its uncertainty),
    kept per :func:`~facelab.faceset.browse.file_key`: reopening the list, changing side, place or order reads
    no file again (4,800 faces: 4-6 s of metadata reads a listing before), and a face whose file changed (a
    save, `seg apply`) is read anew. Only listings of the side use it, under the side's lock."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[int | None, bool, float | None]] = {}

    def get(self, path: Path, key: str) -> tuple[int | None, bool, float | None]:
        found = self.by_key.get(key)
        if found is None:
            unsure, applied = None, False
            try:
                rec = read_record(path)
                info = _info(rec)
                if info is not None:
                    applied, unsure = True, info["uncertainty"]
                n = len(polygons_of(rec))
            except (FaceFileError, ValueError):
                n = None  # not a face, or polygons facelab cannot read: the editor says so when it opens it
            found = self.by_key[key] = (n, applied, unsure)
        return found

    def forget_old(self, seen: set[str], faces: int) -> None:
        """Keep only the ``seen`` keys once the entries outnumber the side's ``faces`` twice over (faces deleted
        or rewritten since they were read)."""
        if len(self.by_key) > 2 * faces + 1000:
            self.by_key = {k: v for k, v in self.by_key.items() if k in seen}


def _list(ws: Workspace, side: str, place: str, order: str, live: LiveSegmenter, summaries: _Summaries) -> dict[str, Any]:
    dirs = review_dirs(ws, side)
    listed = {p: _face_files(ws, side, p, d) for p, d in dirs.items()}
    model_id = live.model_id()
    out, seen = [], set()
    for p in PLACES if place == "all" else (place,):
        for path in listed[p]:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # moved away while we listed
            key = file_key(path, st)
            seen.add(key)
            n, applied, unsure = summaries.get(path, key)
            if unsure is None and model_id is not None:
                unsure = live.cached_uncertainty(path, st.st_mtime_ns, model_id=model_id)
            out.append({"name": path.name, "place": p, "id": files.file_id(ws, path), "polygons": n,
                        "uncertainty": unsure, "applied": applied})
    summaries.forget_old(seen, sum(len(v) for v in listed.values()))
    if place == "all":
        out.sort(key=lambda f: f["name"])
    if order == "uncertainty":  # least sure first; faces without a figure after, by name (stable)
        out.sort(key=lambda f: (f["uncertainty"] is None, -(f["uncertainty"] or 0.0)))
    return {"side": side, "faces": out, "counts": {p: len(v) for p, v in listed.items()}, "order": order,
            "segmenter": model_id}


def _face_files(ws: Workspace, side: str, place: str, folder: Path) -> list[Path]:
    if place == "aligned":
        return ws.aligned_paths(side)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                  and not p.name.startswith(".") and p.is_file())


def _find(ws: Workspace, side: str, name: str) -> tuple[str, Path]:
    try:
        name = safe_name(name)
    except ValueError as e:
        raise SettingsError(f"bad face file name: {e}", "use the names the page lists") from None
    for place, folder in review_dirs(ws, side).items():
        if (folder / name).is_file():
            return place, folder / name
    raise files.FileIdError(f"no face {name} in data_{side}/aligned, aligned_confirmed or aligned_skipped",
                            "it was moved or deleted meanwhile: reload the page")


def _record(path: Path):
    try:
        return read_record(path)
    except FaceFileError as e:
        raise FacelabError(f"{path.name} is not a face facelab can edit: {e.message}", e.hint) from None


def _polygons(value: Any) -> list[Polygon]:
    if not isinstance(value, list):
        raise SettingsError("polygons: expected a list of {kind, points}", "draw the polygons again")
    out = []
    for i, d in enumerate(value):
        try:
            out.append(Polygon.from_json(d))
        except ValueError as e:
            raise SettingsError(f"polygon {i}: {e}", "a polygon needs at least 3 points, include or exclude") from None
    return out


__all__ = ["register"]
