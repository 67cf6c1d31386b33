"""What a workspace holds, for the Workspace page: videos, frames, faces, models, merged frames, the result, and
which step comes next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facelab.ui.files import file_id
from facelab.types import SIDES
from facelab.workspace import Workspace

_IMAGE = (".png", ".jpg", ".jpeg")


def _count(folder: Path, suffixes: tuple[str, ...] = _IMAGE) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))


def _models(ws: Workspace) -> list[dict[str, Any]]:
    out = []
    root = ws.model_root
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for config in sorted(folder.glob("*config.json")):
            prefix = config.name[: -len("config.json")]
            try:
                cfg = json.loads(config.read_text("utf-8"))
                state = json.loads((folder / f"{prefix}state.json").read_text("utf-8"))
            except (OSError, ValueError):
                out.append({"name": folder.name, "prefix": prefix, "broken": True})
                continue
            preview = folder / f"{prefix}preview.jpg"
            out.append({"name": folder.name, "prefix": prefix, "architecture": cfg.get("model"),
                        "kind": cfg.get("kind", "swap"), "iteration": state.get("iteration", 0),
                        "saved": (folder / f"{prefix}state.json").stat().st_mtime,
                        "resolution": (cfg.get("config") or {}).get("resolution"),
                        "preview": file_id(ws, preview) if preview.is_file() else None})
    return out


def overview(ws: Workspace) -> dict[str, Any]:
    """A JSON-able summary of the workspace and the next step to run."""
    sides = {}
    for side in SIDES:
        videos = [p.name for p in ws.input_entries(side) if p.is_file()]
        no_face = ws.no_face_list(side)
        sides[side] = {"video": videos[0] if videos else None, "frames": len(ws.frame_paths(side)),
                       "faces": _count(ws.aligned_dir(side)), "trash": _count(ws.trash_dir(side)),
                       "no_face_frames": len(no_face.read_text().split()) if no_face.is_file() else 0}
    models = _models(ws)
    merged = _count(ws.merged_dir)
    results = [p.name for p in sorted(ws.root.glob("result.*")) if p.is_file() and not p.name.endswith(".json")]
    return {"root": str(ws.root), "sides": sides, "models": models, "merged": merged, "results": results,
            "next": _next(sides, models, merged, results)}


def _next(sides: dict, models: list, merged: int, results: list) -> dict[str, str]:
    for side in SIDES:
        if not sides[side]["video"] and not sides[side]["frames"]:
            return {"step": "", "why": f"put the {side} video into the workspace as data_{side}.mp4"}
        if not sides[side]["frames"]:
            return {"step": "frames", "side": side, "why": f"decode data_{side} into frames"}
    for side in SIDES:
        if not sides[side]["faces"]:
            return {"step": "extract", "side": side, "why": f"extract the {side} faces"}
    if not any(m.get("kind") == "swap" and m.get("iteration") for m in models):
        return {"step": "train", "why": "train a model on the two face sets"}
    if not merged:
        return {"step": "merge", "why": "merge the predicted faces into the dst frames"}
    if not results:
        return {"step": "video", "why": "encode the merged frames into result.mp4"}
    return {"step": "eval", "why": "measure the swap (or train longer and merge again)"}
