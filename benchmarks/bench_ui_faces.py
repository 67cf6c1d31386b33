"""The Face sets page on a 10,000-face set in headless chromium: first screen, scrolling, memory.

The set is the one bench_face_grid.py builds (real faces from the shipped src clip,
copied under new names with a frame of their own each). A `facelab ui` server runs on
a thread; Debian's chromium is driven through Playwright (launched by its path).

    PYTHONPATH=src python benchmarks/bench_ui_faces.py [--n 10000] [--size 256] [--frames 300]

Prints:
- server: the first listing (every face measured, as the page's "measure" job does), a warm
  listing through the API and its JSON size, and the time to make every 128 px thumbnail;
- first screen: from navigation to every visible thumbnail decoded, with thumbnails made on
  demand (cold), from the disk cache in a fresh browser, and from the browser's cache (reload);
- scrolling: frame times (requestAnimationFrame deltas) while the grid scrolls at a steady
  ~2,400 px/s (twice: thumbnails fetched from the server, then from the browser's cache), then
  while it jumps 20 rows a frame; the most grid cells in the DOM at once; the renderer's main
  thread time per frame (CDP Performance metrics);
- memory: the page's JS heap and DOM nodes (CDP Performance metrics), and the proportional
  set size (PSS) of all chromium processes together.

Headless chromium here draws without a GPU (--disable-gpu), on CPUs shared with the server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("FACELAB_QUIET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_face_grid  # noqa: E402

from facelab.faceset import browse, thumbs  # noqa: E402
from facelab.provenance import default_marker  # noqa: E402
from facelab.workspace import Workspace  # noqa: E402

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def serve(ws: Workspace, home: Path):
    import uvicorn

    from facelab.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ws, "bench", "127.0.0.1", port, marker=default_marker(home))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


FIRST_SCREEN = """async () => {
  const visible = () => [...document.querySelectorAll('.fcell:not([hidden]) img')].filter((img) => {
    const r = img.getBoundingClientRect(), g = document.querySelector('#grid').getBoundingClientRect();
    return r.bottom > g.top && r.top < g.bottom;
  });
  while (true) {
    const imgs = visible();
    if (imgs.length && imgs.every((i) => i.complete && i.naturalWidth > 0)) {
      const list = performance.getEntriesByType('resource').find((e) => e.name.includes('/api/faces/src'));
      return [performance.now(), imgs.length, list ? list.responseEnd : NaN];
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}"""

SCROLL = """async ([frames, step]) => {
  const grid = document.querySelector('#grid');
  grid.scrollTop = 0;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const times = [];
  let most = 0, last = performance.now();
  for (let k = 0; k < frames; k++) {
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    times.push(now - last);
    last = now;
    grid.scrollTop += step;
    most = Math.max(most, document.querySelectorAll('.fcell:not([hidden])').length);
  }
  return { times, most, end: grid.scrollTop, height: grid.scrollHeight };
}"""


def frame_stats(times: list[float]) -> str:
    t = sorted(times)
    p = lambda q: t[min(len(t) - 1, int(q * len(t)))]  # noqa: E731
    slow = sum(1 for x in t if x > 33.4)
    return (f"median {statistics.median(t):.1f} ms, p95 {p(0.95):.1f} ms, p99 {p(0.99):.1f} ms, max {t[-1]:.1f} ms, "
            f"{slow} of {len(t)} frames over 33 ms ({1000 / statistics.mean(t):.0f} fps mean)")


def chromium_pss_mb() -> float:
    """PSS of every chromium process that descends from this one, summed (MB)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
    mine, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        mine |= more
        grew = bool(more)
    total = 0
    for pid in mine - {os.getpid()}:
        try:
            if "chrom" not in (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")):
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=256, help="face size in pixels")
    ap.add_argument("--frames", type=int, default=300, help="animation frames per scroll run")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the set in this folder and keep it; an existing one is used as it is (faster reruns)")
    args = ap.parse_args(argv)
    if CHROMIUM is None:
        sys.exit("no chromium (install Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_ui_faces_") as tmp:
        root = args.keep or Path(tmp)
        ws = Workspace(root / "ws")
        if ws.aligned_paths("src"):
            shutil.rmtree(ws.thumbs_dir("src"), ignore_errors=True)  # thumbnails are made on demand again
            print(f"set: {len(ws.aligned_paths('src'))} faces in {ws.root} (kept from an earlier run); {os.cpu_count()} cores")
        else:
            t = time.perf_counter()
            base = bench_face_grid.base_faces(root, args.size)
            ws.create()
            bench_face_grid.face_set(base, ws, args.n)
            print(f"set: {args.n} faces of {args.size} px from {len(base)} real faces, built in "
                  f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} cores")

        server, base_url = serve(ws, root / "home")
        try:
            cold = not ws.face_list_cache("src").exists()
            t = time.perf_counter()
            browse.list_faces(ws, "src")
            what = "first listing (every face measured; the page runs it as a job)" if cold else "listing (cache kept)"
            print(f"server: {what}: {time.perf_counter() - t:.1f} s")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                context = browser.new_context(viewport={"width": args.width, "height": args.height})
                page = context.new_page()
                page.goto(f"{base_url}/?token=bench")
                page.wait_for_load_state("networkidle")
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    size = len(page.evaluate("async () => await (await fetch('/api/faces/src')).text()"))
                    times.append(time.perf_counter() - t)
                print(f"server: warm listing through the API {statistics.median(times):.3f} s (median of 3), "
                      f"{size / 2**20:.2f} MB JSON ({size / args.n:.0f} bytes a face)")

                def first_screen(pg, label: str, reload: bool = False) -> None:
                    if reload:
                        pg.reload()
                    else:
                        pg.goto(f"{base_url}/faces")
                    done, count, listed = pg.evaluate(FIRST_SCREEN)
                    print(f"first screen ({label}): {done:.0f} ms from navigation to {count} visible thumbnails decoded "
                          f"(the listing arrived at {listed:.0f} ms)")

                first_screen(page, "thumbnails made on demand")
                fresh = browser.new_context(viewport={"width": args.width, "height": args.height})
                page2 = fresh.new_page()
                page2.goto(f"{base_url}/?token=bench")
                first_screen(page2, "disk cache, fresh browser")
                first_screen(page2, "browser cache, reload", reload=True)

                t = time.perf_counter()
                ids = [f"data_src/aligned/{p.name}" for p in ws.aligned_paths("src")]
                with ThreadPoolExecutor(os.cpu_count()) as pool:
                    list(pool.map(lambda i: thumbs.thumbnail(ws, i, 128), ids))
                print(f"server: every 128 px thumbnail made: {time.perf_counter() - t:.1f} s")

                cdp = fresh.new_cdp_session(page2)
                cdp.send("Performance.enable")

                def busy() -> dict[str, float]:
                    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

                def main_thread(before: dict[str, float], after: dict[str, float], frames: int) -> str:
                    per = {k: (after[k] - before[k]) * 1000 / frames for k in ("TaskDuration", "ScriptDuration", "LayoutDuration",
                                                                              "RecalcStyleDuration")}
                    return (f"renderer main thread {per['TaskDuration']:.1f} ms a frame (script {per['ScriptDuration']:.1f}, "
                            f"layout {per['LayoutDuration']:.1f}, style {per['RecalcStyleDuration']:.1f})")

                for label in ("thumbnails from the server", "again, from the browser's cache"):
                    m0 = busy()
                    steady = page2.evaluate(SCROLL, [args.frames, 40])
                    m1 = busy()
                    print(f"scroll 40 px a frame ({label}): {frame_stats(steady['times'])}; at most {steady['most']} cells "
                          f"in the DOM; {main_thread(m0, m1, args.frames)}")
                jump = page2.evaluate(SCROLL, [min(args.frames, 120), 20 * 158])
                m2 = busy()
                print(f"scroll 20 rows a frame (to {jump['end']:.0f} of {jump['height']} px): {frame_stats(jump['times'])}; "
                      f"at most {jump['most']} cells in the DOM; {main_thread(m1, m2, min(args.frames, 120))}")
                print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
                metrics = busy()
                print(f"memory: JS heap used {metrics['JSHeapUsedSize'] / 2**20:.1f} MB of {metrics['JSHeapTotalSize'] / 2**20:.1f} MB, "
                      f"{metrics['Nodes']:.0f} DOM nodes; chromium processes PSS {chromium_pss_mb():.0f} MB (two tabs open)")
                browser.close()
        finally:
            server.should_exit = True


if __name__ == "__main__":
    main()
