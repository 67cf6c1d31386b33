"""Progress of long steps: loops report through the caller's job (:mod:`facelab.jobs`); the CLI draws the
job's events as progress bars (:class:`Bars`) on a terminal, and into a log file or a pipe writes a plain
line every :data:`LOG_EVERY` seconds instead; quiet when asked (``FACELAB_QUIET``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from facelab import jobs

T = TypeVar("T")
console = Console(stderr=True)
_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn())


LOG_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal


def enabled() -> bool:
    return console.is_terminal and not os.environ.get("FACELAB_QUIET")


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Yield from ``items``, reporting each to the current job (see :mod:`facelab.jobs`); outside a job,
    draw a progress bar on stderr when on a terminal."""
    job = jobs.current()
    if job is not None:
        yield from job.track(items, total, description)
        return
    if not enabled():
        yield from items
        return
    with Progress(*_COLUMNS, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class Bars:
    """A job's ``on_event`` that draws one progress bar per step on stderr (nothing when :func:`enabled` is
    false). Steps in ``skip`` are not drawn (training prints its own log lines instead)."""

    def __init__(self, skip: tuple[str, ...] = ()) -> None:
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._skip = skip
        self._logged: dict[str, tuple[float, float]] = {}  # step -> (start, last line), off a terminal

    def __call__(self, event: jobs.Event) -> None:
        if event.step in self._skip or os.environ.get("FACELAB_QUIET"):
            return
        if not console.is_terminal:
            self._log(event)
            return
        if self._progress is None:
            self._progress = Progress(*_COLUMNS, console=console, transient=False)
            self._progress.start()
        task = self._tasks.get(event.step)
        if task is None:
            task = self._tasks[event.step] = self._progress.add_task(event.step, total=event.total)
        self._progress.update(task, completed=event.done, total=event.total)
        if event.total is not None and event.done >= event.total:
            self.close_step(event.step)

    def _log(self, event: jobs.Event) -> None:
        """A plain line every LOG_EVERY seconds of a step (a long step in a log file is not silent until it ends)."""
        now = time.monotonic()
        start, last = self._logged.setdefault(event.step, (now, now))
        if event.total is not None and event.done >= event.total:
            self._logged.pop(event.step, None)  # the step's own summary line follows
            return
        if now - last < LOG_EVERY:
            return
        self._logged[event.step] = (start, now)
        line = f"{event.step}: {event.done:,}"
        if event.total:
            line += f" / {event.total:,} ({100 * event.done / event.total:.0f} %)"
        line += f", {_duration(now - start)}"
        if event.total and event.done:
            line += f", eta {_duration((now - start) / event.done * (event.total - event.done))}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close_step(self, step: str) -> None:
        task = self._tasks.pop(step, None)
        if task is not None and self._progress is not None and not self._tasks:
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._tasks.clear()
        self._logged.clear()


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
