import shutil

import numpy as np
import pytest

from facelab.errors import FaceFileError
from facelab.faceimage import FORMAT_VERSION, FaceRecord, read_face, read_record, rewrite_record, write_face
from tests.conftest import shared


def _record(**kw):
    base = dict(
        face_type="full",
        size=256,
        source_filename="00012.png",
        source_size=(512, 512),
        source_rect=(10.5, 20.0, 110.25, 140.0),
        source_landmarks=np.arange(136, dtype=np.float32).reshape(68, 2),
        landmarks=np.arange(136, dtype=np.float32).reshape(68, 2) * 0.5,
        image_to_face_mat=np.array([[1.5, 0.1, -3.0], [-0.1, 1.5, 7.0]]),
        face_index=1,
        extra={"detector_score": 0.99},
    )
    base.update(kw)
    return FaceRecord(**base)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_round_trip_keeps_pixels_and_metadata(tmp_path, astronaut, ext):
    face = astronaut[:256, :256].copy()
    rec = _record()
    path = tmp_path / f"00012_1{ext}"
    write_face(path, face, rec)
    image, back = read_face(path)
    assert image.shape == face.shape
    if ext == ".png":
        np.testing.assert_array_equal(image, face)
    assert back.source_filename == rec.source_filename and back.face_index == 1
    np.testing.assert_allclose(back.source_landmarks, rec.source_landmarks)
    np.testing.assert_allclose(back.image_to_face_mat, rec.image_to_face_mat)
    assert back.extra == rec.extra
    assert back.to_dict()["format_version"] == FORMAT_VERSION


def test_rename_and_copy_keep_metadata(tmp_path, astronaut):
    path = tmp_path / "a.jpg"
    write_face(path, astronaut[:128, :128], _record())
    moved = tmp_path / "sorted" / "0001_zz.jpg"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    path.unlink()
    assert read_record(moved).source_filename == "00012.png"


def test_rewrite_record_keeps_pixels(tmp_path, astronaut):
    path = tmp_path / "a.jpg"
    write_face(path, astronaut[:128, :128], _record(size=128))
    pixels_before, _ = read_face(path)
    rewrite_record(path, _record(size=128, face_index=7))
    pixels_after, rec = read_face(path)
    assert rec.face_index == 7
    np.testing.assert_array_equal(pixels_before, pixels_after)


def test_large_metadata_spans_several_segments(tmp_path, astronaut):
    big = {"polygons": [[float(i), float(i)] for i in range(20000)]}
    path = tmp_path / "a.jpg"
    write_face(path, astronaut[:64, :64], _record(extra=big))
    assert read_record(path).extra == big


def test_truncated_file_names_the_file(tmp_path, astronaut):
    path = tmp_path / "broken.jpg"
    write_face(path, astronaut[:256, :256], _record())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceFileError, match="broken.jpg"):
        read_face(path)


def test_foreign_jpeg_is_rejected_with_hint():
    with pytest.raises(FaceFileError, match="no facelab face metadata") as e:
        read_record(shared("group/multi_face.jpg"))
    assert "extract" in e.value.hint


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(FaceFileError, match="junk.jpg"):
        read_record(junk)
    with pytest.raises(FaceFileError, match="cannot read"):
        read_record(tmp_path / "missing.jpg")


def test_newer_format_version_is_refused(tmp_path, astronaut):
    import json

    from facelab.faceimage import embed_jpeg
    from facelab.fileio import encode_image

    d = _record().to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    jpeg = embed_jpeg(encode_image(astronaut[:64, :64], ".jpg"), _record())
    jpeg = jpeg.replace(json.dumps(_record().to_dict(), separators=(",", ":")).encode(), json.dumps(d, separators=(",", ":")).encode())
    path = tmp_path / "future.jpg"
    path.write_bytes(jpeg)
    with pytest.raises(FaceFileError, match="newer"):
        read_record(path)
