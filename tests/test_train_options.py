"""Trainer features: face type re-crop, saved options, yaw sorting, pixel loss, file prefix, backups, kill -9 safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facelab.align import face_matrix, warp_image
from facelab.errors import ModelError, SettingsError
from facelab.faceimage import read_record
from facelab.models import create_model
from facelab.train.augment import AugmentOptions, random_affine
from facelab.train.checkpoint import (
    backup_checkpoint,
    list_backups,
    load_checkpoint,
    save_checkpoint,
)
from facelab.train.dataset import FaceDataset
from facelab.train.loop import TrainOptions, make_optimizer, train_step
from facelab.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 16, "e_dims": 4, "d_dims": 4, "d_mask_dims": 2}
SRC_ROOT = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def ws(sample_faces_ws, tmp_path) -> Workspace:
    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _tiny(steps: int = 0):
    torch.manual_seed(0)
    model = create_model("quick", **TINY)
    return model, make_optimizer(model, TrainOptions())


# --- face type re-crop ------------------------------------------------------------------


def test_half_crops_from_full_faces_match_a_direct_half_alignment(sample_faces_ws):
    paths = sample_faces_ws.aligned_paths("dst")[:6]
    ds = FaceDataset(paths, 64, "half")
    assert ds.recropped == len(paths) and ds.outside == 0
    for i, p in enumerate(paths):
        rec = read_record(p)
        assert rec.face_type == "full"
        frame = cv2.imread(str(sample_faces_ws.frames_dir("dst") / rec.source_filename))
        direct = cv2.resize(warp_image(frame, face_matrix(rec.source_landmarks, "half", 128), 128), (64, 64),
                            interpolation=cv2.INTER_AREA)
        diff = np.abs(ds.faces[i].astype(float) - direct)[4:-4, 4:-4].mean()  # JPEG and one extra resampling
        assert diff < 6, diff
    # a looser crop than the aligned one reaches outside and is counted
    assert FaceDataset(paths[:2], 64, "head").outside == 2
    # same face type: nothing re-cut
    assert FaceDataset(paths[:2], 64, "full").recropped == 0


# --- augmentation, yaw sorting, pixel loss ----------------------------------------------------


def test_src_scale_and_no_flip_in_random_affine():
    opts = AugmentOptions(rotation=0, scale=0, shift=0, flip=False, scale_bias=0.2)
    rng = np.random.default_rng(0)
    for _ in range(10):
        m = random_affine(rng, 32, opts)
        assert m[0, 0] == pytest.approx(1.2) and m[1, 1] == pytest.approx(1.2)


def test_pick_by_yaw_takes_the_nearest_yaws(sample_faces_ws):
    ds = FaceDataset(sample_faces_ws.aligned_paths("src"), 32)
    assert ds.yaw.shape == (len(ds),) and np.ptp(ds.yaw) > 1
    rng = np.random.default_rng(0)
    targets = np.array([ds.yaw.min(), ds.yaw.max(), float(np.median(ds.yaw))])
    got = ds.pick_by_yaw(targets, rng)
    srt = np.sort(ds.yaw)
    for t, i in zip(targets, got):
        # within the bucket of nearest faces (5 % of 30 -> 2)
        assert abs(ds.yaw[i] - t) <= np.sort(np.abs(srt - t))[1] + 1e-4


def test_pixel_loss_option_uses_plain_mse(sample_faces_ws):
    from facelab.train.objective import LossOptions

    ds = FaceDataset(sample_faces_ws.aligned_paths("src")[:4], 32)
    batch = ds.sample(2, np.random.default_rng(0))
    losses = {}
    for pixel in (False, True):
        model, opt = _tiny()
        losses[pixel] = train_step(model, opt, batch, batch, torch.device("cpu"), losses=LossOptions(pixel_loss=pixel))
    # same weights, same batch: DSSIM + MSE is larger than MSE alone
    assert losses[True][0] < losses[False][0] and losses[True][0] < 0.2


# --- prefix, backups ---------------------------------------------------------------------------


def test_prefix_keeps_variants_apart(tmp_path):
    model, opt = _tiny()
    save_checkpoint(tmp_path, model, opt, {"a": 1}, {"iteration": 1}, prefix="gpu1_")
    save_checkpoint(tmp_path, model, None, {"a": 2}, {"iteration": 7})
    names = {p.name for p in tmp_path.iterdir()}
    assert {"gpu1_weights.safetensors", "gpu1_state.json", "gpu1_config.json", "gpu1_optimizer.safetensors",
            "weights.safetensors", "state.json"} <= names
    assert load_checkpoint(tmp_path, prefix="gpu1_").state["iteration"] == 1
    assert load_checkpoint(tmp_path).state["iteration"] == 7
    with pytest.raises(ModelError, match="gpu2_"):
        load_checkpoint(tmp_path, prefix="gpu2_")


def test_gpu_option_on_a_machine_without_it():
    from facelab.stages.train import TrainSettings

    if torch.cuda.is_available() and torch.cuda.device_count() > 9:
        pytest.skip("has that many GPUs")
    with pytest.raises(SettingsError, match="device"):
        TrainSettings(gpu=9)
    with pytest.raises(SettingsError, match="gpu"):
        TrainSettings(gpu=0, device="cpu")


def test_backups_rotate_and_a_broken_model_names_the_newest(tmp_path):
    model, opt = _tiny()
    folder = tmp_path / "m"
    made = []
    for i in range(4):
        save_checkpoint(folder, model, opt, {}, {"iteration": i})
        made.append(backup_checkpoint(folder, keep=2))
    kept = list_backups(folder)
    assert kept == made[-2:] and all(not p.exists() for p in made[:2])
    assert {p.name for p in kept[-1].iterdir()} == {"config.json", "weights.safetensors", "optimizer.safetensors", "state.json"}
    (folder / "weights.safetensors").write_bytes(b"broken")
    with pytest.raises(ModelError) as e:
        load_checkpoint(folder)
    assert "weights.safetensors" in e.value.message
    assert f"copy {kept[-1]}/* into {folder}" in e.value.hint
    # the advice works
    for f in kept[-1].iterdir():
        shutil.copy(f, folder / f.name)
    assert load_checkpoint(folder).state["iteration"] == 3


# --- crash safety -------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys, torch
    from facelab.models import create_model
    from facelab.train import checkpoint
    from facelab.train.loop import TrainOptions, make_optimizer
    folder, die_after = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(1)
    model = create_model("quick", resolution=32, ae_dims=16, e_dims=4, d_dims=4, d_mask_dims=2)
    opt = make_optimizer(model, TrainOptions())
    real, count = os.replace, [0]
    def replace(a, b):
        real(a, b)
        count[0] += 1
        if count[0] == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
    if die_after > 0:
        checkpoint.os.replace = replace
    print("ready", flush=True)
    it = 100
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        it += 1
        checkpoint.save_checkpoint(folder, model, opt, {}, {"iteration": it})
""")


def _start_child(folder: Path, die_after: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC_ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(die_after)], stdout=subprocess.PIPE, env=env)


def _kill_at(children: dict) -> None:
    """SIGKILL each ``(process, delay)`` child ``delay`` seconds after all of them are saving."""
    for proc, _ in children.values():
        assert proc.stdout.readline().strip() == b"ready"
    start = time.monotonic()
    for proc, delay in sorted(children.values(), key=lambda pd: pd[1]):
        time.sleep(max(0.0, start + delay - time.monotonic()))
        proc.send_signal(signal.SIGKILL)


def test_kill_9_during_save_leaves_a_loadable_model(tmp_path):
    model, opt = _tiny()
    first = tmp_path / "m"
    save_checkpoint(first, model, opt, {}, {"iteration": 100})
    # each child gets its own copy of the model, so they run at once (each start imports torch)
    folders = [first] + [shutil.copytree(first, tmp_path / f"m{i}") for i in range(1, 9)]
    # killed right after each rename of the first save: the commit record, then the four files
    by_rename = {f: _start_child(f, die_after) for f, die_after in zip(folders[:5], range(1, 6))}
    # killed at random moments during a loop of saves
    rng = np.random.default_rng(0)
    at_random = {f: (_start_child(f, 0), float(d)) for f, d in zip(folders[5:], rng.uniform(0.0, 0.4, 4))}
    _kill_at(at_random)
    for proc in [*by_rename.values(), *(p for p, _ in at_random.values())]:
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL
    for folder in by_rename:
        # every kill after the commit record rolled forward to the new save
        assert load_checkpoint(folder).state["iteration"] == 101
        assert not list(folder.glob(".*"))  # recovered: no commit record or temporaries left
    for folder in at_random:
        assert load_checkpoint(folder).state["iteration"] >= 100
    # a second kill at a random moment on each folder a kill during the commit left behind (recovered above)
    again = {f: (_start_child(f, 0), float(d)) for f, d in zip(by_rename, rng.uniform(0.0, 0.4, len(by_rename)))}
    _kill_at(again)
    for folder, (proc, _) in again.items():
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        assert load_checkpoint(folder).state["iteration"] >= 100


# --- the stage with options ----------------------------------------------------------------------


def test_stage_options_are_saved_and_overridable(ws, marker):
    from facelab.stages.train import TrainSettings, run

    lines: list[str] = []
    run(ws, TrainSettings(iterations=2, batch_size=2, device="cpu", flip=False, src_scale=10, sort_by_yaw=True,
                          preview_history=True, backups=2), log=lines.append, marker=marker)
    folder = ws.model_dir("quick")
    opts = json.loads((folder / "state.json").read_text())["options"]
    assert opts["flip"] is False and opts["src_scale"] == 10 and opts["sort_by_yaw"] is True
    assert opts["preview_history"] is True and opts["backups"] == 2
    assert (folder / "previews" / "preview_00000002.jpg").is_file() and (folder / "preview.jpg").is_file()
    assert len(list_backups(folder)) == 1  # the first save makes one; the next only after an hour
    # a later run keeps saved options it does not set, and overrides the ones it does
    run(ws, TrainSettings(iterations=3, device="cpu", flip=True), log=lines.append, marker=marker)
    opts = json.loads((folder / "state.json").read_text())["options"]
    assert opts["flip"] is True and opts["src_scale"] == 10 and opts["sort_by_yaw"] is True
    assert (folder / "previews" / "preview_00000003.jpg").is_file()
    assert len(list_backups(folder)) == 1


@pytest.mark.parametrize("kwargs, key", [
    ({"src_scale": 31}, "src_scale"), ({"src_scale": -31}, "src_scale"), ({"backups": -1}, "backups"),
    ({"flip": "yes"}, "flip"), ({"gpu": -1}, "gpu"), ({"backup_every_minutes": 0}, "backup_every_minutes"),
])
def test_option_validation_names_the_key(kwargs, key):
    from facelab.stages.train import TrainSettings

    with pytest.raises(SettingsError, match=key):
        TrainSettings(**kwargs)


def test_cli_has_the_options():
    import typer

    import facelab.cli.train_cmd  # noqa: F401  (registers the command)
    from facelab.cli import app

    cmd = typer.main.get_command(app).commands["train"]
    out = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for flag in ("--target-iteration", "--flip", "--no-flip", "--src-scale", "--sort-by-yaw", "--preview-history",
                 "--backups", "--gpu"):
        assert flag in out


def test_architecture_options_are_fixed_at_the_first_run(ws, marker):
    from facelab.stages import train as stage

    first = stage.TrainSettings(model="h64", iterations=2, batch_size=2, device="cpu",
                                architecture=(("lightweight", True),), pixel_loss=True)
    stage.run(ws, first, log=lambda s: None, marker=marker)
    saved = json.loads((ws.model_dir("h64") / "config.json").read_text())
    config = saved["config"]
    assert config["lightweight"] is True and saved["options"]["pixel_loss"] is True and config["face_type"] == "half"
    # continuing without architecture flags is fine; changing one is refused with a hint
    assert stage.run(ws, stage.TrainSettings(model="h64", iterations=3, batch_size=2, device="cpu"), log=lambda s: None, marker=marker).counts["iteration"] == 3
    with pytest.raises(SettingsError, match="fixed at the first run"):
        stage.run(ws, stage.TrainSettings(model="h64", iterations=4, device="cpu", architecture=(("lightweight", False),)), log=lambda s: None, marker=marker)
    # pixel loss steers training only: it may change on a later run, and the change is saved
    stage.run(ws, stage.TrainSettings(model="h64", iterations=4, batch_size=2, device="cpu", pixel_loss=False), log=lambda s: None, marker=marker)
    assert json.loads((ws.model_dir("h64") / "config.json").read_text())["options"]["pixel_loss"] is False
    with pytest.raises(SettingsError, match="has no option lightweight"):
        stage.run(ws, stage.TrainSettings(model="quick", name="q", iterations=1, device="cpu", architecture=(("lightweight", True),)), log=lambda s: None, marker=marker)


def test_quick_double_res_is_saved_fixed_and_only_for_quick(ws, marker):
    from facelab.stages import train as stage

    def run(**kw):
        return stage.run(ws, stage.TrainSettings(device="cpu", batch_size=2, **kw), log=lambda s: None, marker=marker)

    tiny = (("resolution", 64), ("e_dims", 8), ("d_dims", 4), ("d_mask_dims", 2), ("ae_dims", 32))
    run(model="quick", name="d", iterations=1, architecture=tiny + (("double_res", True),))
    assert json.loads((ws.model_dir("d") / "config.json").read_text())["config"]["double_res"] is True
    assert run(model="quick", name="d", iterations=2).counts["iteration"] == 2  # continues as saved
    with pytest.raises(SettingsError, match="fixed at the first run.*double_res"):
        run(model="quick", name="d", iterations=3, architecture=(("double_res", False),))
    # a plain model: --no-double-res is what it is (no change), --double-res a change
    run(model="quick", name="p", iterations=1, architecture=tiny)
    assert "double_res" not in json.loads((ws.model_dir("p") / "config.json").read_text())["config"]
    assert run(model="quick", name="p", iterations=2, architecture=(("double_res", False),)).counts["iteration"] == 2
    with pytest.raises(SettingsError, match="fixed at the first run"):
        run(model="quick", name="p", iterations=3, architecture=(("double_res", True),))
    with pytest.raises(SettingsError, match="has no option double_res"):
        run(model="h64", iterations=1, architecture=(("double_res", True),))


def test_quick_starts_without_random_warp_and_with_expression_matching_other_models_not(ws, marker):
    from facelab.stages.train import TrainSettings, run

    def saved(name: str, key: str = "random_warp"):
        return json.loads((ws.model_dir(name) / "state.json").read_text())["options"][key]

    def priority(name: str) -> tuple[bool, float]:
        """The saved eyes-and-mouth choice and the weight the loss trained with."""
        losses = saved(name, "losses")
        assert losses["eyes_mouth_priority"] is saved(name, "eyes_mouth_priority")
        return losses["eyes_mouth_priority"], losses["eyes_mouth_weight"]

    quiet = {"batch_size": 2, "device": "cpu", "save_every_minutes": 60}
    run(ws, TrainSettings(model="quick", iterations=1, **quiet), log=lambda s: None, marker=marker)
    assert saved("quick") is False  # quick's own default
    assert priority("quick")[0] is False
    assert saved("quick", "expression_power") == 0.05  # and its expression matching
    assert saved("quick", "clip_grad") is True  # and its gradient clipping
    run(ws, TrainSettings(model="quick", name="warped", iterations=1, random_warp=True, eyes_mouth_priority=True, **quiet),
        log=lambda s: None, marker=marker)
    assert saved("warped") is True and priority("warped") == (True, 10.0)  # quick's own priority weight
    run(ws, TrainSettings(model="quick", name="warped", iterations=2, **quiet), log=lambda s: None, marker=marker)
    assert saved("warped") is True  # a resumed model keeps its saved choices, not quick's defaults
    assert priority("warped") == (True, 10.0)
    run(ws, TrainSettings(model="h64", iterations=1, architecture=(("lightweight", True),), eyes_mouth_priority=True, **quiet),
        log=lambda s: None, marker=marker)
    assert saved("h64") is True  # DeepFaceLab's default for the other models
    assert saved("h64", "expression_power") == 0.0
    assert saved("h64", "clip_grad") is False
    assert priority("h64") == (True, 30.0)  # and the usual priority weight


def test_random_warp_off_gives_unwarped_inputs(sample_faces_ws):
    from facelab.train.augment import augment_sample

    img, rec = __import__("facelab.faceimage", fromlist=["read_face"]).read_face(sample_faces_ws.aligned_paths("src")[0])
    img = cv2.resize(img, (64, 64))
    mask = np.ones((64, 64), np.float32)
    rng = np.random.default_rng(0)
    still = AugmentOptions(flip=False, warp=False, rotation=0, scale=0, shift=0)
    x, y, _ = augment_sample(img, mask, rng, still)
    np.testing.assert_array_equal(x, y)
    x, y, _ = augment_sample(img, mask, rng, AugmentOptions(flip=False, warp=True, rotation=0, scale=0, shift=0))
    assert np.abs(x.astype(int) - y.astype(int)).mean() > 1.0


def test_lr_dropout_keeps_some_weights_unchanged_and_clip_grad_still_trains(sample_faces_ws):
    ds = FaceDataset(sample_faces_ws.aligned_paths("src")[:8], 32, "full")
    rng = np.random.default_rng(0)
    batch = ds.sample(4, rng)
    for lr_dropout, clip in ((0.5, False), (0.0, True)):
        torch.manual_seed(0)
        model = create_model("quick", resolution=32, ae_dims=16, e_dims=4, d_dims=4, d_mask_dims=2)
        opt = make_optimizer(model, TrainOptions(lr=1e-2))
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_step(model, opt, batch, batch, torch.device("cpu"), clip_grad=clip, lr_dropout=lr_dropout)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        unchanged = (after == before).float().mean().item()
        if lr_dropout:
            assert 0.35 < unchanged < 0.65, unchanged  # about half of the updates dropped
        else:
            assert unchanged < 0.1
    with pytest.raises(SettingsError, match="lr_dropout"):
        __import__("facelab.stages.train", fromlist=["TrainSettings"]).TrainSettings(lr_dropout=1.5)


@pytest.mark.parametrize("scale", [1e-3, 30.0])
def test_clip_gradients_gives_torchs_clipped_gradients(scale):
    from facelab.train.loop import clip_gradients

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(40, 30)) for _ in range(3)] + [torch.nn.Parameter(torch.randn(5))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours[:3], theirs[:3]):  # the last one has no gradient
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    norm = clip_gradients(ours, 1.0)
    assert torch.equal(norm, torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours[:3], theirs[:3]))
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours[:3]]))
    assert (float(norm) > 1.0) == (scale > 1) and abs(float(total) - min(float(norm), 1.0)) < 1e-4  # clipped to 1


def test_sae_archi_letters_compare_normalised_and_training_keys_change(ws, marker):
    from facelab.stages import train as stage

    arch = (("resolution", 32), ("archi", "df-ud"), ("ae_dims", 16), ("e_dims", 4), ("d_dims", 4), ("d_mask_dims", 2))
    stage.run(ws, stage.TrainSettings(model="sae", iterations=1, batch_size=2, device="cpu", architecture=arch), log=lambda s: None, marker=marker)
    # the same archi spelt with its letters in another order is no change
    again = stage.TrainSettings(model="sae", iterations=2, batch_size=2, device="cpu", architecture=(("archi", "df-du"),),
                                face_style_power=10.0, optimizer_mode=3, remove_gray_border=True)
    assert stage.run(ws, again, log=lambda s: None, marker=marker).counts["iteration"] == 2
    saved = json.loads((ws.model_dir("sae") / "config.json").read_text())
    assert saved["config"]["archi"] == "df-ud" and saved["options"]["face_style_power"] == 10.0
    assert saved["options"]["optimizer_mode"] == 3 and saved["options"]["remove_gray_border"] is True
    with pytest.raises(SettingsError, match="fixed at the first run.*archi=liae-ud"):
        stage.run(ws, stage.TrainSettings(model="sae", iterations=3, device="cpu", architecture=(("archi", "liae-ud"),)), log=lambda s: None, marker=marker)
    with pytest.raises(SettingsError, match="face_style_power"):
        stage.TrainSettings(model="sae", iterations=3, device="cpu", face_style_power=101)
    # the old place of these keys: an architecture option is refused by name
    with pytest.raises(SettingsError, match="has no option face_style_power"):
        stage.run(ws, stage.TrainSettings(model="sae", name="other", iterations=1, device="cpu",
                                          architecture=(("face_style_power", 1.0),)), log=lambda s: None, marker=marker)


def test_a_model_saved_with_the_training_keys_in_its_architecture_config_continues_with_them(ws, marker):
    """facelab before 2026-12-05 kept pixel loss, style powers, gray border and optimizer mode in the architecture
    config: such a folder loads, trains on with those values, and is saved the new way."""
    from facelab.stages import train as stage
    from facelab.train.checkpoint import load_checkpoint, read_config

    stage.run(ws, stage.TrainSettings(model="h64", iterations=1, batch_size=2, device="cpu", architecture=(("lightweight", True),)),
              log=lambda s: None, marker=marker)
    path = ws.model_dir("h64") / "config.json"
    old = json.loads(path.read_text())
    for key in ("pixel_loss", "optimizer_mode"):
        del old["options"][key]
    old["config"].update(pixel_loss=True, optimizer_mode=2)  # as the old code wrote it
    path.write_text(json.dumps(old))
    cfg = read_config(ws.model_dir("h64"))
    assert "pixel_loss" not in cfg["config"] and cfg["options"]["pixel_loss"] is True and cfg["options"]["optimizer_mode"] == 2
    assert load_checkpoint(ws.model_dir("h64")).options["pixel_loss"] is True
    stage.run(ws, stage.TrainSettings(model="h64", iterations=2, batch_size=2, device="cpu"), log=lambda s: None, marker=marker)
    new = json.loads(path.read_text())
    assert new["options"]["pixel_loss"] is True and new["options"]["optimizer_mode"] == 2 and "pixel_loss" not in new["config"]


def test_optimizer_mode_3_on_a_model_that_cannot_recompute_trains_as_mode_2_and_says_so(ws, marker, monkeypatch):
    from facelab.stages import train as stage
    from facelab.train.offload import OffloadAdam

    made, real = [], stage.make_optimizer
    monkeypatch.setattr(stage, "make_optimizer", lambda *a, **kw: made.append(real(*a, **kw)) or made[-1])
    summary = stage.run(ws, stage.TrainSettings(model="quick", iterations=1, batch_size=2, device="cpu", optimizer_mode=3),
                        log=lambda s: None, marker=marker)
    assert isinstance(made[0], OffloadAdam)
    assert any("does not recompute activations" in w for w in summary.warnings)
