"""facelab.checks: the one input check every op uses (issue 11): messages, error types, no copies."""

from __future__ import annotations

import numpy as np
import pytest

from facelab.checks import check_affine, check_image, check_mask, check_points, check_same_shape, describe


def test_check_image_returns_its_input_without_a_copy(astronaut):
    face = astronaut[:64, :64].astype(np.float32) / 255
    assert check_image(face, "op face") is face
    assert check_image(astronaut, "op frame", dtype=np.uint8) is astronaut
    assert check_image(astronaut[..., 0], "op gray", channels=None, dtype=None, gray=True) is not None


def test_check_image_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"^op face: expected numpy.ndarray, got list$"):
        check_image([[0.0, 0.0, 0.0]], "op face")
    with pytest.raises(TypeError, match="got NoneType"):
        check_image(None, "op face")


def test_check_image_wrong_shape_or_dtype_says_expected_and_got(astronaut):
    face = astronaut.astype(np.float32) / 255
    h, w = face.shape[:2]
    with pytest.raises(ValueError, match=rf"^op face: expected \(H, W, 3\) float32, got \({h}, {w}\) float32$"):
        check_image(face[..., 0], "op face")
    with pytest.raises(ValueError, match=rf"^op face: expected \(H, W, 3\) float32, got \({h}, {w}, 3\) uint8$"):
        check_image(astronaut, "op face")
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\|4\) uint8, got \(\d+, \d+, 2\) uint8"):
        check_image(astronaut[..., :2], "op frame", channels=(3, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"expected \(H, W\) or \(H, W, C\), got \(3,\) float32"):
        check_image(face[0, 0], "warp", channels=None, dtype=None, gray=True)


def test_check_mask_gives_a_2d_view_and_checks_the_size(astronaut):
    mask = (astronaut[..., :1] > 128).astype(np.float32)
    flat = check_mask(mask, "op mask", shape=astronaut.shape)
    assert flat.shape == astronaut.shape[:2] and np.shares_memory(flat, mask)
    with pytest.raises(ValueError, match=r"op mask: expected a \(5, 5\) mask to match the image, got \(\d+, \d+\) float32"):
        check_mask(mask, "op mask", shape=(5, 5, 3))
    with pytest.raises(ValueError, match=r"expected an \(H, W\) mask, got \(\d+, \d+, 3\) uint8"):
        check_mask(astronaut, "op mask")
    with pytest.raises(TypeError, match="got list"):
        check_mask([[1.0]], "op mask")


def test_check_points_and_affine_take_array_likes():
    pts = np.zeros((68, 2))
    assert check_points(pts, "p") is pts  # float64 already: no copy
    assert check_points([[1, 2], [3, 4]], "p").dtype == np.float64
    with pytest.raises(ValueError, match=r"^embed landmarks: expected \(68, 2\) landmarks, got \(60, 2\) float64$"):
        check_points(pts[:60], "embed landmarks", count=68, what="landmarks")
    assert check_affine([[1, 0, 0], [0, 1, 0]]).shape == (2, 3)
    with pytest.raises(ValueError, match=r"expected a \(2, 3\) affine matrix, got \(3, 3\) float64"):
        check_affine(np.eye(3))


def test_same_shape_and_describe():
    a, b = np.zeros((4, 4, 3), np.float32), np.zeros((4, 5, 3), np.float32)
    check_same_shape(a, a, "overlay", "face", "frame")
    with pytest.raises(ValueError, match=r"overlay: face \(4, 4, 3\) and frame \(4, 5, 3\) differ in shape"):
        check_same_shape(a, b, "overlay", "face", "frame")
    assert describe(a) == "(4, 4, 3) float32" and describe([1]) == "list"


def test_ops_outside_the_merge_use_the_same_checks(astronaut):
    from facelab.align import face_matrix, warp_image
    from facelab.eval import metrics
    from facelab.train.augment import random_warp

    with pytest.raises(TypeError, match="warp_image: expected numpy.ndarray, got list"):
        warp_image([[0]], np.eye(2, 3), 8)
    with pytest.raises(TypeError, match="random_warp: expected numpy.ndarray"):
        random_warp([[0]], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"face_matrix landmarks: expected \(68, 2\) landmarks, got \(5, 2\)"):
        face_matrix(np.zeros((5, 2)), "full", 64)
    with pytest.raises(ValueError, match=r"sharpness: expected \(H, W, 3\) uint8, got .* float32"):
        metrics.sharpness(astronaut.astype(np.float32), np.ones(astronaut.shape[:2], bool))
