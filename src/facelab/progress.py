"""Progress of long steps: loops report through the caller's job (:mod:`facelab.jobs`); the CLI draws the
job's events as progress bars (:class:`Bars`), quiet when asked or when not on a terminal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from facelab import jobs

T = TypeVar("T")
console = Console(stderr=True)
_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn())


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

    def __call__(self, event: jobs.Event) -> None:
        if not enabled() or event.step in self._skip:
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
