"""Long steps as jobs of the UI server: each runs on a thread of its own, reports through :class:`facelab.jobs.Job`
events, can be cancelled, and outlives the page that started it.

Two jobs that would write the same files never run at once: each job names what it writes (``writes``, keys such
as ``data_src/aligned`` or ``model/quick``), and :meth:`JobManager.start` refuses a job whose keys meet a running
one's, including a step started from the command line in the same workspace (seen through its status file,
:class:`facelab.jobs.StatusFile`).
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab import jobs
from facelab.errors import FacelabError
from facelab.stages import Summary
from facelab.ui.files import file_id
from facelab.workspace import Workspace

LOG_LINES = 400  # kept per job for the page's live log
POINTS = 20_000  # figures (training losses) kept per job for the page's graph


class JobConflict(FacelabError):
    """A job would write files another running job writes."""


@dataclass
class UIJob:
    """One job and what the page shows of it."""

    id: str
    step: str
    title: str
    writes: frozenset[str]
    token: jobs.CancelToken = field(default_factory=jobs.CancelToken)
    state: str = "running"  # running, done, failed, cancelled
    started: float = field(default_factory=time.time)
    finished: float | None = None
    done: int = 0
    total: int | None = None
    rate: float | None = None
    phase: str = ""
    log: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    log_seq: int = 0  # lines ever logged (the page asks for those after the ones it has)
    summary: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    preview: float | None = None  # time of the latest preview event
    preview_path: str | None = None  # its file, relative to the workspace
    points: list = field(default_factory=list)  # [done, {name: value}] from events with values (the loss graph)
    handle: jobs.Job | None = None  # the stage's job: requests (save now ...) go to it
    thread: threading.Thread | None = None

    def eta(self) -> float | None:
        if self.state != "running" or not self.rate or self.total is None:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def to_dict(self, since: int | None = None) -> dict[str, Any]:
        lines = list(self.log)
        first = self.log_seq - len(lines)
        if since is not None:
            lines = lines[max(0, since - first):]
            first = self.log_seq - len(lines)
        return {"id": self.id, "step": self.step, "title": self.title, "state": self.state, "started": self.started,
                "finished": self.finished, "done": self.done, "total": self.total, "rate": self.rate, "eta": self.eta(),
                "phase": self.phase, "log": lines, "log_from": first, "log_seq": self.log_seq, "summary": self.summary,
                "error": self.error, "hint": self.hint, "preview": self.preview, "preview_file": self.preview_path,
                "points": len(self.points), "writes": sorted(self.writes),
                "external": False}


class JobManager:
    """The UI's jobs: start, list, cancel; ``version`` grows with every change (the event stream waits on it)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._jobs: dict[str, UIJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.version = 0

    # -- starting

    def start(self, step: str, title: str, writes: set[str], work: Callable[[jobs.Job, Callable[[str], None]], Summary | None]
              ) -> UIJob:
        """Run ``work(job, log)`` on a new thread as a job; :class:`JobConflict` if a running job writes any of
        ``writes``. ``work`` returns the step's Summary (or None)."""
        with self._lock:
            for other in self.running():
                shared = set(other["writes"]) & writes or ({"*"} & (set(other["writes"]) | writes))
                if shared:
                    raise JobConflict(f"{title}: {other['title']} is running and writes the same files "
                                      f"({', '.join(sorted(shared))})",
                                      "wait for it to finish, or cancel it on the Jobs page")
            job = UIJob(f"j{next(self._ids)}", step, title, frozenset(writes))
            self._jobs[job.id] = job
            self._touch()
        job.thread = threading.Thread(target=self._run, args=(job, work), name=f"facelab-job-{job.id}", daemon=True)
        job.thread.start()
        return job

    def _run(self, job: UIJob, work) -> None:
        handle = job.handle = jobs.Job(on_event=lambda e: self._event(job, e), cancel=job.token, min_interval=0.2)
        try:
            with jobs.running(handle):  # a loop that reaches the job only through jobs.current() stops at a cancel too
                summary = work(handle, lambda line: self._log(job, line))
            state = "cancelled" if job.token.cancelled else "done"
            self._finish(job, state, summary=summary)
        except jobs.Cancelled:
            self._finish(job, "cancelled")
        except KeyboardInterrupt:  # the stage's own Ctrl+C path (a cancel reaches it this way too)
            self._finish(job, "cancelled")
        except FacelabError as e:
            self._finish(job, "failed", error=e.message, hint=e.hint)
        except Exception as e:  # noqa: BLE001 - a bug: keep the traceback in the job's log
            for line in traceback.format_exc().splitlines():
                self._log(job, line)
            self._finish(job, "failed", error=f"{type(e).__name__}: {e}", hint="this is a bug: the log has the details")

    # -- what the stage reports

    def _event(self, job: UIJob, e: jobs.Event) -> None:
        with self._lock:
            job.done, job.total, job.rate, job.phase = e.done, e.total, e.rate, e.step
            if e.preview is not None:
                job.preview = time.time()
                try:
                    job.preview_path = file_id(self.ws, e.preview)
                except ValueError:
                    job.preview_path = None
            if e.values:
                if len(job.points) >= POINTS:  # keep the whole run at half the density
                    job.points[:] = job.points[::2]
                job.points.append([e.done, e.values])
            self._touch()
        if e.message:
            self._log(job, e.message)

    def _log(self, job: UIJob, line: str) -> None:
        with self._lock:
            job.log.append(str(line))
            job.log_seq += 1
            self._touch()

    def _finish(self, job: UIJob, state: str, summary: Summary | None = None, error: str | None = None,
                hint: str | None = None) -> None:
        with self._lock:
            job.state, job.finished, job.error, job.hint = state, time.time(), error, hint
            if summary is not None:
                job.summary = {"line": summary.line(), "counts": summary.counts, "warnings": summary.warnings,
                               "outputs": summary.outputs, "files": self._file_ids(summary.outputs)}
                for w in summary.warnings:
                    job.log.append(f"warning: {w}")
                    job.log_seq += 1
            self._touch()

    def _file_ids(self, outputs: list[str]) -> list[str]:
        """The ids of the outputs that are files inside the workspace (the page links them: a video, an export)."""
        return [file_id(self.ws, Path(out)) for out in outputs
                if Path(out).is_file() and self.ws.root in Path(out).resolve().parents]

    def _touch(self) -> None:  # with the lock held
        self.version += 1
        self._changed.notify_all()

    # -- reading and cancelling

    def get(self, job_id: str) -> UIJob | None:
        return self._jobs.get(job_id)

    def all(self) -> list[dict[str, Any]]:
        """Every job of this server, newest first, then the steps other processes run in this workspace."""
        own = [j.to_dict(since=j.log_seq) for j in sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)]
        return own + self.external()

    def running(self) -> list[dict[str, Any]]:
        return [j.to_dict(since=j.log_seq) for j in self._jobs.values() if j.state == "running"] + self.external()

    def external(self) -> list[dict[str, Any]]:
        """Steps started from the command line in this workspace (from their status files)."""
        out = []
        for doc in jobs.read_status_files(self.ws.jobs_dir):
            side = next((a for a in doc.get("args", []) if a in ("src", "dst")), None)
            out.append({"id": f"pid{doc['pid']}", "step": doc.get("command", ""), "title": f"{doc.get('step', '')} (command line, pid "
                        f"{doc['pid']})", "state": "running", "started": doc.get("started"), "finished": None,
                        "done": doc.get("done", 0), "total": doc.get("total"), "rate": doc.get("rate"), "eta": None,
                        "phase": doc.get("step", ""), "log": [], "log_from": 0, "log_seq": 0,
                        "message": doc.get("message", ""),
                        "summary": None, "error": None, "hint": None, "preview": None, "external": True,
                        "writes": sorted(writes_of(doc.get("command", ""), side, _named(doc.get("args", []))))})
        return out

    def cancel(self, job_id: str) -> bool:
        """Ask job ``job_id`` to stop (its work so far is kept); False when there is no such running job."""
        job = self._jobs.get(job_id)
        if job is not None and job.state == "running":
            job.token.cancel()
            self._log(job, "cancel asked: stopping after the current item")
            return True
        if job_id.startswith("pid"):
            path = self.ws.jobs_dir / f"{job_id[3:]}.cancel"
            if (self.ws.jobs_dir / f"{job_id[3:]}.json").is_file():
                path.write_text("cancel\n")
                return True
        return False

    def stop_all(self, timeout: float = 600.0) -> list[str]:
        """Cancel every running job and wait for each to stop (a training saves first); the titles of those still
        running after ``timeout`` seconds."""
        running = [j for j in self._jobs.values() if j.state == "running"]
        for j in running:
            j.token.cancel()
        end = time.monotonic() + timeout
        for j in running:
            if j.thread is not None:
                j.thread.join(max(0.0, end - time.monotonic()))
        return [j.title for j in running if j.thread is not None and j.thread.is_alive()]

    def ask(self, job_id: str, what: str) -> bool:
        """Pass a request (``save``, ``backup``, ``preview``) to running job ``job_id``; False when not running."""
        job = self._jobs.get(job_id)
        if job is None or job.state != "running" or job.handle is None:
            return False
        job.handle.ask(what)
        self._log(job, f"{what} asked")
        return True

    def wait(self, version: int, timeout: float) -> int:
        """Block until ``version`` changed or ``timeout`` passed; the current version."""
        with self._lock:
            if self.version == version:
                self._changed.wait(timeout)
            return self.version


def _named(args: list) -> dict[str, str]:
    """``--name`` and ``--model`` of a command line's arguments (what :func:`writes_of` needs of a training run
    started from the command line)."""
    out, args = {}, [str(a) for a in args]
    for i, arg in enumerate(args):
        for key in ("name", "model"):
            if arg == f"--{key}" and i + 1 < len(args):
                out[key] = args[i + 1]
            elif arg.startswith(f"--{key}="):
                out[key] = arg.split("=", 1)[1]
    return out


def writes_of(step: str, side: str | None, values: dict[str, Any]) -> set[str]:
    """What a step writes, as keys two jobs are compared by (a step started from the command line included)."""
    name = values.get("name") or values.get("model") or "quick"
    keys = {
        "frames": {f"data_{side}/frames"}, "denoise": {f"data_{side}/frames"},
        "extract": {f"data_{side}/aligned"}, "sort": {f"data_{side}/aligned"}, "faceset": {f"data_{side}/aligned"},
        "train": {f"model/{name}"}, "train-enhancer": {f"model/{values.get('name') or 'enhancer'}"},
        "merge": {"data_dst/merged"}, "video": {"result"}, "eval": {"eval"}, "demo": {"*"},
        # `facelab seg train|apply|...` from the command line: its segmenter and (apply, remove) both face sets
        "seg": {f"model/{values.get('name') or 'segmenter'}", "data_src/aligned", "data_dst/aligned"},
    }.get(step, {step})
    return keys
