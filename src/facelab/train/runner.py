"""The one training loop: budgets, logging, previews, saves, Ctrl+C and cancel, agreement between processes.

Every kind of training (the face-swap models in :mod:`facelab.train.loop`, the
enhancer in :mod:`facelab.enhance.training`) supplies a :class:`Task`, which
knows how to take one optimisation step and draw a preview; :func:`run` does
everything around it, the same way for all of them:

- stops when the target iteration or the minutes of this run are reached, or on
  Ctrl+C or the job's cancel token (:mod:`facelab.jobs`), always with a final
  preview and save, so a stopped run continues where it stopped;
- averages the losses over :data:`HISTORY_EVERY` iterations into the loss
  history, thinned (neighbours merged) beyond :data:`HISTORY_MAX` points;
- logs ms/iteration, the losses and the time left every ``log_every_seconds``,
  and reports each log line and preview as a job event;
- under a job, reports the iteration, the rate and the mean losses since the
  last such report every ``figures_every_seconds`` (the UI's counter and loss
  graph: figures the step computes anyway, no extra forward pass);
- under several processes (``dist``), the first one's clock decides when all of
  them log, preview, save and stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from facelab import jobs

HISTORY_EVERY = 10  # iterations averaged into one loss-history point
HISTORY_MAX = 4000  # beyond this, neighbouring points are merged (halving the resolution)
STEP = "train"  # the job events' step name


@dataclass(frozen=True)
class Schedule:
    """When to stop, log, preview and save.

    Attributes:
        target_iteration: stop when the (total) iteration count reaches it; None: no target.
        minutes: stop after this many minutes of this run; None: no limit. With neither: until Ctrl+C / cancel.
        save_every_minutes, preview_every_minutes, log_every_seconds: intervals (a save and a preview also
            happen at the end).
        figures_every_seconds: interval of the job events with the figures (iteration, rate, losses) only.
    """

    target_iteration: int | None = None
    minutes: float | None = None
    save_every_minutes: float = 15.0
    preview_every_minutes: float = 2.0
    log_every_seconds: float = 10.0
    figures_every_seconds: float = 1.0


class Task(Protocol):
    """One kind of training, as :func:`run` drives it."""

    loss_names: tuple[str, ...]  # what each loss of a step is called in the log ("src", "dst")

    def start(self, state: dict) -> None:
        """Called once before the first step with the state dict the loop keeps up to date (and saves)."""

    def step(self, iteration: int) -> Sequence[float]:
        """One optimisation step as iteration ``iteration`` (counted from 0); the losses, one per name."""

    def preview(self, state: dict) -> Path:
        """Write the preview image for ``state``; its path."""

    def checked(self, iteration: int, loss: float) -> str | None:
        """Called with the summed loss of each history point: a message when the task acted on it (a
        divergence guard that restored a snapshot), else None."""

    def close(self) -> None:
        """Release what the task holds (batch threads)."""


def record(history: list, iteration: int, pending: list[Sequence[float]]) -> None:
    """Append the mean of ``pending`` as ``[iteration, loss, ...]``; merge neighbours past :data:`HISTORY_MAX`."""
    means = np.mean(pending, 0)
    history.append([iteration, *(round(float(m), 6) for m in means)])
    if len(history) > HISTORY_MAX:
        history[:] = [[b[0], *(round((x + y) / 2, 6) for x, y in zip(a[1:], b[1:]))]
                      for a, b in zip(history[0::2], history[1::2])] + ([history[-1]] if len(history) % 2 else [])


def eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def run(task: Task, state: dict, schedule: Schedule, save: Callable[[dict], None] | None = None,
        log: Callable[[str], None] = print, dist=None) -> dict:
    """Train ``task`` from ``state`` (``iteration``, ``elapsed_seconds``, ``loss_history``) until the schedule,
    Ctrl+C or a cancel stops it; returns the updated state with ``stopped`` set to ``"iterations"``,
    ``"minutes"`` or ``"interrupted"``. ``save(state)`` is called every ``save_every_minutes`` and at the end.

    ``dist`` (:class:`facelab.train.distributed.Dist`): one of several processes; only the first logs,
    previews and saves, and its decisions are broadcast every iteration so all stay in step.
    """
    state = {"iteration": 0, "elapsed_seconds": 0.0, "loss_history": [], **state}
    history = state["loss_history"] = list(state["loss_history"])  # the caller's list stays as it was
    main = dist is None or dist.is_main
    job = jobs.current()
    base_elapsed = float(state["elapsed_seconds"])
    start = last_log = last_save = last_preview = last_figures = time.monotonic()
    log_iter0, figures_iter0, pending, window, figures = state["iteration"], state["iteration"], [], [], []
    stopped = "interrupted"
    task.start(state)
    try:
        while True:
            # -- decide: stop, preview, save (the first process's clock decides for all)
            now = time.monotonic()
            stop = None
            if schedule.target_iteration is not None and state["iteration"] >= schedule.target_iteration:
                stop = "iterations"
            elif schedule.minutes is not None and now - start >= schedule.minutes * 60:
                stop = "minutes"
            elif job is not None and job.cancel.cancelled:
                stop = "interrupted"
            do_preview = now - last_preview >= schedule.preview_every_minutes * 60
            do_save = save is not None and now - last_save >= schedule.save_every_minutes * 60
            if job is not None:  # asked for by the caller (the UI's Save now / Backup now / P)
                do_preview = job.take("preview") or do_preview
                do_save = save is not None and (job.take("save") or job.wants("backup")) or do_save
            if dist is not None:
                stop, do_preview, do_save = dist.agree(stop, do_preview, do_save)
            if stop is not None:
                stopped = stop
                break
            # -- one step
            losses = task.step(state["iteration"])
            state["iteration"] += 1
            pending.append(losses)
            window.append(losses)
            if job is not None:
                figures.append(losses)
            if len(pending) == HISTORY_EVERY:
                record(history, state["iteration"], pending)
                message = task.checked(state["iteration"], float(np.sum(np.mean(pending, 0))))
                if message:
                    log(message)
                pending = []
            # -- log, preview, save
            now = time.monotonic()
            if main and now - last_log >= schedule.log_every_seconds:
                ms = (now - last_log) * 1000 / max(state["iteration"] - log_iter0, 1)
                line = _log_line(task.loss_names, state["iteration"], ms, np.mean(window, 0), schedule, now - start)
                log(line)
                if job is not None:
                    job.emit(jobs.Event(STEP, state["iteration"], schedule.target_iteration, 1000 / max(ms, 1e-9), line))
                last_log, log_iter0, window = now, state["iteration"], []
            if main and job is not None and now - last_figures >= schedule.figures_every_seconds:
                ms = (now - last_figures) * 1000 / max(state["iteration"] - figures_iter0, 1)
                values = {n: float(m) for n, m in zip(task.loss_names, np.atleast_1d(np.mean(figures, 0)))}
                job.emit(jobs.Event(STEP, state["iteration"], schedule.target_iteration, 1000 / max(ms, 1e-9),
                                    values={**values, "ms": ms}))
                last_figures, figures_iter0, figures = now, state["iteration"], []
            if do_preview:
                if main:
                    _preview(task, state, schedule, job)
                last_preview = time.monotonic()
            if do_save:
                state["elapsed_seconds"] = base_elapsed + now - start
                if main:
                    save(state)
                last_save = time.monotonic()
    except KeyboardInterrupt:  # Ctrl+C (a job's cancel is seen above, between steps)
        log(f"[iter {state['iteration']}] interrupted: saving")
    finally:
        task.close()
    # -- the end: history, preview, save
    if pending:
        record(history, state["iteration"], pending)
    state["elapsed_seconds"] = base_elapsed + time.monotonic() - start
    state["stopped"] = stopped
    if main:
        _preview(task, state, schedule, job)
        if save is not None:
            save(state)
    return state


def _log_line(names: tuple[str, ...], iteration: int, ms: float, means, schedule: Schedule, ran: float) -> str:
    line = f"[iter {iteration}] {ms:.0f} ms/it  " + "  ".join(f"{n} {m:.4f}" for n, m in zip(names, np.atleast_1d(means)))
    left = []
    if schedule.target_iteration is not None:
        left.append((schedule.target_iteration - iteration) * ms / 1000)
    if schedule.minutes is not None:
        left.append(schedule.minutes * 60 - ran)
    return line + (f"  eta {eta(max(min(left), 0))}" if left else "")


def _preview(task: Task, state: dict, schedule: Schedule, job) -> None:
    path = task.preview(state)
    if job is not None:
        job.emit(jobs.Event(STEP, state["iteration"], schedule.target_iteration, preview=path))
