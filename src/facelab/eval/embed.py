"""dlib identity embeddings for eval, computed in worker processes.

The descriptor is :mod:`facelab.identity`'s (dlib's ResNet, 128-d). dlib holds
the GIL while it runs (~90 ms per face on one core), so threads do not help;
eval cuts the 150 px face chip in the main process (what
``compute_face_descriptor(image, shape)`` does inside) and sends only the chip,
as raw bytes over a pipe, to a few worker processes (``python -c`` running
:func:`serve`), which overlaps the embeddings with detection. Plain subprocesses,
not ``multiprocessing``: a fork would copy ONNX Runtime's threads mid-flight, and
spawn re-imports the caller's ``__main__`` (a script without a main guard breaks).
The chip path gives bit-identical vectors to :func:`facelab.identity.embed_face`
(checked in ``tests/test_eval.py``).

This module imports nothing heavy at the top so a worker starts quickly.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path

import numpy as np

from facelab.checks import check_image, check_points

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's defaults for the face recognition network


@lru_cache(maxsize=1)
def _net():
    import dlib
    import face_recognition_models

    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def face_chip(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The aligned ``(150, 150, 3) uint8`` RGB chip dlib's network reads, from a BGR image and its ``(68, 2)`` landmarks."""
    import dlib

    check_image(image, "face_chip image", dtype=np.uint8)
    pts = check_points(landmarks, "face_chip landmarks", count=68, what="landmarks")
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    rgb = np.ascontiguousarray(image[..., ::-1])
    return np.asarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))


def embed_chip(chip: np.ndarray) -> np.ndarray:
    """``(128,) float32`` embedding of a chip from :func:`face_chip`."""
    return np.asarray(_net().compute_face_descriptor(np.ascontiguousarray(chip)), np.float32)


def serve() -> None:
    """Worker loop (run by :class:`Embedder` as ``python -c``): read raw chips from stdin, write raw
    ``(128,) float32`` embeddings to stdout, until stdin closes."""
    import sys

    size = CHIP_SIZE * CHIP_SIZE * 3
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        _net()
        while True:
            data = inp.read(size)
            if len(data) < size:
                return
            out.write(embed_chip(np.frombuffer(data, np.uint8).reshape(CHIP_SIZE, CHIP_SIZE, 3)).tobytes())
            out.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return  # Ctrl+C reaches the whole process group: the parent reports it, the worker just ends


_RESULT_BYTES = 128 * 4


class _Worker(threading.Thread):
    """One worker process and the thread that feeds it chips from the shared queue (pipe I/O frees the GIL)."""

    def __init__(self, jobs: queue.Queue) -> None:
        super().__init__(daemon=True)
        self.jobs = jobs
        # a fresh interpreter running serve(): no fork of this process's threads, no re-import of __main__;
        # it imports this facelab, wherever it was found
        env = dict(os.environ)
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-c", "from facelab.eval.embed import serve; serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.start()

    def run(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        while True:
            item = self.jobs.get()
            if item is None:
                break
            chip, future = item
            try:
                self.proc.stdin.write(np.ascontiguousarray(chip, np.uint8).tobytes())
                self.proc.stdin.flush()
                data = self.proc.stdout.read(_RESULT_BYTES)
                if len(data) != _RESULT_BYTES:
                    raise RuntimeError(f"the embedding worker stopped (exit status {self.proc.poll()})")
                future.set_result(np.frombuffer(data, np.float32).copy())
            except (OSError, RuntimeError) as e:
                future.set_exception(e)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


class Embedder:
    """Embeds faces in ``workers`` worker processes (0: in this process). Use as a context manager;
    :meth:`submit` returns a ``concurrent.futures.Future`` of the ``(128,) float32`` embedding."""

    def __init__(self, workers: int = 2, cache: EmbeddingCache | None = None) -> None:
        self.workers = int(workers)
        self.cache = cache
        self._jobs: queue.Queue = queue.Queue()
        self._threads = [_Worker(self._jobs) for _ in range(self.workers)]

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
        if not self._threads:
            future.set_result(embed_chip(chip))
        else:
            self._jobs.put((chip, future))
        return future

    def close(self, cancel: bool = False) -> None:
        """Stop the workers after the queued faces (``cancel``: drop the queued faces first)."""
        while cancel:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

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
