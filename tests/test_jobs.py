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
