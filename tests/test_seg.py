"""The trainable segmenter (issue 13): network, stored masks, targets, augmentation, the seg stages, and
its use in training and merging, on the real sample faces."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from facelab.errors import FaceFileError, SettingsError, WorkspaceError
from facelab.faceimage import read_face, read_record, rewrite_record
from facelab.masks.polygons import Polygon, polygons_of, with_polygons
from facelab.seg import store
from facelab.seg.augment import SegAugment, augment
from facelab.seg.data import cut_face, load_faces, target_of
from facelab.seg.model import SegmenterRunner, create_segmenter, fused, load_segmenter, uncertainty
from facelab.seg.net import Segmenter
from facelab.seg.training import iou
from facelab.stages import seg
from facelab.workspace import Workspace


def _quiet(_s: str) -> None:
    pass


# --- network ---------------------------------------------------------------------------------------


def test_segmenter_shapes_and_config():
    net = create_segmenter(resolution=64, face_type="full")
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64) and out.dtype == torch.float32
    assert net.config["resolution"] == 64 and net.config["face_type"] == "full"
    with pytest.raises(ValueError, match="multiple of 64"):
        Segmenter(resolution=100)
    with pytest.raises(ValueError, match="unknown segmenter"):
        create_segmenter("xseg9")


def test_default_segmenter_size():
    n = sum(p.numel() for p in Segmenter().parameters())
    assert 8e6 < n < 20e6  # the XSeg class (about 17.6 M), narrower at full resolution to run on CPUs


@pytest.mark.parametrize("skips,pad", [("add", "zero"), ("concat", "replicate")])
def test_both_decoder_joins_run_and_fuse(skips, pad):
    torch.manual_seed(0)
    net = create_segmenter(resolution=64, skips=skips, pad=pad).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = torch.sigmoid(net(x))[:, 0].numpy()
    assert np.abs(SegmenterRunner(net).predict(x.permute(0, 2, 3, 1).numpy()) - want).max() < 1e-4
    with pytest.raises(ValueError, match="skips"):
        create_segmenter(resolution=64, skips="sum")


def test_a_segmenter_saved_before_the_skip_choice_loads_as_it_was(tmp_path):
    from facelab.train.checkpoint import CONFIG, save_checkpoint

    torch.manual_seed(0)
    old = create_segmenter(resolution=64, skips="concat", pad="replicate").eval()
    save_checkpoint(tmp_path / "seg", old, None, {}, {"iteration": 3})
    cfg = json.loads((tmp_path / "seg" / CONFIG).read_text())
    for key in ("skips", "pad"):  # what a folder written by the first segmenter release holds
        del cfg["config"][key]
    (tmp_path / "seg" / CONFIG).write_text(json.dumps(cfg))
    x = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    with torch.no_grad():
        want = torch.sigmoid(old(torch.from_numpy(x).permute(0, 3, 1, 2)))[:, 0].numpy()
    assert np.abs(load_segmenter(tmp_path / "seg").predict(x) - want).max() < 1e-4


def test_fused_runner_matches_the_network():
    torch.manual_seed(0)
    net = create_segmenter(resolution=64)
    net.train()
    net(torch.rand(4, 3, 64, 64))  # move the batch-norm statistics off their initial values
    net.eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        want = torch.sigmoid(net(x))[:, 0].numpy()
    got = SegmenterRunner(net).predict(x.permute(0, 2, 3, 1).numpy())
    assert np.abs(got - want).max() < 1e-4
    assert all(not isinstance(m, torch.nn.BatchNorm2d) for m in fused(net).modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched


def test_flip_average_is_the_mean_with_the_mirrored_face_and_mirror_symmetric(ws):
    torch.manual_seed(0)
    net = create_segmenter(resolution=64)
    faces = np.stack([cv2.resize(read_face(p)[0], (64, 64), interpolation=cv2.INTER_AREA) for p in ws.aligned_paths("src")[:3]])
    plain, both = SegmenterRunner(net, model_id="abc"), SegmenterRunner(net, model_id="abc", flip_average=True)
    a, m = plain.predict(faces), plain.predict(faces[:, :, ::-1])[:, :, ::-1]
    assert np.abs(a - m).max() > 1e-3  # an untrained net is not mirror-symmetric, so the test can fail
    assert np.abs(both.predict(faces) - (a + m) / 2).max() < 1e-5
    assert np.abs(both.predict(faces[:, :, ::-1])[:, :, ::-1] - both.predict(faces)).max() < 1e-5
    assert plain.model_id == "abc" and both.model_id == "abc" + store.FLIP_SUFFIX


def test_uncertainty_is_zero_for_a_crisp_mask():
    crisp = np.zeros((32, 32), np.float32)
    crisp[8:24, 8:24] = 1
    assert uncertainty(crisp) == 0
    assert uncertainty(np.clip(crisp * 0.5 + 0.25, 0, 1)) > 0.5


# --- stored masks ----------------------------------------------------------------------------------


def test_mask_round_trip_in_a_face_file(ws):
    path = ws.aligned_paths("src")[0]
    image, record = read_face(path)
    size = record.size
    yy, xx = np.mgrid[:size, :size]
    mask = np.clip((size * 0.4 - np.hypot(xx - size / 2, yy - size / 2)) / 4, 0, 1).astype(np.float32)
    rewrite_record(path, store.with_mask(record, mask, "abc", "full", uncertainty=0.1))
    back = store.mask_of(read_record(path))
    assert back.shape == (size, size) and back.dtype == np.uint8
    assert np.abs(back / 255 - mask).max() <= 1 / 32 + 1 / 255  # 17 levels, stored as 8 bits
    assert store.mask_info(read_record(path)) == {"face_size": size, "model": "abc", "face_type": "full", "uncertainty": 0.1}
    assert np.array_equal(read_face(path)[0], image)  # pixels untouched
    assert store.remove_mask_file(path) and not store.has_mask(read_record(path))
    assert not store.remove_mask_file(path)


def test_a_mask_stored_smaller_than_its_face_reads_back_at_the_face_size(ws):
    path = ws.aligned_paths("src")[0]
    record = read_record(path)
    size = record.size
    yy, xx = np.mgrid[:size, :size]
    full = np.clip((size * 0.35 - np.hypot(xx - size * 0.45, yy - size * 0.55)) / 3, 0, 1).astype(np.float32)
    half = cv2.resize(full, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    rewrite_record(path, store.with_mask(record, half, "abc", "full"))
    back = store.mask_of(read_record(path)) / 255
    assert back.shape == (size, size)
    assert np.abs(back - full).mean() < 0.01 and iou(back, full) > 0.97  # the same place: no half-pixel shift
    with pytest.raises(ValueError, match="smaller"):
        store.with_mask(record, np.zeros((size // 3, size // 3)), "abc", "full")


def test_a_big_face_is_read_smaller_for_a_small_segmenter_with_the_same_cut(ws):
    from facelab.faceimage import image_from_bytes, record_from_bytes
    from facelab.seg.data import reduction_for

    path = ws.aligned_paths("dst")[0]
    data = path.read_bytes()
    record = record_from_bytes(data)
    r = record.size // 4
    assert reduction_for(record, record.face_type, r) == 4 and reduction_for(record, record.face_type, record.size) == 1
    assert reduction_for(record, record.face_type, record.size // 2 + 1) == 1
    image = image_from_bytes(data, record)
    mat = cut_face(image, record, record.face_type, r)[1]
    small_image = image_from_bytes(data, record, reduce=4)
    assert small_image.shape[0] == -(-record.size // 4)
    small, mat4 = cut_face(small_image, record, record.face_type, r, reduce=4)
    assert np.array_equal(mat, mat4)  # the matrix stays the full file's
    # the full image, low-passed as the decoder's scaling does, cut with the same matrix
    want = cv2.warpAffine(cv2.GaussianBlur(image, (0, 0), 2.4), mat, (r, r), borderMode=cv2.BORDER_REPLICATE).astype(int)
    errs = [np.abs(np.roll(small, shift, axis=ax).astype(int) - want)[2:-2, 2:-2].mean() for ax in (0, 1) for shift in (-1, 1)]
    err = np.abs(small.astype(int) - want)[2:-2, 2:-2].mean()
    assert err < 1.5 and err < 0.5 * min(errs)  # the same pixels, and not shifted by a pixel either way
    with pytest.raises(ValueError, match="reduce"):
        image_from_bytes(data, record, reduce=3)


def test_a_broken_stored_mask_is_a_clear_error(ws):
    record = read_record(ws.aligned_paths("src")[0])
    bad = record.replace(extra={**record.extra, "seg_mask": {"png": "bm90IGEgcG5n", "model": "x"}})
    with pytest.raises(FaceFileError, match="not a PNG") as e:
        store.mask_of(bad)
    assert "seg remove" in e.value.hint
    wrong = store.with_mask(record.replace(size=record.size), np.zeros((record.size, record.size)), "m", "full")
    small = wrong.replace(extra={**wrong.extra, "seg_mask": {**wrong.extra["seg_mask"], "png": store.encode_mask(np.zeros((8, 8)))}})
    with pytest.raises(FaceFileError, match="8x8"):
        store.mask_of(small)


# --- targets and augmentation ----------------------------------------------------------------------


def test_target_is_the_drawn_label_when_there_is_one(ws):
    image, record = read_face(ws.aligned_paths("src")[0])
    face, mat = cut_face(image, record, record.face_type, 64)
    assert face.shape == (64, 64, 3) and np.allclose(mat, np.eye(3)[:2] * 64 / record.size)
    hull, labelled = target_of(record, mat, record.face_type, 64)
    assert not labelled and 0.2 < hull.mean() < 0.9
    s = record.size
    square = Polygon("include", [[0, 0], [s / 2, 0], [s / 2, s / 2], [0, s / 2]])
    drawn, labelled = target_of(with_polygons(record, [square]), mat, record.face_type, 64)
    assert labelled and drawn[:31, :31].min() == 1 and drawn[34:, :].max() == 0


def test_recut_to_another_face_type_moves_the_target_with_the_face(ws):
    image, record = read_face(ws.aligned_paths("dst")[0])
    face, mat = cut_face(image, record, "whole", 64)  # whole shows more than full: the face gets smaller
    target, _ = target_of(record, mat, "whole", 64)
    full_target, _ = target_of(record, cut_face(image, record, "full", 64)[1], "full", 64)
    assert target.sum() < full_target.sum()


def _face_and_target(ws):
    data = load_faces(ws.aligned_paths("src")[:4], "full", 64)
    return data


def test_augment_keeps_shapes_and_inputs(ws):
    data = _face_and_target(ws)
    f0, t0 = data.faces[0].copy(), data.targets[0].copy()
    rng = np.random.default_rng(1)
    for _ in range(5):
        f, t = augment(data.faces[0], data.target(0), rng, lambda: (data.faces[1], data.target(1)))
        assert f.shape == f0.shape and f.dtype == np.uint8 and t.shape == t0.shape and t.dtype == np.float32
        assert 0 <= t.min() and t.max() <= 1
    assert np.array_equal(data.faces[0], f0) and np.array_equal(data.targets[0], t0)
    f, t = augment(data.faces[0], data.target(0), rng, lambda: (data.faces[1], data.target(1)), SegAugment.off())
    assert np.array_equal(f, f0) and np.allclose(t, t0 / 255)
    with pytest.raises(ValueError, match="expected"):
        augment(data.faces[0][..., 0], data.target(0), rng, lambda: (data.faces[1], data.target(1)))


def test_occluders_are_cut_out_of_the_target(ws):
    data = _face_and_target(ws)
    only = SegAugment(**{**SegAugment.off().__dict__, "occluder": 1.0})
    rng = np.random.default_rng(3)
    lost = []
    for _ in range(8):
        f, t = augment(data.faces[0], data.target(0), rng, lambda: (data.faces[2], data.target(2)), only)
        gone = (data.target(0) > 0.5) & (t < 0.5)
        if gone.any():  # where the target lost face, the pixels changed: something covers it
            assert np.abs(f[gone].astype(int) - data.faces[0][gone].astype(int)).mean() > 5
        lost.append(gone.mean())
    assert max(lost) > 0.01


def test_glasses_stay_in_the_target_and_sit_on_the_eyes(ws):
    from facelab.seg.augment import add_glasses, template_eyes

    data = load_faces(ws.aligned_paths("src")[:2], "whole", 64)
    eyes = template_eyes("whole", 64)
    assert eyes[0, 0] < 32 < eyes[1, 0] and 15 < eyes[:, 1].mean() < 35 and abs(eyes[0, 1] - eyes[1, 1]) < 2
    only = SegAugment(**{**SegAugment.off().__dict__, "glasses": 1.0})
    rng = np.random.default_rng(0)
    for _ in range(4):
        f, t = augment(data.faces[0], data.target(0), rng, lambda: (data.faces[1], data.target(1)), only, eyes)
        assert np.array_equal(t, data.target(0))  # glasses belong to the face: the target keeps them
        changed = np.abs(f.astype(int) - data.faces[0].astype(int)).sum(2) > 30
        ys, xs = np.nonzero(changed)
        assert len(ys) > 20 and abs(np.median(ys) - eyes[:, 1].mean()) < 8  # drawn over the eyes
    f, _ = augment(data.faces[0], data.target(0), rng, lambda: (data.faces[1], data.target(1)), only)
    assert np.array_equal(f, data.faces[0])  # no eye positions: no glasses
    assert not np.array_equal(add_glasses(data.faces[0], eyes, rng), data.faces[0])


def test_what_a_label_cuts_out_is_pasted_over_other_faces(ws):
    from facelab.seg.augment import paste_occluder
    from facelab.seg.data import occluder_of

    path = ws.aligned_paths("src")[0]
    image, record = read_face(path)
    s = record.size
    face_poly = Polygon("include", [[s * 0.2, s * 0.1], [s * 0.8, s * 0.1], [s * 0.8, s * 0.95], [s * 0.2, s * 0.95]])
    hand = Polygon("exclude", [[s * 0.3, s * 0.7], [s * 0.7, s * 0.7], [s * 0.7, s], [s * 0.3, s]])
    rewrite_record(path, with_polygons(record, [face_poly, hand]))
    others = ws.aligned_paths("src")[1:4]
    data = load_faces([path, *others], "full", 64)
    assert data.labelled.tolist() == [True, False, False, False] and len(data.occluders) == 1
    patch, alpha, (y, x) = data.occluders[0]
    assert patch.shape[:2] == alpha.shape and 0.6 * 64 - 2 <= y <= 0.7 * 64 + 1 and 0.3 * 64 - 2 <= x <= 0.3 * 64 + 1
    assert occluder_of(data.faces[1], read_record(others[0]), np.eye(3)[:2], data.target(1)) is None  # no label, none
    rng = np.random.default_rng(0)
    for _ in range(4):
        f, t = paste_occluder(data.faces[1], data.target(1), data.occluders[0], rng)
        lost = (data.target(1) > 0.5) & (t < 0.5)
        assert lost.sum() > 20  # the face lost what the occluder covers ...
        assert np.abs(f[lost].astype(int) - data.faces[1][lost].astype(int)).mean() > 5  # ... and it shows there
    only = SegAugment(**{**SegAugment.off().__dict__, "pasted": 1.0})
    f, t = augment(data.faces[1], data.target(1), rng, lambda: (data.faces[2], data.target(2)), only, None, data.occluders)
    assert t.sum() < data.target(1).sum()
    labelled = data.subset(np.flatnonzero(data.labelled))  # what --labels-only trains on keeps the occluders
    assert len(labelled) == 1 and labelled.face_type == "full" and len(labelled.occluders) == 1
    assert labelled.paths == [path] and np.array_equal(labelled.target(0), data.target(0))


# --- the stages ------------------------------------------------------------------------------------


def _train(ws, marker, log=_quiet, **kw):
    settings = seg.SegTrainSettings(**{"resolution": 64, "batch_size": 2, "device": "cpu", **kw})
    return seg.train(ws, settings, log=log, marker=marker)


def test_training_does_not_start_without_disk_for_its_first_save(ws, marker, disk_free):
    from facelab.errors import FacelabError

    disk_free(2**20)
    with pytest.raises(FacelabError, match=r"not enough free disk for the segmenter: 1 MiB free .* needs about \d+ MiB"):
        _train(ws, marker, iterations=2)
    assert not ws.model_dir("segmenter").exists()


def test_train_resume_apply_remove(ws, marker):
    s = _train(ws, marker, iterations=2)
    assert s.counts["iteration"] == 2 and s.counts["faces"] == 60 and s.counts["labelled"] == 0
    assert any("no face has drawn polygons" in w for w in s.warnings)
    folder = ws.model_dir("segmenter")
    assert json.loads((folder / "config.json").read_text())["kind"] == "segmenter"
    assert (folder / "preview.jpg").is_file()
    assert _train(ws, marker, iterations=3).counts["iteration"] == 3  # resumed, not restarted
    with pytest.raises(SettingsError, match="fixed at its first run"):
        _train(ws, marker, iterations=4, resolution=128)

    runner = load_segmenter(folder)
    a = seg.apply(ws, side="src", device="cpu")
    assert a.counts["applied"] == 30
    for p in ws.aligned_paths("src"):
        rec = read_record(p)
        assert store.mask_info(rec)["model"] == runner.model_id and store.mask_of(rec).shape == (rec.size, rec.size)
    assert not store.has_mask(read_record(ws.aligned_paths("dst")[0]))
    assert seg.apply(ws, side="src", device="cpu").counts["skipped (already applied)"] == 30
    # the mirror-averaged masks are other masks: applied again, then skipped in that mode
    assert seg.apply(ws, side="src", device="cpu", flip_average=True).counts["applied"] == 30
    assert store.mask_info(read_record(ws.aligned_paths("src")[0]))["model"] == runner.model_id + store.FLIP_SUFFIX
    assert seg.apply(ws, side="src", device="cpu", flip_average=True).counts["skipped (already applied)"] == 30
    assert seg.remove(ws, side="both").counts["removed"] == 30
    assert not any(store.has_mask(read_record(p)) for p in ws.aligned_paths("src"))


def test_a_swap_model_folder_is_not_a_segmenter(trained_quick_ws):
    from facelab.train.checkpoint import WrongKindError

    with pytest.raises(WrongKindError, match="face-swap model"):
        load_segmenter(trained_quick_ws.model_dir("quick"))
    with pytest.raises(SettingsError, match="no segmenter"):
        seg.apply(trained_quick_ws, name="nothing")


def test_labels_only_needs_labels_then_trains_on_them(ws, marker):
    with pytest.raises(SettingsError, match="none of the faces has drawn polygons"):
        _train(ws, marker, iterations=1, pseudo_labels=False)
    p = ws.aligned_paths("dst")[3]
    rec = read_record(p)
    s = rec.size
    rewrite_record(p, with_polygons(rec, [Polygon("include", [[s * .2, s * .2], [s * .8, s * .2], [s * .8, s * .9], [s * .2, s * .9]])]))
    lines = []
    out = _train(ws, marker, lines.append, iterations=1, pseudo_labels=False)
    assert out.counts["faces"] == 1 and out.counts["labelled"] == 1 and 0 <= out.counts["label_iou"] <= 1
    config = json.loads((ws.model_dir("segmenter") / "config.json").read_text())
    assert config["options"]["iou_loss"] is False and not any("Lovász" in line for line in lines)
    lines.clear()  # with the IoU surrogate: said in the log, kept with the segmenter
    assert _train(ws, marker, lines.append, iterations=2, pseudo_labels=False, iou_loss=True).counts["iteration"] == 2
    assert json.loads((ws.model_dir("segmenter") / "config.json").read_text())["options"]["iou_loss"] is True
    assert any("Lovász" in line for line in lines)


def test_lovasz_hinge_is_one_minus_iou_on_hard_logits_and_trains_towards_it(ws):
    """On logits of exactly +-s the Lovász hinge is (1 + s) * (1 - IoU); its gradient moves a mask towards the
    target. Real masks: the landmark hulls of two different faces."""
    from facelab.align import hull_mask
    from facelab.seg.training import lovasz_hinge

    recs = [read_record(p) for p in ws.aligned_paths("src")[:1] + ws.aligned_paths("dst")[:1]]
    a, b = (hull_mask(r.landmarks * 64 / r.size, (64, 64), r.face_type) for r in recs)
    assert 0.3 < iou(a, b) < 0.95
    t = torch.from_numpy(np.stack([b, b]))[:, None].float()
    for s in (1.0, 4.0):
        logits = torch.from_numpy(np.stack([a, b]) * 2 - 1)[:, None].float() * s
        expected = (1 + s) * (1 - iou(a, b)) / 2  # the mean of the two faces; the second is exact
        assert lovasz_hinge(logits, t).item() == pytest.approx(expected, rel=1e-5)
    z = (torch.from_numpy(a * 2 - 1)[None, None].float() * 0.5).requires_grad_()
    opt = torch.optim.Adam([z], lr=0.3)
    for _ in range(10):
        opt.zero_grad()
        lovasz_hinge(z, t[:1]).backward()
        opt.step()
    assert iou((z.detach()[0, 0] > 0).float().numpy(), b) > 0.97


def test_fetch_and_remove_labels_keep_a_backup(ws):
    paths = ws.aligned_paths("src")[:2]
    poly = Polygon("include", [[10, 10], [60, 10], [60, 70]])
    for p in paths:
        rewrite_record(p, with_polygons(read_record(p), [poly]))
    assert seg.fetch(ws, side="src").counts["copied"] == 2
    assert sorted(x.name for x in ws.xseg_dir("src").iterdir()) == sorted(p.name for p in paths)
    counted = seg.labels(ws, side="both")
    assert counted.counts["src labelled faces"] == 2 and counted.counts["dst labelled faces"] == 0
    removed = seg.labels(ws, side="src", remove=True)
    assert not any(polygons_of(read_record(p)) for p in paths)
    backup = json.loads(open(removed.outputs[0]).read())
    assert set(backup) == {p.name for p in paths} and Polygon.from_json(backup[paths[0].name][0]) == poly


def test_bad_side_and_name_are_refused(ws):
    with pytest.raises(SettingsError, match="side"):
        seg.remove(ws, side="left")
    with pytest.raises(SettingsError, match="name"):
        seg.SegTrainSettings(name="../x")
    with pytest.raises(SettingsError, match="resolution"):
        seg.SegTrainSettings(resolution=100)


# --- use in training and merging -------------------------------------------------------------------


def test_training_uses_the_applied_mask_instead_of_the_hull(ws):
    from facelab.train.dataset import FaceDataset

    paths = ws.aligned_paths("src")[:3]
    before = FaceDataset(paths, 64, "full")
    rec = read_record(paths[0])
    left = np.zeros((rec.size, rec.size), np.float32)
    left[:, : rec.size // 2] = 1
    rewrite_record(paths[0], store.with_mask(rec, left, "m", "full"))
    after = FaceDataset(paths, 64, "full")
    assert before.segmented == 0 and after.segmented == 1
    assert after.masks[0][:, 40:].max() == 0 and after.masks[0][:, :24].min() == 1
    assert np.array_equal(after.masks[1], before.masks[1])


class _Nothing:
    """A segmenter that sees no face anywhere."""

    model_id = "nothing"

    def masks_in_square(self, faces, landmarks, face_type):
        return np.zeros(faces.shape[:3], np.float32)


def test_segmentation_mask_that_sees_no_face_leaves_the_frame_alone(trained_quick_ws):
    from facelab.inference import load_predictor
    from facelab.merge.compose import MergeSettings, merge_frame
    from facelab.merge.sources import group_records

    ws = trained_quick_ws
    predictor = load_predictor(ws.model_dir("quick"))
    frame_path = ws.frame_paths("dst")[0]
    frame = cv2.imread(str(frame_path))
    records = [read_record(p) for p in ws.aligned_paths("dst") if read_record(p).source_filename == frame_path.name]
    with_seg = MergeSettings(mask="learned*segmentation-dst", color="none")
    merged, mask = merge_frame(frame, records, predictor, with_seg, segmenter=_Nothing())
    assert mask.max() == 0 and np.abs(merged.astype(int) - frame.astype(int)).max() <= 1
    plain, plain_mask = merge_frame(frame, records, predictor, MergeSettings(mask="learned", color="none"))
    assert plain_mask.max() > 0
    with pytest.raises(SettingsError, match="no trained segmenter"):
        merge_frame(frame, records, predictor, with_seg)
    assert group_records  # imported for the stage test below


def test_merge_with_segmentation_runs_the_workspace_segmenter(trained_quick_ws, tmp_path, marker):
    from facelab.merge.compose import MergeSettings
    from facelab.stages import merge

    shutil.copytree(trained_quick_ws.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    settings = MergeSettings(mask="learned*segmentation-dst")
    with pytest.raises(WorkspaceError, match="segmenter"):
        merge.run(ws, "quick", settings, marker=marker, only={1})
    _train(ws, marker, iterations=1, side="dst")
    first = merge.run(ws, "quick", settings, marker=marker, only={1, 3})
    assert first.counts["merged"] + first.counts["passthrough"] == 2
    again = merge.run(ws, "quick", settings, marker=marker, only={1, 3})
    assert again.counts["skipped"] == 2
    _train(ws, marker, iterations=2, side="dst")  # retrained: its frames are made again
    third = merge.run(ws, "quick", settings, marker=marker, only={1, 3})
    assert third.counts["skipped"] == 0


def test_iou():
    a = np.zeros((8, 8), np.float32)
    b = a.copy()
    a[:4] = 1
    b[2:6] = 1
    assert iou(a, b) == pytest.approx(16 / 48)
    assert iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


def test_the_segmenter_exports_as_a_mask_model_that_onnxruntime_runs(ws, marker, tmp_path):
    import onnxruntime as ort

    from facelab.stages import export

    _train(ws, marker, iterations=1)
    s = export.run(ws, "segmenter", export.ExportSettings(format="onnx", out=tmp_path / "seg.onnx"))
    assert s.counts["resolution"] == 64 and "out_mask:0" in s.warnings[0]
    sess = ort.InferenceSession(str(tmp_path / "seg.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["in_face:0"] and [o.name for o in sess.get_outputs()] == ["out_mask:0"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["facelab.synthetic"] == "true" and meta["facelab.kind"] == "mask"
    runner = load_segmenter(ws.model_dir("segmenter"))
    faces = load_faces(ws.aligned_paths("dst")[:3], runner.face_type, 64).faces
    got = sess.run(None, {"in_face:0": faces.astype(np.float32) / 255})[0][..., 0]
    want = runner.predict(faces)
    assert np.abs(got - want).max() < 1e-4


def test_faceset_resize_moves_the_applied_mask_with_the_face(ws):
    from facelab.stages import faceset

    path = ws.aligned_paths("src")[0]
    image, rec = read_face(path)
    s = rec.size
    mask = np.zeros((s, s), np.float32)
    mask[:, : s // 2] = 1  # the left half (in face pixels) is face
    rewrite_record(path, store.with_mask(rec, mask, "m", "full"))
    faceset.resize(ws, "src", 2 * s, None, 95)
    new = read_record(path)
    moved = store.mask_of(new)
    assert moved.shape == (2 * s, 2 * s)  # follows the new size: training still reads it
    assert moved[4:-4, 4: s - 4].min() == 255 and moved[:, s + 4:].max() == 0
    new = read_record(path)  # a mask stored at half the face's size moves as well
    rewrite_record(path, store.with_mask(new, cv2.resize(moved, (s, s), interpolation=cv2.INTER_AREA), "m", "full"))
    faceset.resize(ws, "src", s, None, 95)
    again = store.mask_of(read_record(path))
    assert again.shape == (s, s) and again[4:-4, 4: s // 2 - 4].min() >= 250 and again[:, s // 2 + 4:].max() <= 5


def test_train_on_both_sides_uses_the_side_that_has_faces(ws, marker):
    for p in ws.aligned_paths("dst"):
        p.unlink()
    assert _train(ws, marker, iterations=1).counts["faces"] == 30
    for p in ws.aligned_paths("src"):
        p.unlink()
    with pytest.raises(WorkspaceError, match="no faces"):
        _train(ws, marker, iterations=2)


def test_the_label_set_lands_on_the_faces_it_was_drawn_on():
    """facelab's own labels (tests/data/seg_labels, drawn on source images) cut onto real faces: on faces
    with nothing in front of them the landmark hull agrees closely with the drawing (the polygons moved with
    the face), on occluded ones it does not (what the segmenter is for)."""
    from pathlib import Path

    from facelab.align import hull_mask
    from facelab.seg.labelset import load_labelled

    root = Path(__file__).resolve().parents[1]
    faces_root = root.parent / "shared" / "data" / "faces"
    if not faces_root.is_dir():
        pytest.skip("the shared real-face data is not beside the project")
    faces, missed = load_labelled(root / "tests" / "data" / "seg_labels" / "labels.json", faces_root, "whole", 64,
                                  splits=("heldout",))
    assert not missed and len(faces) >= 12
    plain = [f for f in faces if not f.occlusion]
    hands = [f for f in faces if "hand" in f.occlusion]
    assert plain and hands
    for f in faces:
        assert f.truth.shape == (64, 64) and polygons_of(f.record) and 0.1 < f.truth.mean() < 0.9
    hull_iou = {id(f): iou(hull_mask(f.record.landmarks, (64, 64), "whole"), f.truth) for f in faces}
    assert min(hull_iou[id(f)] for f in plain) > 0.88
    assert max(hull_iou[id(f)] for f in hands) < 0.9


def test_unlabelled_faces_are_capped_and_spread(ws, monkeypatch):
    monkeypatch.setattr(seg, "MAX_PSEUDO_FACES", 5)
    paths = ws.aligned_paths("src")
    labelled = paths[7]
    rewrite_record(labelled, with_polygons(read_record(labelled), [Polygon("include", [[1, 1], [20, 1], [20, 20]])]))
    kept, left_out = seg._spread_unlabelled(paths)
    assert left_out == 24 and len(kept) == 6 and labelled in kept
    assert kept[1] == paths[0] and kept[-1] == paths[-1]  # spread over the whole set
    data = load_faces(kept, "full", 64)
    assert data.targets.dtype == np.uint8 and data.target(0).dtype == np.float32 and data.target(0).max() == 1.0
