"""The whole workflow through the real CLI (``python -m facelab``) on the shipped clips."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from facelab.provenance.labels import is_labelled_png
from tests.conftest import SAMPLE_DST, SAMPLE_SRC


def facelab(ws, *args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "facelab", "-w", str(ws), *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"facelab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    ws = tmp_path_factory.mktemp("e2e") / "workspace"
    facelab(ws, "workspace")
    shutil.copy(SAMPLE_SRC, ws / "data_src.mp4")
    shutil.copy(SAMPLE_DST, ws / "data_dst.mpg")
    facelab(ws, "frames", "src", "--fps", "2")
    facelab(ws, "frames", "dst")
    facelab(ws, "extract", "src", "--size", "128")
    facelab(ws, "extract", "dst", "--size", "128", "--debug")
    facelab(ws, "train", "--iterations", "12", "--batch-size", "4", "--device", "cpu")
    facelab(ws, "merge", "--device", "cpu")
    facelab(ws, "video")
    return ws


def test_result_matches_dst_timing_and_audio(finished):
    with av.open(str(SAMPLE_DST)) as src, av.open(str(finished / "result.mp4")) as out:
        vin, vout = src.streams.video[0], out.streams.video[0]
        assert Fraction(vout.average_rate) == Fraction(vin.average_rate) == 25
        assert sum(1 for _ in out.decode(video=0)) == 75
        assert out.streams.audio, "result.mp4 has no audio"
        a_in = float(src.streams.audio[0].duration * src.streams.audio[0].time_base)
        a_out = float(out.streams.audio[0].duration * out.streams.audio[0].time_base)
        assert abs(a_in - a_out) < 0.1
        tags = {k.lower(): v for k, v in out.metadata.items()}
    assert "synthetic" in tags.get("comment", "").lower()


def test_every_step_left_its_outputs(finished):
    assert len(list((finished / "data_src").glob("*.png"))) == 62  # 30.6 s at 2 fps: t = 0, 0.5, ..., 30.5
    assert len(list((finished / "data_dst").glob("*.png"))) == 75
    assert len(list((finished / "data_dst" / "aligned").glob("*.jpg"))) == 75
    assert len(list((finished / "data_dst" / "aligned_debug").glob("*.jpg"))) == 75
    model = finished / "model" / "quick"
    for name in ("config.json", "weights.safetensors", "optimizer.safetensors", "state.json", "preview.jpg"):
        assert (model / name).is_file(), name
    merged = sorted((finished / "data_dst" / "merged").glob("*.png"))
    assert len(merged) == 75 and len(list((finished / "data_dst" / "merged_mask").glob("*.png"))) == 75
    assert all(is_labelled_png(p.read_bytes()) for p in merged[:5])


def test_merge_changes_the_face_and_keeps_the_rest(finished):
    frame = cv2.imread(str(finished / "data_dst" / "00040.png")).astype(np.float32)
    merged = cv2.imread(str(finished / "data_dst" / "merged" / "00040.png")).astype(np.float32)
    mask = cv2.imread(str(finished / "data_dst" / "merged_mask" / "00040.png"), cv2.IMREAD_GRAYSCALE)
    assert (mask > 128).sum() > 2000, "merge mask is (nearly) empty"
    outside = cv2.dilate((mask > 0).astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
    assert np.abs(merged - frame)[outside].mean() < 1.0
    assert np.abs(merged - frame)[mask > 200].mean() > 3.0


def test_rerun_skips_finished_work(finished):
    for args in (("frames", "dst"), ("extract", "dst", "--size", "128", "--debug"), ("merge", "--device", "cpu")):
        out = facelab(finished, *args).stdout
        assert "skipped" in out.lower(), out


def test_errors_are_one_line_with_a_hint(tmp_path):
    ws = tmp_path / "ws"
    facelab(ws, "workspace")
    p = facelab(ws, "frames", "src", ok=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert "data_src" in p.stderr and "copy your src video there" in p.stderr

    p = facelab(ws, "extract", "src", "--no-such-option", ok=False)
    assert p.returncode == 2 and "No such option" in p.stderr

    (ws / "data_src.mp4").write_bytes(b"not a video at all")
    p = facelab(ws, "frames", "src", ok=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "data_src.mp4" in p.stderr


def test_video_without_faces(tmp_path, astronaut):
    from facelab.media import write_video

    ws = tmp_path / "ws"
    facelab(ws, "workspace")
    corner = np.ascontiguousarray(cv2.resize(astronaut[300:, 300:], (320, 240)))
    write_video((corner for _ in range(10)), ws / "data_dst.mp4", Fraction(25))
    facelab(ws, "frames", "dst")
    p = facelab(ws, "extract", "dst", ok=False)
    assert p.returncode == 2 and "no face found" in p.stderr and "Traceback" not in p.stderr


def test_corrupt_face_file_is_named(finished, tmp_path):
    ws = tmp_path / "copy"
    shutil.copytree(finished, ws)
    bad = ws / "data_src" / "aligned" / "00001_0.jpg"
    bad.write_bytes(bad.read_bytes()[:500])
    # one unreadable face is named and left out; training goes on with the rest
    p = facelab(ws, "train", "--name", "fresh", "--iterations", "1", "--batch-size", "2", "--device", "cpu")
    assert "skipped (not trained on)" in p.stdout and "00001_0.jpg" in p.stdout and "Traceback" not in p.stderr
    # a face set where nothing can be read is one error line naming a file
    for f in (ws / "data_src" / "aligned").glob("*.jpg"):
        f.write_bytes(f.read_bytes()[:500])
    p = facelab(ws, "train", "--name", "fresh2", "--iterations", "1", "--batch-size", "2", "--device", "cpu", ok=False)
    assert p.returncode == 2 and "can be read" in p.stderr and ".jpg" in p.stderr and "Traceback" not in p.stderr


def test_workspace_layout_and_clear(tmp_path):
    ws = tmp_path / "ws"
    facelab(ws, "workspace")
    for d in ("data_src/aligned", "data_src/aligned_debug", "data_dst/aligned", "data_dst/merged", "data_dst/merged_mask", "model"):
        assert (ws / d).is_dir(), d
    (ws / "data_src.mp4").write_bytes(b"kept")
    (ws / "data_dst" / "00001.png").write_bytes(b"x")
    # without a terminal and without --yes nothing is deleted
    p = facelab(ws, "workspace", "--clear", ok=False)
    assert p.returncode == 2 and "--yes" in p.stderr and (ws / "data_dst" / "00001.png").exists()
    facelab(ws, "workspace", "--clear", "--yes")
    assert not (ws / "data_dst" / "00001.png").exists()
    assert (ws / "data_src.mp4").read_bytes() == b"kept" and (ws / "data_dst" / "merged").is_dir()


def test_ctrl_c_saves_and_training_continues(finished, tmp_path):
    import json
    import signal
    import time

    ws = tmp_path / "copy"
    shutil.copytree(finished, ws)
    cmd = [sys.executable, "-u", "-m", "facelab", "-w", str(ws), "train", "--name", "interrupted", "--minutes", "5", "--batch-size", "2", "--device", "cpu"]
    # a test run started in the background inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default handler, as a terminal would
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until the loop is running
        if "model 'interrupted'" in line or time.monotonic() > deadline:
            break
    time.sleep(8)  # several iterations, even on a busy 2-core machine
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    state = json.loads((ws / "model" / "interrupted" / "state.json").read_text())
    assert state["iteration"] > 0
    done = state["iteration"]
    facelab(ws, "train", "--name", "interrupted", "--iterations", str(done + 3), "--batch-size", "2", "--device", "cpu")
    again = json.loads((ws / "model" / "interrupted" / "state.json").read_text())
    assert again["iteration"] == done + 3
    assert len(again["loss_history"]) >= len(state["loss_history"])
