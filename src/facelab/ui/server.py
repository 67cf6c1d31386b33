"""Run the UI server: ``serve(ws, host, port, open_browser)``."""

from __future__ import annotations

import ipaddress
import socket
import threading
import webbrowser
from collections.abc import Callable

from facelab import jobs as jobs_mod
from facelab.errors import FacelabError
from facelab.provenance.marker import Marker
from facelab.ui.security import new_token
from facelab.workspace import Workspace


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def free_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host``, else the next free one above it (up to 50 tries)."""
    for candidate in range(port, port + 50):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, candidate))
                return candidate
            except OSError:
                continue
    raise FacelabError(f"no free port from {port} to {port + 49} on {host}", "pass another --port")


def serve(ws: Workspace, *, marker: Marker, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = True,
          say: Callable[[str], None] = print) -> None:
    """Serve the UI for ``ws`` until Ctrl+C; prints (and opens) the start URL with its access token."""
    import uvicorn

    from facelab.ui.app import create_app

    port = free_port(host, port)
    token = new_token()
    app = create_app(ws, token, host, port, marker=marker)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"
    if not is_loopback(host):
        say(f"warning: serving on {host}, reachable from other machines: anyone with the address and token can run "
            "steps and read this workspace's faces")
    say(f"facelab ui for {ws.root}\nopen: {url}\n(the token in the address is your access key; Ctrl+C stops the server, "
        "running jobs stop and keep their work)")
    if open_browser:
        threading.Timer(0.8, lambda: webbrowser.open(url)).start()
    try:
        # The server's requests report to a job of their own, not to the command line's: that one writes the
        # status file by which the UI lists steps run from the command line, and the server is not such a step.
        with jobs_mod.running(jobs_mod.Job()):
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:  # the server stopped (Ctrl+C): running jobs stop as on Ctrl+C, keeping their work
        jobs = app.app.state.ui.jobs
        if any(j["state"] == "running" and not j["external"] for j in jobs.all()):
            say("stopping the running jobs (finished work is kept; a training saves) ...")
            left = jobs.stop_all()
            if left:
                say(f"still running after 10 minutes, left unfinished: {', '.join(left)}")
