"""SAE-era training options on real faces: eyes/mouth priority, gray border, uniform yaw, colour transfer of
src samples, multiscale and style losses, GAN and true-face discriminators, pretraining, exact resume,
batch workers, several processes (torchrun), and the out-of-memory message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import read_record
from facelab.models import create_model
from facelab.train.dataset import FaceDataset, eyes_mouth_mask, frame_area_mask
from facelab.train.loop import BatchFeed, TrainOptions, batch_maker, make_optimizer, train_step
from facelab.train.objective import LossOptions, SideBatch, compute, model_outputs
from facelab.workspace import Workspace

SAE_TINY = (("resolution", 32), ("ae_dims", 16), ("e_dims", 4), ("d_dims", 4), ("d_mask_dims", 2))
SRC_ROOT = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def ws(sample_faces_ws, tmp_path) -> Workspace:
    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def sets(sample_faces_ws):
    src = FaceDataset(sample_faces_ws.require_aligned("src"), 64)
    dst = FaceDataset(sample_faces_ws.require_aligned("dst"), 64)
    return src, dst


def _quiet(_s: str) -> None:
    pass


# --- masks ---------------------------------------------------------------------------------


def test_eyes_mouth_mask_covers_eyes_and_mouth_only(sample_faces_ws):
    rec = read_record(sample_faces_ws.require_aligned("dst")[0])
    lm = np.asarray(rec.landmarks) * (128 / rec.size)
    mask = eyes_mouth_mask(lm, 128)
    for i in (37, 44, 48, 54, 62):  # an eye lid point of each eye, mouth corners, inner lip
        x, y = np.round(lm[i]).astype(int)
        assert mask[y, x] == 255
    x, y = np.round(lm[30]).astype(int)  # nose tip: not a priority region
    assert mask[y, x] == 0
    assert 0.02 < (mask > 0).mean() < 0.25


def test_frame_area_mask_marks_what_lay_outside_the_frame(sample_faces_ws):
    rec = read_record(sample_faces_ws.require_aligned("dst")[0])
    to_face = np.array([[128 / rec.size, 0, 0], [0, 128 / rec.size, 0]])
    inside = frame_area_mask(rec, to_face, 128)
    # pretend the frame ended at the face's centre column: the face's right half came from outside it
    cx = float(np.asarray(rec.source_landmarks)[:, 0].mean())
    cut = replace(rec, source_size=(int(cx), rec.source_size[1]))
    half = frame_area_mask(cut, to_face, 128)
    assert (half > 0).mean() < (inside > 0).mean() - 0.2
    assert (half[:, :40] > 0).mean() > 0.9 and (half[:, -40:] > 0).mean() < 0.1


# --- sampling ------------------------------------------------------------------------------


def test_uniform_yaw_spreads_samples_over_head_turn(sets):
    src = sets[0]
    rng = np.random.default_rng(0)
    edges = np.linspace(src.yaw.min(), src.yaw.max() + 1e-3, 17)

    def spread(idx):  # share of samples in the most-used yaw bin
        counts = np.bincount(np.clip(np.searchsorted(edges, src.yaw[idx], side="right") - 1, 0, 15), minlength=16)
        return counts.max() / counts.sum(), (counts > 0).sum()

    plain_top, _ = spread(np.concatenate([src.pick(8, rng) for _ in range(200)]))
    uni_top, uni_bins = spread(src.pick_uniform_yaw(1600, rng))
    occupied = len(np.unique(np.clip(np.searchsorted(edges, src.yaw, side="right") - 1, 0, 15)))
    assert uni_bins == occupied
    assert uni_top < plain_top and uni_top < 1.6 / occupied


@pytest.mark.parametrize("mode", ["rct", "mkl", "sot"])
def test_color_transfer_moves_src_samples_to_dst_colours(sets, mode):
    src, dst = sets
    rng = np.random.default_rng(1)
    idx = np.arange(8)
    plain = src.sample(0, rng, augment=False, indices=idx)[0]
    moved = src.sample(0, np.random.default_rng(1), augment=False, indices=idx, color=(mode, dst))[0]
    m = src.masks[idx] > 0.5
    dst_mean = dst.faces[dst.masks > 0.5].reshape(-1, 3).mean(0)
    before = np.abs(plain[m].reshape(-1, 3).mean(0) - dst_mean).sum()
    after = np.abs(moved[m].reshape(-1, 3).mean(0) - dst_mean).sum()
    assert after < 0.5 * before
    assert moved.dtype == np.uint8 and moved.shape == plain.shape


def test_batches_are_a_function_of_seed_and_iteration_and_workers_change_nothing(sets):
    src, dst = sets
    opts = TrainOptions(batch_size=3, uniform_yaw=True, color_transfer="rct",
                        losses=LossOptions(eyes_mouth_priority=True))
    make = batch_maker(src, dst, opts, seed=5)
    a, b = make(7), make(7)
    assert all(np.array_equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert len(a[0]) == 5  # extras for the eyes/mouth term
    assert not np.array_equal(make(8)[0][1], a[0][1])
    feed = BatchFeed(make, 3, workers=2)
    try:
        for it in range(3, 9):
            got = feed.get(it)
            want = make(it)
            assert all(np.array_equal(x, y) for x, y in zip(got[0] + got[1], want[0] + want[1]))
    finally:
        feed.close()


# --- losses --------------------------------------------------------------------------------


def _sides(sets, extras=True):
    src, dst = sets
    rng = np.random.default_rng(0)
    s = src.sample(4, rng, augment=False, extras=extras)
    d = dst.sample(4, rng, augment=False, extras=extras)
    to = lambda b: SideBatch(*[torch.from_numpy(np.ascontiguousarray(x)).float().div(255 if x.dtype == np.uint8 else 1)
                               .permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)[:, None] for x in b])
    return to(s), to(d)


def _outputs_like_targets(s: SideBatch, d: SideBatch, damage_src=None) -> dict:
    sf = s.targets.clone() if damage_src is None else damage_src(s.targets.clone())
    return {"scales": [(sf, s.masks, d.targets.clone(), d.masks)]}


def test_eyes_mouth_priority_weights_errors_in_those_regions(sets):
    s, d = _sides(sets)
    eyes = lambda t: t + 0.2 * s.eyes_mouth  # an error only in the eyes and mouth
    plain = compute(_outputs_like_targets(s, d, eyes), s, d, LossOptions())[1]
    prio = compute(_outputs_like_targets(s, d, eyes), s, d, LossOptions(eyes_mouth_priority=True))[1]
    assert prio > plain * 3


def test_remove_gray_border_ignores_pixels_from_outside_the_frame(sets):
    s, d = _sides(sets)
    s.in_frame = torch.ones_like(s.in_frame)
    s.in_frame[..., :, 20:] = 0  # as if the right of each face lay outside its frame
    outside = lambda t: torch.cat([t[..., :20], 1 - t[..., 20:]], -1)
    kept = compute(_outputs_like_targets(s, d, outside), s, d, LossOptions())[1]
    removed = compute(_outputs_like_targets(s, d, outside), s, d, LossOptions(remove_gray_border=True))[1]
    assert kept > 0.05 and removed < 1e-6


def test_multiscale_and_style_terms_reach_their_parts(sets):
    s, d = _sides(sets)
    torch.manual_seed(0)
    model = create_model("sae", **{**dict(SAE_TINY), "resolution": 64}, multiscale_decoder=True)
    out = model_outputs(model, s.inputs, d.inputs, swap=True)
    assert [o[0].shape[-1] for o in out["scales"]] == [64, 32, 16]
    base = compute({"scales": out["scales"][:1]}, s, d, LossOptions())[0]
    multi = compute({"scales": out["scales"]}, s, d, LossOptions())[0]
    assert multi > base
    multi.backward(retain_graph=True)
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in model.decoder_src.face.heads)
    model.zero_grad()
    styled = compute(out, s, d, LossOptions(face_style_power=50, bg_style_power=50))[0]
    assert styled > multi
    # the style terms train the src decoder on dst faces (the swap), which nothing else does
    (styled - multi).backward()
    assert model.decoder_src.face.levels[0][0][0].weight.grad.abs().sum() > 0


# --- the stage: discriminators, pretraining, exact resume -------------------------------------


def test_gan_and_true_face_train_save_and_resume(ws, marker):
    from facelab.stages import train as stage

    kw = dict(model="sae", batch_size=2, device="cpu", gan_power=0.1, true_face_power=0.01, architecture=SAE_TINY)
    stage.run(ws, stage.TrainSettings(iterations=2, **kw), log=_quiet, marker=marker)
    folder = ws.model_dir("sae")
    saved = json.loads((folder / "state.json").read_text())
    assert saved["extras"] == ["adversarial"] and (folder / "adversarial.safetensors").is_file()
    from facelab.train.checkpoint import load_checkpoint

    adv = load_checkpoint(folder).extras["adversarial"]
    assert any(k.startswith("patch.") for k in adv["tensors"]) and any(k.startswith("code.") for k in adv["tensors"])
    assert stage.run(ws, stage.TrainSettings(iterations=3, **kw), log=_quiet, marker=marker).counts["iteration"] == 3
    after = load_checkpoint(folder).extras["adversarial"]["tensors"]
    assert any(not torch.equal(after[k], adv["tensors"][k]) for k in after if k.startswith("patch."))
    with pytest.raises(SettingsError, match="true_face_power"):
        stage.run(ws, stage.TrainSettings(**{**kw, "iterations": 4, "architecture": ()}, name="q").__class__(
            model="liaef128", name="q", iterations=1, device="cpu", true_face_power=0.01), log=_quiet, marker=marker)


def test_pretraining_then_the_pair_restarts_the_count(ws, sample_faces_ws, tmp_path, marker):
    from facelab.stages import train as stage

    generic = tmp_path / "generic"
    generic.mkdir()
    for p in sample_faces_ws.require_aligned("src")[:10] + sample_faces_ws.require_aligned("dst")[:10]:
        shutil.copy(p, generic / f"{p.parent.parent.name}_{p.name}")
    lines: list[str] = []
    s = stage.run(ws, stage.TrainSettings(model="quick", iterations=3, batch_size=2, device="cpu", pretrain=str(generic),
                                          architecture=(("resolution", 32),)), log=lines.append, marker=marker)
    assert s.counts["iteration"] == 3 and any("20 pretraining faces" in x for x in lines)
    assert json.loads((ws.model_dir("quick") / "state.json").read_text())["pretraining"] is True
    lines.clear()
    s = stage.run(ws, stage.TrainSettings(model="quick", iterations=2, batch_size=2, device="cpu"), log=lines.append, marker=marker)
    assert any("pretraining ended at iteration 3" in x for x in lines)
    state = json.loads((ws.model_dir("quick") / "state.json").read_text())
    assert s.counts["iteration"] == 2 and state["pretraining"] is False and state["pretrained_iterations"] == 3
    with pytest.raises(SettingsError, match="no aligned faces"):
        stage.run(ws, stage.TrainSettings(model="quick", name="x", iterations=1, device="cpu", pretrain=str(tmp_path / "ws")), log=_quiet, marker=marker)


def test_resume_continues_exactly(ws, marker):
    """2 + 2 iterations with a save between give the very weights of 4 in one run (same batches, optimizer)."""
    from facelab.stages import train as stage
    from facelab.train.checkpoint import load_checkpoint

    kw = dict(model="sae", batch_size=2, device="cpu", seed=3, eyes_mouth_priority=True, uniform_yaw=True,
              color_transfer="rct", architecture=SAE_TINY)
    stage.run(ws, stage.TrainSettings(iterations=4, name="once", **kw), log=_quiet, marker=marker)
    stage.run(ws, stage.TrainSettings(iterations=2, name="twice", **kw), log=_quiet, marker=marker)
    stage.run(ws, stage.TrainSettings(iterations=4, name="twice", **{**kw, "architecture": ()}), log=_quiet, marker=marker)
    a, b = load_checkpoint(ws.model_dir("once")).model.state_dict(), load_checkpoint(ws.model_dir("twice")).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_out_of_memory_names_the_options_that_help(ws, monkeypatch, marker):
    from facelab.stages import train as stage

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(stage, "train", oom)
    with pytest.raises(FacelabError) as e:
        stage.run(ws, stage.TrainSettings(model="sae", iterations=1, batch_size=8, device="cpu", architecture=SAE_TINY), log=_quiet, marker=marker)
    assert "out of CPU memory" in e.value.message
    assert "--batch-size (try 4)" in e.value.hint and "--optimizer-mode 2" in e.value.hint


def test_new_options_are_validated_by_name():
    from facelab.stages.train import TrainSettings

    for kw, key in (({"gan_power": 11}, "gan_power"), ({"true_face_power": 2}, "true_face_power"),
                    ({"color_transfer": "abc"}, "color_transfer"), ({"workers": -1}, "workers"),
                    ({"uniform_yaw": "yes"}, "uniform_yaw")):
        with pytest.raises(SettingsError, match=key):
            TrainSettings(**kw)


def test_two_processes_with_torchrun_stay_in_step(ws):
    """torchrun with 2 CPU processes (Gloo): both train, DDP keeps their weights equal, one saves."""
    env = {**os.environ, "PYTHONPATH": str(SRC_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "facelab",
           "-w", str(ws.root), "train", "--model", "quick", "--resolution", "32", "--iterations", "4", "--batch-size", "2", "--device", "cpu"]
    r = subprocess.run(cmd, cwd=ws.root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[:4000]  # a worker's own message comes first
    assert "2 processes" in r.stdout and "different weights" not in r.stdout + r.stderr
    assert "expression matching: power 0.05" in r.stdout  # quick's default term runs the same on both processes
    assert r.stdout.count("train: iteration: 4") == 1  # one report, from the first process
    assert json.loads((ws.model_dir("quick") / "state.json").read_text())["iteration"] == 4


def test_settle_waits_for_the_backend_to_let_go_of_the_last_collectives(tmp_path):
    """Dist.settle (called before leaving the group): True once Gloo's threads have dropped the tensors of
    the last collectives, False after its timeout while something else still holds one."""
    import torch.distributed as torch_dist

    from facelab.train.distributed import Dist

    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        d = Dist(0, 1, torch.device("cpu"))
        assert d.agree("minutes", True, False) == ("minutes", True, False)
        assert d.same_weights(torch.nn.Linear(3, 2))
        assert len(d._recent) == 3 and d.settle(timeout=10.0) and not d._recent
        held = torch.zeros(1, requires_grad=True)
        product = held * held  # autograd keeps its own reference to ``held``
        d._recent.append(held)
        assert held._use_count() > 1 and not d.settle(timeout=0.05)
        del product
        assert d.settle(timeout=1.0)
    finally:
        torch_dist.destroy_process_group()


def test_quick_learns_both_sides_in_the_first_hundred_iterations(sets):
    """DeepFaceLab's Quick96 still showed a flat field for src after 200 iterations; quick must show both faces."""
    src, dst = FaceDataset(sets[0].paths, 64), FaceDataset(sets[1].paths, 64)
    torch.manual_seed(0)
    model = create_model("quick")
    opts = TrainOptions(batch_size=4)
    opt = make_optimizer(model, opts)
    make = batch_maker(src, dst, opts, seed=0)
    torch.set_flush_denormal(True)
    for it in range(100):
        train_step(model, opt, *make(it), torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        s = torch.from_numpy(src.faces[:8]).permute(0, 3, 1, 2).float() / 255
        d = torch.from_numpy(dst.faces[:8]).permute(0, 3, 1, 2).float() / 255
        s_rec, _, d_rec, _ = model(s, d)
    for rec, target, masks in ((s_rec, s, src.masks[:8]), (d_rec, d, dst.masks[:8])):
        inside = torch.from_numpy(masks > 0.5)[:, None].expand_as(target)
        r, t = rec[inside], target[inside]
        corr = torch.corrcoef(torch.stack([r, t]))[0, 1]
        assert corr > 0.6, f"reconstruction barely follows the face (correlation {corr:.2f})"
        assert r.std() > 0.5 * t.std(), "a flat field, not a face"


def test_mixed_precision_choice_and_cpu_bfloat16_step(sets):
    from facelab.train.loop import AmpState, cpu_bf16_supported

    cpu = torch.device("cpu")
    assert AmpState.for_device(cpu, False) is None  # --no-amp: float32
    if not cpu_bf16_supported():
        assert AmpState.for_device(cpu, True) is None and AmpState.for_device(cpu, None) is None
        pytest.skip("this CPU has no native bfloat16")
    assert AmpState.for_device(cpu, None).dtype == torch.bfloat16  # the default where the CPU has it natively
    amp = AmpState.for_device(cpu, True)
    assert amp.dtype == torch.bfloat16 and amp.scaler is None
    src, dst = sets
    make = batch_maker(src, dst, TrainOptions(batch_size=2), seed=0)
    results = []
    for a in (None, amp):
        torch.manual_seed(0)
        model = create_model("sae", **{**dict(SAE_TINY), "resolution": 64})
        opt = make_optimizer(model, TrainOptions())
        results.append([train_step(model, opt, *make(i), cpu, amp=a) for i in range(3)])
    (f32, bf16) = np.array(results)
    assert np.isfinite(bf16).all() and np.allclose(f32, bf16, rtol=0.05)
