"""The merge stage with a real trained model: resume after kill -9, per-frame-range settings, model change,
--preview, raw-predict, alpha, batching over frames, TOML settings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.errors import SettingsError
from facelab.merge.compose import MergeSettings
from facelab.merge.ranges import FrameRange, MergePlan
from facelab.provenance.manifest import read_manifest
from facelab.provenance.watermark import detect_frames
from facelab.stages import merge as stage
from facelab.steprecord import read_journal
from facelab.workspace import Workspace

SRC_ROOT = Path(__file__).resolve().parents[1] / "src"


def _quiet(_s: str) -> None:
    pass


@pytest.fixture()
def ws(trained_quick_ws, tmp_path) -> Workspace:
    shutil.copytree(trained_quick_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _mtimes(ws: Workspace) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in ws.merged_dir.glob("*.png")}


KILLED_MERGE = """
import os, signal, sys
from facelab.provenance import default_marker
from facelab import steprecord
from facelab.stages import merge as stage
from facelab.steprecord import JOURNAL_SUFFIX
from facelab.workspace import Workspace

real_open = open


class DiesAfterFour:
    # the merge's journal file, killing its process (kill -9) once four frames are journaled
    def __init__(self, f):
        self.f, self.lines = f, 0

    def write(self, text):
        return self.f.write(text)

    def flush(self):
        self.f.flush()
        self.lines += 1
        if self.lines == 4:
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self):
        self.f.close()


def dying_open(path, *args, **kwargs):
    f = real_open(path, *args, **kwargs)
    appending = (args[0] if args else kwargs.get("mode", "r")).startswith("a")
    return DiesAfterFour(f) if str(path).endswith(JOURNAL_SUFFIX) and appending else f


steprecord.open = dying_open  # the record module's module-level name shadows the builtin
ws = Workspace(sys.argv[1])
plan, _ = stage.plan_from_options(ws, {"denoise_frame": 300})
stage.run(ws, "quick", plan, device="cpu", marker=default_marker())  # the key of $FACELAB_HOME, as the CLI's
"""


def test_kill_9_then_rerun_renders_only_the_missing_frames(ws, marker):
    # the child kills itself right after its 4th journaled frame, however fast the machine is
    env = {**os.environ, "PYTHONPATH": str(SRC_ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_MERGE, str(ws.root)], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    record = stage._record(ws)
    journal = record.journal_path
    finished = list(read_journal(journal))
    assert len(finished) == 4
    before = _mtimes(ws)
    plan, _ = stage.plan_from_options(ws, {"denoise_frame": 300})
    s = stage.run(ws, "quick", plan, device="cpu", marker=marker)
    assert s.counts["skipped"] >= len(finished)
    assert s.counts["merged"] + s.counts["passthrough"] == 30 - s.counts["skipped"]
    after = _mtimes(ws)
    assert all(after[f"{stem}.png"] == before[f"{stem}.png"] for stem in finished)  # not redone
    assert len(after) == 30
    state = json.loads(record.header_path.read_text())
    assert len(state["done"]) == 30 and journal.read_text() == ""


def test_frame_ranges_render_only_their_frames_and_are_kept(ws, marker):
    plan, only = stage.plan_from_options(ws, {"mode": "overlay"})
    assert only is None
    stage.run(ws, "quick", plan, device="cpu", marker=marker)
    before = _mtimes(ws)
    names = sorted(before)
    # frames are numbered by their source frame; take the 3rd-5th merged files' numbers as the range
    first, last = int(Path(names[2]).stem), int(Path(names[4]).stem)
    plan, only = stage.plan_from_options(ws, {"color": "lct"}, frames=f"{first}-{last}")
    assert only == FrameRange(first, last) and plan.default.mode == "overlay"
    s = stage.run(ws, "quick", plan, device="cpu", only=only, marker=marker)
    assert s.counts["frames"] == 3 and s.counts["skipped"] == 0
    after = _mtimes(ws)
    changed = {n for n in names if after[n] != before[n]}
    assert changed == set(names[2:5])
    # a later whole run with the same default keeps the range and renders nothing again
    plan, _ = stage.plan_from_options(ws, {"mode": "overlay"})
    assert plan.settings_for(first).color == "lct" and plan.settings_for(first - 1).color == "rct-m"
    assert stage.run(ws, "quick", plan, device="cpu", marker=marker).counts["skipped"] == 30
    saved = stage._record(ws).load().settings["plan"]
    assert saved["ranges"] == [{"frames": f"{first}-{last}", "settings": {"color": "lct"}}]
    plan, _ = stage.plan_from_options(ws, {"mode": "overlay"}, clear_ranges=True)
    assert plan.ranges == () and stage.run(ws, "quick", plan, device="cpu", marker=marker).counts["skipped"] == 27


def test_a_retrained_model_renders_again(ws, marker):
    from facelab.stages import train

    stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker)
    assert stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker).counts["skipped"] == 30
    train.run(ws, train.TrainSettings(model="quick", iterations=4, batch_size=2, device="cpu"), log=_quiet, marker=marker)
    s = stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker)
    assert s.counts["skipped"] == 0 and any("another model" in w for w in s.warnings)


def test_frames_whose_faces_changed_render_again(ws, marker):
    """The DeepFaceLab routine after a first merge: delete a false face, re-align another, merge again. Only
    those frames render again; a record of an older facelab (settings only, no faces) still skips the rest."""
    import dataclasses

    from facelab.faceimage import read_record, rewrite_record

    stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker)
    before = _mtimes(ws)
    faces = sorted(ws.aligned_dir("dst").glob("*.jpg"))
    deleted, moved = read_record(faces[3]), read_record(faces[6])
    faces[3].unlink()
    rewrite_record(faces[6], dataclasses.replace(moved, source_landmarks=np.asarray(moved.source_landmarks) + 2.0))
    s = stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker)
    assert s.counts["skipped"] == 28 and s.counts["passthrough"] == 1
    assert any("other faces" in w for w in s.warnings)
    after = _mtimes(ws)
    assert {n for n in after if after[n] != before[n]} == {deleted.source_filename, moved.source_filename}
    rewrite_record(faces[10], read_record(faces[10]))  # rewritten with the same landmarks: nothing to redo
    assert stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker).counts["skipped"] == 30

    record = stage._record(ws)
    saved = record.load()
    record.begin(saved.settings, {stem: fp[:16] for stem, fp in saved.done.items()})  # as an older facelab wrote it
    record.close()
    assert stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker).counts["skipped"] == 30


def test_frames_denoised_after_the_merge_render_again(ws, marker):
    """`denoise dst` changes the frames in place: a merge made before it renders every frame again, and so
    does a second pass (--force); a record of a facelab that did not look at denoising skips as it did."""
    from facelab.stages import denoise

    for p in ws.frame_paths("dst")[8:]:
        p.unlink()

    def merge():
        return stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker).counts

    assert merge()["frames"] == 8
    before = {n: cv2.imread(str(ws.merged_dir / n)) for n in _mtimes(ws)}
    denoise.run(ws, denoise.DenoiseSettings(factor=12))
    assert merge()["skipped"] == 0
    changed = [n for n, im in before.items() if np.abs(cv2.imread(str(ws.merged_dir / n)).astype(int) - im).mean() > 0.5]
    assert len(changed) == 8  # the denoised frames are what was merged
    assert merge()["skipped"] == 8
    denoise.run(ws, denoise.DenoiseSettings(factor=12), force=True)
    assert merge()["skipped"] == 0

    def as_an_older_facelab_wrote_it():  # no denoising in the fingerprints
        record = stage._record(ws)
        saved = record.load()
        old = {k: v for k, v in saved.settings.items() if k != "denoise_in_fingerprint"}
        record.begin(old, {stem: fp.split("|denoised=")[0] for stem, fp in saved.done.items()})
        record.close()
        assert all("|denoised=" not in fp for fp in stage._record(ws).load().done.values())

    as_an_older_facelab_wrote_it()
    assert merge()["skipped"] == 8  # upgrading renders nothing again
    as_an_older_facelab_wrote_it()
    denoise.run(ws, denoise.DenoiseSettings(factor=12), force=True)  # denoised after that merge, before upgrading
    assert merge()["skipped"] == 0


def test_batches_over_frames_give_the_same_frames(ws, tmp_path, marker):
    stage.run(ws, "quick", MergeSettings(mode="overlay"), device="cpu", batch_size=1, marker=marker)
    one = {p.name: cv2.imread(str(p)) for p in ws.merged_dir.glob("*.png")}
    s = stage.run(ws, "quick", MergeSettings(mode="overlay"), device="cpu", batch_size=16, force=True, marker=marker)
    assert s.counts["merged"] == 30
    for p in ws.merged_dir.glob("*.png"):
        assert np.abs(cv2.imread(str(p)).astype(int) - one[p.name]).max() <= 1


def test_preview_writes_one_frame_and_a_comparison(ws, marker):
    frame = int(sorted(p.stem for p in ws.frame_paths("dst"))[3])
    s = stage.preview(ws, "quick", MergeSettings(), frame, device="cpu", marker=marker)
    merged, compare = (Path(p) for p in s.outputs)
    image = cv2.imread(str(merged))
    original = cv2.imread(str(ws.frame_paths("dst")[3]))
    assert image.shape == original.shape and cv2.imread(str(compare)).shape[1] == 2 * original.shape[1]
    assert read_manifest(merged).valid and detect_frames([image]).found
    assert not list(ws.merged_dir.glob("*.png"))  # nothing else rendered
    with pytest.raises(SettingsError, match="no dst frame 99999"):
        stage.preview(ws, "quick", MergeSettings(), 99999, device="cpu", marker=marker)


def test_raw_predict_and_alpha_outputs(ws, marker):
    s = stage.run(ws, "quick", MergeSettings(mode="raw-predict", color="none"), device="cpu", marker=marker)
    raw = sorted(ws.merged_raw_dir.glob("*_0.png"))
    assert len(raw) == 30 and cv2.imread(str(raw[0])).shape == (64, 64, 3)  # 32 px faces, enlarged to carry the mark
    assert (ws.merged_raw_dir / raw[0].name.replace("_0.png", "_0_mask.png")).is_file()
    assert read_manifest(raw[0]).valid and any("merged_raw" in w for w in s.warnings)
    stage.run(ws, "quick", MergeSettings(alpha=True), device="cpu", marker=marker)
    p = sorted(ws.merged_dir.glob("*.png"))[0]
    rgba = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(ws.merged_mask_dir / p.name), cv2.IMREAD_GRAYSCALE)
    assert rgba.shape[2] == 4 and np.array_equal(rgba[..., 3], mask)


def test_settings_file_with_ranges_through_the_cli(ws, tmp_path):
    cfg = tmp_path / "merge.toml"
    names = sorted(p.stem for p in ws.frame_paths("dst"))
    cfg.write_text(f'mode = "overlay"\nerode = 10\n\n[[ranges]]\nframes = "{int(names[0])}-{int(names[1])}"\ncolor = "mkl-m"\n')
    env = {**os.environ, "PYTHONPATH": str(SRC_ROOT)}
    r = subprocess.run([sys.executable, "-m", "facelab", "-w", str(ws.root), "merge", "--config", str(cfg), "--blur", "20",
                        "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    plan = MergePlan.from_dict(stage._record(ws).load().settings["plan"])
    assert plan.default.mode == "overlay" and plan.default.erode == 10 and plan.default.blur == 20
    assert plan.settings_for(int(names[0])).color == "mkl-m" and plan.settings_for(int(names[2])).color == "rct-m"
    cfg.write_text('mode = "overlay"\nbad_key = 1\n')
    r = subprocess.run([sys.executable, "-m", "facelab", "-w", str(ws.root), "merge", "--config", str(cfg)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "bad_key" in r.stderr


def test_suppress_jitter_steadies_the_face_colour_over_time(ws, marker):
    """Seamless merges of consecutive frames: the face's coarse colour varies less from frame to frame with
    suppress_jitter, while the frames stay close to the plain ones."""
    def coarse_steps() -> float:
        lows = []
        for p in sorted(ws.merged_dir.glob("*.png")):
            img = cv2.imread(str(p)).astype(np.float32) / 255
            m = cv2.imread(str(ws.merged_mask_dir / p.name), cv2.IMREAD_GRAYSCALE).astype(np.float32)[..., None] / 255
            lows.append((img * m).sum((0, 1)) / max(m.sum(), 1e-6))
        return float(np.abs(np.diff(np.array(lows), axis=0)).mean())

    stage.run(ws, "quick", MergeSettings(suppress_jitter=False), device="cpu", marker=marker)
    plain = {p.name: cv2.imread(str(p)) for p in ws.merged_dir.glob("*.png")}
    plain_steps = coarse_steps()
    stage.run(ws, "quick", MergeSettings(suppress_jitter=True), device="cpu", marker=marker)
    steady_steps = coarse_steps()
    assert steady_steps < plain_steps
    for p in ws.merged_dir.glob("*.png"):
        assert detect_frames([cv2.imread(str(p))]).found
        diff = np.abs(cv2.imread(str(p)).astype(int) - plain[p.name]).mean()
        assert diff < 3  # a steadier tint, not another picture


def test_suppress_jitter_frames_do_not_depend_on_the_number_of_workers(ws, marker):
    """The filter's ordered step runs on the main thread and the rest on workers that finish out of order:
    one worker and three give the same frames, byte for byte."""
    stage.run(ws, "quick", MergeSettings(suppress_jitter=True), device="cpu", marker=marker, workers=1, batch_size=1)
    one = {p.name: cv2.imread(str(p)) for p in ws.merged_dir.glob("*.png")}
    stage.run(ws, "quick", MergeSettings(suppress_jitter=True), device="cpu", marker=marker, workers=3, batch_size=1, force=True)
    three = {p.name: cv2.imread(str(p)) for p in ws.merged_dir.glob("*.png")}
    assert len(one) == len(ws.frame_paths("dst")) and one.keys() == three.keys()
    for name in one:
        assert np.array_equal(one[name], three[name]), name


def test_jitter_filter_parts_run_out_of_order(ws):
    """measure and correct are pure: done for the frames in any order around update in frame order, they
    give what apply gives frame after frame."""
    from facelab.merge.compose import prepare_faces
    from facelab.merge.temporal import JitterFilter
    from facelab.stages.merge import group_records

    path = ws.frame_paths("dst")[0]
    frame = cv2.imread(str(path))
    recs = group_records(ws.require_aligned("dst"))[0][path.name]
    mats = prepare_faces(frame, recs, 64, "full").mats
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.asarray(recs[0].source_landmarks, np.int32)), 255)
    frames = [np.clip(frame.astype(int) + (5 * t % 11 - 5) * (mask[..., None] > 0), 0, 255).astype(np.uint8)
              for t in range(6)]
    serial = JitterFilter()
    expected = [serial.apply(f, mask, mats, [0], 64, t + 1) for t, f in enumerate(frames)]
    order = [3, 0, 5, 1, 4, 2]
    lows = {t: JitterFilter.measure(frames[t], mask, mats, 64) for t in order}
    parts = JitterFilter()
    fixes = {t: parts.update(lows[t], [0], t + 1) for t in range(6)}
    for t in order:
        assert np.array_equal(JitterFilter.correct(frames[t], mask, mats, 64, fixes[t]), expected[t])
    assert not np.array_equal(expected[3], frames[3])  # the filter did change the frames


def test_jitter_tracks_are_kept_without_pickle_and_a_bad_file_means_a_cold_start(tmp_path):
    from facelab.merge.temporal import SIZE, load_tracks, save_tracks

    rng = np.random.default_rng(0)
    tracks = {0: (12, rng.random((SIZE, SIZE, 3), dtype=np.float32)), 3: (None, rng.random((SIZE, SIZE, 3), dtype=np.float32))}
    path = tmp_path / "merge_jitter.npz"
    save_tracks(path, tracks, "00012", "abc123")
    after, fingerprint, back = load_tracks(path)
    assert (after, fingerprint) == ("00012", "abc123") and back.keys() == tracks.keys()
    for k in tracks:
        assert back[k][0] == tracks[k][0] and np.array_equal(back[k][1], tracks[k][1])
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[name].dtype != object for name in z.files)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert load_tracks(path) is None
    assert load_tracks(tmp_path / "missing.npz") is None


def test_a_resumed_steadied_merge_starts_from_the_kept_averages_only_after_a_finished_frame(ws, marker):
    """The first five frames merged, then the rest: the same frames as one run; averages kept after another frame, or
    made with other settings, are not used."""
    frames = ws.frame_paths("dst")
    stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker, batch_size=1)
    whole = {p.name: cv2.imread(str(p)) for p in ws.merged_dir.glob("*.png")}
    first5 = FrameRange(int(frames[0].stem), int(frames[4].stem))
    stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker, batch_size=1, force=True,
              only=first5)  # the averages are now those after the fifth frame
    for p in sorted(ws.merged_dir.glob("*.png"))[5:]:
        p.unlink()  # as if the run had stopped after the fifth frame
    rest = stage.run(ws, "quick", MergeSettings(), device="cpu", marker=marker, batch_size=1)
    assert rest.counts["skipped"] == 5 and rest.counts["merged"] + rest.counts["passthrough"] == len(frames) - 5
    for p in ws.merged_dir.glob("*.png"):
        assert np.array_equal(cv2.imread(str(p)), whole[p.name]), p.name
    from facelab.stages.merge import _resume_tracks, _tracks_path

    assert _tracks_path(ws).is_file()
    assert _resume_tracks(ws, frames, frames[5:], lambda p: "another fingerprint") is None
    assert _resume_tracks(ws, frames, frames, lambda p: "x") is None  # from the first frame: a cold start


def test_jitter_filter_removes_flicker_but_follows_a_cut(ws):
    """A real frame whose face brightness flickers by +-6 grey levels from frame to frame: the filter cuts
    the flicker; a cut to another frame (a large change) is passed at once."""
    from facelab.merge.compose import prepare_faces
    from facelab.merge.temporal import JitterFilter
    from facelab.stages.merge import group_records

    path = ws.frame_paths("dst")[0]
    frame = cv2.imread(str(path))
    recs = group_records(ws.require_aligned("dst"))[0][path.name]
    prepared = prepare_faces(frame, recs, 64, "full")
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.asarray(recs[0].source_landmarks, np.int32)), 255)
    jf = JitterFilter()
    raw, steady = [], []
    for t in range(12):
        offset = 6 if t % 2 else -6
        flicker = np.clip(frame.astype(int) + offset * (mask[..., None] > 0), 0, 255).astype(np.uint8)
        out = jf.apply(flicker, mask, prepared.mats, [0], 64, t + 1)
        raw.append(flicker[mask > 0].mean())
        steady.append(out[mask > 0].mean())
    assert np.std(np.diff(steady[4:])) < 0.4 * np.std(np.diff(raw[4:]))
    cut = cv2.flip(frame, 1) // 3  # another, much darker picture
    out = jf.apply(cut, mask, prepared.mats, [0], 64, 13)
    assert abs(float(out[mask > 0].mean()) - float(cut[mask > 0].mean())) < 1.0
    with pytest.raises(ValueError, match="uint8"):
        jf.apply(frame.astype(np.float32), mask, prepared.mats, [0], 64, 14)


def test_super_resolution_merges_with_a_trained_enhancer(ws, marker):
    from facelab.errors import FacelabError
    from facelab.stages import enhance

    enhance.run(ws, enhance.EnhanceSettings(name="sr", scale=2, input_size=32, iterations=2, batch_size=2, channels=8,
                                            blocks=1, device="cpu"), log=_quiet, marker=marker)
    plain = stage.run(ws, "quick", MergeSettings(mode="overlay"), device="cpu", marker=marker)
    first = sorted(ws.merged_dir.glob("*.png"))[0]
    before = cv2.imread(str(first))
    s = stage.run(ws, "quick", MergeSettings(mode="overlay", enhancer="sr"), device="cpu", marker=marker)
    assert plain.counts["merged"] == s.counts["merged"] == 30 and s.counts["skipped"] == 0
    assert not np.array_equal(cv2.imread(str(first)), before)  # the face went through the enhancer
    with pytest.raises(FacelabError, match="enhancer"):
        stage.run(ws, "sr", MergeSettings(), device="cpu", marker=marker)  # an enhancer is not a swap model
    with pytest.raises(FacelabError, match="no enhancer 'nope'"):
        stage.run(ws, "quick", MergeSettings(enhancer="nope"), device="cpu", marker=marker)
