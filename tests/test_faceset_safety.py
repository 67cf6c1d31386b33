"""Issue 9, points 1-6, 17, 18: no face file, DFL pickle or shared face set moves a file out of the workspace,
hides faces, crashes a command or overwrites a face. Real faces only (tests/conftest.py: sample_faces_ws)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from facelab.errors import FaceFileError
from facelab.face_checks import safe_name
from facelab.faceimage import read_face, read_record, record_from_bytes, write_face
from facelab.faceset import dfl, renames
from facelab.faceset import sort as fsort
from facelab.faceset.pose import yaw_pitch
from facelab.stages import faceset, sort
from facelab.workspace import Workspace

HOSTILE_NAMES = [
    "/tmp/facelab_escape/x.jpg",  # absolute
    "../../../x.jpg",  # parent traversal
    "..",
    "sub/x.jpg",
    "..\\..\\x.jpg",  # Windows separators
    "C:x.jpg",  # drive letter
    "C:\\Windows\\x.jpg",
    ".hidden.jpg",  # would be hidden from every command
    "a\x00b.jpg",
    "\ud800.jpg",  # lone surrogate
    "x" * 300 + ".jpg",  # over 255 bytes
]


def _outside(tmp_path: Path, ws: Workspace) -> set[Path]:
    """Everything under tmp_path but outside the workspace."""
    return {p for p in tmp_path.rglob("*") if p != ws.root and ws.root not in p.parents}


def _plant(ws: Workspace, side: str, index: int, name: str, **record_changes) -> Path:
    """Rewrite one real face so its metadata carries ``name`` as its original file name (bypassing the checks
    a reader makes, as an attacker's tool would)."""
    p = ws.aligned_paths(side)[index]
    image, rec = read_face(p)
    extra = {**rec.extra, "original_filename": name}
    write_face(p, image, rec.replace(extra=extra, **record_changes))
    return p


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_safe_name_refuses_every_path_like_name(name):
    with pytest.raises(ValueError):
        safe_name(name)


@pytest.mark.parametrize("name", ["00001_0.jpg", "face 1.png", "été_3.jpeg", "a..b.jpg"])
def test_safe_name_keeps_plain_names(name):
    assert safe_name(name) == name


@pytest.mark.parametrize("name", HOSTILE_NAMES[:7])
@pytest.mark.parametrize("method", ["oneface", "final"])
def test_sort_never_moves_a_face_out_of_the_face_set(ws, tmp_path, name, method):
    outside_before = _outside(tmp_path, ws)
    # a second face from the same frame as the planted one: `oneface` trashes both
    image, rec = read_face(ws.aligned_paths("dst")[3])
    write_face(ws.aligned_dir("dst") / "zz_second.jpg", image, rec.replace(face_index=1, extra={}))
    planted = _plant(ws, "dst", 3, name)
    s = sort.run(ws, "dst", sort.SortSettings(by=method, target=5, workers=2))
    # the planted face is named, left where it is, and nothing appeared outside the workspace
    assert planted.is_file()
    assert any(planted.name in w for w in s.warnings), s.warnings
    assert _outside(tmp_path, ws) == outside_before
    assert not Path("/tmp/facelab_escape").exists()
    kept = {p.name for p in ws.aligned_paths("dst")}
    trashed = {p.name for p in (ws.frames_dir("dst") / "aligned_trash").glob("*")}
    assert len(kept) + len(trashed) == 31


def test_resize_never_reads_a_frame_named_by_metadata_outside_the_frames(ws, astronaut, tmp_path):
    outside = tmp_path / "secret.png"
    import cv2

    cv2.imwrite(str(outside), astronaut)
    p = ws.aligned_paths("src")[0]
    image, rec = read_face(p)
    write_face(p, image, rec.replace(source_filename=str(outside)))
    before = p.read_bytes()
    s = faceset.resize(ws, "src", 96)
    assert s.counts["skipped"] == 1 and p.read_bytes() == before
    assert any(p.name in w for w in s.warnings)
    assert read_face(ws.aligned_paths("src")[1])[0].shape == (96, 96, 3)


def test_failed_phase_two_leaves_every_face_visible(ws, monkeypatch):
    """A target that cannot be taken (here: os.replace fails for one face) must not hide it."""
    folder = ws.aligned_dir("src")
    before = {read_record(p).extra.get("original_filename", p.name) for p in ws.aligned_paths("src")}
    real = os.replace
    failed = []

    def failing(a, b):  # the first face's final name cannot be taken (once: its way back works)
        if Path(a).name.startswith(fsort.TMP_PREFIX) and not failed:
            failed.append(b)
            raise PermissionError(13, "Permission denied")
        return real(a, b)

    monkeypatch.setattr(renames.os, "replace", failing)
    s = sort.run(ws, "src", sort.SortSettings(by="blur", workers=2))
    monkeypatch.setattr(renames.os, "replace", real)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert len(ws.aligned_paths("src")) == 30
    assert failed and any("could not name a face" in w for w in s.warnings), s.warnings
    names = {read_record(p).extra["original_filename"] for p in ws.aligned_paths("src")}
    assert names == before
    assert not (ws.state_dir("src") / fsort.JOURNAL).exists()


def test_hostile_journal_is_not_replayed_and_hidden_faces_come_back(ws, tmp_path):
    folder = ws.aligned_dir("src")
    faces = ws.aligned_paths("src")
    hidden = folder / f"{fsort.TMP_PREFIX}000000.jpg"
    os.replace(faces[0], hidden)
    journal = ws.state_dir("src") / fsort.JOURNAL
    journal.parent.mkdir(parents=True, exist_ok=True)
    escape = tmp_path / "escaped.jpg"
    journal.write_text(json.dumps({"phase": 2, "moves": [{"from": str(faces[0]), "tmp": str(hidden), "to": str(escape)}]}))
    s = sort.run(ws, "src", sort.SortSettings(by="blur", workers=2))
    assert not escape.exists()
    assert len(ws.aligned_paths("src")) == 30
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert any("ignored the rename journal" in w for w in s.warnings)


def test_recover_names_with_dotdot_name_keeps_faces_visible(ws):
    p = _plant(ws, "src", 0, "..")
    s = faceset.recover_names(ws, "src")
    assert p.is_file()
    assert len(ws.aligned_paths("src")) == 30
    assert not [q for q in ws.aligned_dir("src").iterdir() if q.name.startswith(".")]
    assert any(p.name in w for w in s.warnings)


def test_debug_landmarks_surrogate_face_type_is_skipped_not_a_crash(ws):
    p = ws.aligned_paths("src")[0]
    image, rec = read_face(p)
    write_face(p, image, rec.replace(face_type="\ud800"))  # JSON writes the lone surrogate as an escape
    with pytest.raises(FaceFileError, match="lone surrogate"):
        read_record(p)
    s = faceset.debug_landmarks(ws, "src")
    assert s.counts["written"] == 29
    assert any(p.name in w for w in s.warnings)


# --- DeepFaceLab import ----------------------------------------------------------------------


def _dfl_face(image, rec, meta_pickle: bytes) -> bytes:
    from facelab.fileio import encode_image

    base = encode_image(image, ".jpg", 90)
    return dfl._assemble([(0xEF, meta_pickle)] + dfl._segments(base)[0], base[dfl._segments(base)[1]:])


def _dfl_dict(rec) -> dict:
    return {
        "face_type": "full_face",
        "landmarks": np.asarray(rec.landmarks, np.float32),
        "source_filename": "00001.png",
        "source_rect": [1, 2, 3, 4],
        "source_landmarks": np.asarray(rec.source_landmarks, np.float32),
        "image_to_face_mat": np.asarray(rec.image_to_face_mat, np.float32),
    }


def _laughs(depth: int) -> bytes:
    """A pickle of [x, x] nested ``depth`` deep, every x the same memoised list (2**depth leaves expanded)."""
    out = bytearray(b"\x80\x04]\x94(K\x01e")  # memo 0 = [1]
    for i in range(depth):
        out += b"](h" + bytes([i]) + b"h" + bytes([i]) + b"e\x94"  # [memo i, memo i] -> memo i+1
    out += b"."
    return bytes(out)


def test_billion_laughs_pickle_is_refused_quickly():
    import time

    t = time.perf_counter()
    with pytest.raises(dfl.UnsafePickleError, match="expands"):
        dfl.safe_unpickle(_laughs(40))
    assert time.perf_counter() - t < 2.0
    small = dfl.safe_unpickle(_laughs(4))
    assert len(small) == 2 and small[0] is small[1]  # shared, not copied


def test_import_skips_hostile_files_and_imports_the_rest(ws, tmp_path):
    image, rec = read_face(ws.aligned_paths("src")[0])
    src = tmp_path / "dfl"
    src.mkdir()
    good = _dfl_dict(rec)
    (src / "good.jpg").write_bytes(_dfl_face(image, rec, pickle.dumps(good, protocol=4)))
    (src / "laughs.jpg").write_bytes(_dfl_face(image, rec, _laughs(40)))
    nan = dict(good, landmarks=np.full((68, 2), np.nan, np.float32))
    (src / "nan.jpg").write_bytes(_dfl_face(image, rec, pickle.dumps(nan, protocol=4)))
    huge = dict(good, source_rect=[2**1100, 0, 1, 1])
    (src / "huge_int.jpg").write_bytes(_dfl_face(image, rec, pickle.dumps(huge, protocol=4)))
    # a shape element >= 2**64 in an array header
    plain = pickle.dumps(good, protocol=4)
    big_shape = plain.replace(b"KDK\x02\x86", b"\x8a\x09" + b"\x00" * 8 + b"\x01K\x02\x86", 1)
    assert big_shape != plain
    (src / "big_shape.jpg").write_bytes(_dfl_face(image, rec, big_shape))
    pathy = dict(good, source_filename="C:\\Users\\me\\frames\\00007.png")
    (src / "pathy.jpg").write_bytes(_dfl_face(image, rec, pickle.dumps(pathy, protocol=4)))

    out = Workspace(tmp_path / "ws2")
    out.create()
    s = faceset.import_dfl(out, src, "src")
    assert s.counts["imported"] == 2, s.warnings
    skipped = " ".join(s.warnings)
    for name in ("laughs.jpg", "nan.jpg", "huge_int.jpg", "big_shape.jpg"):
        assert name in skipped
    names = {p.name: read_record(p) for p in out.aligned_paths("src")}
    assert set(names) == {"good.jpg", "pathy.jpg"}
    assert names["pathy.jpg"].source_filename == "00007.png"


def test_import_never_overwrites(ws, tmp_path):
    image, rec = read_face(ws.aligned_paths("src")[0])
    image2, rec2 = read_face(ws.aligned_paths("src")[1])
    src = tmp_path / "dfl"
    src.mkdir()
    (src / "a.jpg").write_bytes(_dfl_face(image, rec, pickle.dumps(_dfl_dict(rec), protocol=4)))
    (src / "a.jpeg").write_bytes(_dfl_face(image2, rec2, pickle.dumps(_dfl_dict(rec2), protocol=4)))
    out = Workspace(tmp_path / "ws2")
    out.create()
    existing = out.aligned_dir("src") / "a.jpg"
    shutil.copy(ws.aligned_paths("dst")[0], existing)
    kept = existing.read_bytes()
    s = faceset.import_dfl(out, src, "src")
    assert existing.read_bytes() == kept
    assert s.counts["imported"] == 2 and s.counts["renamed"] == 2
    assert len(out.aligned_paths("src")) == 3
    assert sum("is taken" in w for w in s.warnings) == 2
    again = faceset.import_dfl(out, src, "src")  # the same faces again: already there, nothing new
    assert again.counts["imported"] == 0 and again.counts["already there"] == 2
    assert len(out.aligned_paths("src")) == 3


# --- sort order, packed sets ------------------------------------------------------------------


def test_face_pitch_puts_raised_heads_first_like_deepfacelab(ws):
    """DeepFaceLab sorts by pitch descending, pitch > 0 = nose up. Checked against a plain geometric cue
    independent of the pose fit: the nose tip sits higher between eyes and mouth on a raised head."""
    sort.run(ws, "src", sort.SortSettings(by="face-pitch", workers=2))
    cue = []
    for p in ws.aligned_paths("src"):  # sorted order
        lm = np.asarray(read_record(p).landmarks, np.float64)
        eyes, mouth = lm[36:48, 1].mean(), lm[48:60, 1].mean()
        cue.append((lm[30, 1] - eyes) / (mouth - eyes))
    ranks = np.argsort(np.argsort(cue))
    rho = np.corrcoef(ranks, np.arange(len(cue)))[0, 1]
    assert rho > 0.5, rho  # the nose drops (head lowers) down the sorted list
    pitches = [yaw_pitch(read_record(p).landmarks)[1] for p in ws.aligned_paths("src")]
    assert pitches == sorted(pitches, reverse=True)


def test_steps_read_a_packed_face_set(ws):
    from facelab.stages import merge  # noqa: F401  (merge reads ws.require_aligned too)

    n = len(ws.aligned_paths("dst"))
    faceset.pack(ws, "dst")
    assert ws.aligned_paths("dst") == [] and ws.pack_path("dst").is_file()
    s = sort.run(ws, "dst", sort.SortSettings(by="blur", workers=2))
    assert s.counts["faces"] == n
    assert any("unpacked" in note for note in ws.notices)
    assert not ws.pack_path("dst").exists()


def test_cli_sort_on_packed_set_says_it_unpacked(ws):
    from typer.testing import CliRunner

    from facelab.cli import app

    faceset.pack(ws, "src")
    res = CliRunner().invoke(app, ["-w", str(ws.root), "sort", "src", "--by", "hist"])
    assert res.exit_code == 0, res.output
    assert "unpacked aligned.faceset (30 faces)" in res.output
    assert len(ws.aligned_paths("src")) == 30


def test_restore_meta_contract(ws):
    folder = ws.aligned_dir("src")
    faceset.save_meta(ws, "src")
    meta = folder / "meta.json"
    doc = json.loads(meta.read_text())
    names = list(doc["faces"])
    doc["faces"][names[0]]["landmarks"] = "not points"
    doc["faces"]["../../escape.jpg"] = doc["faces"][names[1]]
    meta.write_text(json.dumps(doc))
    s = faceset.restore_meta(ws, "src")
    assert s.counts["faces"] == 29
    assert any(names[0] in w for w in s.warnings) and any("escape" in w for w in s.warnings)
    for bad in ("[1, 2]", '{"faces": ' * 2000 + "{}" + "}" * 2000, '{"faces": {"a.jpg": {"size": Infinity}}}'):
        meta.write_text(bad)
        with pytest.raises(FaceFileError, match="not a valid metadata file"):
            faceset.restore_meta(ws, "src")


def test_record_from_bytes_names_the_file():
    with pytest.raises(FaceFileError, match="shared/x.jpg"):
        record_from_bytes(b"\xff\xd8\xff\xe9\x00\x10FACELAB\x00\x01\x00\x01[1]\xff\xd9", "shared/x.jpg")
