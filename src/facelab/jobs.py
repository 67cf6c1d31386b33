"""Steps as jobs: progress events through a callback the caller gives, and a cancel token.

A caller (the CLI, the browser UI, a script) builds a :class:`Job` and hands it
to a stage (``run(ws, settings, job=job)``). While the stage runs, every loop
over items reports through the job: an :class:`Event` with the step, how many
items are done of how many, the rate, a message and, where there is one, a
preview image. The CLI's progress bars are one consumer of these events
(:class:`facelab.progress.Bars`); the UI is another.

Cancelling: :meth:`CancelToken.cancel` (from any thread) makes the stage stop at
the next item boundary by raising :class:`Cancelled`. ``Cancelled`` is a
``KeyboardInterrupt``, so a cancel takes exactly the path Ctrl+C takes, which
every stage already makes safe: finished items are journaled and kept (an item
still being written on a worker thread may be done again), and a re-run resumes
where the cancel stopped it. A cancelled stage raises ``Cancelled`` to its
caller; training instead stops between two steps, saves and returns its summary
(with the warning that it was interrupted), as it does on Ctrl+C.

Stages get the ``job`` keyword from :func:`step`; a loop reports through
:func:`facelab.progress.track`, which sends to the job the caller's ``with
running(job):`` made current.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Event:
    """One progress report of a running step.

    Attributes:
        step: what runs (``"extract src"``, ``"train"``).
        done: items finished so far (frames, faces, iterations).
        total: items in all, or None when unknown.
        rate: items per second since the step started, or None before the first item.
        message: a line worth showing (the training losses), or "".
        preview: an image showing the current result (training's preview.jpg), or None.
        values: figures of this report by name (training's mean losses and ms per iteration), or None.
    """

    step: str
    done: int
    total: int | None
    rate: float | None = None
    message: str = ""
    preview: Path | None = None
    values: dict[str, float] | None = None


class Cancelled(KeyboardInterrupt):
    """The job's cancel token was set; the stage stopped between two items and kept its work.

    A ``KeyboardInterrupt`` on purpose: it takes the path of Ctrl+C, which every stage handles safely."""

    def __init__(self, message: str = "cancelled: finished work is kept; run the step again to continue") -> None:
        super().__init__(message)
        self.message = message


class CancelToken:
    """Set from any thread to stop a running job at its next item."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the token is set."""
        if self._event.is_set():
            raise Cancelled()


@dataclass
class Job:
    """What a caller gives a stage: where its events go and the token that cancels it.

    Args:
        on_event: called with each :class:`Event` (from the stage's thread); None drops them.
        cancel: the token; a fresh one by default.
        min_interval: seconds between two events of one loop (the first and the last always go out), so a
            fast loop does not flood a UI.
    """

    on_event: Callable[[Event], None] | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    min_interval: float = 0.1
    _requests: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ask(self, what: str) -> None:
        """Ask the running step for something it offers between two items (training: ``"save"``, ``"backup"``,
        ``"preview"``), from any thread."""
        with self._lock:
            self._requests.add(what)

    def wants(self, what: str) -> bool:
        """Whether ``what`` was asked for (the request stays)."""
        with self._lock:
            return what in self._requests

    def take(self, what: str) -> bool:
        """Whether ``what`` was asked for; the request is then done."""
        with self._lock:
            if what in self._requests:
                self._requests.discard(what)
                return True
            return False

    def emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def track(self, items: Iterable[T], total: int | None, step: str) -> Iterator[T]:
        """Yield from ``items``, reporting after each and checking the cancel token before each."""
        start = last = time.monotonic()
        done = 0
        self.cancel.check()
        self.emit(Event(step, 0, total))
        for item in items:
            yield item
            done += 1
            now = time.monotonic()
            if now - last >= self.min_interval or done == total:
                last = now
                self.emit(Event(step, done, total, done / max(now - start, 1e-9)))
            self.cancel.check()
        if done != total:  # fewer items than announced (a short video): say where it ended
            self.emit(Event(step, done, done, done / max(time.monotonic() - start, 1e-9)))


_current: ContextVar[Job | None] = ContextVar("facelab_job", default=None)


@contextmanager
def running(job: Job | None) -> Iterator[Job | None]:
    """Make ``job`` the one the loops inside the block report to (None: keep the caller's, if any)."""
    if job is None:
        yield _current.get()
        return
    token = _current.set(job)
    try:
        yield job
    finally:
        _current.reset(token)


def current() -> Job | None:
    """The job a stage is running under, or None (a plain library call)."""
    return _current.get()


def check_cancel() -> None:
    """Raise :class:`Cancelled` if the current job was cancelled (for loops that do not use ``track``)."""
    job = _current.get()
    if job is not None:
        job.cancel.check()


def step(fn: F) -> F:
    """Give a stage function a keyword ``job``: its loops report to that job and stop at its cancel.

    ``job=None`` keeps the job the caller already runs under (the demo runs its steps under its own)."""

    @functools.wraps(fn)
    def run(*args: Any, job: Job | None = None, **kwargs: Any) -> Any:
        with running(job):
            return fn(*args, **kwargs)

    sig = inspect.signature(fn)
    extra = inspect.Parameter("job", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Job | None")
    run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


class StatusFile:
    """An ``on_event`` consumer that keeps a running job's state in a small JSON file, so another process (the
    browser UI) can show a step started elsewhere, and cancel it: a file ``<name>.cancel`` beside it sets the
    job's token at the next event.

    ``folder`` is a callable giving the folder once it is known (the CLI learns the workspace while parsing), or
    None to write nothing. The file is written at most every ``min_interval`` seconds and removed by
    :meth:`close`.
    """

    def __init__(self, folder: Callable[[], Path | None], command: str, args: list[str], cancel: CancelToken,
                 min_interval: float = 1.0) -> None:
        self._folder, self.command, self.args, self.cancel = folder, command, args, cancel
        self.min_interval = min_interval
        self.path: Path | None = None
        self._last = 0.0
        self._started = time.time()

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if self.path is None:
            folder = self._folder()
            if folder is None:
                return
            self.path = Path(folder) / f"{os.getpid()}.json"
        elif now - self._last < self.min_interval and event.done != event.total:
            return
        self._last = now
        if self.path.with_suffix(".cancel").exists():
            self.cancel.cancel()
        doc = {"pid": os.getpid(), "command": self.command, "args": self.args, "started": self._started,
               "updated": time.time(), "step": event.step, "done": event.done, "total": event.total,
               "rate": event.rate, "message": event.message}
        try:
            from facelab.fileio import atomic_write_bytes

            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, json.dumps(doc).encode())
        except OSError:
            pass  # showing progress elsewhere must never stop the step

    def close(self) -> None:
        if self.path is not None:
            for p in (self.path, self.path.with_suffix(".cancel")):
                p.unlink(missing_ok=True)


def read_status_files(folder: Path) -> list[dict[str, Any]]:
    """The jobs of other processes whose status files are in ``folder`` and whose process still runs; files of
    processes that are gone (killed) are removed."""
    found = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            doc = json.loads(path.read_text("utf-8"))
            pid = int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        found.append(doc)
    return found
