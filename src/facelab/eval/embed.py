"""Identity embeddings for eval, computed beside the measuring in batches.

The descriptor is :mod:`facelab.identity`'s (dlib's ResNet, 128-d, its weights run in torch). Eval
cuts each face's 150 px chip where it measures the frame and queues it; one thread embeds the queued
chips in batches (torch frees the GIL while it computes, so this overlaps with detection). Until
2026-12-07 dlib itself computed them in worker processes, at 90-120 ms a face, most of eval's time.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from facelab.identity import embed_chips, face_chip

BATCH = 16  # chips embedded at once, at most


class Embedder:
    """Embeds faces on a thread of its own using ``workers`` CPU threads (0: in the caller, as each face is
    submitted). Use as a context manager; :meth:`submit` returns a ``concurrent.futures.Future`` of the
    ``(128,) float32`` embedding."""

    def __init__(self, workers: int = 2, cache: EmbeddingCache | None = None) -> None:
        self.workers = int(workers)
        self.cache = cache
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._torch_threads: int | None = None
        if self.workers:
            import torch

            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(self.workers)
            self._thread = threading.Thread(target=self._run, name="eval-embeddings", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        done = False
        while not done:
            items = [self._jobs.get()]
            while items[-1] is not None and len(items) < BATCH:
                try:
                    items.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            if items[-1] is None:
                items.pop()
                done = True
            live = [(chip, future) for chip, future in items if future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                vectors = embed_chips(np.stack([chip for chip, _ in live]))
            except Exception as e:  # noqa: BLE001 - handed to whoever waits on the futures
                for _, future in live:
                    future.set_exception(e)
                continue
            for (_, future), vec in zip(live, vectors):
                future.set_result(vec.copy())

    def submit(self, image: np.ndarray, landmarks: np.ndarray, key: str | None = None) -> Future:
        """Embed the face with ``landmarks`` in ``image``; with a ``key`` the cache is asked first and told after."""
        future: Future = Future()
        if key is not None and self.cache is not None:
            found = self.cache.get(key)
            if found is not None:
                future.set_result(found)
                return future
            cache = self.cache
            future.add_done_callback(lambda f: cache.put(key, f.result()) if not f.cancelled() and f.exception() is None else None)
        chip = face_chip(image, landmarks)
        if self._thread is None:
            future.set_result(embed_chips(chip[None])[0])
        else:
            self._jobs.put((chip, future))
        return future

    def close(self, cancel: bool = False) -> None:
        """Stop after the queued faces (``cancel``: drop the queued faces first)."""
        if self._thread is None:
            return
        while cancel:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        self._jobs.put(None)
        self._thread.join()
        self._thread = None
        if self._torch_threads is not None:
            import torch

            torch.set_num_threads(self._torch_threads)

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(cancel=exc_type is not None)


class EmbeddingCache:
    """Embeddings of unchanged faces kept between runs, in a JSON file (``key -> 128 floats``).

    A key names the image file (name, size, modification time) and the face's landmarks
    (:meth:`key`), so a changed file or a face found elsewhere misses. Only the entries used in a
    run are saved, so the file does not grow. A missing or unreadable file is an empty cache."""

    VERSION = 1

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._old: dict[str, list[float]] = {}
        self._used: dict[str, list[float]] = {}
        if path is not None and path.is_file():
            try:
                doc = json.loads(path.read_text("utf-8"))
                if isinstance(doc, dict) and doc.get("version") == self.VERSION and isinstance(doc.get("embeddings"), dict):
                    self._old = {k: v for k, v in doc["embeddings"].items() if isinstance(v, list) and len(v) == 128}
            except (OSError, ValueError, UnicodeDecodeError):
                self._old = {}

    @staticmethod
    def key(side: str, path: Path, landmarks: np.ndarray) -> str:
        st = path.stat()
        pts = hashlib.sha1(np.round(np.asarray(landmarks, np.float64), 2).tobytes()).hexdigest()[:16]
        return f"{side}:{path.name}:{st.st_size}:{st.st_mtime_ns}:{pts}"

    def get(self, key: str) -> np.ndarray | None:
        v = self._used.get(key) or self._old.get(key)
        if v is None:
            return None
        try:
            vec = np.asarray(v, np.float32)
        except (TypeError, ValueError):
            return None
        self._used[key] = v
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        self._used[key] = [float(x) for x in np.asarray(vec, np.float32)]

    def save(self) -> None:
        if self.path is None or self._used == self._old:
            return
        from facelab.fileio import atomic_write_bytes

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps({"version": self.VERSION, "embeddings": self._used}).encode("utf-8"))
