"""Jobs: events through the caller's callback, cancel at an item boundary (facelab.jobs)."""

from __future__ import annotations

import threading

import pytest

from facelab import jobs
from facelab.progress import track


def test_track_reports_every_item_with_rate_and_total():
    events = []
    job = jobs.Job(on_event=events.append, min_interval=0)
    with jobs.running(job):
        out = list(track(range(5), 5, "step"))
    assert out == list(range(5))
    assert [e.done for e in events] == [0, 1, 2, 3, 4, 5]
    assert all(e.step == "step" and e.total == 5 for e in events)
    assert events[0].rate is None and all(e.rate > 0 for e in events[1:])


def test_fast_loops_are_throttled_but_the_last_event_always_goes_out():
    events = []
    with jobs.running(jobs.Job(on_event=events.append, min_interval=60)):
        list(track(range(100), 100, "step"))
    assert [e.done for e in events] == [0, 100]


def test_a_short_loop_reports_where_it_ended():
    events = []
    with jobs.running(jobs.Job(on_event=events.append, min_interval=60)):
        list(track(range(3), 10, "frames"))
    assert (events[-1].done, events[-1].total) == (3, 3)


def test_cancel_stops_after_the_current_item_is_finished():
    job = jobs.Job(min_interval=0)
    finished = []
    with jobs.running(job), pytest.raises(jobs.Cancelled):
        for i in track(range(10), 10, "step"):
            finished.append(i)
            if i == 3:
                job.cancel.cancel()
    assert finished == [0, 1, 2, 3]  # item 3 was finished, 4 never started


def test_cancelled_is_a_keyboard_interrupt_so_it_takes_ctrl_cs_safe_path():
    assert issubclass(jobs.Cancelled, KeyboardInterrupt)


def test_a_token_set_from_another_thread_is_seen():
    job = jobs.Job()
    t = threading.Thread(target=job.cancel.cancel)
    t.start()
    t.join()
    with jobs.running(job), pytest.raises(jobs.Cancelled):
        jobs.check_cancel()


def test_outside_a_job_track_just_yields_and_nothing_is_current():
    assert jobs.current() is None
    assert list(track(iter("abc"), 3, "x")) == ["a", "b", "c"]
    with jobs.running(None):
        assert jobs.current() is None


class _Task:
    """A stand-in training task: the loss falls by one per step; previews are counted, not drawn."""

    loss_names = ("a", "b")

    def __init__(self, tmp_path, explode_at=None):
        self.tmp, self.previews, self.started, self.closed, self.explode_at = tmp_path, 0, None, False, explode_at

    def start(self, state):
        self.started = state

    def step(self, iteration):
        if iteration == self.explode_at:
            raise KeyboardInterrupt
        return (100.0 - iteration, 1.0)

    def checked(self, iteration, loss):
        return f"checked {iteration}" if iteration == 20 else None

    def preview(self, state):
        self.previews += 1
        path = self.tmp / f"p{state['iteration']}.jpg"
        path.write_bytes(b"x")
        return path

    def close(self):
        self.closed = True


def test_the_runner_stops_at_the_target_records_history_and_saves_at_the_end(tmp_path):
    from facelab.train import runner

    saved, lines = [], []
    task = _Task(tmp_path)
    state = runner.run(task, {"iteration": 0}, runner.Schedule(target_iteration=25, log_every_seconds=0),
                       save=lambda st: saved.append(dict(st)), log=lines.append)
    assert state["iteration"] == 25 and state["stopped"] == "iterations"
    assert [h[0] for h in state["loss_history"]] == [10, 20, 25]
    assert state["loss_history"][0] == [10, 95.5, 1.0]  # the mean of steps 0..9
    assert saved[-1]["iteration"] == 25 and task.previews == 1 and task.closed and task.started is not None
    assert "checked 20" in lines and lines[0].startswith("[iter 1]") and "a 100.0000  b 1.0000" in lines[0]


def test_the_runner_stops_on_cancel_and_on_ctrl_c_with_a_save_and_the_log_as_events(tmp_path):
    from facelab.train import runner

    events, lines, saved = [], [], []
    job = jobs.Job(on_event=events.append, min_interval=0)
    with jobs.running(job):
        job.cancel.cancel()
        state = runner.run(_Task(tmp_path), {"iteration": 7}, runner.Schedule(target_iteration=30, log_every_seconds=0),
                           save=saved.append, log=lines.append)
    assert state["stopped"] == "interrupted" and state["iteration"] == 7 and saved
    assert events[-1].preview == tmp_path / "p7.jpg" and events[-1].total == 30
    job = jobs.Job(on_event=events.append, min_interval=0)
    events.clear()
    with jobs.running(job):
        state = runner.run(_Task(tmp_path, explode_at=3), {}, runner.Schedule(log_every_seconds=0), log=lines.append)
    assert state["stopped"] == "interrupted" and state["iteration"] == 3
    logged = [e for e in events if e.message]
    assert [e.message for e in logged] == [line for line in lines if line.startswith("[iter ") and "ms/it" in line][-3:]
    assert [e.done for e in logged] == [1, 2, 3] and all(e.rate > 0 for e in logged)


def test_off_a_terminal_a_long_step_writes_a_progress_line_every_interval(monkeypatch):
    import io

    from rich.console import Console

    from facelab import progress

    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=False, width=80))
    monkeypatch.delenv("FACELAB_QUIET", raising=False)
    clock = iter([0.0, 10.0, 31.0, 45.0, 62.0, 70.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bars = progress.Bars(skip=("train",))
    for done in (1, 10, 31, 45, 62, 100):  # one event per item at these times; the last ends the step
        bars(jobs.Event("extract src", done, 100))
    bars(jobs.Event("train", 5, 10))
    lines = buf.getvalue().splitlines()
    assert lines == ["extract src: 31 / 100 (31 %), 0m31s, eta 1m09s", "extract src: 62 / 100 (62 %), 1m02s, eta 0m38s"]
