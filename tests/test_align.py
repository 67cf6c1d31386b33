import cv2
import numpy as np
import pytest

from facelab import align
from facelab.errors import SettingsError
from facelab.types import FaceType


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_umeyama_recovers_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (30, 2))
    truth = _similarity(1.7, 23.0, 12.5, -4.0)
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(align.umeyama(src, dst), truth, atol=1e-9)


def test_umeyama_never_reflects():
    src = np.random.default_rng(1).uniform(0, 10, (20, 2))
    dst = src * [-1, 1]  # a mirror image: best proper rotation, not a reflection
    m = align.umeyama(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


def test_umeyama_bad_input():
    with pytest.raises(ValueError, match="matching"):
        align.umeyama(np.zeros((5, 2)), np.zeros((4, 2)))


def test_mean_face_is_symmetric_and_normalised():
    inner = align.MEAN_FACE_68[17:]
    np.testing.assert_allclose(inner.min(0)[0], 0, atol=1e-3)
    np.testing.assert_allclose(inner.max(0)[0], 1, atol=1e-3)
    # nose bridge on the vertical axis; eyes level
    np.testing.assert_allclose(align.MEAN_FACE_68[27:31, 0], 0.5, atol=1e-3)
    assert abs(align.MEAN_FACE_68[36, 1] - align.MEAN_FACE_68[45, 1]) < 1e-3


@pytest.mark.parametrize("face_type", list(FaceType))
def test_face_matrix_maps_landmarks_to_canonical_place(face_type):
    # landmarks of a face in a frame: the mean face moved by a known similarity
    frame_pts = align.transform_points(align.MEAN_FACE_68 * 150, _similarity(1.0, 10, 200, 80))
    m = align.face_matrix(frame_pts, face_type, 256)
    face_pts = align.transform_points(frame_pts, m)
    cx, cy, r = align.FACE_TYPE_CROPS[face_type]
    expected = (align.MEAN_FACE_68 - [cx - r, cy - r]) * 256 / (2 * r)
    np.testing.assert_allclose(face_pts, expected, atol=0.05)


def test_wider_face_types_show_smaller_faces():
    pts = align.MEAN_FACE_68 * 100 + 50
    widths = [np.ptp(align.transform_points(pts, align.face_matrix(pts, t, 256))[:, 0]) for t in ("half", "mid", "full", "whole", "head")]
    assert widths == sorted(widths, reverse=True)


def test_face_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="68"):
        align.face_matrix(np.zeros((5, 2)), "full", 256)
    with pytest.raises(SettingsError, match="face type"):
        align.face_matrix(align.MEAN_FACE_68, "chin", 256)


def test_warp_then_unwarp_returns_the_face_region(astronaut, detector, landmarker):
    det = detector(astronaut)[0]
    lm = landmarker(astronaut, det)
    m = align.face_matrix(lm, "full", 256)
    before = astronaut.copy()
    face = align.warp_image(astronaut, m, 256)
    np.testing.assert_array_equal(astronaut, before)  # input untouched
    assert face.shape == (256, 256, 3) and face.dtype == np.uint8
    back = align.unwarp_image(face, m, astronaut.shape)
    inside = align.hull_mask(lm, astronaut.shape) > 0.5
    inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    err = np.abs(back.astype(np.float32) - astronaut.astype(np.float32))[inside].mean()
    assert err < 6.0, err


def test_landmarks_round_trip_through_matrix_and_inverse():
    pts = align.MEAN_FACE_68 * 120 + 40
    m = align.face_matrix(pts, "whole", 512)
    back = align.transform_points(align.transform_points(pts, m), align.invert_affine(m))
    np.testing.assert_allclose(back, pts, atol=1e-3)


def test_hull_mask_against_polygon_area():
    pts = align.MEAN_FACE_68 * 200 + 20
    mask = align.hull_mask(pts, (300, 300))
    hull = cv2.convexHull(pts.astype(np.float32))
    assert mask.dtype == np.float32 and mask.shape == (300, 300)
    assert abs(mask.sum() - cv2.contourArea(hull)) / cv2.contourArea(hull) < 0.02
    assert align.hull_mask(pts, (300, 300), "whole").sum() > mask.sum() * 1.1


def test_crop_matrix_maps_a_crop_as_the_frame(astronaut):
    """A frame point and the same point in a crop cornered at (x0, y0) land on the same face pixel, and the crop
    of a real picture warps to the same face as the whole picture."""
    rng = np.random.default_rng(1)
    mat = np.array([[0.25, 0.02, -30.0], [-0.02, 0.25, -22.0]])  # the face: frame x 92-367, y 97-372
    pts = rng.uniform(100, 300, (20, 2))
    cropped = align.crop_matrix(mat, 50, 20)  # the face lies inside the crop
    assert np.allclose(align.transform_points(pts - (50, 20), cropped), align.transform_points(pts, mat), atol=1e-4)
    whole, part = align.warp_image(astronaut, mat, 64), align.warp_image(astronaut[20:, 50:], cropped, 64)
    assert np.abs(whole.astype(int) - part).max() <= 1
