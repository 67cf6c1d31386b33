"""First-run questions of `facelab train` (DeepFaceLab-style prompts)."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
import json
import shutil

from facelab.cli.prompts import Question, ask_all, parse_bool, train_questions


def test_enter_takes_default_question_mark_explains_and_bad_answers_are_asked_again():
    replies = iter(["?", "", "abc", "4"])
    out: list[str] = []
    qs = [Question("flip", "Random flip", True, "Mirror faces at random.", parse_bool),
          Question("batch_size", "Batch size", 8, "Faces per side.", int)]
    answers = ask_all(qs, read=lambda prompt: next(replies), write=out.append)
    assert answers == {"flip": True, "batch_size": 4}
    assert out[0] == "Mirror faces at random." and "not a valid answer" in out[1]


def test_architecture_questions_follow_the_model():
    assert {"lightweight", "pixel_loss", "resolution"} <= {q.key for q in train_questions({"resolution", "lightweight", "pixel_loss"}, {})}
    assert "lightweight" not in {q.key for q in train_questions({"resolution", "ae_dims"}, {})}


def test_a_terminal_first_run_asks_and_saves_the_answers(sample_faces_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_faces_ws.root, ws)
    # answers: batch 2, target iteration 3, then Enter for every other question, lightweight = y
    answers = ["2", "3", "", "", "", "", "", "", "y", ""]
    pid, fd = pty.fork()
    if pid == 0:  # child: the real CLI on a terminal
        os.execvp(sys.executable, [sys.executable, "-m", "facelab", "-w", str(ws), "train", "--model", "h64", "--device", "cpu"])
    seen, deadline = b"", time.monotonic() + 120
    while answers and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
            if seen.rstrip().endswith(b"(? for help):"):
                os.write(fd, (answers.pop(0) + "\n").encode())
                seen = b""
    while time.monotonic() < deadline:
        try:
            if not os.read(fd, 4096):
                break
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    saved = json.loads((ws / "model" / "h64" / "config.json").read_text())
    assert saved["config"]["lightweight"] is True and saved["options"]["batch_size"] == 2
    assert json.loads((ws / "model" / "h64" / "state.json").read_text())["iteration"] == 3


def test_toml_settings_file_and_flags_win(sample_faces_ws, tmp_path):
    from typer.testing import CliRunner

    from facelab.cli import app

    ws = tmp_path / "ws"
    shutil.copytree(sample_faces_ws.root, ws)
    cfg = tmp_path / "train.toml"
    cfg.write_text('model = "h64"\nbatch-size = 2\ntarget_iteration_unused = 1\n')
    r = CliRunner().invoke(app, ["-w", str(ws), "train", "--config", str(cfg), "--device", "cpu"])
    assert isinstance(r.exception, Exception) and "target_iteration_unused" in str(r.exception)

    cfg.write_text('model = "h64"\nbatch-size = 2\niterations = 2\nlightweight = true\nflip = false\n')
    r = CliRunner().invoke(app, ["-w", str(ws), "train", "--config", str(cfg), "--device", "cpu", "--batch-size", "3"])
    assert r.exit_code == 0, r.output
    saved = json.loads((ws / "model" / "h64" / "config.json").read_text())
    assert saved["config"]["lightweight"] is True
    assert saved["options"]["batch_size"] == 3 and saved["options"]["flip"] is False

    cfg.write_text("iterations = [unclosed\n")
    r = CliRunner().invoke(app, ["-w", str(ws), "train", "--config", str(cfg)])
    assert "not valid TOML" in str(r.exception)


def test_sae_first_run_asks_deepfacelabs_sae_questions():
    import inspect

    from facelab.models import MODELS

    params = set(inspect.signature(MODELS.get("sae")).parameters)
    keys = [q.key for q in train_questions(params, {"resolution": 128})]
    for key in ("face_type", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims", "learn_mask", "eyes_mouth_priority",
                "uniform_yaw", "color_transfer", "gan_power", "true_face_power", "face_style_power", "bg_style_power",
                "optimizer_mode", "pixel_loss"):
        assert key in keys
    ae = next(q for q in train_questions(params, {}) if q.key == "ae_dims")
    assert ae.default == 256 and ae.parse("512") == 512
    import pytest

    with pytest.raises(ValueError, match="32..1024"):
        ae.parse("2000")
