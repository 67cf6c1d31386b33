"""Training machinery: losses, augmentation, dataset, checkpoints, predictor, the loop and the stage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from facelab.errors import ModelError, SettingsError, WorkspaceError
from facelab.models import create_model
from facelab.train.augment import AugmentOptions, augment_sample, random_affine, random_warp, random_warp_maps
from facelab.inference import load_predictor
from facelab.train.checkpoint import load_checkpoint, save_checkpoint
from facelab.train.dataset import FaceDataset
from facelab.train.losses import C1, C2, box_mean, dssim, ssim
from facelab.train.loop import TrainOptions, make_optimizer, train, train_step
from facelab.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 16, "e_dims": 4, "d_dims": 4, "d_mask_dims": 2}


@pytest.fixture(scope="module")
def faces_root(sample_faces_ws) -> Path:
    """A workspace with 30 real aligned faces per side, cut from the shipped clips."""
    return sample_faces_ws.root


@pytest.fixture()
def ws(faces_root, tmp_path) -> Workspace:
    """A fresh copy of the face workspace (tests write models into it)."""
    import shutil

    shutil.copytree(faces_root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def datasets(faces_root):
    w = Workspace(faces_root)
    return FaceDataset(w.aligned_paths("src"), 32), FaceDataset(w.aligned_paths("dst"), 32)


def _t(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


# --- losses -------------------------------------------------------------------


def test_dssim_identical_is_zero(datasets):
    x = _t(datasets[0].faces[:4])
    assert dssim(x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_dssim_of_constant_images_matches_hand_computation():
    # constant images: variances and covariance are 0, so SSIM is the luminance term only
    a, b = torch.full((1, 3, 16, 16), 0.2, dtype=torch.float64), torch.full((1, 3, 16, 16), 0.6, dtype=torch.float64)
    expected_ssim = (2 * 0.2 * 0.6 + C1) / (0.2**2 + 0.6**2 + C1)
    assert ssim(a, b).item() == pytest.approx(expected_ssim, rel=1e-9)
    assert dssim(a, b).item() == pytest.approx((1 - expected_ssim) / 2, rel=1e-9)
    # float32 loses a little to cancellation in E[x^2] - E[x]^2, no more
    assert dssim(a.float(), b.float()).item() == pytest.approx((1 - expected_ssim) / 2, rel=1e-3)


def test_ssim_matches_an_opencv_reference(datasets):
    """Against the SSIM recipe of the OpenCV docs (GaussianBlur 11x11, sigma 1.5), on the valid region."""
    a = datasets[0].faces[0].astype(np.float64) / 255
    b = datasets[1].faces[0].astype(np.float64) / 255
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)[5:-5, 5:-5]  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    ref = ((2 * mu_a * mu_b + C1) * (2 * cov + C2) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))).mean()
    to_t = lambda x: torch.from_numpy(x[None]).permute(0, 3, 1, 2).float()  # noqa: E731
    got = ssim(to_t(a), to_t(b))
    assert got.item() == pytest.approx(ref, abs=1e-4)
    assert 0 < dssim(_t(datasets[0].faces[:1]), _t(datasets[1].faces[:1])).item() < 0.5


@pytest.mark.parametrize("k", [3, 5, 9])
def test_box_mean_is_avg_pool_without_padding(datasets, k):
    """The trainer's box blur (soft masks, style loss) against torch's pooling it replaces, on real faces and
    their hull masks, in the memory layout the trainer uses (channels_last)."""
    faces = _t(datasets[0].faces[:4]).contiguous(memory_format=torch.channels_last)
    masks = torch.from_numpy(datasets[0].masks[:4])[:, None]
    for x in (faces, masks):
        ref = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
        torch.testing.assert_close(box_mean(x, k), ref, rtol=0, atol=1e-6)
    corner = box_mean(torch.ones(1, 1, 8, 8), k)  # edges average only what lies inside
    torch.testing.assert_close(corner, torch.ones(1, 1, 8, 8))


def test_ssim_bad_input():
    with pytest.raises(ValueError, match="smaller"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="expected"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15))


# --- augmentation ---------------------------------------------------------------


def test_random_warp_keeps_shape_dtype_and_input(datasets):
    face = datasets[0].faces[0]
    before = face.copy()
    out = random_warp(face, np.random.default_rng(1))
    assert out.shape == face.shape and out.dtype == face.dtype
    np.testing.assert_array_equal(face, before)
    assert np.abs(out.astype(int) - face).mean() > 1  # it did move pixels
    assert np.abs(out.astype(int) - face).mean() < 40  # but it is still the same face
    np.testing.assert_array_equal(out, random_warp(face, np.random.default_rng(1)))  # seeded


def test_random_warp_bad_input():
    with pytest.raises(ValueError, match="square"):
        random_warp(np.zeros((10, 12, 3), np.uint8), np.random.default_rng(0))


def test_flip_mirrors_the_image():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :4] = 255
    opts = AugmentOptions(rotation=0, scale=0, shift=0, flip=True)
    rng = np.random.default_rng(0)
    mats = [random_affine(rng, 32, opts) for _ in range(20)]
    flipped = [m for m in mats if m[0, 0] < 0]
    assert 0 < len(flipped) < 20
    out = cv2.warpAffine(img, flipped[0], (32, 32))
    assert out[:, -4:].min() == 255 and out[:, :4].max() == 0


def test_augment_sample_warps_only_the_input(datasets):
    face, mask = datasets[0].faces[1], datasets[0].masks[1]
    face_before, mask_before = face.copy(), mask.copy()
    warped, target, tmask = augment_sample(face, mask, np.random.default_rng(3))
    assert warped.shape == target.shape == face.shape and warped.dtype == np.uint8
    assert tmask.shape == mask.shape and tmask.dtype == np.float32
    np.testing.assert_array_equal(face, face_before)
    np.testing.assert_array_equal(mask, mask_before)
    assert not np.array_equal(warped, target)
    # without the warp, input and target are the same picture
    w2, t2, _ = augment_sample(face, mask, np.random.default_rng(3), AugmentOptions(warp=False))
    np.testing.assert_array_equal(w2, t2)


def test_random_warp_has_no_systematic_scale_or_shift(datasets):
    """The warp deforms locally but keeps the face where the target has it: a zero-strength warp is the
    identity, and over many draws the maps average to the identity. (A 1.2x stretch hid in the maps until
    2026-12-04: every warped input was the face shrunk to 83 %.)"""
    face, mask = datasets[0].faces[1], datasets[0].masks[1]
    still = AugmentOptions(warp_strength=0.0)
    warped, target, _ = augment_sample(face, mask, np.random.default_rng(5), still)
    assert np.abs(warped.astype(int) - target).max() <= 1  # identical up to float rounding in the remap
    size = face.shape[0]
    ident = np.arange(size, dtype=np.float32)
    draws = [random_warp_maps(np.random.default_rng(seed), size) for seed in range(200)]
    mean_dx = np.mean([mx - ident[None, :] for mx, _ in draws], axis=0)
    mean_dy = np.mean([my - ident[:, None] for _, my in draws], axis=0)
    assert np.abs(mean_dx).max() < 0.5 and np.abs(mean_dy).max() < 0.5
    # each draw moves pixels by about a pixel at 64 px, and at most a few
    spread = np.mean([np.abs(mx - ident[None, :]).mean() for mx, _ in draws])
    assert 0.3 < spread * 64 / size < 3


# --- dataset ------------------------------------------------------------------------


def test_dataset_shapes_and_masks(datasets):
    src, _ = datasets
    assert src.faces.shape == (len(src), 32, 32, 3) and src.faces.dtype == np.uint8
    assert src.masks.shape == (len(src), 32, 32) and src.masks.dtype == np.float32
    assert src.mismatched == 0
    # the hull covers the middle of the face and not the corners
    assert src.masks[:, 16, 16].min() == 1 and src.masks[:, 0, 0].max() == 0
    inputs, targets, masks = src.sample(5, np.random.default_rng(0))
    assert inputs.shape == targets.shape == (5, 32, 32, 3) and masks.shape == (5, 32, 32)


def test_dataset_needs_faces():
    with pytest.raises(WorkspaceError):
        FaceDataset([], 32)


def test_a_face_set_too_large_for_memory_is_refused_before_a_face_is_read(ws, monkeypatch):
    from facelab.train import dataset

    paths = ws.aligned_paths("src")
    monkeypatch.setattr(dataset, "available_memory", lambda: dataset.set_bytes(len(paths), 128, False) - 1)
    monkeypatch.setattr(dataset, "_load_one", lambda *a: pytest.fail("read a face"))
    with pytest.raises(WorkspaceError) as e:
        FaceDataset(paths, 128, detail=False)
    assert "need" in str(e.value) and "GiB" in str(e.value)
    assert "sort src --by final --target" in e.value.hint


def test_the_detail_copies_are_dropped_when_only_the_faces_fit_in_memory(ws, monkeypatch):
    from facelab.train import dataset

    paths = ws.aligned_paths("src")[:6]
    assert FaceDataset(paths, 32).detail is not None
    monkeypatch.setattr(dataset, "available_memory", lambda: dataset.set_bytes(len(paths), 32, False))
    d = FaceDataset(paths, 32)
    assert d.detail is None and len(d) == 6


def test_faces_loaded_in_chunks_stay_with_their_files_when_one_cannot_be_read(ws, monkeypatch):
    from facelab.train import dataset

    paths = ws.aligned_paths("src")[:8]
    paths[3].write_bytes(paths[3].read_bytes()[:200])  # truncated
    monkeypatch.setattr(dataset, "LOAD_CHUNK", 3)
    d = FaceDataset(paths, 32)
    assert len(d.skipped) == 1 and paths[3].name in d.skipped[0]
    assert d.paths == paths[:3] + paths[4:] and d.faces.shape[0] == d.masks.shape[0] == d.detail.shape[0] == 7
    for k, p in enumerate(d.paths):
        one = FaceDataset([p], 32)
        assert np.array_equal(d.faces[k], one.faces[0]) and np.array_equal(d.masks[k], one.masks[0])
        assert np.array_equal(d.detail[k], one.detail[0]) and np.array_equal(d.extra_masks[k], one.extra_masks[0])
        assert d.yaw[k] == one.yaw[0] and np.array_equal(d.landmarks[k], one.landmarks[0])


# --- checkpoints and predictor --------------------------------------------------------


def _trained_tiny(datasets, steps: int = 3):
    torch.manual_seed(0)
    model = create_model("quick", **TINY)
    opt = make_optimizer(model, TrainOptions())
    rng = np.random.default_rng(0)
    for _ in range(steps):
        train_step(model, opt, datasets[0].sample(2, rng), datasets[1].sample(2, rng), torch.device("cpu"))
    return model, opt


def test_checkpoint_round_trip(datasets, tmp_path):
    model, opt = _trained_tiny(datasets)
    save_checkpoint(tmp_path / "m", model, opt, {"batch_size": 2}, {"iteration": 3, "loss_history": [[3, 0.1, 0.2]]})
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "weights.safetensors", "optimizer.safetensors", "state.json"}
    ck = load_checkpoint(tmp_path / "m")
    assert ck.architecture == "quick" and ck.config == model.config and ck.options == {"batch_size": 2}
    assert ck.state["iteration"] == 3
    x = _t(datasets[1].faces[:2])
    model.eval(), ck.model.eval()
    with torch.no_grad():
        for a, b in zip(model(x, x), ck.model(x, x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    opt2 = make_optimizer(ck.model, TrainOptions())
    opt2.load_state_dict(ck.optimizer_state)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert json.dumps(s1["param_groups"]) == json.dumps(s2["param_groups"])
    assert s1["state"].keys() == s2["state"].keys()
    for k in s1["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s1["state"][k][name], s2["state"][k][name], rtol=0, atol=0)
    # no pickle anywhere: the weights are plain safetensors
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "m" / "weights.safetensors")) == set(model.state_dict())


def test_corrupt_or_missing_files_raise_model_error(datasets, tmp_path):
    model, opt = _trained_tiny(datasets, 1)
    folder = tmp_path / "m"
    save_checkpoint(folder, model, opt, {}, {"iteration": 1})
    data = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="weights.safetensors"):
        load_checkpoint(folder)
    (folder / "weights.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ModelError, match="weights.safetensors"):
        load_predictor(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match="weights.safetensors"):
        load_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(ModelError, match="state.json"):
        load_checkpoint(folder)


def test_interrupted_save_is_detected(datasets, tmp_path):
    """Weights from one save with state.json from another: refused, not silently mixed."""
    model, opt = _trained_tiny(datasets, 1)
    folder = tmp_path / "m"
    save_checkpoint(folder, model, opt, {}, {"iteration": 1})
    old_state = (folder / "state.json").read_bytes()
    save_checkpoint(folder, model, opt, {}, {"iteration": 2})
    (folder / "state.json").write_bytes(old_state)
    with pytest.raises(ModelError, match="interrupted"):
        load_checkpoint(folder)


def test_a_save_on_a_full_disk_leaves_the_last_save_and_no_temporaries(datasets, tmp_path, monkeypatch):
    import errno
    import os

    from facelab.errors import FacelabError
    from facelab.train import checkpoint

    model, opt = _trained_tiny(datasets, 1)
    folder = tmp_path / "m"
    save_checkpoint(folder, model, opt, {}, {"iteration": 1})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []

    def fsync(fd):  # the disk fills up while the second file (the optimizer) is written
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(FacelabError, match="disk full") as e:
        save_checkpoint(folder, model, opt, {}, {"iteration": 2})
    assert str(folder) in str(e.value) and "MiB" in str(e.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no .tmp left, the last save untouched
    monkeypatch.setattr(checkpoint.os, "fsync", os.fsync)
    assert load_checkpoint(folder).state["iteration"] == 1


def test_a_backup_on_a_full_disk_leaves_no_half_copy(datasets, tmp_path, monkeypatch):
    import errno

    from facelab.errors import FacelabError
    from facelab.train import checkpoint

    model, opt = _trained_tiny(datasets, 1)
    folder = tmp_path / "m"
    save_checkpoint(folder, model, opt, {}, {"iteration": 1})
    real, calls = checkpoint.shutil.copyfile, []

    def copyfile(a, b):  # the disk fills up at the second file
        calls.append(a)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(checkpoint.shutil, "copyfile", copyfile)
    with pytest.raises(FacelabError, match="disk full.*a backup of the model needs"):
        checkpoint.backup_checkpoint(folder)
    assert list((folder / "backups").iterdir()) == []


def test_training_does_not_start_without_disk_for_its_first_save(ws, marker, disk_free):
    from facelab.errors import FacelabError
    from facelab.stages import train as stage

    disk_free(2**20)
    with pytest.raises(FacelabError, match="not enough free disk.*backup due") as e:
        stage.run(ws, stage.TrainSettings(iterations=2, batch_size=2, device="cpu"), log=lambda s: None, marker=marker)
    assert "--backups 0" in e.value.hint and not ws.model_dir("quick").exists()
    disk_free(None)
    stage.run(ws, stage.TrainSettings(iterations=2, batch_size=2, device="cpu"), log=lambda s: None, marker=marker)
    assert (ws.model_dir("quick") / "weights.safetensors").is_file()


def test_predictor_shapes_and_ranges(datasets, tmp_path):
    model, opt = _trained_tiny(datasets, 1)
    save_checkpoint(tmp_path / "m", model, opt, {}, {"iteration": 1})
    p = load_predictor(tmp_path / "m")
    assert p.resolution == 32 and p.face_type == "full"
    batch = datasets[1].faces[:3].astype(np.float32) / 255
    faces, masks = p.predict(batch)
    assert faces.shape == (3, 32, 32, 3) and faces.dtype == np.float32
    assert masks.shape == (3, 32, 32) and masks.dtype == np.float32
    assert 0 <= faces.min() and faces.max() <= 1 and 0 <= masks.min() and masks.max() <= 1
    with torch.no_grad():
        ref, _ = model.eval().swap(torch.from_numpy(batch).permute(0, 3, 1, 2))
    np.testing.assert_allclose(faces, ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        p.predict(np.zeros((1, 64, 64, 3), np.float32))


# --- loop ---------------------------------------------------------------------------


def test_loop_budget_interrupt_and_preview(datasets, tmp_path, marker):
    torch.manual_seed(0)
    model = create_model("quick", **TINY)
    opt = make_optimizer(model, TrainOptions())
    saves: list[int] = []
    opts = TrainOptions(batch_size=2, log_every_seconds=0)

    def stop(line: str) -> None:
        assert line.startswith("[iter ")
        if "[iter 5]" in line and "ms/it" in line:
            raise KeyboardInterrupt

    st = train(model, opt, *datasets, tmp_path, opts, {}, torch.device("cpu"), target_iteration=100,
               save=lambda s: saves.append(s["iteration"]), log=stop, marker=marker)
    assert st["stopped"] == "interrupted" and st["iteration"] == 5 and saves == [5]
    assert st["loss_history"][-1][0] == 5
    jpeg = (tmp_path / "preview.jpg").read_bytes()
    assert b"Synthetic media" in jpeg[:2000]
    preview = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert preview.shape[1] == 5 * 128 and preview.shape[0] > 4 * 128
    assert not (tmp_path / "previews").exists()  # history is off by default
    st = train(model, opt, *datasets, tmp_path, TrainOptions(batch_size=2), st, torch.device("cpu"), target_iteration=8, log=lambda s: None, marker=marker)
    assert st["stopped"] == "iterations" and st["iteration"] == 8
    st = train(model, opt, *datasets, tmp_path, TrainOptions(batch_size=2), st, torch.device("cpu"), minutes=1e-4, log=lambda s: None, marker=marker)
    assert st["stopped"] == "minutes"


def test_loop_restores_the_last_good_weights_after_a_blow_up(datasets, tmp_path, monkeypatch, marker):
    from facelab.train import guard

    monkeypatch.setattr(guard, "REFERENCE", 4)
    monkeypatch.setattr(guard, "SNAPSHOT_EVERY", 2)
    monkeypatch.setattr(guard, "JUMP", 2.0)  # the tiny model's loss only triples (the 128 px blow-up: x30)
    torch.manual_seed(0)
    model = create_model("quick", **TINY)
    opts = TrainOptions(batch_size=2, log_every_seconds=0)
    opt = make_optimizer(model, opts)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("[iter 80] ") and "ms/it" in line:  # the blow-up: every weight thrown far off
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 20.0)

    st = train(model, opt, *datasets, tmp_path, opts, {}, torch.device("cpu"), target_iteration=160, log=log, marker=marker)
    restored = [ln for ln in lines if "restored the weights" in ln]
    assert len(restored) == 1, st["loss_history"][5:12]
    # the copy taken at the healthy check of iteration 80, just before the weights were thrown off
    assert "restored the weights of iteration 80 " in restored[0]
    assert st["lr_scale"] == 0.5 and opt.param_groups[0]["lr"] == pytest.approx(opts.lr * 0.5)
    hist = np.array(st["loss_history"])
    before = hist[(hist[:, 0] > 60) & (hist[:, 0] <= 80), 1:].sum(1).mean()
    after = hist[hist[:, 0] > 140, 1:].sum(1).mean()
    assert after < 1.2 * before  # back where it was, not stuck at the blown-up loss


# --- stage --------------------------------------------------------------------------


def test_stage_trains_and_resumes(ws, marker):
    from facelab.stages.train import TrainSettings, run

    lines: list[str] = []
    summary = run(ws, TrainSettings(iterations=3, batch_size=2, device="cpu"), log=lines.append, marker=marker)
    folder = ws.model_dir("quick")
    assert summary.counts["iteration"] == 3 and summary.outputs == [str(folder)]
    state = json.loads((folder / "state.json").read_text())
    assert state["iteration"] == 3 and state["options"]["batch_size"] == 2
    assert (folder / "preview.jpg").is_file()
    # a total target: three more iterations up to 6; the saved batch size is reused
    summary = run(ws, TrainSettings(iterations=6, device="cpu"), log=lines.append, marker=marker)
    assert summary.counts["iteration"] == 6
    assert json.loads((folder / "state.json").read_text())["options"]["batch_size"] == 2
    assert any("resuming" in line for line in lines)
    # already past the target: nothing to do
    assert run(ws, TrainSettings(iterations=4, device="cpu"), log=lines.append, marker=marker).counts["iteration"] == 6
    # a model folder holding another architecture
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"] = "other"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SettingsError, match="other"):
        run(ws, TrainSettings(iterations=7, device="cpu"), log=lines.append, marker=marker)


def test_stage_needs_aligned_faces(tmp_path, marker):
    from facelab.stages.train import TrainSettings, run

    w = Workspace(tmp_path / "empty")
    w.create()
    with pytest.raises(WorkspaceError) as e:
        run(w, TrainSettings(iterations=1, device="cpu"), marker=marker)
    assert "facelab extract src" in e.value.hint


@pytest.mark.parametrize("kwargs, key", [
    ({"iterations": 0}, "iterations"), ({"minutes": -1.0}, "minutes"), ({"batch_size": 0}, "batch_size"),
    ({"save_every_minutes": 0}, "save_every_minutes"), ({"model": "nope"}, "model"), ({"device": "tpu"}, "device"),
    ({"device": "cuda:7"}, "device"), ({"seed": -1}, "seed"), ({"name": "../x"}, "name"),
])
def test_settings_validation_names_the_key(kwargs, key):
    from facelab.stages.train import TrainSettings

    with pytest.raises(SettingsError, match=key):
        TrainSettings(**kwargs)


def test_device_auto_resolves():
    from facelab.device import resolve_device

    dev = resolve_device("auto")
    assert dev.type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cpu_threads_follow_omp_num_threads_then_the_cores_this_process_may_use(monkeypatch):
    import os

    from facelab.device import cpu_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a count per process (torchrun sets it so for each of its processes)
    assert cpu_threads() == 3 and cpu_threads(share=2) == 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for unset in ("", "0", "many"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert cpu_threads() == cores
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == cores and cpu_threads(share=cores) == 1
