"""Time the Manual extraction page's box-follow round trip in a real browser: mouse move -> landmark request ->
points drawn, as the page measures it (median of its last 30 requests, one in flight, the latest box wins).

Frame: person_a_franck/stills/franck_01829.jpg (720x576, face ~290 px) centred on a black 1280x720 canvas, as
in bench_manual_box.py (which times the landmark model alone). The mouse moves over the face at 60 Hz; the
page's own figure is read for the fast pass and then with the accurate pass (A). Needs Debian's chromium and
Playwright's Python package.

    python benchmarks/bench_ui_manual_follow.py [--moves 90]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

STILL = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "person_a_franck" / "stills" / "franck_01829.jpg"


def main() -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from facelab.provenance import default_marker
    from facelab.ui.app import create_app
    from facelab.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=90)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ws = Workspace(tmp / "ws")
    ws.create()
    still = cv2.imread(str(STILL))
    frame = np.zeros((720, 1280, 3), np.uint8)
    y, x = (720 - still.shape[0]) // 2, (1280 - still.shape[1]) // 2
    frame[y:y + still.shape[0], x:x + still.shape[1]] = still
    cv2.imwrite(str(ws.frames_dir("dst") / "00001.png"), frame)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ws, "bench", "127.0.0.1", port, marker=default_marker(tmp / "home"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/?token=bench")
        page.goto(f"{base}/manual?side=dst&frames=00001.png")
        page.wait_for_function("() => document.getElementById('m-name').textContent === '00001.png'")
        d = page.eval_on_selector("#m-canvas", "c => { const r = c.getBoundingClientRect(); return {...c.dataset, left: r.left, top: r.top}; }")
        scale, ox, oy = float(d["scale"]), float(d["ox"]), float(d["oy"])
        if page.get_attribute("#m-accurate", "aria-pressed") == "true":
            page.keyboard.press("a")  # start with the fast pass
        for name in ("one pass", "accurate"):
            t0 = time.perf_counter()
            for i in range(args.moves):
                fx, fy = 640 + 30 * np.sin(i / 7), 360 + 20 * np.cos(i / 9)
                page.mouse.move(d["left"] + ox + (fx + 0.5) * scale, d["top"] + oy + (fy + 0.5) * scale)
                page.wait_for_timeout(16)
            page.wait_for_selector("#m-canvas[data-ready='1']")
            took = time.perf_counter() - t0
            print(f"{name:9s}: box-follow round trip median {float(page.get_attribute('#m-ms', 'data-ms')):.1f} ms "
                  f"({args.moves} mouse moves in {took:.1f} s)")
            page.keyboard.press("a")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
