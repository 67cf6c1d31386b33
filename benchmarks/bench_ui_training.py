"""Benchmark: what an open Training page costs a running training job.

Serves the UI in this process (as `facelab ui` does: uvicorn, the job on a thread of the server) over the demo's
face sets (built once from the shipped sample clips, as bench_train.py does) and trains `quick` in one job, while
one headless chromium tab (Playwright, launched by path) alternates between the Training page and a blank page in
windows of ``--window`` seconds. On the Training page it does what it does in real use: the shared event stream,
the job's figures at most once a second, the preview image when a new one arrives (``--preview-every``). Prints
iterations per minute of each window, the medians of both kinds, the cost in % (the median of each pair's
ratio), the CPU the browser and the UI server's threads used, and the rate of event-stream messages and of the
page's requests.

    PYTHONPATH=src python benchmarks/bench_ui_training.py [--window 30] [--pairs 6] [--batch 8] [--device cpu]
        [--ws /tmp/facelab_bench_ws] [--preview-every 0.25]

Why windows of one job, not separate runs: on a shared machine the speed of a run swings far more than 5 % with
other work (here, 2 cores shared with other jobs: 16 to 620 iterations per minute for the same run), so the two
kinds alternate quickly, in the order without/with then with/without, and each pair is compared on its own.
The CPU figures do not depend on that: they are what the page and the server spent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# the page's event stream, counted in the page itself (an init script is not subject to the page's CSP)
COUNT_SSE = """(() => {
  window.__sse = 0;
  const Real = window.EventSource;
  window.EventSource = function (url, opts) {
    const es = new Real(url, opts);
    es.addEventListener("jobs", () => { window.__sse += 1; });
    return es;
  };
  window.EventSource.prototype = Real.prototype;
})();"""


class Client:
    """The UI's API over HTTP with the session cookie (what the page's fetch sends)."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.headers = base, {"cookie": f"facelab_session={token}", "origin": base}

    def call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, headers={**self.headers, "content-type": "application/json"},
                                     method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


def _descendants_cpu() -> float:
    """CPU seconds (user + system) used so far by the processes this one started (the Playwright driver and
    chromium's processes), from /proc (Linux); 0 elsewhere."""
    import os

    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    me, total = os.getpid(), 0.0
    for pid in cpu:
        p = parent.get(pid)
        while p not in (None, 0, 1, me):
            p = parent.get(p)
        if p == me and pid != me:
            total += cpu[pid]
    return total


def _server_cpu(ui) -> float:
    """CPU seconds used so far by the UI server's threads in this process: uvicorn's event loop and the worker
    threads it hands blocking calls to (not the training job's thread nor torch's)."""
    import os
    import threading

    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for t in threading.enumerate():
        if t is ui.thread or t.name.startswith(("asyncio_", "AnyIO worker")):
            try:
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def job_done(client: Client, job_id: str) -> int:
    return client.call(f"/api/jobs/{job_id}")["done"]


class Tab:
    """The browser tab: on the Training page or on a blank one, counting what the page asks for."""

    def __init__(self, browser, ui) -> None:
        self.ui = ui
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.add_init_script(COUNT_SSE)
        self.page = self.context.new_page()
        self.page.goto(ui.url)  # the token becomes the cookie
        self.requests: dict[str, int] = {}
        self.page.on("request", self._count)

    def _count(self, request) -> None:
        url = request.url.split("?")[0]
        kind = "points" if url.endswith("/points") else "preview" if "/files/" in url else \
            "models" if "/api/train/models" in url else "other"
        self.requests[kind] = self.requests.get(kind, 0) + 1

    def show(self, training: bool) -> None:
        if training:
            self.page.goto(self.ui.base + "/train")
            self.page.wait_for_selector("#train-state.running")
        else:
            self.page.goto("about:blank")

    def wait(self, seconds: float) -> None:
        """Sleep, delivering the page's events meanwhile (Playwright's sync API hands them over only while it is
        called)."""
        self.page.wait_for_timeout(seconds * 1000)

    def sse(self) -> int:
        return self.page.evaluate("() => window.__sse || 0")


def window(ui, client: Client, job_id: str, tab: Tab, training_page: bool, seconds: float, settle: float) -> dict:
    """Iterations per minute over ``seconds`` with the tab on the Training page or blank, and what it cost."""
    tab.show(training_page)
    tab.wait(settle)  # the page's own start (loading, first fetches) is not its steady cost
    tab.requests.clear()
    done0, sse0, t0 = job_done(client, job_id), tab.sse(), time.monotonic()
    browser0, server0 = _descendants_cpu(), _server_cpu(ui)
    tab.wait(seconds)
    done1, sse1, t1 = job_done(client, job_id), tab.sse(), time.monotonic()
    spent = t1 - t0
    return {"training_page": training_page, "per_minute": (done1 - done0) / spent * 60,
            "browser_cpu": (_descendants_cpu() - browser0) / spent, "server_cpu": (_server_cpu(ui) - server0) / spent,
            "sse": (sse1 - sse0) / spent, "requests": {k: v / spent for k, v in sorted(tab.requests.items())}}


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ws", default="/tmp/facelab_bench_ws", help="the demo's face sets (built here once)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of each measured window")
    ap.add_argument("--pairs", type=int, default=6, help="pairs of windows (without and with the page)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after switching the tab before a window")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preview-every", type=float, default=0.25, help="minutes between previews (the page reloads each)")
    args = ap.parse_args()

    from bench_train import build_workspace
    from conftest import CHROMIUM, CHROMIUM_ARGS, LiveUI  # the tests' live server and browser settings
    from playwright.sync_api import sync_playwright

    from facelab.provenance import default_marker
    from facelab.workspace import Workspace

    if CHROMIUM is None:
        raise SystemExit("needs chromium (/usr/bin/chromium)")
    ws = Workspace(build_workspace(Path(args.ws)))
    ui = LiveUI(ws, default_marker())
    client = Client(ui.base, ui.token)
    values = {"model": "quick", "name": "bench_ui", "batch_size": args.batch, "device": args.device,
              "save_every_minutes": 600.0, "preview_every_minutes": args.preview_every, "backups": 0}
    windows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = Tab(browser, ui)
            job = client.call("/api/steps/train", {"values": values})
            while job_done(client, job["id"]) < 20:  # loaded and past the first, slower steps
                time.sleep(1.0)
            for i in range(args.pairs):
                pair = []
                for training_page in ((False, True) if i % 2 == 0 else (True, False)):
                    w = window(ui, client, job["id"], tab, training_page, args.window, args.settle)
                    pair.append(w)
                    windows.append(w)
                    extra = ""
                    if training_page:
                        rates = ", ".join(f"{k} {v:.2f}/s" for k, v in w["requests"].items())
                        extra = f"; SSE {w['sse']:.2f} msg/s; requests: {rates}"
                    print(f"pair {i + 1} {'Training page' if training_page else 'blank page   '}: {w['per_minute']:7.1f} it/min"
                          f"  | CPU: browser {100 * w['browser_cpu']:4.1f} %, server {100 * w['server_cpu']:4.1f} % of a core{extra}",
                          flush=True)
            client.call(f"/api/jobs/{job['id']}/cancel", {})
            while client.call(f"/api/jobs/{job['id']}")["state"] == "running":
                time.sleep(0.5)
            browser.close()
    finally:
        ui.stop()

    def median(key: str, training_page: bool) -> float:
        return statistics.median(w[key] for w in windows if w["training_page"] == training_page)

    blank, page = [w for w in windows if not w["training_page"]], [w for w in windows if w["training_page"]]
    ratios = [p["per_minute"] / b["per_minute"] for b, p in zip(blank, page) if b["per_minute"] > 0]
    cpu = median("browser_cpu", True) - median("browser_cpu", False) + median("server_cpu", True) - median("server_cpu", False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"\nquick, batch {args.batch}, {args.device}, {args.pairs} pairs of {args.window:.0f} s windows, preview every "
          f"{args.preview_every} min, {cores} cores")
    print(f"medians: blank page {median('per_minute', False):.1f} it/min, Training page {median('per_minute', True):.1f} "
          f"it/min; cost (median of the pairs) {100 * (1 - statistics.median(ratios)):+.1f} % (target < 5 %)")
    print(f"the open page (browser and server together) used {100 * cpu:.1f} % of one core more than a blank one "
          f"({100 * cpu / cores:.1f} % of this machine's {cores} cores); SSE {statistics.mean(w['sse'] for w in page):.2f} "
          "messages/s")


if __name__ == "__main__":
    main()
