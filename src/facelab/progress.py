"""Progress bars for long steps (rich), quiet when asked or when not on a terminal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


def enabled() -> bool:
    return console.is_terminal and not os.environ.get("FACELAB_QUIET")


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Yield from ``items`` while drawing a progress bar on stderr."""
    if not enabled():
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
