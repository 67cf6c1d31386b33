"""DeepFaceLab import/export: real faces, a crafted DFL file, and a malicious pickle that must never run."""

from __future__ import annotations

import os
import pickle
import shutil
import struct

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelab.faceimage import read_face, read_record
from facelab.faceset import dfl
from facelab.stages import faceset
from facelab.workspace import Workspace


def _dfl_jpeg(image: np.ndarray, meta_pickle: bytes) -> bytes:
    """A JPEG like DeepFaceLab writes: plain JPEG with an APP15 segment holding the pickle."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    jpg = buf.tobytes()
    seg = b"\xff\xef" + struct.pack(">H", len(meta_pickle) + 2) + meta_pickle
    return jpg[:2] + seg + jpg[2:]


def _dfl_dict(rec) -> dict:
    return {
        "face_type": "whole_face",
        "landmarks": np.asarray(rec.landmarks, np.float32),
        "eyebrows_expand_mod": 1.0,
        "source_filename": rec.source_filename,
        "source_rect": [np.int64(round(v)) for v in rec.source_rect],
        "source_landmarks": np.asarray(rec.source_landmarks, np.float32),
        "image_to_face_mat": np.asarray(rec.image_to_face_mat, np.float32),
    }


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def real_face(sample_faces_ws):
    path = sample_faces_ws.aligned_paths("src")[3]
    image, rec = read_face(path)
    return path, image, rec


def test_safe_unpickle_builds_arrays_for_every_protocol():
    lm = (np.arange(136, dtype=np.float32) / 7).reshape(68, 2)
    d = {"landmarks": lm, "mat": np.eye(2, 3), "rect": [np.int64(5), 6], "name": "00001.png", "b": b"\x00\x01", "t": (1.5, None, True)}
    for proto in (2, 3, 4, 5):
        out = dfl.safe_unpickle(pickle.dumps(d, protocol=proto))
        assert out["landmarks"].dtype == np.float32 and np.array_equal(out["landmarks"], lm)
        assert np.array_equal(out["mat"], np.eye(2, 3))
        assert [int(v) for v in out["rect"]] == [5, 6] and out["name"] == "00001.png" and out["b"] == b"\x00\x01"
        assert out["t"] == (1.5, None, True)


def test_safe_unpickle_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    for proto in (0, 2, 4, 5):
        with pytest.raises(dfl.UnsafePickleError):
            dfl.safe_unpickle(pickle.dumps({"x": _Evil(marker)}, protocol=proto))
    with pytest.raises(dfl.UnsafePickleError, match="not a plain"):
        dfl.safe_unpickle(pickle.dumps(np.array([object()]), protocol=4))
    with pytest.raises(dfl.UnsafePickleError, match="truncated"):
        dfl.safe_unpickle(pickle.dumps({"a": np.zeros((68, 2))}, protocol=4)[:-20])
    assert not marker.exists()


def test_import_crafted_dfl_file_and_skip_malicious(real_face, tmp_path):
    _, image, rec = real_face
    src = tmp_path / "dfl_aligned"
    src.mkdir()
    good = _dfl_jpeg(image, pickle.dumps(_dfl_dict(rec), protocol=4))
    (src / "00042_0.jpg").write_bytes(good)
    marker = tmp_path / "marker_created_by_pickle"
    evil = dict(_dfl_dict(rec), landmarks=_Evil(marker))
    (src / "evil.jpg").write_bytes(_dfl_jpeg(image, pickle.dumps(evil, protocol=4)))

    ws = Workspace(tmp_path / "ws")
    ws.create()
    s = faceset.import_dfl(ws, src, "dst")
    assert (s.counts["imported"], s.counts["skipped"], s.counts["renamed"]) == (1, 1, 0)
    assert any("evil.jpg" in w and "posix.system" in w for w in s.warnings)
    assert not marker.exists()
    assert [p.name for p in ws.aligned_paths("dst")] == ["00042_0.jpg"]
    img2, rec2 = read_face(ws.aligned_dir("dst") / "00042_0.jpg")
    assert rec2.face_type == "whole" and rec2.size == image.shape[0]
    assert rec2.source_filename == rec.source_filename
    np.testing.assert_allclose(rec2.landmarks, rec.landmarks, atol=1e-3)
    np.testing.assert_allclose(rec2.source_landmarks, rec.source_landmarks, atol=1e-3)
    np.testing.assert_allclose(rec2.image_to_face_mat, rec.image_to_face_mat, atol=1e-4)
    assert rec2.extra["imported_from"] == "deepfacelab"
    # pixels kept as they were (no re-encoding), APP15 pickle gone
    ref = cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(img2, ref)
    assert b"\xff\xef" not in (ws.aligned_dir("dst") / "00042_0.jpg").read_bytes()[:200]


def test_cli_import_names_skipped_file(real_face, tmp_path):
    from facelab.cli import app

    _, image, rec = real_face
    src = tmp_path / "in"
    src.mkdir()
    marker = tmp_path / "m2"
    (src / "bad_face.jpg").write_bytes(_dfl_jpeg(image, pickle.dumps({"face_type": _Evil(marker)}, protocol=4)))
    (src / "ok.jpg").write_bytes(_dfl_jpeg(image, pickle.dumps(_dfl_dict(rec), protocol=3)))
    r = CliRunner().invoke(app, ["-w", str(tmp_path / "ws"), "faceset", "import-dfl", str(src)])
    assert r.exit_code == 0, r.output
    assert "bad_face.jpg" in r.output and "imported: 1" in r.output
    assert not marker.exists()
    assert (tmp_path / "ws" / "data_src" / "aligned" / "ok.jpg").exists()


def test_export_then_import_round_trip(sample_faces_ws, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    out = tmp_path / "dfl_out"
    s = faceset.export_dfl(ws, "src", out)
    faces = ws.aligned_paths("src")
    assert s.counts["exported"] == len(faces) == 30
    exported = sorted(out.glob("*.jpg"))
    d = dfl.read_dfl_dict(exported[0].read_bytes())
    assert d["face_type"] == "full_face" and d["landmarks"].shape == (68, 2)
    assert b"FACELAB\x00" not in exported[0].read_bytes()  # pure DFL file
    ws2 = Workspace(tmp_path / "ws2")
    ws2.create()
    counts = faceset.import_dfl(ws2, out, "src").counts
    assert (counts["imported"], counts["skipped"]) == (30, 0)
    for p in faces:
        a, b = read_record(p), read_record(ws2.aligned_dir("src") / p.name)
        assert b.face_type == a.face_type and b.source_filename == a.source_filename
        np.testing.assert_allclose(b.landmarks, a.landmarks, atol=1e-3)
        np.testing.assert_allclose(b.source_landmarks, a.source_landmarks, atol=1e-3)
    # the JPEG pixels survive both ways untouched
    assert np.array_equal(read_face(faces[0])[0], read_face(ws2.aligned_dir("src") / faces[0].name)[0])
