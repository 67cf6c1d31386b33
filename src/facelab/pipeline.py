"""Small helpers to overlap I/O and compute on threads inside a step."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, depth: int = 4) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in order, computing up to ``depth`` items ahead on ``pool``.

    Memory stays bounded by ``depth`` results, however long ``items`` is.
    """
    pending: deque[tuple[T, Future[R]]] = deque()
    it = iter(items)
    for item in it:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            break
    while pending:
        item, fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(fn, nxt)))
        yield item, fut.result()
