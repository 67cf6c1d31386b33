"""Marking comes in from the caller (issue 11): stages take a Marker, refuse to run without one, and
write nothing outside their workspace; the CLI builds the marker and makes the key on first use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import FacelabError
from facelab.provenance import Marker, default_marker, require_marker
from facelab.provenance.manifest import KEY_NAME, SigningIdentity, load_signing_identity, read_manifest
from facelab.provenance.verify import verify_file
from facelab.workspace import Workspace
from tests.conftest import ASTRONAUT, SAMPLE_DST


class IdentityPredictor:
    """A stand-in model: returns its input face and a mask of ones."""

    resolution, face_type = 96, "full"

    def predict(self, batch: np.ndarray):
        return batch.copy(), np.ones(batch.shape[:3], np.float32)


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def isolated(tmp_path, monkeypatch) -> Path:
    """HOME and FACELAB_HOME point to one empty folder: whatever the code puts there, the test sees."""
    home = tmp_path / "user_home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FACELAB_HOME", str(home / ".facelab"))
    return home


@pytest.fixture()
def faces_ws(sample_faces_ws, tmp_path) -> Workspace:
    """A copy of the session's workspace of real frames and faces, with the dst clip (for the video's timing)."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    shutil.copy(SAMPLE_DST, ws.root / f"data_dst{SAMPLE_DST.suffix}")
    return ws


def _refusing_calls():
    from facelab.merge.compose import MergeSettings
    from facelab.stages import demo, enhance, merge, train, video
    from facelab.stages import eval as eval_stage
    from facelab.train import loop
    from facelab.enhance import training

    quiet = lambda s: None  # noqa: E731
    return {
        "merge": lambda ws: merge.run(ws, "m", MergeSettings(), predictor=IdentityPredictor()),
        "merge preview": lambda ws: merge.preview(ws, "m", MergeSettings(), 1, predictor=IdentityPredictor()),
        "video": lambda ws: video.run(ws),
        "train": lambda ws: train.run(ws, train.TrainSettings(model="quick", iterations=1, device="cpu"), log=quiet),
        "enhance": lambda ws: enhance.run(ws, enhance.EnhanceSettings(iterations=1, device="cpu"), log=quiet),
        "eval (HTML report)": lambda ws: eval_stage.run(ws, eval_stage.EvalSettings(html=ws.root / "report.html", progress=False)),
        "demo": lambda ws: demo.run(ws, report=quiet, log=quiet),
        "train loop": lambda ws: loop.train(None, None, None, None, ws.root / "model" / "x", loop.TrainOptions(), {}, None),
        "enhance loop": lambda ws: training.train(None, None, None, ws.root / "model" / "x", training.LoopOptions(target_size=64, scale=2), {}, None),
    }


@pytest.mark.parametrize("step", list(_refusing_calls()))
def test_a_step_without_a_marker_refuses_and_writes_nothing(step, faces_ws, isolated, tmp_path):
    # merged frames exist, so the video step would have something to encode
    for p in sorted(faces_ws.frames_dir("dst").glob("*.png"))[:3]:
        shutil.copy(p, faces_ws.merged_dir / p.name)
    before = _tree(tmp_path)
    with pytest.raises(FacelabError, match="no Marker given") as e:
        _refusing_calls()[step](faces_ws)
    assert e.value.message.startswith(step.removesuffix(" loop")) and "default_marker()" in e.value.hint
    assert _tree(tmp_path) == before  # not a file written, not even a key


def test_require_marker_takes_only_a_marker():
    marker = default_marker()
    assert require_marker(marker, "merge") is marker
    with pytest.raises(FacelabError, match="merge: no Marker given \\(str\\)"):
        require_marker("~/.facelab", "merge")

    class Unmarked(Marker):  # a subclass could drop the watermark: refused
        def watermark(self, image):
            return image

    with pytest.raises(FacelabError, match="no Marker given \\(Unmarked\\)"):
        require_marker(Unmarked(lambda: None), "merge")


def test_merge_and_video_with_a_marker_write_only_in_the_workspace(faces_ws, isolated, tmp_path):
    from facelab.merge.compose import MergeSettings
    from facelab.merge.ranges import FrameRange
    from facelab.stages import merge, video

    marker = default_marker(tmp_path / "caller_home")  # the caller chooses where the key lives
    outside = {p.name for p in tmp_path.iterdir()}
    s = merge.run(faces_ws, "m", MergeSettings(mode="overlay"), predictor=IdentityPredictor(), only=FrameRange(1, 9),
                  workers=2, marker=marker)
    assert s.counts["merged"] == 5
    v = video.run(faces_ws, marker=marker)
    assert v.counts["frames"] == 5
    assert list(isolated.iterdir()) == []  # nothing in HOME or FACELAB_HOME
    assert {p.name for p in tmp_path.iterdir()} == outside | {"caller_home"}
    assert (tmp_path / "caller_home" / "keys" / KEY_NAME).is_file()
    for out in [*sorted(faces_ws.merged_dir.glob("*.png"))[:2], faces_ws.result_path("mp4")]:
        report = verify_file(out)
        assert report.marked and report.manifest.valid and report.manifest.synthetic, (out, report)
        assert report.watermark is not None and report.watermark.found, out


def test_default_marker_makes_the_key_on_the_first_signature_only(tmp_path, astronaut):
    home = tmp_path / "home"
    marker = default_marker(home)
    assert not home.exists() and "first use" in repr(marker)  # building it touches nothing
    png = marker.png(astronaut, "face.png")
    key = home / "keys" / KEY_NAME
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    assert marker.identity == load_signing_identity(home)  # the same key, reused
    (tmp_path / "face.png").write_bytes(png)
    report = verify_file(tmp_path / "face.png")
    assert report.marked and report.manifest.valid and report.watermark.found and report.synthetic_tags
    assert "BEGIN" not in repr(marker) and "PRIVATE" not in repr(marker.identity)  # no key material in a repr


def test_a_marker_of_the_callers_own_identity_signs_with_it(tmp_path, astronaut):
    identity = load_signing_identity(tmp_path / "own")
    marker = Marker(identity)
    jpg = tmp_path / "face.jpg"
    jpg.write_bytes(marker.jpeg(astronaut, jpg.name, 90))
    png = tmp_path / "copy.png"
    shutil.copyfile(ASTRONAUT, png)
    marker.sign_file(png)
    for path in (jpg, png):
        report = read_manifest(path)
        assert report.valid and report.synthetic and report.signer.startswith("facelab local signer"), (path, report)
    assert marker.video_tags["digital_source_type"].endswith("trainedAlgorithmicMedia")


def test_marker_checks_what_it_is_given(tmp_path):
    with pytest.raises(FacelabError, match="SigningIdentity"):
        Marker(b"a key")
    bad = Marker(lambda: "not an identity")
    with pytest.raises(FacelabError, match="not a SigningIdentity"):
        bad.sign_bytes(ASTRONAUT.read_bytes(), "image/png", "x.png")
    from facelab.provenance.manifest import sign_bytes

    with pytest.raises(FacelabError, match="SigningIdentity"):
        sign_bytes(ASTRONAUT.read_bytes(), "image/png", "x.png", identity=None)
    assert isinstance(load_signing_identity(tmp_path / "h"), SigningIdentity)


def test_the_cli_makes_the_key_under_facelab_home_on_first_use(tmp_path, isolated, dst_frames):
    from typer.testing import CliRunner

    from facelab.cli import app

    facelab_home = Path(os.environ["FACELAB_HOME"])
    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(SAMPLE_DST, ws.root / f"data_dst{SAMPLE_DST.suffix}")
    failed = CliRunner().invoke(app, ["-w", str(ws.root), "video"])  # no merged frames: fails before any output
    assert failed.exit_code != 0 and not facelab_home.exists()
    for p in dst_frames[:5]:
        shutil.copy(p, ws.merged_dir / p.name)
    r = CliRunner().invoke(app, ["-w", str(ws.root), "video"])
    assert r.exit_code == 0, r.output
    assert (facelab_home / "keys" / KEY_NAME).is_file()
    report = verify_file(ws.result_path("mp4"))
    assert report.marked and report.manifest.valid and report.manifest.synthetic
    assert [p.name for p in isolated.iterdir()] == [".facelab"]  # the key, and nothing else, in the user's home
