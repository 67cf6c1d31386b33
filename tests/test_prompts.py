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
    assert {"lightweight", "pixel_loss", "resolution"} <= {q.key for q in train_questions({"resolution", "lightweight"}, {},
                                                                                           training=("pixel_loss",))}
    assert "lightweight" not in {q.key for q in train_questions({"resolution", "ae_dims"}, {})}
    double = next(q for q in train_questions({"resolution", "double_res"}, {}) if q.key == "double_res")
    assert double.default is False and double.parse("y") is True  # quick's question
    assert "double_res" not in {q.key for q in train_questions({"resolution", "lightweight"}, {})}


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
    keys = [q.key for q in train_questions(params, {"resolution": 128}, training=MODELS.get("sae").TRAINING_QUESTIONS)]
    for key in ("face_type", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims", "learn_mask", "eyes_mouth_priority",
                "uniform_yaw", "color_transfer", "gan_power", "true_face_power", "identity_power", "face_style_power", "bg_style_power",
                "optimizer_mode", "pixel_loss"):
        assert key in keys
    ae = next(q for q in train_questions(params, {}) if q.key == "ae_dims")
    assert ae.default == 256 and ae.parse("512") == 512
    import pytest

    with pytest.raises(ValueError, match="32..1024"):
        ae.parse("2000")


# --- issue 9, point 13: the seed's remaining SAE questions, the GPU question, range checks -----------------


def _sae_params() -> set[str]:
    import inspect

    from facelab.models import MODELS

    return set(inspect.signature(MODELS.get("sae")).parameters)


def test_sae_questions_include_res_blocks_gray_border_lightweight_encoder_and_multiscale():
    from facelab.models import MODELS

    qs = {q.key: q for q in train_questions(_sae_params(), {}, training=MODELS.get("sae").TRAINING_QUESTIONS)}
    for key in ("d_res_blocks", "remove_gray_border", "lightweight_encoder", "multiscale_decoder"):
        assert key in qs
    assert qs["d_res_blocks"].parse("y") == 1 and qs["d_res_blocks"].parse("n") == 0 and qs["d_res_blocks"].parse("3") == 3
    import pytest

    with pytest.raises(ValueError, match="0..8"):
        qs["d_res_blocks"].parse("9")
    assert qs["lightweight_encoder"].parse("y") is True and qs["multiscale_decoder"].default is False
    assert qs["resolution"].default == 128  # the model's own default, not "none"


def test_the_gpu_question_is_asked_only_with_several_gpus():
    import pytest

    assert "gpu" not in {q.key for q in train_questions(_sae_params(), {}, gpu_count=1)}
    qs = train_questions({"resolution"}, {}, gpu_count=3)
    gpu = qs[0]
    assert gpu.key == "gpu" and "GPU idx" in gpu.text and gpu.default is None
    assert gpu.parse("0") == 0 and gpu.parse("2") == 2 and gpu.parse("none") is None
    with pytest.raises(ValueError, match="0..2"):
        gpu.parse("3")


def test_the_resolution_answer_is_range_checked():
    import pytest

    sae_res = next(q for q in train_questions(_sae_params(), {}) if q.key == "resolution")
    assert sae_res.parse("64") == 64 and sae_res.parse("512") == 512
    for bad in ("48", "528", "72", "-16"):
        with pytest.raises(ValueError, match="64..512"):
            sae_res.parse(bad)
    quick_res = next(q for q in train_questions({"resolution"}, {"resolution": 64}) if q.key == "resolution")
    assert quick_res.parse("32") == 32
    with pytest.raises(ValueError, match="16..512"):
        quick_res.parse("7")


def _in_terminal(argv: list[str], answer, timeout: float = 180) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, replying ``answer(prompt_line)`` to every question; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.executable, [sys.executable, "-m", "facelab", *argv])
    seen, everything, deadline = b"", b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        everything += chunk
        if seen.rstrip().endswith(b"(? for help):"):
            prompt = seen.decode(errors="replace").splitlines()[-1]
            os.write(fd, (answer(prompt) + "\n").encode())
            seen = b""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), everything.decode(errors="replace")


def test_a_terminal_sae_first_run_asks_the_new_questions_and_rechecks_a_bad_resolution(sample_faces_ws, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(sample_faces_ws.root, ws)
    resolutions = ["40", "64"]  # 40 is below DeepFaceLab's 64: asked again
    replies = {"Batch size": "2", "Target iteration": "1", "Residual blocks": "1", "lightweight encoder": "y",
               "multiscale decoder": "y", "Remove gray border": "y"}

    def answer(prompt: str) -> str:
        if prompt.startswith("Resolution"):
            return resolutions.pop(0)
        return next((v for k, v in replies.items() if k in prompt), "")

    code, out = _in_terminal(["-w", str(ws), "train", "--model", "sae", "--device", "cpu", "--ae-dims", "32",
                              "--e-dims", "21", "--d-dims", "10", "--d-mask-dims", "4"], answer)
    assert code == 0, out[-2000:]
    assert "use 64..512" in out and not resolutions
    assert "AutoEncoder dimensions" not in out  # given as a flag: not asked
    cfg = json.loads((ws / "model" / "sae" / "config.json").read_text())["config"]
    assert cfg["resolution"] == 64 and cfg["d_res_blocks"] == 1 and cfg["ae_dims"] == 32
    assert cfg["lightweight_encoder"] is True and cfg["multiscale_decoder"] is True
    # a training option DeepFaceLab asked with SAE's architecture: saved with the model's options, not its architecture
    saved = json.loads((ws / "model" / "sae" / "config.json").read_text())["options"]
    assert saved["remove_gray_border"] is True and "remove_gray_border" not in cfg


def test_the_dims_flags_enforce_the_ranges_their_help_states(tmp_path):
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.errors import SettingsError

    for flag, value, allowed in (("--ae-dims", "16", "32 to 1024"), ("--e-dims", "90", "21 to 85"),
                                 ("--d-dims", "8", "10 to 85"), ("--d-mask-dims", "0", "1 to 85")):
        r = CliRunner().invoke(app, ["-w", str(tmp_path / "none"), "train", "--model", "sae", flag, value,
                                     "--iterations", "1", "--device", "cpu"])
        assert isinstance(r.exception, SettingsError), (flag, r.output)
        assert flag.lstrip("-").replace("-", "_") in r.exception.message and allowed in r.exception.hint
