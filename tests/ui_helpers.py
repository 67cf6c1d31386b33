"""What the UI's API tests share: a client past the token, and waiting for a job to end."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from facelab.ui.app import create_app
from facelab.ui.security import COOKIE

BASE = "http://127.0.0.1:7860"
ORIGIN = {"origin": BASE}  # what a page of the UI sends with a request that changes something


def client(ws, marker, token: str = "tok") -> TestClient:
    """A client of the UI for ``ws`` that already holds the session cookie."""
    c = TestClient(create_app(ws, token, marker=marker), base_url=BASE)
    c.cookies.set(COOKIE, token)
    return c


def wait_for(c, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 180.0) -> dict:
    """The job once it is in one of ``states`` (with its whole log); AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = c.get(f"/api/jobs/{job_id}", params={"since": 0}).json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}")
