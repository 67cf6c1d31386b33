"""Augmented training targets keep the detail of the faces they are cut from (the random affine resamples
them from a copy at twice the side), in the same place as the faces' masks and landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facelab.train import dataset as dataset_mod
from facelab.train.augment import AugmentOptions, augment_sample, doubled, random_affine, transform_face
from facelab.train.dataset import FaceDataset


def _detail(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the middle half of a face: its fine detail."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    n = g.shape[0] // 4
    return float(np.abs(cv2.Laplacian(g, cv2.CV_32F))[n:-n, n:-n].mean())


@pytest.fixture(scope="module")
def src64(sample_faces_ws):
    return FaceDataset(sample_faces_ws.aligned_paths("src"), 64)


def test_the_dataset_keeps_faces_at_twice_the_side(src64):
    assert src64.detail is not None and src64.detail.shape == (len(src64), 128, 128, 3)
    assert src64.detail.dtype == np.uint8
    # the same pictures: the 2R copy averaged down is the R face (up to rounding)
    down = np.stack([cv2.resize(b, (64, 64), interpolation=cv2.INTER_AREA) for b in src64.detail])
    assert np.abs(down.astype(int) - src64.faces).max() <= 2


def test_targets_keep_the_faces_detail(src64):
    """The affine of augmentation used to resample targets bilinearly at R: a fifth of the fine detail was
    lost (0.79 of the face's on the demo's faces), and models learned to paint that blur."""
    rng = np.random.default_rng(0)
    opts = AugmentOptions(warp=False)
    base, from_2r, cubic, bilinear = [], [], [], []
    for face, big in zip(src64.faces, src64.detail):
        mat = random_affine(rng, 64, opts)
        base.append(_detail(face))
        from_2r.append(_detail(transform_face(face, mat, big)))
        cubic.append(_detail(transform_face(face, mat)))
        bilinear.append(_detail(cv2.warpAffine(face, mat, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)))
    ratio = lambda v: np.mean(v) / np.mean(base)  # noqa: E731
    assert ratio(bilinear) < 0.88  # what targets were
    assert ratio(cubic) > 0.9 and ratio(cubic) > ratio(bilinear) + 0.05
    assert ratio(from_2r) > 0.96 and ratio(from_2r) > ratio(cubic)
    # and that is what training batches get
    src64.augment = opts
    try:
        n = len(src64)
        _, targets, _ = src64.sample(n, np.random.default_rng(1), indices=np.arange(n))
    finally:
        src64.augment = AugmentOptions()
    assert np.mean([_detail(t) for t in targets]) / np.mean(base) > 0.96


def test_a_target_from_the_2r_copy_lands_where_the_r_transform_puts_it(src64):
    """``doubled`` maps pixel centres the way INTER_AREA does, so a target cut at 2R sits exactly where the
    same affine at R puts the face, its mask and its landmarks: no sub-pixel shift between them."""
    face, big = src64.faces[3], src64.detail[3]
    ident = np.float64([[1, 0, 0], [0, 1, 0]])
    assert np.abs(transform_face(face, ident, big).astype(int) - face).max() <= 2
    mirror = np.float64([[-1, 0, 63], [0, 1, 0]])
    np.testing.assert_allclose(transform_face(face, mirror, big).astype(int), face[:, ::-1].astype(int), atol=2)
    shift = np.float64([[1, 0, 5], [0, 1, -3]])  # content moves 5 px right, 3 px up
    out = transform_face(face, shift, big).astype(int)
    assert np.abs(out[:-3, 5:] - face[3:, :-5]).max() <= 2  # out[y, x] = face[y + 3, x - 5]
    # a rotation about the centre: the 2R path and the R path agree on where things are
    rot = cv2.getRotationMatrix2D((31.5, 31.5), 9.0, 1.04)
    a = cv2.GaussianBlur(transform_face(face, rot, big), (0, 0), 1.5).astype(float)
    b = cv2.GaussianBlur(transform_face(face, rot), (0, 0), 1.5).astype(float)
    (dx, dy), _ = cv2.phaseCorrelate(a.mean(-1), b.mean(-1))
    assert abs(dx) < 0.05 and abs(dy) < 0.05
    np.testing.assert_allclose(doubled(ident), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_sample_uses_the_detail_and_the_colour_transfer_keeps_the_two_sizes_alike(sample_faces_ws, src64):
    dst = FaceDataset(sample_faces_ws.aligned_paths("dst"), 64)
    still = AugmentOptions(warp=False, rotation=0.0, scale=0.0, shift=0.0, flip=False)
    src64.augment = still
    try:
        inputs, targets, _ = src64.sample(6, np.random.default_rng(1), indices=np.arange(6))
        assert np.abs(targets.astype(int) - src64.faces[:6]).max() <= 2
        np.testing.assert_array_equal(inputs, targets)
        # recoloured towards dst: the 2R face is recoloured and the R face is its average, so the target
        # (cut from the 2R face) is the same picture as the R face the model is shown
        faces, details = src64._recolor(src64.faces[:4], list(src64.detail[:4]), np.arange(4), ("rct", dst),
                                        np.random.default_rng(2))
        for f, b in zip(faces, details):
            assert np.abs(cv2.resize(b, (64, 64), interpolation=cv2.INTER_AREA).astype(int) - f).max() <= 1
        assert np.abs(faces.astype(int) - src64.faces[:4]).mean() > 2  # it did recolour
        _, t2, _ = src64.sample(4, np.random.default_rng(1), indices=np.arange(4), color=("rct", dst))
        assert t2.shape == (4, 64, 64, 3)
    finally:
        src64.augment = AugmentOptions()


def test_no_2r_copy_beyond_the_budget_or_the_files_detail(sample_faces_ws, monkeypatch):
    paths = sample_faces_ws.aligned_paths("src")
    # the sample faces are 128 px files: a 128 px model has no finer copy to keep
    assert FaceDataset(paths[:4], 128).detail is None
    monkeypatch.setattr(dataset_mod, "DETAIL_BUDGET_BYTES", 4 * 128 * 128 * 3 - 1)
    small = FaceDataset(paths[:4], 64)
    assert small.detail is None
    # without it, targets are resampled bicubically at R and training still samples
    inputs, targets, masks = small.sample(3, np.random.default_rng(0))
    assert targets.shape == (3, 64, 64, 3) and masks.shape == (3, 64, 64)
    assert FaceDataset(paths[:4], 64, detail=True).detail is not None
    # augmentation without the copy gives the same shapes
    w, t, m = augment_sample(small.faces[0], small.masks[0], np.random.default_rng(0))
    assert w.shape == t.shape == (64, 64, 3)


def test_training_says_when_its_targets_are_resampled(sample_faces_ws, tmp_path, marker):
    """A 128 px model on 128 px face files has no finer copy: the run says so and how to get one."""
    import shutil

    from facelab.stages.train import TrainSettings, run
    from facelab.workspace import Workspace

    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    tiny = (("resolution", 128), ("ae_dims", 16), ("e_dims", 4), ("d_dims", 4), ("d_mask_dims", 2))
    lines: list[str] = []
    run(ws, TrainSettings(iterations=1, batch_size=2, device="cpu", name="big", architecture=tiny), log=lines.append, marker=marker)
    said = [x for x in lines if "training targets are resampled" in x]
    assert len(said) == 2 and "at 128 px" in said[0] and "--size 256" in said[0]
    lines.clear()
    run(ws, TrainSettings(iterations=1, batch_size=2, device="cpu", name="small",
                          architecture=(("resolution", 64),) + tiny[1:]), log=lines.append, marker=marker)
    assert not [x for x in lines if "resampled" in x]
