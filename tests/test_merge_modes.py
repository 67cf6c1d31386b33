"""Merge modes, mask modes and options of the per-frame merge, on real frames of the shipped GRID clip."""

from __future__ import annotations

import dataclasses
import itertools
import json

import cv2
import numpy as np
import pytest

from facelab.align import face_matrix, hull_mask, transform_points, warp_image
from facelab.errors import SettingsError
from facelab.faceimage import FaceRecord
from facelab.media import iter_frames
from facelab.merge import MergeSettings, compose_faces, merge_frame, predict_faces, prepare_faces, run_predictor
from facelab.merge.compose import face_layers
from facelab.merge.sources import motions

from tests.conftest import ASTRONAUT, shared

R = 96


# --- fixtures and stand-in models ---------------------------------------------------


@pytest.fixture(scope="module")
def find_faces():
    """``find_faces(frame_bgr) -> list[FaceRecord]`` (dlib HOG detection + 68 landmarks)."""
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    det, sp = dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_model_location())

    def find(frame: np.ndarray) -> list[FaceRecord]:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        out = []
        for i, box in enumerate(det(rgb, 1)):
            lm = np.array([(p.x, p.y) for p in sp(rgb, box).parts()], np.float32)
            mat = face_matrix(lm, "full", 256)
            out.append(FaceRecord(
                face_type="full", size=256, source_filename="00001.png", source_size=(frame.shape[1], frame.shape[0]),
                source_rect=(box.left(), box.top(), box.right(), box.bottom()), source_landmarks=lm,
                landmarks=transform_points(lm, mat), image_to_face_mat=mat, face_index=i,
            ))
        return out

    return find


@pytest.fixture(scope="module")
def grid(dst_frames, find_faces):
    """The first GRID frame (360x288, one face) and its face record."""
    frame = cv2.imread(str(dst_frames[0]))
    recs = find_faces(frame)
    assert len(recs) == 1
    return frame, recs


@pytest.fixture(scope="module")
def other_face(find_faces):
    """Another person's real face (the astronaut) aligned at ``R`` px, float32 BGR, and its hull."""
    img = cv2.imread(str(ASTRONAUT))
    lm = find_faces(img)[0].source_landmarks
    mat = face_matrix(lm, "full", R)
    return warp_image(img, mat, R).astype(np.float32) / 255, hull_mask(transform_points(lm, mat), (R, R))


class IdentityPredictor:
    """Returns the dst face itself and a mask of ones (a swap that looks exactly like the dst face)."""

    resolution, face_type = R, "full"

    def predict(self, batch):
        return batch.copy(), np.ones(batch.shape[:3], np.float32)


class SwapPredictor:
    """Returns another person's real face for every input, with that face's hull as the learned mask."""

    resolution, face_type = R, "full"

    def __init__(self, face, hull):
        self.face, self.hull = face, hull

    def predict(self, batch):
        n = len(batch)
        return np.repeat(self.face[None], n, 0), np.repeat(self.hull[None], n, 0)


class DstMaskPredictor(SwapPredictor):
    """A swap predictor that also predicts dst-side masks (here: a fixed disk, easy to recognise)."""

    def predict_dst_mask(self, batch):
        disk = np.zeros((R, R), np.float32)
        cv2.circle(disk, (R // 2, R // 2), R // 3, 1.0, -1)
        return np.repeat(disk[None], len(batch), 0)


@pytest.fixture(scope="module")
def swap(other_face):
    return SwapPredictor(*other_face)


def to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def frame_hull(rec: FaceRecord, shape) -> np.ndarray:
    return hull_mask(rec.source_landmarks, shape[:2]) > 0.5


def warped_into_frame(face: np.ndarray, rec: FaceRecord, shape) -> np.ndarray:
    """The aligned ``R`` px face put back into the whole frame, independently of the merge's ROI code."""
    mat = face_matrix(rec.source_landmarks, "full", R)
    h, w = shape[:2]
    back = cv2.warpAffine(face, mat, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return to_u8(back)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# --- modes -------------------------------------------------------------------------


def test_overlay_full_mask_pastes_face_inside_hull(grid, swap):
    frame, recs = grid
    s = MergeSettings(mode="overlay", color="none", mask="dst", erode=0, blur=-32)
    merged, mask = merge_frame(frame, recs, swap, s)
    hull = frame_hull(recs[0], frame.shape)
    full = mask == 255
    # the mask is the hull: solid from 3 px inside its edge, nothing beyond 4 px outside (the hull is
    # drawn at 96 px, 1.5 frame px per face px, with an anti-aliased edge, then warped back bicubically)
    assert full[cv2.erode(hull.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0].all()
    assert not (mask > 0)[cv2.dilate(hull.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0].any()
    assert not (mask > 127)[cv2.dilate(hull.astype(np.uint8), np.ones((7, 7), np.uint8)) == 0].any()
    want = warped_into_frame(swap.face, recs[0], frame.shape)
    assert np.abs(merged[full].astype(int) - want[full]).max() <= 2
    np.testing.assert_array_equal(merged[mask == 0], frame[mask == 0])
    assert np.abs(merged[full].astype(int) - frame[full]).mean() > 10  # really another face


def test_seamless_meets_the_frame_at_the_mask_border(grid, swap):
    frame, recs = grid
    base = {"color": "none", "mask": "dst", "erode": 0, "blur": -32}
    seam, mask = merge_frame(frame, recs, swap, MergeSettings(mode="seamless", **base))
    over, _ = merge_frame(frame, recs, swap, MergeSettings(mode="overlay", **base))
    np.testing.assert_array_equal(seam[mask == 0], frame[mask == 0])
    region = (mask > 0).astype(np.uint8)
    ring = (region - cv2.erode(region, np.ones((5, 5), np.uint8))) > 0  # the inner 2 px of the mask
    d_seam = np.abs(seam[ring].astype(int) - frame[ring]).mean()
    d_over = np.abs(over[ring].astype(int) - frame[ring]).mean()
    assert d_seam < 0.35 * d_over, (d_seam, d_over)
    inside = cv2.erode(region, np.ones((15, 15), np.uint8)) > 0
    assert np.abs(seam[inside].astype(int) - frame[inside]).mean() > 5  # the face did change


def test_raw_rgb_is_a_hard_paste(grid, swap):
    frame, recs = grid
    merged, mask = merge_frame(frame, recs, swap, MergeSettings(mode="raw-rgb", color="none", mask="dst", blur=40))
    assert ((mask > 0) & (mask < 255)).sum() > 100  # the returned mask is the usual soft one
    want = warped_into_frame(swap.face, recs[0], frame.shape)
    inside, outside = mask >= 129, mask <= 126  # 127/128 round either way around 0.5
    assert np.abs(merged[inside].astype(int) - want[inside]).max() <= 2
    np.testing.assert_array_equal(merged[outside], frame[outside])


def test_raw_predict_returns_the_predicted_faces(grid, swap):
    frame, recs = grid
    out = predict_faces(frame, recs, swap, MergeSettings(mode="raw-predict", color="none", mask="learned", blur=-32))
    assert len(out) == 1
    face, mask = out[0]
    assert face.shape == (R, R, 3) and face.dtype == np.uint8 and mask.shape == (R, R) and mask.dtype == np.uint8
    np.testing.assert_array_equal(face, to_u8(swap.face))
    assert iou(mask > 127, swap.hull > 0.5) > 0.97
    coloured, _ = predict_faces(frame, recs, swap, MergeSettings(mode="raw-predict", color="rct"))[0]
    assert np.abs(coloured.astype(int) - face).mean() > 3
    with pytest.raises(ValueError, match="predict_faces"):
        merge_frame(frame, recs, swap, MergeSettings(mode="raw-predict"))
    assert predict_faces(frame, [], swap) == []


def test_hist_match_bw_changes_luma_only(grid, swap):
    frame, recs = grid
    prepared = prepare_faces(frame, recs, R, "full")
    sel = prepared.hulls[0] > 0.5
    s = {"color": "none", "mask": "dst", "hist_threshold": 255}
    bw = face_layers(prepared, *swap.predict(prepared.faces), MergeSettings(mode="hist-match-bw", **s)).faces[0]
    full = face_layers(prepared, *swap.predict(prepared.faces), MergeSettings(mode="hist-match", **s)).faces[0]
    ycc = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2YCrCb)[sel]
    pred, dst, out, out_full = ycc(swap.face), ycc(prepared.faces[0]), ycc(bw), ycc(full)
    qs = [10, 30, 50, 70, 90]
    assert np.abs(np.percentile(pred[:, 0], qs) - np.percentile(dst[:, 0], qs)).max() > 0.03  # lumas differ
    np.testing.assert_allclose(np.percentile(out[:, 0], qs), np.percentile(dst[:, 0], qs), atol=0.01)
    chroma_bw = np.abs(out[:, 1:] - pred[:, 1:]).mean()
    chroma_full = np.abs(out_full[:, 1:] - pred[:, 1:]).mean()
    assert chroma_bw < 0.004 and chroma_full > 3 * chroma_bw, (chroma_bw, chroma_full)


def test_seamless_hist_match_spellings_agree(grid, swap):
    a = MergeSettings(mode="seamless", seamless_hist=True)
    b = MergeSettings(mode="seamless-hist-match")
    assert a == b and a.mode == "seamless-hist-match" and b.seamless_hist
    assert MergeSettings.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    frame, recs = grid
    plain, _ = merge_frame(frame, recs, swap, MergeSettings(mode="seamless", color="none"))
    hist, _ = merge_frame(frame, recs, swap, MergeSettings(mode="seamless-hist-match", color="none"))
    assert np.abs(plain.astype(int) - hist).sum() > 0


# --- masks --------------------------------------------------------------------------


def _mask_for(frame, recs, pred, **kw):
    kw = {"mode": "overlay", "color": "none", "mask": "dst", "erode": 0, "blur": -32, **kw}
    return merge_frame(frame, recs, pred, MergeSettings(**kw))[1]


def test_erode_moves_the_edge(grid, swap):
    frame, recs = grid
    masks = {e: _mask_for(frame, recs, swap, erode=e) > 127 for e in (-60, -30, 0, 30, 60)}
    areas = [masks[e].sum() for e in (-60, -30, 0, 30, 60)]
    assert all(a > b for a, b in itertools.pairwise(areas)), areas
    assert not (masks[30] & ~masks[0]).any() and not (masks[0] & ~masks[-30]).any()  # nested: inward / outward


def test_blur_widens_the_soft_edge_and_negative_narrows_it(grid, swap):
    frame, recs = grid
    soft = [((m > 0) & (m < 255)).sum() for m in (_mask_for(frame, recs, swap, blur=b) for b in (-32, -16, 0, 20, 60))]
    assert soft[0] < soft[1] < soft[2] < soft[3] < soft[4], soft
    np.testing.assert_array_equal(_mask_for(frame, recs, swap, blur=-50), _mask_for(frame, recs, swap, blur=-32))


def test_face_scale_grows_about_the_face_centre(grid, swap):
    frame, recs = grid
    base, big = _mask_for(frame, recs, swap) > 127, _mask_for(frame, recs, swap, face_scale=20) > 127
    small = _mask_for(frame, recs, swap, face_scale=-20) > 127
    assert 1.36 < big.sum() / base.sum() < 1.52
    assert 0.58 < small.sum() / base.sum() < 0.70
    centroid = lambda m: np.argwhere(m).mean(0)
    assert np.abs(centroid(big) - centroid(base)).max() < 2
    assert np.abs(centroid(small) - centroid(base)).max() < 2


def test_predicted_mask_follows_the_predicted_face(grid):
    frame, recs = grid
    ident = IdentityPredictor()
    dst = _mask_for(frame, recs, ident) > 127
    predicted = _mask_for(frame, recs, ident, mask="predicted") > 127
    assert iou(dst, predicted) > 0.8
    product = _mask_for(frame, recs, ident, mask="dst*predicted") > 127
    assert not (product & ~dst).any() and product.sum() > 0.7 * dst.sum()


@pytest.mark.parametrize("face_type", ["half", "whole"])
def test_predicted_mask_without_dst_landmarks(grid, face_type):
    # no dst landmarks (e.g. records of another landmark set): dlib gets the usual box of the face type
    frame, recs = grid
    prepared = dataclasses.replace(prepare_faces(frame, recs, 128, face_type), landmarks=None)
    ones = np.ones((1, 128, 128), np.float32)
    layers = face_layers(prepared, prepared.faces, ones, MergeSettings(mask="predicted", blur=-32))
    got = cv2.resize(layers.masks[0], (128, 128), interpolation=cv2.INTER_AREA) > 0.5
    assert iou(got, prepared.hulls[0] > 0.5) > 0.8


def test_learned_dst_mask(grid, swap, other_face):
    frame, recs = grid
    with pytest.raises(SettingsError, match="learned-dst") as e:
        _mask_for(frame, recs, swap, mask="learned-dst")
    assert e.value.hint
    pred = DstMaskPredictor(*other_face)
    prepared = prepare_faces(frame, recs, R, "full")
    faces, masks, dst_masks = run_predictor(pred, prepared, MergeSettings(mask="learned-dst*dst"))
    layers = face_layers(prepared, faces, masks, MergeSettings(mask="learned-dst", blur=-32), dst_masks=dst_masks)
    small = cv2.resize(layers.masks[0], (R, R), interpolation=cv2.INTER_AREA)
    assert iou(small > 0.5, dst_masks[0] > 0.5) > 0.95
    assert run_predictor(pred, prepared, MergeSettings(mask="learned*dst"))[2] is None  # only computed when needed


def test_predictor_predict_dst_mask_uses_the_dst_reconstruction(grid):
    torch = pytest.importorskip("torch")
    from facelab.models import create_model
    from facelab.inference import Predictor

    frame, recs = grid
    torch.manual_seed(0)
    model = create_model("quick", resolution=64)
    pred = Predictor(model, torch.device("cpu"))
    batch = prepare_faces(frame, recs, 64, "full").faces
    got = pred.predict_dst_mask(batch)
    assert got.shape == (1, 64, 64) and got.dtype == np.float32
    with torch.inference_mode():
        want = model.reconstruct(torch.from_numpy(batch).permute(0, 3, 1, 2), "dst")[1][:, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - pred.predict(batch)[1]).max() > 1e-4  # not the swap's mask
    with pytest.raises(ValueError, match="expected"):
        pred.predict_dst_mask(batch[:, :10])


@pytest.mark.parametrize("mask", ["segmentation-prd", "segmentation-dst", "learned*segmentation-dst"])
def test_segmentation_masks_are_settings_that_need_the_segmenter(mask):
    from facelab.merge.masks import MaskInputs, build_masks, uses_segmenter

    assert MergeSettings(mask=mask).mask == mask and uses_segmenter(mask)
    faces = np.zeros((1, 8, 8, 3), np.float32)
    ones = np.ones((1, 8, 8), np.float32)
    with pytest.raises(SettingsError, match="no trained segmenter") as e:
        build_masks(mask, MaskInputs(faces, faces, ones, None, ones, None, "full"))
    assert "seg train" in e.value.hint


# --- colour ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rct", "lct", "mkl", "idt", "sot"])
def test_color_masked_variant_ignores_the_background(grid, swap, name):
    frame, recs = grid
    # another background: every pixel more than 12 px outside the dst hull recoloured
    far = cv2.dilate(frame_hull(recs[0], frame.shape).astype(np.uint8), np.ones((25, 25), np.uint8)) == 0
    other = frame.copy()
    other[far] = 255 - other[far][:, ::-1]

    def face(img, color):
        return predict_faces(img, recs, swap, MergeSettings(mode="raw-predict", color=color, mask="dst"))[0][0].astype(int)

    none = face(frame, "none")
    plain, masked = face(frame, name), face(frame, f"{name}-m")
    assert np.abs(plain - none).mean() > 2 and np.abs(masked - none).mean() > 2
    assert np.abs(plain - masked).mean() > 1
    np.testing.assert_array_equal(face(other, f"{name}-m"), masked)
    assert np.abs(face(other, name) - plain).mean() > 2


# --- face effects -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option", [{"degrade_color": 100}, {"bicubic_degrade": 100}, {"sharpen": 80}, {"sharpen": -80}]
)
def test_face_effects_change_the_face_only(grid, swap, option):
    frame, recs = grid
    base_kw = {"mode": "overlay", "color": "none", "mask": "dst"}
    base, base_mask = merge_frame(frame, recs, swap, MergeSettings(**base_kw))
    out, mask = merge_frame(frame, recs, swap, MergeSettings(**base_kw, **option))
    np.testing.assert_array_equal(mask, base_mask)
    np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])
    core = mask == 255
    assert np.abs(out[core].astype(int) - base[core]).mean() > 0.5


def test_sharpen_sharpens_and_blurs(grid, swap):
    frame, recs = grid
    prepared = prepare_faces(frame, recs, R, "full")

    def detail(amount):
        face = face_layers(prepared, *swap.predict(prepared.faces), MergeSettings(color="none", sharpen=amount)).faces[0]
        return cv2.Laplacian(face, cv2.CV_32F).var()

    assert detail(-60) < detail(0) < detail(60)


def test_motion_is_not_taken_across_a_cut_or_from_another_person(dst_frames, find_faces):
    # Three frames of the GRID speaker, then a second shot: another speaker, smaller and further left.
    # The face's motion comes from its neighbours only while they continue it: at the cut (and next to
    # another person) it is the one-sided motion within the shot, not the jump (which blurred the face
    # by up to a quarter of its width on both frames at every cut).
    shot = [cv2.imread(str(p)) for p in dst_frames[:3]]
    _, _, b = next(iter_frames(shared("grid_av/lbax4n.mpg")))
    second = cv2.copyMakeBorder(cv2.resize(b, (180, 144)), 72, 72, 40, 140, cv2.BORDER_REPLICATE)
    by_number = {n: find_faces(image) for n, image in enumerate(shot + [second], start=1)}
    assert all(len(recs) == 1 for recs in by_number.values())
    centre = {n: np.asarray(recs[0].source_landmarks, np.float64).mean(0) for n, recs in by_number.items()}
    both_sides = motions(by_number[2], 2, by_number)[0]
    np.testing.assert_allclose(both_sides, ((centre[2] - centre[1]) + (centre[3] - centre[2])) / 2, atol=1e-6)
    before_cut = motions(by_number[3], 3, by_number)[0]
    np.testing.assert_allclose(before_cut, centre[3] - centre[2], atol=1e-6)
    assert np.hypot(*before_cut) < 2 and np.hypot(*(centre[4] - centre[3])) > 30
    assert motions(by_number[4], 4, by_number) == [None]  # first of its shot, none after it here
    # another person beside the face in the next frame, detected first (face index 0, as the face's own
    # index in frame 2): the face's motion still comes from the face itself
    beside = find_faces(np.concatenate([shot[2], cv2.imread(str(dst_frames[40]))], axis=1))
    assert len(beside) == 2
    other_first = sorted(beside, key=lambda r: -float(np.asarray(r.source_landmarks)[:, 0].mean()))
    other_first = [dataclasses.replace(r, face_index=i) for i, r in enumerate(other_first)]
    moved = motions(by_number[2], 2, {1: by_number[1], 2: by_number[2], 3: other_first})[0]
    np.testing.assert_allclose(moved, both_sides, atol=1e-6)


def test_motion_blur_needs_motion(grid, swap):
    frame, recs = grid
    kw = {"mode": "overlay", "color": "none", "mask": "dst"}
    still, _ = merge_frame(frame, recs, swap, MergeSettings(**kw))
    np.testing.assert_array_equal(merge_frame(frame, recs, swap, MergeSettings(motion_blur=100, **kw))[0], still)
    across, mask = merge_frame(frame, recs, swap, MergeSettings(motion_blur=100, **kw), motion=[(12.0, 0.0)])
    down, _ = merge_frame(frame, recs, swap, MergeSettings(motion_blur=100, **kw), motion=[(0.0, -12.0)])
    np.testing.assert_array_equal(across[mask == 0], frame[mask == 0])
    core = mask == 255
    gx = lambda im: np.abs(np.diff(im.astype(int), axis=1))[core[:, 1:]].mean()
    gy = lambda im: np.abs(np.diff(im.astype(int), axis=0))[core[1:]].mean()
    # a blur along x removes x-gradients much more than y-gradients, and the other way round
    assert gx(across) / gx(still) < 0.7 * gy(across) / gy(still)
    assert gy(down) / gy(still) < 0.7 * gx(down) / gx(still)
    with pytest.raises(ValueError, match="motion"):
        merge_frame(frame, recs, swap, MergeSettings(motion_blur=100, **kw), motion=[None, None])


def test_denoise_frame_filters_the_whole_frame(grid, swap):
    frame, recs = grid
    out, mask = merge_frame(frame, recs, swap, MergeSettings(mode="overlay", denoise_frame=100))
    far = mask == 0
    want = cv2.medianBlur(frame, 5)
    np.testing.assert_array_equal(out[far], want[far])
    assert np.abs(want[far].astype(int) - frame[far]).mean() > 0.5


def test_alpha_output(grid, swap):
    frame, recs = grid
    rgb, mask = merge_frame(frame, recs, swap, MergeSettings(mode="overlay"))
    bgra, mask2 = merge_frame(frame, recs, swap, MergeSettings(mode="overlay", alpha=True))
    assert bgra.shape == frame.shape[:2] + (4,) and bgra.dtype == np.uint8
    np.testing.assert_array_equal(bgra[..., 3], mask2)
    np.testing.assert_array_equal(bgra[..., :3], rgb)
    np.testing.assert_array_equal(mask2, mask)
    empty, _ = merge_frame(frame, [], swap, MergeSettings(alpha=True))
    assert empty.shape == frame.shape[:2] + (4,) and not empty[..., 3].any()


def test_enhancer_hook(grid, swap):
    frame, recs = grid
    calls = []

    def upscale2(faces):
        calls.append(faces.shape)
        return np.stack([cv2.resize(f, (2 * R, 2 * R), interpolation=cv2.INTER_CUBIC) for f in faces])

    s = MergeSettings(mode="overlay", color="none", enhancer="upscale2")
    with pytest.raises(SettingsError, match="enhancer"):
        merge_frame(frame, recs, swap, s)
    plain, _ = merge_frame(frame, recs, swap, MergeSettings(mode="overlay", color="none"))
    big, _ = merge_frame(frame, recs, swap, s, enhancer=upscale2)
    assert calls == [(1, R, R, 3)]
    assert np.abs(big.astype(int) - plain).mean() < 1.0 and np.abs(big.astype(int) - plain).max() > 0  # same place, new pixels
    faces = predict_faces(frame, recs, swap, MergeSettings(mode="raw-predict", enhancer="x"), enhancer=upscale2)
    assert faces[0][0].shape == (2 * R, 2 * R, 3) and faces[0][1].shape == (2 * R, 2 * R)
    with pytest.raises(ValueError, match="enhancer returned"):
        merge_frame(frame, recs, swap, s, enhancer=lambda f: f[:, :10])


def test_frames_without_faces_are_unchanged(grid, swap):
    frame, _ = grid
    for s in (MergeSettings(), MergeSettings(mode="raw-rgb", sharpen=50, face_scale=10)):
        merged, mask = merge_frame(frame, [], swap, s)
        np.testing.assert_array_equal(merged, frame)
        assert not mask.any()


def test_compose_faces_refuses_raw_predict(grid, swap):
    frame, recs = grid
    prepared = prepare_faces(frame, recs, R, "full")
    with pytest.raises(ValueError, match="raw-predict"):
        compose_faces(frame, prepared, *swap.predict(prepared.faces), MergeSettings(mode="raw-predict"))


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, key",
    [({"mode": "raw"}, "mode"), ({"color": "rct-x"}, "color"), ({"mask": "dst*xseg"}, "mask"),
     ({"mask": "learned*learned"}, "mask"), ({"face_scale": 51}, "face_scale"), ({"sharpen": -101}, "sharpen"),
     ({"degrade_color": 101}, "degrade_color"), ({"bicubic_degrade": -1}, "bicubic_degrade"),
     ({"motion_blur": 101}, "motion_blur"), ({"denoise_frame": 501}, "denoise_frame"), ({"hist_threshold": -1}, "hist_threshold"),
     ({"blur": 201}, "blur"), ({"masked_hist": "yes"}, "masked_hist"), ({"alpha": 1}, "alpha"),
     ({"enhancer": ""}, "enhancer"), ({"erode": None}, "erode"), ({"mode": None}, "mode"), ({"mode": "overlay", "seamless_hist": True}, "seamless_hist")],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(SettingsError) as e:
        MergeSettings(**kwargs)
    assert key in e.value.message and e.value.hint


def test_settings_round_trip_all_fields():
    s = MergeSettings(mode="hist-match-bw", color="sot-m", mask="learned*predicted", erode=-20, blur=-5, face_scale=-10,
                      hist_threshold=0, masked_hist=False, degrade_color=30, bicubic_degrade=40, sharpen=-20,
                      motion_blur=50, denoise_frame=150, alpha=True, enhancer="enhancer-x", suppress_jitter=True)
    assert MergeSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert MergeSettings(enhancer="none").enhancer is None
    assert MergeSettings().color == "rct-m" and MergeSettings().mask == "learned*dst" and MergeSettings().mode == "seamless"
    with pytest.raises(SettingsError) as e:
        MergeSettings.from_dict({"sharpness": 1})
    assert "face_scale" in e.value.hint and "sharpen" in e.value.hint


def test_the_old_super_resolution_name_still_sets_the_enhancer():
    """``super_resolution`` was the setting's name before 2026-12-05: scripts, settings files and step records
    that use it keep working (a keyword warns; a dict key is read under the new name)."""
    with pytest.warns(DeprecationWarning, match="use enhancer="):
        assert MergeSettings(super_resolution="sr").enhancer == "sr"
    assert MergeSettings.from_dict({"super_resolution": "sr"}).enhancer == "sr"
    from facelab.merge.ranges import FrameRange, MergePlan

    plan = MergePlan.from_toml({"super-resolution": "sr", "ranges": [{"frames": "3-4", "super_resolution": "big"}]})
    assert plan.default.enhancer == "sr" and plan.settings_for(3).enhancer == "big" and plan.settings_for(5).enhancer == "sr"
    assert "super_resolution" not in json.dumps(plan.to_dict())
    # a frame's fingerprint is the text it had before the rename: frames merged then stay done
    assert '"super_resolution": "big"' in plan.fingerprint(3) and "enhancer" not in plan.fingerprint(3)
    assert MergePlan.from_dict(plan.to_dict()).with_range(FrameRange.parse("3-4"), {"enhancer": "big"}) == plan
