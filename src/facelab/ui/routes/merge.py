"""The Interactive merger page (``/merger``): DeepFaceLab's interactive merger in the browser.

One dst frame merged with the model, again on every change of a merge setting, through
:class:`facelab.merge.session.MergeSession` (the pixels ``facelab merge`` writes, marked as synthetic);
the settings applied to this frame, a range or all frames as the merge keeps them
(:func:`facelab.stages.merge.save_plan`); then the rest rendered by the merge step as a job.

API (JSON unless said):

``GET /api/merger``
    The models to merge with, the merge settings' form fields (declared once in
    :data:`facelab.merge.options.SETTINGS`), the mask and enhancer choices, and the saved plan.
``GET /api/merger/frames?model=NAME&gpu=N``
    The dst frames: number, faces recorded on it, file id of the frame itself. Opens the model's session.
``POST /api/merger/render`` ``{model, gpu, frame, settings, view, scale, format}``
    The frame merged with ``settings`` (every key optional, the defaults for the rest): image bytes of ``view``
    (``image``, ``side_by_side`` or ``mask``), JPEG (default: a live view) or PNG (the exact pixels); a
    draft at ``scale`` < 1. Headers ``x-facelab-ms`` (server time), ``x-facelab-draft-scale`` (the scale to
    draft at while a control moves, :func:`~facelab.merge.session.draft_scale`; from full renders only),
    ``x-facelab-faces``, ``x-facelab-source``, ``x-facelab-notes`` (JSON list).
``GET /api/merger/plan``, ``POST /api/merger/plan`` ``{frame, settings, frames}``
    The plan; apply what ``settings`` change of frame ``frame``'s saved settings to ``frames``: ``"all"``, or
    ``"FIRST-LAST"`` (``"12-12"``: this frame). Refused (409) while a merge runs.
``POST /api/merger/plan/forget`` ``{frames}``
    Drop the settings of range ``frames``.
``POST /api/merger/render-rest`` ``{model, gpu}``
    The merge step (:data:`facelab.ui.steps.STEPS`) as a job with the saved plan: frames already merged
    with their settings are skipped, so it renders the rest.

Sessions: one :class:`MergeSession` per ``(model, gpu)`` of this app, opened on first use (the model
loaded once), the two last used kept. Renders run on worker threads (``asyncio.to_thread``), one at a time
per session (its lock), so the server stays responsive; the page sends at most one render at a time and
only the newest settings after it (latest change wins).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections import OrderedDict
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from facelab.errors import SettingsError
from facelab.merge.compose import MergeSettings
from facelab.merge.masks import known_masks
from facelab.merge.options import SETTINGS, groups
from facelab.merge.ranges import FrameRange, MergePlan
from facelab.merge.session import VIEWS, MergeSession, draft_scale
from facelab.merge.sources import frame_number
from facelab.options import form_fields
from facelab.ui.files import file_id
from facelab.ui.jobs import JobConflict, writes_of
from facelab.ui.overview import overview

PAGE = ("/merger", "merger", "Merger")
KEEP_SESSIONS = 2
"""Sessions (loaded models and their cached frames) kept open; the least recently used goes first."""
FORMATS = ("jpeg", "png")


class Sessions:
    """The merge sessions of one UI app, by ``(model, gpu)``, opened on first use (thread-safe)."""

    def __init__(self, ws, marker, device: str = "auto") -> None:
        self.ws, self.marker, self.device = ws, marker, device
        self._open: OrderedDict[tuple[str, int | None], MergeSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, gpu: int | None) -> MergeSession:
        """The session of ``model/<name>`` (variant ``gpu``), refused unless the workspace has that trained model;
        loading the model takes a second or so the first time."""
        key = (name, gpu)
        with self._lock:
            session = self._open.get(key)
            if session is None:
                check_model(self.ws, name, gpu)
                session = MergeSession(self.ws, name, self.device, gpu=gpu, marker=self.marker)
                self._open[key] = session
                while len(self._open) > KEEP_SESSIONS:
                    self._open.popitem(last=False)
            self._open.move_to_end(key)
            return session


def models(ws) -> tuple[list[dict[str, Any]], list[str]]:
    """``(swap models to merge with, enhancer names)`` of the workspace: ``{name, gpu, architecture, iteration,
    resolution}`` per model variant (``gpu`` None for one trained without ``--gpu``), trained ones only."""
    swaps, enhancers = [], []
    for m in overview(ws)["models"]:
        if m.get("broken") or not m.get("iteration"):
            continue
        if m.get("kind", "swap") != "swap":
            enhancers.append(m["name"])
            continue
        prefix = m.get("prefix") or ""
        gpu = int(prefix[3:-1]) if prefix.startswith("gpu") and prefix.endswith("_") and prefix[3:-1].isdigit() else None
        swaps.append({"name": m["name"], "gpu": gpu, "architecture": m.get("architecture"), "iteration": m["iteration"],
                      "resolution": m.get("resolution")})
    return swaps, sorted(set(enhancers))


def check_model(ws, name: Any, gpu: Any) -> None:
    """SettingsError unless ``model/<name>`` (variant ``gpu``) is a trained swap model of the workspace (the UI
    never opens a folder the client names without this)."""
    swaps, _ = models(ws)
    if not any(m["name"] == name and m["gpu"] == gpu for m in swaps):
        known = ", ".join(m["name"] + (f" (gpu {m['gpu']})" if m["gpu"] is not None else "") for m in swaps)
        raise SettingsError(f"merger: no trained model {name!r}" + (f" (gpu {gpu})" if gpu is not None else ""),
                            f"pick one of: {known}" if known else "train a model first (the Workspace page's Train)")


def model_of(values: dict[str, Any]) -> tuple[str, int | None]:
    """The ``(model, gpu)`` a request names (``gpu`` a number, a string of digits, or absent/empty/null)."""
    name, gpu = values.get("model"), values.get("gpu")
    if isinstance(gpu, str):
        gpu = None if gpu in ("", "null") else int(gpu) if gpu.isdigit() else gpu
    if not isinstance(name, str) or not (gpu is None or (isinstance(gpu, int) and not isinstance(gpu, bool))):
        raise SettingsError(f"merger: {name!r} (gpu {gpu!r}) is not a model", "send the model's name and its gpu number or null")
    return name, gpu


def mask_choices() -> list[str]:
    """The mask settings the page offers (and DeepFaceLab's X key cycles): the default, each mask, and each
    product of two."""
    default = next(o.default for o in SETTINGS if o.name == "mask")
    names = known_masks()
    pairs = [f"{a}*{b}" for i, a in enumerate(names) for b in names[i + 1:]]
    same = set(default.split("*"))
    return [default] + [m for m in names + pairs if set(m.split("*")) != same]


def settings_of(raw: Any) -> MergeSettings:
    """The merge settings a request sends (keys left out take their defaults). ``null`` is refused but for
    ``enhancer`` (none): :class:`MergeSettings` reads None as "not given" and would fail later, mid-render."""
    if not isinstance(raw, dict):
        raise SettingsError("merger: settings must be a JSON object", "send {setting: value}")
    empty = sorted(k for k, v in raw.items() if v is None and k != "enhancer")
    if empty:
        raise SettingsError(f"merger: no value for {', '.join(empty)}", "send a value for each setting, or leave it out")
    return MergeSettings.from_dict(raw)


def _plan(ws) -> tuple[MergePlan, bool]:
    from facelab.stages.merge import saved_plan

    plan = saved_plan(ws)
    return (plan, True) if plan is not None else (MergePlan(), False)


def _plan_json(plan: MergePlan, saved: bool) -> dict[str, Any]:
    return {**plan.to_dict(), "saved": saved}


def _refuse_while_merging(state) -> None:
    """A plan saved while a merge runs would be overwritten by that run's own plan: refuse (409)."""
    keys = writes_of("merge", None, {})
    for job in state.jobs.running():
        if set(job["writes"]) & (keys | {"*"}):
            raise JobConflict(f"{job['title']} is running: the settings cannot be saved now",
                              "wait for it to finish, or cancel it on the Jobs page")


def register(app, state, templates) -> None:
    """Add the merger page and its API to ``app``."""
    from facelab.ui.app import json_body

    ws = state.ws
    sessions = Sessions(ws, state.marker)
    app.state.merger_sessions = sessions
    path, template, title = PAGE
    state.pages.append(PAGE)

    @app.get(path, include_in_schema=False)
    async def page(request: Request):
        return templates.TemplateResponse(request, f"{template}.html", {
            "title": title, "pages": state.pages, "page": template, "workspace": str(ws.root)})

    @app.get("/api/merger")
    async def merger_info():
        swaps, enhancers = await asyncio.to_thread(models, ws)
        plan, saved = await asyncio.to_thread(_plan, ws)
        return {"models": swaps, "enhancers": enhancers, "fields": form_fields(SETTINGS), "groups": list(groups()),
                "masks": mask_choices(), "views": list(VIEWS), "plan": _plan_json(plan, saved)}

    @app.get("/api/merger/frames")
    async def merger_frames(model: str, gpu: str | None = None, refresh: bool = False):
        name, variant = model_of({"model": model, "gpu": gpu})

        def listing() -> dict[str, Any]:
            session = sessions.get(name, variant)
            if refresh:
                session.refresh()
            files = {frame_number(p.stem): p for p in ws.frame_paths("dst")}
            counts = session.face_counts()
            return {"frames": [{"n": n, "faces": faces, "file": file_id(ws, files[n]), "name": files[n].name}
                               for n, faces in counts.items() if n in files],
                    "warnings": session.warnings, "model_id": session.model_id}

        return await asyncio.to_thread(listing)

    @app.post("/api/merger/render")
    async def merger_render(request: Request):
        body = await json_body(request)
        name, variant = model_of(body)
        settings = settings_of(body.get("settings") or {})
        view, fmt, scale = body.get("view", "image"), body.get("format", "jpeg"), body.get("scale", 1.0)
        if view not in VIEWS:
            raise SettingsError(f"merger: no view {view!r}", f"use one of {', '.join(VIEWS)}")
        if fmt not in FORMATS:
            raise SettingsError(f"merger: no format {fmt!r}", f"use one of {', '.join(FORMATS)}")
        frame = body.get("frame")

        def render() -> Response:
            start = time.perf_counter()
            session = sessions.get(name, variant)
            shown = session.render(frame, settings, side_by_side=view == "side_by_side", scale=scale)
            alpha = shown.image.ndim == 3 and shown.image.shape[2] == 4
            if fmt == "jpeg" and view != "mask" and not (alpha and view == "image"):
                data, media = session.jpeg(shown, view), "image/jpeg"
            else:
                data, media = session.png(shown, view), "image/png"
            headers = {"cache-control": "no-store", "x-facelab-ms": f"{(time.perf_counter() - start) * 1000:.1f}",
                       "x-facelab-faces": str(shown.faces), "x-facelab-source": shown.source,
                       "x-facelab-scale": f"{shown.scale:g}", "x-facelab-notes": json.dumps(list(shown.notes)),
                       "x-facelab-timings": json.dumps({k: round(v, 1) for k, v in shown.timings.items()})}
            if shown.scale == 1.0:
                headers["x-facelab-draft-scale"] = f"{draft_scale(shown):g}"
            return Response(data, media_type=media, headers=headers)

        return await asyncio.to_thread(render)

    @app.get("/api/merger/plan")
    async def merger_plan():
        return _plan_json(*await asyncio.to_thread(_plan, ws))

    @app.post("/api/merger/plan")
    async def merger_apply(request: Request):
        from facelab.stages.merge import save_plan

        body = await json_body(request)
        frame, frames = body.get("frame"), body.get("frames", "all")
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise SettingsError(f"merger: frame {frame!r} is not a frame number", "send the number of the frame shown")
        shown = settings_of(body.get("settings") or {})
        where = None if frames == "all" else FrameRange.parse(frames)

        def apply() -> dict[str, Any]:
            _refuse_while_merging(state)
            plan, _ = _plan(ws)
            changes = plan.changes(frame, shown)
            plan = plan.with_changes(changes, where)
            save_plan(ws, plan)
            return {**_plan_json(plan, True), "changed": changes}

        return await asyncio.to_thread(apply)

    @app.post("/api/merger/plan/forget")
    async def merger_forget(request: Request):
        from facelab.stages.merge import save_plan

        body = await json_body(request)
        where = FrameRange.parse(body.get("frames", ""))

        def forget() -> dict[str, Any]:
            _refuse_while_merging(state)
            plan, _ = _plan(ws)
            kept = tuple(r for r in plan.ranges if r[0] != where)
            if len(kept) == len(plan.ranges):
                raise SettingsError(f"merger: no settings for frames {where}", "reload the page")
            plan = dataclasses.replace(plan, ranges=kept)
            save_plan(ws, plan)
            return _plan_json(plan, True)

        return await asyncio.to_thread(forget)

    @app.post("/api/merger/render-rest")
    async def merger_render_rest(request: Request):
        from facelab.ui.steps import STEPS

        body = await json_body(request)
        name, variant = model_of(body)
        await asyncio.to_thread(check_model, ws, name, variant)
        plan, _ = await asyncio.to_thread(_plan, ws)
        # the merge step's form values: the plan's default as its settings; without `frames` it keeps the
        # saved per-range settings (stages.merge.plan_from_options), so it renders exactly the saved plan
        raw = {k: v for k, v in plan.default.to_dict().items() if v is not None}
        raw.update(name=name, **({"gpu": variant} if variant is not None else {}))
        step = STEPS["merge"]
        values = step.values(raw)
        job = state.jobs.start("merge", step.name, writes_of("merge", None, values),
                               lambda job, log: step.run(ws, None, values, job, log, state.marker))
        return job.to_dict()
