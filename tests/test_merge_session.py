"""The interactive merger's engine (facelab.merge.session) with a real trained model: the same pixels as
`facelab merge`, the model run once per frame and save, a newer save picked up, marking, bad input; and the
plan edits it goes with (MergePlan.changes / with_changes, stages.merge.saved_plan / save_plan)."""

from __future__ import annotations

import dataclasses
import shutil

import cv2
import numpy as np
import pytest

from facelab.errors import FacelabError, SettingsError
from facelab.merge.compose import MergeSettings
from facelab.merge.ranges import FrameRange, MergePlan
from facelab.merge.session import MergeSession
from facelab.provenance.verify import verify_file
from facelab.provenance.watermark import detect_frames
from facelab.stages import merge as stage
from facelab.workspace import Workspace

FACELESS = 6  # the frame the fixture fills with a real picture without a face
MOVED, SHIFT = 5, 16  # the fixture shifts this frame by SHIFT px to the right, so the face moves enough to be motion-blurred


def _quiet(_s: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained_ws(sample_faces_ws, tmp_path_factory, marker, astronaut):
    """30 GRID frames with faces numbered 1-5 and 7-31 (every other frame of the clip, numbered as neighbours so
    the faces move from frame to frame), frame 6 a real picture without a face, and a quick model trained for
    3 steps at 32 px."""
    from facelab.faceimage import read_record, rewrite_record
    from facelab.stages import train

    root = tmp_path_factory.mktemp("merge_session") / "ws"
    shutil.copytree(sample_faces_ws.root, root)
    ws = Workspace(root)
    frames, parked = ws.frame_paths("dst"), root / "renumbered"
    parked.mkdir()
    names = {p.name: f"{i + 1 if i + 1 < FACELESS else i + 2:05d}.png" for i, p in enumerate(frames)}
    for p in frames:
        p.rename(parked / names[p.name])
    for p in parked.iterdir():
        p.rename(ws.frames_dir("dst") / p.name)
    for p in ws.aligned_paths("dst"):
        rec = read_record(p)
        rec = rec.replace(source_filename=names[rec.source_filename])
        if rec.source_filename == f"{MOVED:05d}.png":  # the speaker hardly moves: this frame is shifted, its face with it
            rec = rec.replace(source_landmarks=rec.source_landmarks + np.float32([SHIFT, 0]))
        rewrite_record(p, rec)
    moved = ws.frames_dir("dst") / f"{MOVED:05d}.png"
    frame = cv2.imread(str(moved))
    cv2.imwrite(str(moved), cv2.warpAffine(frame, np.float32([[1, 0, SHIFT], [0, 1, 0]]), frame.shape[1::-1],
                                           borderMode=cv2.BORDER_REPLICATE))
    h, w = cv2.imread(str(ws.frame_paths("dst")[0])).shape[:2]
    cv2.imwrite(str(ws.frames_dir("dst") / f"{FACELESS:05d}.png"), cv2.resize(astronaut[300:, 300:], (w, h)))
    train.run(ws, train.TrainSettings(model="quick", iterations=3, batch_size=2, device="cpu",
                                      architecture=(("resolution", 32),)), log=_quiet, marker=marker)
    return ws


@pytest.fixture()
def ws(trained_ws, tmp_path) -> Workspace:
    shutil.copytree(trained_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def session(trained_ws, marker) -> MergeSession:
    """A session on the module's workspace (read only: tests that write use ``ws``)."""
    return MergeSession(trained_ws, "quick", "cpu", marker=marker)


class Spy:
    """Counts the calls of a method of one object (and still calls it)."""

    def __init__(self, obj, name: str) -> None:
        self.calls = 0
        real = getattr(obj, name)

        def spy(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        setattr(obj, name, spy)


# suppress_jitter off: it averages over the frames before, which a single render cannot (tested apart below)
SETTINGS = {
    "default (seamless, rct-m)": MergeSettings(suppress_jitter=False),
    "overlay, scaled, shaped, lct": MergeSettings(suppress_jitter=False, mode="overlay", face_scale=12, erode=15, blur=20, color="lct", sharpen=30),
    "hist-match, motion blur, alpha": MergeSettings(suppress_jitter=False, mode="hist-match", hist_threshold=200, motion_blur=100, alpha=True,
                                                    bicubic_degrade=30, degrade_color=20, color="none"),
    "seamless-hist, learned-dst, denoise": MergeSettings(suppress_jitter=False, mode="seamless-hist-match", mask="learned-dst*dst", denoise_frame=100,
                                                         face_scale=-10),
    "raw-rgb, predicted mask": MergeSettings(suppress_jitter=False, mode="raw-rgb", mask="predicted", color="sot-m"),
}


def test_with_the_default_steadying_a_render_is_close_to_what_merge_writes(ws, marker):
    """suppress_jitter is on by default; a render cannot average over the frames before, so it shows the
    frame unsteadied: the same mask and, inside it, within a few grey levels; the note says why."""
    chosen = FrameRange(FACELESS - 3, FACELESS - 1)
    stage.run(ws, "quick", MergeSettings(), device="cpu", batch_size=1, only=chosen, marker=marker)
    session = MergeSession(ws, "quick", "cpu", marker=marker)
    for n in range(chosen.first, chosen.last + 1):
        shown = session.render(n, MergeSettings())
        written = cv2.imread(str(ws.merged_dir / shown.source), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(ws.merged_mask_dir / shown.source), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(shown.mask, mask), n
        diff = np.abs(shown.image.astype(int) - written).max(-1)
        assert diff[mask == 0].max() == 0 and diff[mask > 0].mean() < 3, n
        assert any("suppress_jitter" in note for note in shown.notes)


@pytest.mark.parametrize("name", SETTINGS)
def test_a_render_has_the_pixels_merge_writes(ws, marker, name):
    settings = SETTINGS[name]
    chosen = FrameRange(FACELESS - 3, FACELESS + 1)  # faces moving (motion blur), one frame without a face
    session = MergeSession(ws, "quick", "cpu", marker=marker)
    for n in (FACELESS - 1, FACELESS + 1):  # predictions cached under other settings first: they must not change the pixels
        session.render(n, MergeSettings(mode="overlay", color="none"))
    s = stage.run(ws, "quick", settings, device="cpu", batch_size=1, only=chosen, marker=marker)
    assert s.counts["merged"] == 4 and s.counts["passthrough"] == 1
    for n in range(chosen.first, chosen.last + 1):
        shown = session.render(n, settings)
        written = cv2.imread(str(ws.merged_dir / shown.source), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(ws.merged_mask_dir / shown.source), cv2.IMREAD_UNCHANGED)
        assert shown.image.shape == written.shape and shown.image.dtype == np.uint8, (n, shown.image.shape, written.shape)
        assert np.array_equal(shown.image, written), (n, int(np.abs(shown.image.astype(int) - written).max()))
        assert np.array_equal(shown.mask, mask), n
        assert shown.faces == (0 if n == FACELESS else 1)
    if settings.motion_blur:  # the faces did move: the blur was there to match
        still = session.render(MOVED - 1, dataclasses.replace(settings, motion_blur=0))
        assert not np.array_equal(still.image, session.render(MOVED - 1, settings).image)


def test_the_preview_command_writes_the_sessions_render(ws, marker, session):
    frame = session.frames()[7]
    settings = MergeSettings(mode="overlay", blur=10)
    shown = session.render(frame, settings, side_by_side=True)
    s = stage.preview(ws, "quick", settings, frame, device="cpu", marker=marker)
    merged, compare = (cv2.imread(p, cv2.IMREAD_UNCHANGED) for p in s.outputs)
    assert np.array_equal(merged, shown.image) and np.array_equal(compare, shown.side_by_side)
    assert compare.shape == (shown.image.shape[0], 2 * shown.image.shape[1], 3)


def test_changing_a_blend_or_colour_option_does_not_run_the_model_again(trained_ws, marker):
    session = MergeSession(trained_ws, "quick", "cpu", marker=marker, cache_frames=2)
    predict, dst = Spy(session.predictor, "predict"), Spy(session.predictor, "predict_dst_mask")
    a, b, c = session.frames()[7:10]  # frames with a face
    first = session.render(a, MergeSettings())
    assert predict.calls == 1 and {"decode", "prepare", "predict", "compose", "mark"} <= set(first.timings)
    for change in (dict(color="lct"), dict(mode="overlay"), dict(face_scale=20), dict(erode=30, blur=-10),
                   dict(sharpen=-40, degrade_color=50), dict(mode="raw-predict"), dict(mode="hist-match-bw", masked_hist=False)):
        again = session.render(a, MergeSettings(**change))
        assert set(again.timings) == {"compose", "mark"}, change  # nothing decoded, cut out or predicted
    assert predict.calls == 1
    session.render(a, MergeSettings(mask="learned-dst"))
    session.render(a, MergeSettings(mask="learned*learned-dst", mode="overlay"))
    assert predict.calls == 1 and dst.calls == 1  # the dst-side masks: asked for once, then kept
    session.render(b, MergeSettings())
    session.render(a, MergeSettings(color="mkl"))
    assert predict.calls == 2  # b is new; a is still cached (2 frames kept)
    session.render(c, MergeSettings())
    session.render(a, MergeSettings())
    assert predict.calls == 3  # c: new, a: still kept (shown more recently than b)
    session.render(b, MergeSettings())
    assert predict.calls == 4  # b was the least recently shown of three: forgotten


def test_a_newer_save_of_the_model_is_loaded_and_predicts_again(ws, marker):
    from facelab.stages import train

    session = MergeSession(ws, "quick", "cpu", marker=marker)
    frame = session.frames()[10]
    before = session.render(frame, MergeSettings(mode="overlay"))
    assert set(session.render(frame, MergeSettings(mode="overlay")).timings) == {"compose", "mark"}
    train.run(ws, train.TrainSettings(model="quick", iterations=6, batch_size=2, device="cpu"), log=_quiet, marker=marker)
    after = session.render(frame, MergeSettings(mode="overlay"))
    assert after.model_id != before.model_id and after.model_id == stage._model_id(ws, "quick")
    assert "predict" in after.timings and "decode" not in after.timings  # predicted again, the frame kept
    fresh = MergeSession(ws, "quick", "cpu", marker=marker).render(frame, MergeSettings(mode="overlay"))
    assert np.array_equal(after.image, fresh.image) and not np.array_equal(after.image, before.image)


def test_a_bad_frame_number_is_refused_with_the_range(session):
    frames = session.frames()
    assert frames == sorted(frames) and FACELESS in frames and len(frames) == 31
    for bad in (99999, 0, -1, "3", 3.0, True, None):
        with pytest.raises(SettingsError, match="no dst frame") as e:
            session.render(bad, MergeSettings())
        assert f"from {frames[0]} to {frames[-1]}" in e.value.hint


def test_settings_out_of_range_are_refused(session):
    with pytest.raises(SettingsError, match="erode"):
        MergeSettings(erode=500)
    with pytest.raises(SettingsError, match="face_scale"):
        MergeSettings(face_scale=51)
    with pytest.raises(SettingsError, match="color"):
        MergeSettings(color="pink")
    with pytest.raises(SettingsError, match="expected MergeSettings"):
        session.render(session.frames()[0], {"mode": "overlay"})
    with pytest.raises(FacelabError, match="no enhancer"):
        session.render(session.frames()[0], MergeSettings(enhancer="missing"))


def test_rendered_frames_carry_the_mark(session, tmp_path):
    frame = session.frames()[3]
    shown = session.render(frame, MergeSettings(), side_by_side=True)
    original = cv2.imread(str(session.ws.frames_dir("dst") / shown.source))
    assert not detect_frames([original]).found  # the check tells marked from unmarked frames
    assert detect_frames([shown.image]).found and detect_frames([shown.side_by_side]).found
    assert np.abs(shown.side_by_side[:, : original.shape[1]].astype(int) - original).max() <= 2  # the dst half, marked
    for view in ("image", "side_by_side"):
        path = tmp_path / f"{view}.png"
        path.write_bytes(session.png(shown, view))
        report = verify_file(path)
        assert report.marked and report.manifest.valid and report.watermark.found and report.synthetic_tags, view
    assert cv2.imdecode(np.frombuffer(session.png(shown, "mask"), np.uint8), cv2.IMREAD_UNCHANGED).shape == shown.mask.shape
    raw = session.render(frame, MergeSettings(mode="raw-predict"))
    assert raw.image.shape == (64, 64, 3) and detect_frames([raw.image]).found  # a 32 px face, enlarged to carry it
    with pytest.raises(SettingsError, match="side-by-side"):
        session.png(raw, "side_by_side")


def test_a_draft_is_the_frame_smaller_and_close_to_it(session):
    frame = session.frames()[8]
    settings = MergeSettings(mode="overlay", face_scale=10, erode=10, mask="dst")  # the hull: a mask of ones inside
    full = session.render(frame, settings)
    draft = session.render(frame, settings, scale=0.5, side_by_side=True)
    h, w = full.image.shape[:2]
    assert draft.scale == 0.5 and full.scale == 1.0 and set(draft.timings) == {"compose", "mark"}
    assert draft.image.shape == (h // 2, w // 2, 3) and draft.mask.shape == (h // 2, w // 2)
    assert draft.side_by_side.shape == (h // 2, w, 3) and detect_frames([draft.image]).found
    small = cv2.resize(full.image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(full.mask, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    face = small_mask > 128
    # the face where it belongs: a 2 px shift gives 18 here, the unmerged frame 30 (seamless, of a boundary
    # at half the resolution, 9)
    assert face.sum() > 500 and np.abs(small.astype(int) - draft.image)[face].mean() < 8
    assert np.abs(small_mask.astype(int) - draft.mask).mean() < 1
    assert session.render(frame, settings, scale=1).image.tobytes() == full.image.tobytes()
    for bad in (0.1, 1.5, 0, "0.5", True):
        with pytest.raises(SettingsError, match="scale"):
            session.render(frame, settings, scale=bad)


def test_draft_scale_fits_the_budget():
    from facelab.merge.session import Rendered, draft_scale

    def shown(compose: float, scale: float = 1.0) -> Rendered:
        empty = np.zeros((4, 4), np.uint8)
        return Rendered(1, "00001.png", MergeSettings(), empty, empty, None, 1, None, scale, {"compose": compose, "mark": 1.0})

    assert draft_scale(shown(40.0)) == 1.0  # overlay at 720p: exact frames live
    assert draft_scale(shown(250.0)) == 0.75  # 251 * 0.5625 = 141 <= 150
    assert draft_scale(shown(400.0)) == 0.5
    assert draft_scale(shown(100.0, scale=0.5)) == 0.5  # a draft's time counts for its size: 404 ms in full
    assert draft_scale(shown(5000.0)) == 0.25
    assert draft_scale(shown(250.0), budget_ms=1000) == 1.0


def test_a_session_needs_a_marker(trained_ws):
    with pytest.raises(FacelabError, match="no Marker"):
        MergeSession(trained_ws, "quick", "cpu")


def test_jitter_suppression_is_noted_not_shown(session):
    frame = session.frames()[3]
    shown = session.render(frame, MergeSettings(suppress_jitter=True))
    assert any("suppress_jitter" in n for n in shown.notes)
    assert np.array_equal(shown.image, session.render(frame, MergeSettings()).image)


# --- plan edits: this frame, a range, all ---------------------------------------------------------------------------


def test_changes_apply_to_one_frame_a_range_or_all():
    plan = MergePlan(MergeSettings(mode="overlay")).with_range(FrameRange(10, 20), {"erode": 20, "color": "lct"})
    shown = MergeSettings(mode="overlay", erode=20, color="lct", blur=15)  # on frame 12 the user widened the edge
    changes = plan.changes(12, shown)
    assert changes == {"blur": 15} and plan.changes(12, plan.settings_for(12)) == {}
    assert plan.with_changes({}) is plan

    one = plan.with_changes(changes, FrameRange(12, 12))
    assert one.settings_for(12) == shown and one.settings_for(11) == plan.settings_for(11)
    assert one.settings_for(30) == plan.default

    ranged = plan.with_changes(changes, FrameRange(10, 20))  # the entry for exactly 10-20 keeps its other overrides
    assert ranged.settings_for(15) == MergeSettings(mode="overlay", erode=20, color="lct", blur=15)
    assert len(ranged.ranges) == 1 and ranged.settings_for(21) == plan.default

    every = plan.with_changes({"blur": 15, "erode": 5})
    assert every.default == MergeSettings(mode="overlay", blur=15, erode=5)
    assert every.settings_for(15) == MergeSettings(mode="overlay", blur=15, erode=5, color="lct")  # the range keeps colour only
    assert MergePlan.from_dict(every.to_dict()) == every
    assert plan.with_changes({"erode": 1, "color": "none"}).ranges == ()  # a range left without overrides goes
    with pytest.raises(SettingsError, match="erode"):
        plan.with_changes({"erode": 999})


def test_a_run_keeps_the_edited_plan_for_the_next(ws, marker):
    assert stage.saved_plan(ws) is None
    plan = MergePlan(MergeSettings(mode="overlay")).with_changes({"blur": 30}, FrameRange(3, 5))
    stage.run(ws, "quick", plan, device="cpu", only=FrameRange(1, 7), marker=marker)
    assert stage.saved_plan(ws) == plan
    again, only = stage.plan_from_options(ws, {})
    assert again.ranges == plan.ranges and only is None


def test_a_jpeg_of_a_render_is_marked_and_what_jpeg_cannot_hold_is_refused(session, tmp_path):
    shown = session.render(3, MergeSettings(), side_by_side=True)
    for view in ("image", "side_by_side"):
        data = session.jpeg(shown, view, quality=80)
        path = tmp_path / f"{view}.jpg"
        path.write_bytes(data)
        report = verify_file(path)
        assert report.manifest.valid and report.watermark.found and report.synthetic_tags, view
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == getattr(shown, view).shape
    for bad in ({"view": "mask"}, {"quality": 0}, {"quality": True}):
        with pytest.raises(SettingsError):
            session.jpeg(shown, **bad)
    with pytest.raises(SettingsError, match="alpha"):
        session.jpeg(session.render(3, MergeSettings(alpha=True)))


def test_a_plan_saved_without_rendering_is_the_next_runs_and_keeps_the_finished_frames(ws, marker):
    first = MergePlan(MergeSettings(mode="overlay"))
    stage.save_plan(ws, first)  # before any merge
    assert stage.saved_plan(ws) == first
    s = stage.run(ws, "quick", first, device="cpu", only=FrameRange(1, 4), marker=marker)
    assert s.counts["merged"] == 4
    changed = first.with_changes({"blur": 25}, FrameRange(3, 3))
    stage.save_plan(ws, changed)
    assert stage.saved_plan(ws) == changed
    plan, _ = stage.plan_from_options(ws, {"mode": "overlay"})  # `facelab merge --mode overlay` takes its ranges
    assert plan == changed
    s = stage.run(ws, "quick", plan, device="cpu", only=FrameRange(1, 4), marker=marker)
    assert s.counts["merged"] == 1 and s.counts["skipped"] == 3  # frame 3 only: the others were done with these settings
    with pytest.raises(SettingsError, match="MergePlan"):
        stage.save_plan(ws, MergeSettings())
