import cv2
import numpy as np
import pytest

from facelab.detect import create_detector, detect_with_rotation, list_detectors, rotate_image, unrotate_box
from facelab.errors import SettingsError
from tests.conftest import shared


def test_registry():
    assert "retinaface" in list_detectors()
    with pytest.raises(SettingsError, match="unknown detector"):
        create_detector("nope")


def test_astronaut_has_one_face(detector, astronaut):
    found = detector(astronaut)
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    # the face is in the upper middle of the photo, about 95 px wide
    assert 150 < (x0 + x1) / 2 < 300 and 60 < (y0 + y1) / 2 < 180
    assert 70 < x1 - x0 < 130


@pytest.mark.parametrize(
    "name,count",
    [("group/multi_face.jpg", 5), ("group/faceapi_sample1.jpg", 3), ("group/faceapi_sample2.jpg", 3), ("group/faceapi_sample3.jpg", 3), ("singles/pyfeat_single_face.jpg", 1)],
)
def test_group_counts(detector, name, count):
    img = cv2.imread(str(shared(name)))
    assert len(detector(img)) == count


def test_no_face_in_a_faceless_picture(detector, astronaut):
    # the astronaut photo's lower-right corner (flag and suit) holds no face
    assert detector(np.ascontiguousarray(astronaut[300:, 300:])) == []


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotated_frame_is_found_and_mapped_back(detector, astronaut, angle):
    upright = detector(astronaut)[0]
    frame = rotate_image(astronaut, angle)
    found, used, turned = detect_with_rotation(detector, frame)
    # the frame must be turned back by the opposite angle to stand the face up
    assert used == (360 - angle) % 360 and len(found) == 1
    np.testing.assert_array_equal(turned, astronaut)
    # map the box back into the given (rotated) frame and compare with the upright box rotated the same way
    b = unrotate_box(found[0].box, used, frame.shape)
    h, w = astronaut.shape[:2]
    cx, cy = (upright.box[0] + upright.box[2]) / 2, (upright.box[1] + upright.box[3]) / 2
    expected = {90: (h - 1 - cy, cx), 180: (w - 1 - cx, h - 1 - cy), 270: (cy, w - 1 - cx)}[angle]
    assert np.hypot((b[0] + b[2]) / 2 - expected[0], (b[1] + b[3]) / 2 - expected[1]) < 15


def test_landmarks_inside_box(detector, landmarker):
    img = cv2.imread(str(shared("group/multi_face.jpg")))
    for det in detector(img):
        lm = landmarker(img, det)
        assert lm.shape == (68, 2) and lm.dtype == np.float32
        x0, y0, x1, y1 = det.box
        pad = 0.1 * (x1 - x0)
        inside = (lm[:, 0] > x0 - pad) & (lm[:, 0] < x1 + pad) & (lm[:, 1] > y0 - pad) & (lm[:, 1] < y1 + pad)
        assert inside.mean() > 0.95
        # anatomy: eyes above the nose tip, nose tip above the mouth, chin lowest
        assert lm[36:48, 1].mean() < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]


def test_detector_rejects_wrong_input(detector):
    with pytest.raises(ValueError, match="uint8"):
        detector(np.zeros((10, 10), np.float32))
