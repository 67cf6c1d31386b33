"""Screenshots of the UI's pages for the README: serves a workspace and photographs each page in headless chromium.

    PYTHONPATH=src python tools/ui_screenshots.py WORKSPACE [--out docs/images] [--pages workspace,jobs]

WORKSPACE should hold a finished demo (`facelab demo`), so every page has something to show.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--pages", default="")
    args = parser.parse_args()
    from conftest import CHROMIUM, CHROMIUM_ARGS, LiveUI  # the tests' live server and browser settings
    from playwright.sync_api import sync_playwright

    from facelab.provenance import default_marker
    from facelab.workspace import Workspace

    ui = LiveUI(Workspace(args.workspace), default_marker())
    pages = [(path, name) for path, name, _ in ui.app.app.state.ui.pages]  # every page in the navigation bar
    wanted = set(args.pages.split(",")) - {""}
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(ui.url)
        for path, name in pages:
            if wanted and name not in wanted:
                continue
            page.goto(ui.base + path)
            time.sleep(1.5)
            out = args.out / f"ui-{name}.png"
            page.screenshot(path=str(out))
            print(f"wrote {out}")
        browser.close()
    ui.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
