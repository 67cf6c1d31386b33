"""The UI's Interactive merger, measured in a browser: from the input event to the merged frame displayed.

Usage::

    PYTHONPATH=src python benchmarks/bench_ui_merger.py [--workspace WS] [--name quick] [--updates 20]
        [--screenshot merger.png]

Without ``--workspace`` it builds the workspace of ``bench_merge_preview.py`` (the shipped dst clip scaled
to 1280x720, a ``quick`` model trained ``--iterations`` steps). It starts the UI server (``facelab ui``'s
app, uvicorn on a thread) and Debian's chromium (headless, through Playwright), opens the Merger page and
times, in the page, each update from the ``keydown``/``input`` event (``event.timeStamp``) to the new image
decoded (``img.decode()``; the page records each as a ``merger-update`` performance measure):

- ``key``: one merge option changed per key press (DeepFaceLab's W/S erode keys), the next press when the
  frame is shown; per mode (seamless, the default, and overlay);
- ``slider drag``: ``input`` events every ``--drag-ms`` ms on the blur slider, as a mouse drag sends them,
  then ``change``: drafts while it moves when the last render was slow, latest change wins (renders
  dropped are counted);
- ``next frame``: the frame scrubber one frame on (a frame not shown before: decode, cut out, predict).

The server process is held to 2 CPUs (the browser shares the machine), OpenCV 2 threads, torch
``--torch-threads``. Target: an option change under 250 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_merge_preview import build_workspace, two_cores  # noqa: E402

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def serve(ws, marker):
    """The UI app on a free loopback port, served by uvicorn on a thread: ``(server, base url, token)``."""
    import uvicorn

    from facelab.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench"
    server = uvicorn.Server(uvicorn.Config(create_app(ws, token, "127.0.0.1", port, marker=marker), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}", token


def stats(ms: list[float]) -> str:
    q = np.percentile(ms, [50, 90])
    return f"median {q[0]:6.1f}  p90 {q[1]:6.1f}  max {max(ms):6.1f}  (n={len(ms)})"


SEQ = "() => +document.getElementById('mg-image').dataset.seq"


def measures(page) -> list[float]:
    return page.evaluate("() => performance.getEntriesByName('merger-update').map((e) => e.duration)")


def key_updates(page, keys: list[str]) -> list[float]:
    """Press each key once the previous update is shown; the round trip of each."""
    page.evaluate("() => performance.clearMeasures('merger-update')")
    page.locator("#mg-viewer").focus()
    for key in keys:
        seq = page.evaluate(SEQ)
        page.keyboard.press(key)
        page.wait_for_function(f"() => +document.getElementById('mg-image').dataset.seq > {seq}", timeout=30_000)
    return measures(page)


def drag(page, slider: str, values: list[int], every_ms: float) -> tuple[list[float], int]:
    """``input`` events on ``slider`` every ``every_ms`` ms, then ``change``; the updates shown and their round trips."""
    page.evaluate("() => performance.clearMeasures('merger-update')")
    seq = page.evaluate(SEQ)
    page.evaluate("""async ([sel, values, every]) => {
        const el = document.querySelector(sel);
        for (const v of values) {
            el.value = v;
            el.dispatchEvent(new Event('input', {bubbles: true}));
            await new Promise((r) => setTimeout(r, every));
        }
        el.dispatchEvent(new Event('change', {bubbles: true}));
    }""", [slider, values, every_ms])
    # the change's exact frame is the last update: wait until nothing is in flight
    page.wait_for_function("() => !document.getElementById('mg-image').classList.contains('draft')", timeout=30_000)
    time.sleep(1.0)
    return measures(page), page.evaluate(SEQ) - seq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="an existing workspace (dst frames, aligned dst faces, model/<name>)")
    ap.add_argument("--name", default="quick")
    ap.add_argument("--frames", type=int, default=24, help="dst frames to make when building a workspace")
    ap.add_argument("--iterations", type=int, default=40, help="training steps when building a workspace")
    ap.add_argument("--zoom", type=float, default=1.0, help="when building: a close-up (see bench_merge_preview.py)")
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--drag-ms", type=float, default=30.0, help="ms between a drag's input events")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--screenshot", type=Path, help="save the page here at the end (PNG)")
    args = ap.parse_args()
    if CHROMIUM is None:
        sys.exit("no chromium: install Debian's chromium (tools/ensure-chromium)")

    print(two_cores(args.torch_threads) + f"; load average {os.getloadavg()[0]:.1f} (other processes share these CPUs)")
    from playwright.sync_api import sync_playwright

    from facelab.provenance import default_marker
    from facelab.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_merger_"))
    os.environ.setdefault("FACELAB_HOME", str(tmp / "home"))
    marker = default_marker()
    try:
        ws = Workspace(args.workspace) if args.workspace else build_workspace(tmp / "ws", args.frames, args.iterations, marker,
                                                                                args.zoom)
        server, base, token = serve(ws, marker)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1500, "height": 950}).new_page()
            page.goto(f"{base}/merger?token={token}")
            t = time.perf_counter()
            page.wait_for_selector("#mg-image[data-seq='1']", timeout=120_000)
            size = page.evaluate("() => [document.getElementById('mg-image').naturalWidth, "
                                 "document.getElementById('mg-image').naturalHeight]")
            print(f"page open, model loaded, first frame {size[0]}x{size[1]} shown in {time.perf_counter() - t:.1f} s")
            if args.name != "quick":
                page.select_option("#mg-model", label=next(o for o in page.locator("#mg-model option").all_inner_texts()
                                                           if o.startswith(args.name)))
            key_updates(page, ["KeyW", "KeyS"] * 2)  # warm up: caches, JIT, connections
            n = args.updates
            print("\nkey press -> frame shown (DFL's W/S: erode +1/-1), ms")
            for mode_key, label in (("Digit3", "seamless (default)"), ("Digit1", "overlay")):
                key_updates(page, [mode_key])
                print(f"  {label:20s} {stats(key_updates(page, ['KeyW', 'KeyS'] * (n // 2)))}")
            key_updates(page, ["Digit3"])
            values = [int(v) for v in np.linspace(0, 60, n)]
            ms, shown = drag(page, "#mg-o-blur", values, args.drag_ms)
            print(f"\nslider drag (seamless), {n} input events {args.drag_ms:.0f} ms apart, then change: {shown} updates shown "
                  f"({n + 1 - shown} dropped: latest change wins)\n  {'':20s} {stats(ms)}")
            frames = key_updates(page, ["ArrowRight"] * min(n, 20))
            print(f"\nnext frame (scrubber; a frame not shown before: decode, predict, compose), ms\n  {'':20s} {stats(frames)}")
            server_ms = page.locator("#mg-ms").inner_text()
            print(f"\nlast update as the page shows it: {server_ms}")
            if args.screenshot:
                page.screenshot(path=str(args.screenshot))
                print(f"screenshot: {args.screenshot}")
            browser.close()
        server.should_exit = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
