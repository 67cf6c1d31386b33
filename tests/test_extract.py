import shutil

import cv2
import numpy as np
import pytest

from facelab import align
from facelab.detect import rotate_image
from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import read_face
from facelab.stages import extract
from facelab.workspace import Workspace


@pytest.fixture()
def ws(tmp_path, dst_frames):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    for p in dst_frames[:12]:
        shutil.copy(p, ws.frames_dir("dst") / p.name)
    return ws


def test_extract_writes_faces_with_metadata_and_debug(ws):
    s = extract.run(ws, "dst", extract.ExtractSettings(size=256, debug=True))
    faces = ws.aligned_paths("dst")
    assert [p.name for p in faces] == [f"{i:05d}_0.jpg" for i in range(1, 13)]
    assert s.counts["faces"] == 12
    img, rec = read_face(faces[0])
    assert img.shape == (256, 256, 3) and rec.face_type == "full" and rec.source_filename == "00001.png"
    # stored frame landmarks map onto the stored face landmarks through the stored matrix
    np.testing.assert_allclose(align.transform_points(rec.source_landmarks, rec.image_to_face_mat), rec.landmarks, atol=0.01)
    assert len(list(ws.aligned_debug_dir("dst").glob("*.jpg"))) == 12


def test_extract_resumes_and_skips(ws):
    extract.run(ws, "dst", extract.ExtractSettings(size=128))
    # simulate a kill after frame 6: the log lists 6 frames, the later faces are missing
    record = extract._record(ws, "dst")
    record.begin(record.load().settings, [f"{i:05d}.png" for i in range(1, 7)])
    for p in ws.aligned_paths("dst")[6:]:
        p.unlink()
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128))
    assert s.counts["frames"] == 6 and s.counts["skipped (already done)"] == 6
    assert len(ws.aligned_paths("dst")) == 12
    assert extract.run(ws, "dst", extract.ExtractSettings(size=128)).counts["frames"] == 0


def test_a_deleted_aligned_folder_is_extracted_again(ws):
    """DeepFaceLab's way to start again: delete the aligned folder. The record of the finished run must not
    make the frames count as done (it used to end in "no face found in any of the 12 frames")."""
    extract.run(ws, "dst", extract.ExtractSettings(size=128))
    shutil.rmtree(ws.aligned_dir("dst"))
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128))
    assert s.counts["frames"] == 12 and s.counts["faces in set"] == 12
    # emptied, then run with other settings: nothing is left to protect, so no --force is needed
    for p in ws.aligned_paths("dst"):
        p.unlink()
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128, face_type="half"))
    assert s.counts["faces"] == 12 and read_face(ws.aligned_paths("dst")[0])[1].face_type == "half"
    # a set the user thinned out is kept as it is: deleted faces stay deleted
    for p in ws.aligned_paths("dst")[3:]:
        p.unlink()
    assert extract.run(ws, "dst", extract.ExtractSettings(size=128, face_type="half")).counts["frames"] == 0
    assert len(ws.aligned_paths("dst")) == 3


def test_changed_settings_need_force(ws):
    extract.run(ws, "dst", extract.ExtractSettings(size=128))
    with pytest.raises(SettingsError, match="--force"):
        extract.run(ws, "dst", extract.ExtractSettings(size=128, face_type="half"))
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128, face_type="half"), force=True)
    assert s.counts["faces"] == 12
    assert read_face(ws.aligned_paths("dst")[0])[1].face_type == "half"


def test_frames_without_face_are_listed_and_all_empty_is_an_error(ws, astronaut):
    # a frame that shows no face (lower-right corner of the astronaut photo)
    cv2.imwrite(str(ws.frames_dir("dst") / "00013.png"), cv2.resize(astronaut[300:, 300:], (360, 288)))
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128))
    assert s.counts["frames without face"] == 1
    assert ws.no_face_list("dst").read_text().split() == ["00013.png"]

    empty = Workspace(ws.root.parent / "empty")
    empty.create()
    cv2.imwrite(str(empty.frames_dir("src") / "00001.png"), np.ascontiguousarray(astronaut[300:, 300:]))
    with pytest.raises(FacelabError, match="no face found"):
        extract.run(empty, "src", extract.ExtractSettings(size=128))


def test_sideways_frame_gives_upright_face(ws, dst_frames, detector, landmarker):
    frame = cv2.imread(str(dst_frames[0]))
    upright = extract.find_faces(frame, detector, landmarker, extract.ExtractSettings())[0]
    sideways = rotate_image(frame, 90)
    found = extract.find_faces(sideways, detector, landmarker, extract.ExtractSettings())
    assert len(found) == 1
    # landmarks are in the sideways frame's coordinates: rotate the upright ones the same way
    h = frame.shape[0]
    expected = np.stack([h - 1 - upright.landmarks[:, 1], upright.landmarks[:, 0]], 1)
    assert np.abs(found[0].landmarks - expected).mean() < 3.0


def test_bad_settings():
    with pytest.raises(SettingsError, match="size"):
        extract.ExtractSettings(size=10)
    with pytest.raises(SettingsError, match="face type"):
        extract.ExtractSettings(face_type="neck")


def test_missing_frames_hint(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(FacelabError, match="no frames") as e:
        extract.run(ws, "src")
    assert "facelab frames src" in e.value.hint
