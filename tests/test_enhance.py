"""Face enhancer (super resolution for merge): network, training pairs, training stage, save/load, CLI."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facelab.enhance import create_enhancer, list_enhancers, load_enhancer
from facelab.enhance.data import make_batch, make_pair
from facelab.enhance.training import bicubic, eval_pairs
from facelab.errors import ModelError, SettingsError
from facelab.stages import enhance
from facelab.stages.enhance import EnhanceSettings
from facelab.train.checkpoint import WrongKindError, load_checkpoint, save_checkpoint
from facelab.train.dataset import FaceDataset
from facelab.workspace import Workspace

TINY = {"input_size": 32, "scale": 2, "channels": 16, "blocks": 2, "device": "cpu"}
ITERATIONS = 150
HELD_OUT = 6


def _quiet(_line: str) -> None:
    pass


def _face_batch(faces: np.ndarray) -> np.ndarray:
    return faces.astype(np.float32) / 255


@pytest.fixture(scope="module")
def trained(sample_faces_ws, tmp_path_factory, marker):
    """A tiny enhancer trained on 24 of the 30 src faces; the other 6 (held out) are moved to ``held/``."""
    root = tmp_path_factory.mktemp("enhance") / "ws"
    shutil.copytree(sample_faces_ws.root, root)
    ws = Workspace(root)
    held = root / "held"
    held.mkdir()
    for p in sorted(ws.aligned_paths("src"))[-HELD_OUT:]:
        shutil.move(p, held / p.name)
    summary = enhance.run(ws, EnhanceSettings(iterations=ITERATIONS, **TINY), log=_quiet, marker=marker)
    return ws, summary, sorted(held.iterdir())


# --- the network -----------------------------------------------------------------------


def test_registry_lists_srnet():
    assert "srnet" in list_enhancers()
    with pytest.raises(SettingsError, match="unknown enhancer 'nope'"):
        create_enhancer("nope")


@pytest.mark.parametrize("scale", [2, 4])
def test_forward_shapes_and_finite_gradients(scale):
    torch.manual_seed(0)
    net = create_enhancer("srnet", scale=scale, channels=8, blocks=1)
    assert net.config == {"scale": scale, "channels": 8, "blocks": 1} and net.kind == "enhancer"
    x = torch.rand(2, 3, 24, 24)
    y = net(x)
    assert y.shape == (2, 3, 24 * scale, 24 * scale) and y.dtype == torch.float32
    (y - torch.rand_like(y)).abs().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.tail.weight.grad.abs().sum() > 0  # the zero-initialised output layer learns


def test_new_network_returns_bicubic_upsampling(sample_faces_ws):
    # the global skip: an untrained net adds nothing to the bicubic image (checked against OpenCV's bicubic)
    faces = FaceDataset(sample_faces_ws.aligned_paths("src")[:3], 48, face_type=None).faces
    for scale in (2, 4):
        torch.manual_seed(1)
        net = create_enhancer("srnet", scale=scale, channels=8, blocks=2).eval()
        with torch.no_grad():
            y = net(torch.from_numpy(_face_batch(faces)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        ref = np.stack([cv2.resize(f, (48 * scale,) * 2, interpolation=cv2.INTER_CUBIC) for f in _face_batch(faces)])
        assert np.abs(y - ref).max() < 1e-4


@pytest.mark.parametrize("config, key", [({"scale": 3}, "scale"), ({"channels": 2}, "channels"),
                                         ({"blocks": -1}, "blocks"), ({"scale": True}, "scale")])
def test_bad_architecture_names_the_key(config, key):
    with pytest.raises(SettingsError, match=key):
        create_enhancer("srnet", **config)


# --- training pairs ---------------------------------------------------------------------


def test_pairs_are_real_pixels_and_area_downscaled(sample_faces_ws):
    face = FaceDataset(sample_faces_ws.aligned_paths("src")[:1], 68, face_type=None).faces[0]
    small, target = make_pair(face, 64, 2, np.random.default_rng(0), augment=False)
    assert target.shape == (64, 64, 3) and small.shape == (32, 32, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(target, face[2:66, 2:66])  # a centred crop, not a resample
    np.testing.assert_array_equal(small, cv2.resize(target, (32, 32), interpolation=cv2.INTER_AREA))
    before = face.copy()
    for seed in range(10):  # augmented targets are crops of the face (maybe mirrored)
        _, t = make_pair(face, 64, 2, np.random.default_rng(seed))
        crops = [face[y:y + 64, x:x + 64] for y in range(5) for x in range(5)]
        assert any(np.array_equal(t, c) or np.array_equal(t, c[:, ::-1]) for c in crops)
    np.testing.assert_array_equal(face, before)
    with pytest.raises(ValueError, match="at least 72 px"):
        make_pair(face, 72, 2, np.random.default_rng(0))


def test_batches_depend_only_on_seed_and_iteration(sample_faces_ws):
    faces = FaceDataset(sample_faces_ws.aligned_paths("src")[:8], 68, face_type=None).faces
    a, b, c = make_batch(faces, 64, 2, 4, 0, 5), make_batch(faces, 64, 2, 4, 0, 5), make_batch(faces, 64, 2, 4, 0, 6)
    assert a[0].shape == (4, 32, 32, 3) and a[1].shape == (4, 64, 64, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[1], c[1])


# --- training ---------------------------------------------------------------------------


def test_training_beats_bicubic_on_held_out_faces(trained):
    ws, summary, held = trained
    assert summary.counts["iteration"] == ITERATIONS
    enhancer = load_enhancer(ws.model_dir("enhancer"))
    faces = FaceDataset(held, 64, face_type=None).faces
    inputs, targets = eval_pairs(faces, 64, 2)
    out = enhancer(_face_batch(inputs))
    l1 = np.abs(out - _face_batch(targets)).mean()
    base = np.abs(_face_batch(bicubic(inputs, 2)) - _face_batch(targets)).mean()
    assert l1 < 0.97 * base, (l1, base)


def test_model_folder_says_what_it_is_and_has_a_preview(trained):
    ws, summary, _ = trained
    folder = ws.model_dir("enhancer")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["kind"] == "enhancer" and cfg["model"] == "srnet"
    assert cfg["config"] == {"scale": 2, "channels": 16, "blocks": 2} and cfg["options"]["input_size"] == 32
    preview = cv2.imread(str(folder / "preview.jpg"))
    assert preview.shape == (18 + 4 * 64 + 18, 3 * 64, 3)
    assert summary.outputs == [str(folder)] and {"l1", "bicubic_l1", "loss"} <= set(summary.counts)


def test_enhancer_call_contract(trained):
    ws, _, held = trained
    enhancer = load_enhancer(ws.model_dir("enhancer"))
    assert enhancer.scale == 2 and enhancer.input_size == 32 and enhancer.name == "srnet"
    faces = _face_batch(FaceDataset(held, 32, face_type=None).faces)
    faces = np.concatenate([faces, faces])[:10]  # more than one inner batch of 8
    before = faces.copy()
    out = enhancer(faces)
    assert out.shape == (10, 64, 64, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(faces, before)
    np.testing.assert_allclose(out[:2], enhancer(faces[:2]), atol=1e-6)  # batching does not change results
    with pytest.raises(ValueError, match="float32"):
        enhancer((faces * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"\(N, R, R, 3\)"):
        enhancer(faces[0])


def test_save_load_round_trip_gives_identical_output(trained, tmp_path):
    ws, _, held = trained
    faces = _face_batch(FaceDataset(held, 32, face_type=None).faces)
    ckpt = load_checkpoint(ws.model_dir("enhancer"), factory=create_enhancer, kind="enhancer")
    save_checkpoint(tmp_path / "copy", ckpt.model, None, ckpt.options, {"iteration": 1})
    a, b = load_enhancer(ws.model_dir("enhancer")), load_enhancer(tmp_path / "copy")
    np.testing.assert_array_equal(a(faces), b(faces))


def test_resume_continues_the_iteration_count(trained, tmp_path, marker):
    ws0, _, _ = trained
    shutil.copytree(ws0.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    lines: list[str] = []
    summary = enhance.run(ws, EnhanceSettings(iterations=ITERATIONS + 10, device="cpu"), log=lines.append, marker=marker)
    assert summary.counts["iteration"] == ITERATIONS + 10
    assert any("resuming" in line and f"iteration {ITERATIONS}" in line for line in lines)
    state = json.loads((ws.model_dir("enhancer") / "state.json").read_text())
    assert state["iteration"] == ITERATIONS + 10 and state["loss_history"][0][0] == 10
    assert json.loads((ws.model_dir("enhancer") / "config.json").read_text())["config"]["channels"] == 16  # saved architecture
    with pytest.raises(SettingsError, match="scale: 4 asked, 2 saved"):
        enhance.run(ws, EnhanceSettings(scale=4, iterations=1, device="cpu"), log=_quiet, marker=marker)


def test_ctrl_c_saves(ws, monkeypatch, marker):
    from facelab.enhance import training

    real, calls = training.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", interrupted)
    summary = enhance.run(ws, EnhanceSettings(**{**TINY, "batch_size": 2}), log=_quiet, marker=marker)
    assert summary.counts["iteration"] == 3 and any("interrupted" in w for w in summary.warnings)
    assert json.loads((ws.model_dir("enhancer") / "state.json").read_text())["iteration"] == 3


def test_training_does_not_start_without_disk_for_its_first_save(ws, marker, disk_free):
    from facelab.errors import FacelabError

    disk_free(2**10)
    with pytest.raises(FacelabError, match="not enough free disk for the enhancer"):
        enhance.run(ws, EnhanceSettings(iterations=1, **TINY), log=_quiet, marker=marker)
    assert not ws.model_dir("enhancer").exists()


def test_models_of_the_other_kind_are_refused_by_name(ws, marker):
    from facelab.stages import train
    from facelab.inference import load_predictor

    train.run(ws, train.TrainSettings(model="quick", iterations=2, batch_size=2, device="cpu",
                                      architecture=(("resolution", 32),)), log=_quiet, marker=marker)
    with pytest.raises(WrongKindError, match="holds a face-swap model .'quick'., not a face enhancer") as e:
        load_enhancer(ws.model_dir("quick"))
    assert "train-enhancer" in e.value.hint
    with pytest.raises(ModelError, match="not a face enhancer"):
        enhance.run(ws, EnhanceSettings(name="quick", iterations=1, **{k: v for k, v in TINY.items() if k != "device"}), log=_quiet, marker=marker)
    enhance.run(ws, EnhanceSettings(iterations=1, **TINY), log=_quiet, marker=marker)
    with pytest.raises(WrongKindError, match="holds a face enhancer .'srnet'., not a face-swap model") as e:
        load_predictor(ws.model_dir("enhancer"))
    assert "--enhancer enhancer" in e.value.hint


# --- settings and CLI -------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, key", [
    ({"scale": 3}, "scale"), ({"input_size": 20}, "input_size"), ({"input_size": 1024}, "input_size"),
    ({"iterations": 0}, "iterations"), ({"minutes": -1}, "minutes"), ({"batch_size": 0}, "batch_size"),
    ({"channels": 1000}, "channels"), ({"blocks": 99}, "blocks"), ({"seed": -1}, "seed"),
    ({"save_every_minutes": 0}, "save_every_minutes"), ({"name": "a/b"}, "name"), ({"device": "tpu"}, "device"),
    ({"model": "esrgan"}, "model"),
])
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(SettingsError, match=f"^{key}"):
        EnhanceSettings(**kwargs)


def test_missing_src_faces_is_a_clear_error(tmp_path, marker):
    from facelab.errors import WorkspaceError

    ws = Workspace(tmp_path / "ws")
    ws.create()
    with pytest.raises(WorkspaceError, match="facelab extract src"):
        enhance.run(ws, EnhanceSettings(iterations=1, **TINY), log=_quiet, marker=marker)


def test_cli_help_lists_the_options():
    from facelab.cli import app

    r = CliRunner().invoke(app, ["train-enhancer", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for flag in ("--name", "--scale", "--input-size", "--minutes", "--iterations", "--batch-size", "--device",
                 "--channels", "--blocks"):
        assert flag in r.output


def test_cli_trains_and_reports(ws):
    from facelab.cli import app

    r = CliRunner().invoke(app, ["-w", str(ws.root), "train-enhancer", "--name", "sr", "--input-size", "32",
                                 "--channels", "8", "--blocks", "1", "--iterations", "2", "--batch-size", "2",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "train-enhancer: iteration: 2" in r.output and (ws.model_dir("sr") / "weights.safetensors").is_file()
