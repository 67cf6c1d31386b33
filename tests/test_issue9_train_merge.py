"""Issue 9, train and merge options that did not do what their help said: optimizer mode 3 offloads, the
target iteration is saved, the first-run questions and dims ranges, GPU-indexed models in merge, negative
mask blur, denoise of faceless frames, and the merge help."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facelab.errors import FacelabError, SettingsError
from facelab.workspace import Workspace

SAE_TINY = (("resolution", 32), ("ae_dims", 16), ("e_dims", 4), ("d_dims", 4), ("d_mask_dims", 2))
QUICK_TINY = (("resolution", 32),)


def _quiet(_s: str) -> None:
    pass


@pytest.fixture()
def ws(sample_faces_ws, tmp_path) -> Workspace:
    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _options(ws: Workspace, name: str, prefix: str = "") -> dict:
    return json.loads((ws.model_dir(name) / f"{prefix}config.json").read_text())["options"]


def _iteration(ws: Workspace, name: str, prefix: str = "") -> int:
    return json.loads((ws.model_dir(name) / f"{prefix}state.json").read_text())["iteration"]


# --- point 11: optimizer mode 3 = mode 2 (offloaded optimizer state) + recomputation -------------------


def test_optimizer_mode_3_offloads_the_optimizer_state_and_recomputes(ws, monkeypatch, marker):
    from facelab.models import sae
    from facelab.stages import train
    from facelab.train.offload import OffloadAdam

    made, recomputed = [], []
    real_make, real_checkpoint = train.make_optimizer, sae.checkpoint

    def spy_make(*a, **kw):
        made.append(real_make(*a, **kw))
        return made[-1]

    def spy_checkpoint(*a, **kw):
        recomputed.append(1)
        return real_checkpoint(*a, **kw)

    monkeypatch.setattr(train, "make_optimizer", spy_make)
    monkeypatch.setattr(sae, "checkpoint", spy_checkpoint)
    for mode, offloaded in ((3, True), (1, False), (2, True)):
        made.clear()
        recomputed.clear()
        train.run(ws, train.TrainSettings(model="sae", name=f"m{mode}", iterations=2, batch_size=2, device="cpu",
                                          architecture=SAE_TINY, optimizer_mode=mode), log=_quiet, marker=marker)
        assert isinstance(made[0], OffloadAdam) is offloaded, mode
        assert bool(recomputed) is (mode == 3), mode
        # the state is Adam's, in system memory, and was updated
        states = list(made[0].state.values())
        assert states and all(s["exp_avg"].device.type == "cpu" and int(s["step"]) == 2 for s in states)
    # a mode-1 model continued in mode 3 keeps its optimizer state (same state dict structure)
    made.clear()
    train.run(ws, train.TrainSettings(model="sae", name="m1", iterations=3, batch_size=2, device="cpu",
                                      optimizer_mode=3), log=_quiet, marker=marker)
    assert isinstance(made[0], OffloadAdam) and all(int(s["step"]) == 3 for s in made[0].state.values())


# --- point 12: the target iteration is saved with the model ---------------------------------------------


def test_target_iteration_is_saved_honoured_changed_and_removed(ws, marker):
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.stages import train

    def run(**kw):
        return train.run(ws, train.TrainSettings(model="quick", batch_size=2, device="cpu", architecture=QUICK_TINY, **kw),
                         log=_quiet, marker=marker)

    run(iterations=2)
    assert _iteration(ws, "quick") == 2 and _options(ws, "quick")["target_iteration"] == 2
    # no flag: the saved target holds (before, this trained on for the whole 6 s)
    s = run(minutes=0.1)
    assert s.counts["iteration"] == 2 and _options(ws, "quick")["target_iteration"] == 2
    # the flag changes it, and the new target is saved
    run(iterations=3)
    assert _iteration(ws, "quick") == 3 and _options(ws, "quick")["target_iteration"] == 3
    # --iterations 0 removes it: training goes on past 3 (for the minutes given)
    r = CliRunner().invoke(app, ["-w", str(ws.root), "train", "--model", "quick", "--iterations", "0", "--minutes", "0.03",
                                 "--device", "cpu", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert _iteration(ws, "quick") > 3 and _options(ws, "quick")["target_iteration"] is None
    with pytest.raises(SettingsError, match="no_target"):
        train.TrainSettings(iterations=5, no_target=True)


# --- point 10: merge and preview find models trained with --gpu N (files gpuN_*) ------------------------

MODEL_FILES = ("config.json", "weights.safetensors", "optimizer.safetensors", "state.json")


@pytest.fixture(scope="module")
def gpu_ws(sample_faces_ws, tmp_path_factory, marker) -> Workspace:
    """A workspace whose model folders hold GPU-indexed variants: ``only1`` (gpu1_ only), ``two`` (gpu0_ and
    gpu1_, different weights) and ``mixed`` (plain and gpu2_). The variants are the files `facelab train --gpu N`
    writes (the same files with the prefix); there is no GPU here, so they are copies of CPU-trained models."""
    from facelab.stages import train

    root = tmp_path_factory.mktemp("gpu_variants") / "ws"
    shutil.copytree(sample_faces_ws.root, root)
    ws = Workspace(root)
    trained = []
    for iterations in (2, 3):
        train.run(ws, train.TrainSettings(model="quick", iterations=iterations, batch_size=2, device="cpu",
                                          architecture=QUICK_TINY), log=_quiet, marker=marker)
        keep = ws.model_root / f"trained{iterations}"
        keep.mkdir()
        for f in MODEL_FILES:
            shutil.copyfile(ws.model_dir("quick") / f, keep / f)
        trained.append(keep)
    a, b = trained

    def variant(name: str, source, prefix: str) -> None:
        ws.model_dir(name).mkdir(parents=True, exist_ok=True)
        for f in MODEL_FILES:
            shutil.copyfile(source / f, ws.model_dir(name) / (prefix + f))

    variant("only1", a, "gpu1_")
    variant("two", a, "gpu0_")
    variant("two", b, "gpu1_")
    variant("mixed", a, "")
    variant("mixed", b, "gpu2_")
    return ws


def _save_id(ws: Workspace, name: str, prefix: str) -> str:
    return json.loads((ws.model_dir(name) / f"{prefix}state.json").read_text())["save_id"]


def _merged_with(ws: Workspace) -> str:
    from facelab.stages import merge

    return merge._record(ws).load().settings["model_id"]


def test_merge_finds_a_model_trained_with_gpu_n(gpu_ws, tmp_path, marker):
    from facelab.merge.compose import MergeSettings
    from facelab.merge.ranges import FrameRange
    from facelab.stages import merge

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(gpu_ws.root, ws.root)
    first = int(ws.require_frames("dst")[0].stem)
    fast = MergeSettings(mode="overlay", color="none")
    # the only variant is used without being named (before: "model file .../config.json is missing")
    s = merge.run(ws, "only1", fast, device="cpu", only=FrameRange(first, first), marker=marker)
    assert s.counts["merged"] == 1 and _merged_with(ws) == _save_id(ws, "only1", "gpu1_")
    assert merge.preview(ws, "only1", fast, first, device="cpu", marker=marker).counts["faces"] == 1
    # several variants: --gpu picks one, none chosen is an error naming the choices
    merge.run(ws, "two", fast, device="cpu", only=FrameRange(first, first), gpu=1, marker=marker)
    assert _merged_with(ws) == _save_id(ws, "two", "gpu1_") != _save_id(ws, "two", "gpu0_")
    merge.run(ws, "two", fast, device="cpu", only=FrameRange(first, first), gpu=0, marker=marker)
    assert _merged_with(ws) == _save_id(ws, "two", "gpu0_")
    with pytest.raises(FacelabError, match="none was chosen") as e:
        merge.run(ws, "two", fast, device="cpu", marker=marker)
    assert "--gpu 0" in e.value.hint and "--gpu 1" in e.value.hint
    with pytest.raises(FacelabError, match="--gpu 5") as e:
        merge.preview(ws, "two", fast, first, device="cpu", gpu=5, marker=marker)
    assert "--gpu 0" in e.value.hint and "--gpu 1" in e.value.hint
    assert merge.gpu_choices(ws, "two") == [0, 1] and merge.gpu_choices(ws, "only1") == []
    # a plain model beside a variant: the plain one, with a warning naming the variant
    s = merge.run(ws, "mixed", fast, device="cpu", only=FrameRange(first, first), marker=marker)
    assert _merged_with(ws) == _save_id(ws, "mixed", "") and any("--gpu 2" in w for w in s.warnings)
    merge.run(ws, "mixed", fast, device="cpu", only=FrameRange(first, first), gpu=2, marker=marker)
    assert _merged_with(ws) == _save_id(ws, "mixed", "gpu2_")


def test_merge_cli_takes_gpu_and_asks_which_in_a_terminal(gpu_ws, tmp_path):
    import os
    import pty
    import select
    import sys
    import time

    from typer.testing import CliRunner

    from facelab.cli import app

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(gpu_ws.root, ws.root)
    first = ws.require_frames("dst")[0].stem
    preview_args = ["-w", str(ws.root), "merge", "--model", "two", "--preview", str(int(first)), "--device", "cpu",
                    "--mode", "overlay", "--color", "none"]
    # no terminal: the ambiguity is an error naming the choices; --gpu settles it
    r = CliRunner().invoke(app, preview_args)
    assert isinstance(r.exception, FacelabError) and "--gpu 1" in r.exception.hint
    r = CliRunner().invoke(app, [*preview_args, "--gpu", "1"])
    assert r.exit_code == 0, r.output
    # a terminal: asked, as DeepFaceLab's converter asked for the GPU index ("7" is not a choice: asked again)
    out_file = ws.merged_dir.parent / "merged_preview" / f"{first}.png"
    out_file.unlink()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.executable, [sys.executable, "-m", "facelab", *preview_args])
    replies, seen, everything, deadline = ["7", "1"], b"", b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen, everything = seen + chunk, everything + chunk
        if seen.rstrip().endswith(b"(? for help):"):
            os.write(fd, (replies.pop(0) + "\n").encode())
            seen = b""
    _, status = os.waitpid(pid, 0)
    text = everything.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "Which GPU idx" in text and "use one of 0, 1" in text and not replies and out_file.is_file()


# --- point 19: --denoise-frame filters frames without a face too ------------------------------------------


def test_denoise_frame_filters_faceless_frames_too(gpu_ws, tmp_path, marker):
    from facelab.faceimage import read_record
    from facelab.fileio import read_image
    from facelab.merge import effects
    from facelab.merge.compose import MergeSettings, merge_frame
    from facelab.stages import merge

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(gpu_ws.root, ws.root)
    frames = ws.require_frames("dst")
    faceless = frames[3]
    for p in ws.require_aligned("dst"):  # no face record for this frame: the merge passes it through
        if read_record(p).source_filename == faceless.name:
            p.unlink()
    raw = read_image(faceless)
    denoised = effects.denoise_frame(raw, 300)
    assert np.abs(denoised.astype(int) - raw).mean() > 1.0  # the filter visibly changes this real frame
    s = merge.run(ws, "mixed", MergeSettings(mode="overlay", color="none", denoise_frame=300), device="cpu", marker=marker)
    assert s.counts["passthrough"] == 1
    out = read_image(ws.merged_dir / faceless.name)
    d_denoised, d_raw = (np.abs(out.astype(int) - x).mean() for x in (denoised, raw))
    # denoised but for the invisible watermark (which alone differs by ~0.8 per channel value)
    assert d_denoised < 0.5 * d_raw, (d_denoised, d_raw)
    # the single-frame path (and so --preview) too
    merged, mask = merge_frame(raw, [], None, MergeSettings(denoise_frame=300, alpha=True))
    np.testing.assert_array_equal(merged[..., :3], denoised)
    assert not mask.any() and not merged[..., 3].any()


# --- point 23 (parts): merge --color help names the real default; the segmentation masks (issue 13) are offered


def test_merge_help_names_rct_m_as_default_and_offers_the_segmentation_masks():
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.merge.compose import MergeSettings
    from facelab.merge.masks import SEGMENTATION_MASKS, known_masks, parse_mask

    r = CliRunner().invoke(app, ["merge", "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"})
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "rct-m (default)" in text and "rct (default)" not in text
    assert MergeSettings().color == "rct-m"
    assert "segmentation-prd" in text and "segmentation-dst" in text
    assert set(SEGMENTATION_MASKS) <= set(known_masks())
    assert parse_mask("learned*segmentation-prd") == ("learned", "segmentation-prd")
    with pytest.raises(SettingsError, match="unknown mask") as e:
        parse_mask("xseg")
    assert "segmentation-dst" in e.value.hint


# --- point 14: a negative --blur narrows the default feather (clamped at a hard edge) ---------------------


@pytest.fixture(scope="module")
def real_face(sample_faces_ws):
    """One real dst frame, its face prepared for a 96 px model, and the dst hull as the 'prediction' mask."""
    from facelab.faceimage import read_record
    from facelab.fileio import read_image
    from facelab.merge.compose import prepare_faces

    path = sample_faces_ws.require_aligned("dst")[0]
    rec = read_record(path)
    frame = read_image(sample_faces_ws.frames_dir("dst") / rec.source_filename)
    return prepare_faces(frame, [rec], 96, "full")


def _soft_width(prepared, blur: int) -> int:
    """Pixels of the shaped mask that are neither 0 nor 1 (the soft edge), mask ``dst``."""
    from facelab.merge.compose import MergeSettings, face_layers

    layers = face_layers(prepared, prepared.faces, np.ones((1, 96, 96), np.float32),
                         MergeSettings(mask="dst", color="none", blur=blur))
    m = layers.masks[0]
    return int(((m > 1 / 255) & (m < 254 / 255)).sum())


def test_negative_blur_narrows_the_default_feather_down_to_a_hard_edge(real_face):
    from facelab.merge.compose import DEFAULT_FEATHER, MergeSettings, feather_width

    assert MergeSettings().blur == 0 and feather_width(0) == DEFAULT_FEATHER == 32
    assert (feather_width(-10), feather_width(-32), feather_width(-200), feather_width(40)) == (22, 0, 0, 72)
    w = {b: _soft_width(real_face, b) for b in (-200, -32, -20, -10, 0, 40)}
    # each step down narrows the edge (before the fix every negative value gave the edge of 0 ...)
    assert w[40] > w[0] > w[-10] > w[-20] > w[-32], w
    # ... and -32 or less is the unfeathered mask: only the hull's own rim (anti-aliased at 96 px, then
    # upscaled to the 256 px work size) is soft
    assert w[-200] == w[-32] < 0.5 * w[-20], w


def test_a_saved_version_2_merge_state_is_converted_and_keeps_its_frames(gpu_ws, tmp_path, marker):
    from facelab.merge.compose import MergeSettings
    from facelab.merge.ranges import FrameRange, MergePlan
    from facelab.stages import merge

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(gpu_ws.root, ws.root)
    first = int(ws.require_frames("dst")[0].stem)
    new = {"mode": "overlay", "color": "none", "blur": 8}
    plan = MergePlan(MergeSettings(**new)).with_range(FrameRange(first, first), {"blur": -32})
    merge.run(ws, "mixed", plan, device="cpu", marker=marker)
    # the same result as version 2 of merge.json (before step records) wrote it: blur was the whole width
    # (40 = 32 + 8; -50 acted as 0 = 32 - 32)
    record = merge._record(ws)
    saved = record.load()
    record.reset()
    path = ws.state_dir("dst") / merge.LEGACY_STATE
    old_plan = MergePlan(MergeSettings(**{**new, "blur": 40})).with_range(FrameRange(first, first), {"blur": -50})
    state = {**saved.settings, "version": 2, "plan": old_plan.to_dict(),
             "frames": {s: merge._fingerprint(saved.settings["model_id"], old_plan, int(s)) for s in saved.done}}
    path.write_text(json.dumps(state))
    again, _ = merge.plan_from_options(ws, new)
    assert again.settings_for(first).blur == -32 and again.settings_for(first + 1).blur == 8
    s = merge.run(ws, "mixed", again, device="cpu", marker=marker)
    assert s.counts["skipped"] == 30 and not any("other settings" in w for w in s.warnings)
    assert not path.exists() and json.loads(record.header_path.read_text())["step_version"] == merge.STATE_VERSION


def test_train_beside_gpu_variants_warns_and_a_terminal_asks_which(gpu_ws, tmp_path, marker):
    from facelab.cli.prompts import ask_gpu
    from facelab.stages import train

    replies, out = iter(["3", "1"]), []
    assert ask_gpu([0, 1], read=lambda _p: next(replies), write=out.append) == 1 and "use one of 0, 1" in out[0]
    assert ask_gpu([], read=lambda _p: pytest.fail("nothing to ask")) is None
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(gpu_ws.root, ws.root)
    s = train.run(ws, train.TrainSettings(model="quick", name="only1", iterations=1, batch_size=2, device="cpu",
                                          architecture=QUICK_TINY), log=_quiet, marker=marker)
    assert any("--gpu 1" in w and "new" in w for w in s.warnings), s.warnings
