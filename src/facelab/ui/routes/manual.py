"""The Manual extraction page: place faces by hand on a list of frames (SPEC section 3, "Manual extraction",
"Manual fix", "Re-extract deleted debug").

The library is :class:`facelab.stages.manual.ManualSession` (the frame list, the decisions, writing faces as
``facelab extract`` does) and :func:`facelab.manual_faces.landmarks_in_box`; this module holds one session per
side and serialises every call to it with the side's lock (the session has none of its own). The frame being
worked on stays decoded in memory, so the page's live landmark requests (one per mouse move, at most one in
flight) cost only the landmark model.

API (``side`` is ``src`` or ``dst``):

- ``GET  /api/manual/{side}``: the session (the unfinished one resumed, else the frames waiting) with its
  frames and their status, the settings faces are cut with, and the sizes of the lists on offer.
- ``POST /api/manual/{side}/session`` ``{list, pick}``: start a session on another list: ``pending``,
  ``no_face``, ``deleted_debug``, ``all``, or ``pick`` with ``pick`` naming frames (``00012.png``,
  ``12``, ``12-40``, separated by commas or spaces).
- ``GET  /api/manual/{side}/frames/{name}``: a frame: its image id and size and the faces stored for it.
- ``POST /api/manual/{side}/landmarks`` ``{frame, cx, cy, size, accurate}``: 68 landmarks in the box, and
  the square the aligned face would be cut from.
- ``POST /api/manual/{side}/crop`` ``{points}``: that square for landmarks the user dragged.
- ``POST /api/manual/{side}/accept`` ``{frame, faces: [{points, box}], accurate}``: write the frame's faces.
- ``POST /api/manual/{side}/skip`` ``{frame}``, ``POST /api/manual/{side}/goto`` ``{frame}`` or ``{step}``.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from typing import Any

import cv2
import numpy as np
from fastapi import Request

from facelab import align
from facelab.detect import Detection
from facelab.errors import FacelabError, SettingsError
from facelab.find_faces import FoundFace
from facelab.manual_faces import MIN_BOX
from facelab.stages import extract
from facelab.stages.manual import ManualSession, pending_frames
from facelab.ui import files
from facelab.ui.app import json_body
from facelab.workspace import Workspace, check_side

LISTS = ("pending", "no_face", "deleted_debug", "all", "pick")
"""The frame lists a session can be started on (``pending``: every frame waiting for a person)."""


class _Side:
    """One side's session, its lock, and the decoded frame it is working on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.session: ManualSession | None = None
        self.frame: tuple[str, np.ndarray] | None = None


def register(app, state, templates) -> None:
    ws: Workspace = state.ws
    sides = {"src": _Side(), "dst": _Side()}
    state.pages.append(("/manual", "manual", "Manual extraction"))

    @app.get("/manual", include_in_schema=False)
    async def manual_page(request: Request):
        return templates.TemplateResponse(request, "manual.html", {
            "title": "Manual extraction", "pages": state.pages, "page": "manual", "workspace": str(ws.root)})

    def held(side: str) -> _Side:
        return sides[check_side(side)]

    def session(s: _Side, side: str) -> ManualSession:
        if s.session is None:
            s.session = ManualSession(ws, side)  # resumes an unfinished session, else the frames waiting
        return s.session

    def image(s: _Side, side: str, name: str) -> np.ndarray:
        if s.frame is None or s.frame[0] != name:
            s.frame = (name, session(s, side).image(name))
        return s.frame[1]

    def run(side: str, work):
        """``work(s, session)`` under the side's lock, in a worker thread."""
        s = held(side)

        def locked():
            with s.lock:
                return work(s, session(s, side))

        return asyncio.to_thread(locked)

    @app.get("/api/manual/{side}")
    async def get_session(side: str):
        """The session a page opens with: read again from its saved state at every page load, so frames that
        began waiting since (a new extraction, a deleted debug image) are on it."""
        s = held(side)

        def reopen() -> dict:
            with s.lock:
                s.session, s.frame = None, None
                return _describe(ws, side, session(s, side))

        return await asyncio.to_thread(reopen)

    @app.post("/api/manual/{side}/session")
    async def start_session(side: str, request: Request):
        body = await _body(request)
        which = body.get("list", "pending")
        if which not in LISTS:
            raise SettingsError(f"no frame list {which!r}", f"lists: {', '.join(LISTS)}")
        s = held(side)

        def start():
            with s.lock:
                names = [p.name for p in ws.require_frames(side)]
                frames = _list_frames(ws, side, which, names, body.get("pick"))
                s.session, s.frame = ManualSession(ws, side, frames=frames), None
                return _describe(ws, side, s.session)

        return await asyncio.to_thread(start)

    @app.get("/api/manual/{side}/frames/{name}")
    async def get_frame(side: str, name: str):
        def frame(s: _Side, m: ManualSession) -> dict:
            img = image(s, side, name)
            path = ws.frames_dir(side) / name
            faces = [_face_json(f.detection.box, f.landmarks, m) for f in m.faces(name)]
            return {"name": name, "id": files.file_id(ws, path), "version": int(path.stat().st_mtime_ns),
                    "width": img.shape[1], "height": img.shape[0], "status": m.status(name), "faces": faces}

        return await run(side, frame)

    @app.post("/api/manual/{side}/landmarks")
    async def landmarks(side: str, request: Request):
        body = await _body(request)
        name = _frame_name(body)
        cx, cy, size = (_number(body, k) for k in ("cx", "cy", "size"))
        accurate = bool(body.get("accurate", False))

        def place(s: _Side, m: ManualSession) -> dict:
            img = image(s, side, name)
            limit = 4.0 * max(img.shape[:2])
            if not MIN_BOX <= size <= limit:
                raise SettingsError(f"box size {size:g} px is outside {MIN_BOX:g}..{limit:g}", "size the box with the wheel")
            t0 = time.perf_counter()
            found = m.landmarks_in_box(img, (cx, cy, size), accurate)
            out = _face_json(found.detection.box, found.landmarks, m)
            out["ms"] = round(1000 * (time.perf_counter() - t0), 2)
            return out

        return await run(side, place)

    @app.post("/api/manual/{side}/crop")
    async def crop(side: str, request: Request):
        points = _points((await _body(request)).get("points"), "points")
        return await run(side, lambda s, m: {"crop": _crop(points, m)})

    @app.post("/api/manual/{side}/accept")
    async def accept(side: str, request: Request):
        body = await _body(request)
        name = _frame_name(body)
        faces_in = body.get("faces")
        if not isinstance(faces_in, list):
            raise SettingsError("faces: expected a list of {points, box}", "place a face, or skip the frame")
        faces = [_found(f, i) for i, f in enumerate(faces_in)]
        accurate = body.get("accurate")

        def write(s: _Side, m: ManualSession) -> dict:
            written = m.accept(name, faces, None if accurate is None else bool(accurate))
            return {"written": [files.file_id(ws, p) for p in written], **_progress(m), "status": m.status(name)}

        return await run(side, write)

    @app.post("/api/manual/{side}/skip")
    async def skip(side: str, request: Request):
        name = _frame_name(await _body(request))

        def skip_frame(s: _Side, m: ManualSession) -> dict:
            m.skip(name)
            return {**_progress(m), "status": m.status(name)}

        return await run(side, skip_frame)

    @app.post("/api/manual/{side}/goto")
    async def goto(side: str, request: Request):
        body = await _body(request)

        def move(s: _Side, m: ManualSession) -> dict:
            if "frame" in body:
                m.goto(_frame_name(body))
            elif body.get("step") in (1, -1):
                m.next() if body["step"] == 1 else m.previous()
            else:
                raise SettingsError("goto: expected {frame} or {step: 1 or -1}", "send a frame name or a step")
            return _progress(m)

        return await run(side, move)


# --- what the page is sent ---------------------------------------------------------------------------------


def _describe(ws: Workspace, side: str, m: ManualSession) -> dict[str, Any]:
    names = [p.name for p in ws.frame_paths(side)]
    st = m.settings
    return {
        "side": side, "frames": [{"name": n, "status": m.status(n)} for n in m.frames], "missing": m.missing,
        "settings": {"face_type": st.face_type, "size": st.size, "landmarks": st.landmarks, "accurate": st.accurate},
        "lists": {"pending": len(pending_frames(ws, side)), "no_face": len(_no_face(ws, side, set(names))),
                  "deleted_debug": _count_deleted_debug(ws, side), "all": len(names)},
        **_progress(m),
    }


def _count_deleted_debug(ws: Workspace, side: str) -> int | None:
    """How many debug images the user deleted; None when the side has none to delete (not extracted, or
    extracted without ``--debug``: starting that list says what to do)."""
    try:
        return len(extract.deleted_debug_frames(ws, side))
    except FacelabError:
        return None


def _progress(m: ManualSession) -> dict[str, Any]:
    return {"current": m.current, "position": m.position, "total": len(m.frames),
            "counts": {"accepted": len(m.accepted), "skipped": len(m.skipped), "pending": len(m.pending)}}


def _face_json(box, landmarks: np.ndarray, m: ManualSession) -> dict[str, Any]:
    return {"box": [round(float(v), 2) for v in box], "points": np.round(np.asarray(landmarks, np.float64), 2).tolist(),
            "crop": _crop(landmarks, m)}


def _crop(landmarks: np.ndarray, m: ManualSession) -> list[list[float]]:
    """The four corners (frame pixels) of the square the aligned face is cut from, clockwise from top-left."""
    size = m.settings.size
    mat = align.face_matrix(np.asarray(landmarks, np.float64), m.settings.face_type, size)
    inv = cv2.invertAffineTransform(np.asarray(mat, np.float64))
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64) - 0.5
    return np.round(corners @ inv[:, :2].T + inv[:, 2], 2).tolist()


# --- the frame lists ---------------------------------------------------------------------------------------


def _list_frames(ws: Workspace, side: str, which: str, names: list[str], pick: Any) -> list[str]:
    if which == "pending":
        return pending_frames(ws, side)
    if which == "no_face":
        return _no_face(ws, side, set(names))
    if which == "deleted_debug":
        return extract.deleted_debug_frames(ws, side)
    if which == "all":
        return names
    return pick_frames(pick, names)


def _no_face(ws: Workspace, side: str, names: set[str]) -> list[str]:
    path = ws.no_face_list(side)
    listed = path.read_text(encoding="utf-8").split() if path.is_file() else []
    return [n for n in listed if n in names]


def pick_frames(text: Any, names: list[str]) -> list[str]:
    """The frames ``text`` names, in frame order: names (``00012.png``), stems (``00012``), numbers (``12``,
    the frame whose stem is that number) and ranges of numbers (``12-40``), separated by commas or spaces.
    :class:`SettingsError` names what matches no frame."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError("no frames picked", "name frames: 00012.png, 12, 12-40 (commas or spaces between)")
    by_stem = {n.rsplit(".", 1)[0]: n for n in names}
    by_number = {int(stem): n for stem, n in by_stem.items() if stem.isdigit()}
    chosen, unknown = set(), []
    for token in re.split(r"[,\s]+", text.strip()):
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", token)
        if span:
            lo, hi = sorted((int(span[1]), int(span[2])))
            hits = [n for k, n in by_number.items() if lo <= k <= hi]
        else:
            hit = token if token in names else by_stem.get(token) or (by_number.get(int(token)) if token.isdigit() else None)
            hits = [hit] if hit else []
        chosen.update(hits)
        if not hits:
            unknown.append(token)
    if unknown:
        raise SettingsError(f"no frame {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} in data_*/",
                            f"frames go from {names[0]} to {names[-1]}" if names else "extract frames first")
    return [n for n in names if n in chosen]


# --- request bodies ----------------------------------------------------------------------------------------


async def _body(request: Request) -> dict:
    return await json_body(request)


def _frame_name(body: dict) -> str:
    name = body.get("frame")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise SettingsError(f"frame: expected a frame's file name, got {name!r}", "use the names the page lists")
    return name


def _number(body: dict, key: str) -> float:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SettingsError(f"{key}: expected a number, got {v!r}", "send the box as numbers in frame pixels")
    return float(v)


def _points(value: Any, what: str) -> np.ndarray:
    try:
        pts = np.array(value, np.float64)
    except (TypeError, ValueError):
        pts = None
    if pts is None or pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise SettingsError(f"{what}: expected 68 [x, y] points in frame pixels", "place the face again")
    return pts


def _found(face: Any, i: int) -> FoundFace | np.ndarray:
    """A face the page placed: its (possibly dragged) points and the box it was placed with."""
    if not isinstance(face, dict):
        raise SettingsError(f"face {i}: expected {{points, box}}", "place the face again")
    points = _points(face.get("points"), f"face {i} points").astype(np.float32)
    box = face.get("box")
    if box is None:
        return points
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise SettingsError(f"face {i} box: expected [x0, y0, x1, y1]", "place the face again") from None
    if not (math.isfinite(x0 + y0 + x1 + y1) and x1 > x0 and y1 > y0):
        raise SettingsError(f"face {i} box: expected [x0, y0, x1, y1] with x1 > x0 and y1 > y0", "place the face again")
    return FoundFace(Detection((x0, y0, x1, y1), 1.0), points)


__all__ = ["LISTS", "pick_frames", "register"]
