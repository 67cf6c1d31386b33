"""The segmenter as the UI runs it live: loaded once per UI process, reloaded when its save id changes, run on
one face at a request, its results kept per face and weights.

The Mask editor shows a face's applied mask (``facelab seg apply``, :mod:`facelab.seg.store`) when it has one;
for a face without it, :class:`LiveSegmenter` runs the workspace's segmenter on the face file there and then.
It runs on the CPU (a training job may hold the GPU) under one lock (one face at a time; a face takes a fraction
of a second at 256 px).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.workspace import Workspace

CACHE = 256  # live masks kept (the most recently used)


@dataclass(frozen=True)
class LiveMask:
    mask: np.ndarray  # (S, S) uint8, 255 = face, in the face file's pixels
    model_id: str
    uncertainty: float


class LiveSegmenter:
    """``model/<name>`` of a workspace, run on demand (see the module docstring)."""

    def __init__(self, ws: Workspace, device: str = "cpu") -> None:
        self.ws, self.device = ws, device
        self._lock = threading.Lock()
        self._runners: dict[str, object] = {}  # name -> SegmenterRunner of its current save
        self._cache: OrderedDict[tuple, LiveMask] = OrderedDict()

    def model_id(self, name: str = "segmenter") -> str | None:
        """The save id of segmenter ``name`` (None when the workspace has no such segmenter saved)."""
        from facelab.train.checkpoint import CONFIG, save_id

        folder = self.ws.model_dir(name)
        if not (folder / CONFIG).is_file():
            return None
        try:
            import json

            if json.loads((folder / CONFIG).read_text("utf-8")).get("kind") != "segmenter":
                return None
        except (OSError, ValueError, AttributeError):
            return None
        return save_id(folder)

    def runner(self, name: str = "segmenter"):
        """The loaded segmenter of its latest save (loaded again when the save id moved on), or None."""
        from facelab.seg.model import load_segmenter

        sid = self.model_id(name)
        if sid is None:
            return None
        with self._lock:
            r = self._runners.get(name)
            if r is None or r.model_id != sid:
                r = self._runners[name] = load_segmenter(self.ws.model_dir(name), self.device)
            return r

    def mask(self, path: Path, name: str = "segmenter") -> LiveMask | None:
        """The segmenter's mask of face file ``path`` (None without a segmenter); cached per face and weights."""
        from facelab.faceimage import read_face
        from facelab.seg.model import uncertainty

        runner = self.runner(name)
        if runner is None:
            return None
        key = (str(path), path.stat().st_mtime_ns, name, runner.model_id)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        image, record = read_face(path)
        with self._lock:
            face, mat = runner.cut(image, record)
            prob = runner.predict(face[None])[0]
        mask = runner.back_to_face(prob, mat, int(record.size))
        out = LiveMask((np.clip(mask, 0, 1) * 255 + 0.5).astype(np.uint8), runner.model_id, round(uncertainty(prob), 4))
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)
        return out

    def cached_uncertainty(self, path: Path, mtime_ns: int, name: str = "segmenter", model_id: str | None = None
                           ) -> float | None:
        """The uncertainty of a live mask already computed for this face and these weights, or None."""
        if model_id is None:
            return None
        with self._lock:
            hit = self._cache.get((str(path), mtime_ns, name, model_id))
        return None if hit is None else hit.uncertainty
