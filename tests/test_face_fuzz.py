"""Fuzz test of the face-file contract (issue 9, point 4).

A few thousand seeded mutations of real aligned faces (byte flips, truncation,
and JSON-level mutations of every metadata field with hostile values: wrong
types, NaN/Infinity, integers over 2**1024, 1,000-deep nesting, lone
surrogates, path names, absurd sizes). The reader must either return a record
whose every field is sane or raise FaceFileError, nothing else; and every
command that reads face sets must survive a face set holding the mutants,
naming the files it skipped.
"""

from __future__ import annotations

import json
import random
import shutil
import struct

import numpy as np
import pytest

from facelab.errors import FaceFileError
from facelab.face_checks import MAX_FACE_SIZE, N_LANDMARKS
from facelab.faceimage import face_from_bytes, record_from_bytes
from facelab.workspace import Workspace

SEED = 20261203
N_MUTANTS = 3000

_DEEP = "[" * 1000 + "]" * 1000
HOSTILE_JSON = [
    "null", "true", "-1", "0", "1e999", "-1e999", "Infinity", "-Infinity", "NaN", "1" + "0" * 400, "-" + "9" * 310,
    '""', '"\\ud800"', '"\\udfff.jpg"', '"../../x.jpg"', '"/etc/passwd"', '"C:\\\\x.jpg"', '"a\\u0000b"', '"x"',
    "[]", "{}", "[1, 2]", "[[1, 2]]", "[1e308, 1e308, 1e308, 1e308]", _DEEP, '{"a": ' * 500 + "1" + "}" * 500,
    json.dumps([[1e30, 1e30]] * N_LANDMARKS), json.dumps([[0, 0]] * N_LANDMARKS), json.dumps([[1, 0, 0], [0, 1, 0]]),
    json.dumps([[0, 0, 0], [0, 0, 0]]), json.dumps(MAX_FACE_SIZE + 1), '"' + "y" * 5000 + '"', "[0, 0]", "[65536, 65536]",
]
FIELDS = ["face_type", "size", "source_filename", "source_size", "source_rect", "source_landmarks", "landmarks",
          "image_to_face_mat", "face_index", "extra", "format_version"]


def _metadata_span(data: bytes) -> tuple[int, int]:
    """Start and end of the facelab JSON inside a JPEG written by facelab (one APP9 segment)."""
    i = data.index(b"\xff\xe9")
    (length,) = struct.unpack(">H", data[i + 2: i + 4])
    return i + 4 + 11, i + 2 + length


def _with_json(data: bytes, text: str) -> bytes:
    """``data`` with its metadata JSON replaced by ``text`` (raw, as a hostile tool would write it)."""
    body = text.encode("utf-8", "surrogatepass")
    i = data.index(b"\xff\xe9")
    (length,) = struct.unpack(">H", data[i + 2: i + 4])
    if len(body) > 65000:
        body = body[:65000]
    payload = b"FACELAB\x00" + bytes([1, 0, 1]) + body
    return data[:i] + b"\xff\xe9" + struct.pack(">H", len(payload) + 2) + payload + data[i + 2 + length:]


def _json_mutant(rng: random.Random, doc: dict) -> str:
    doc = json.loads(json.dumps(doc))
    kind = rng.random()
    if kind < 0.08:
        return rng.choice(HOSTILE_JSON)  # the root is not an object
    if kind < 0.18:
        doc.pop(rng.choice(FIELDS), None)
        return json.dumps(doc)
    key = rng.choice(FIELDS + ["extra.original_filename", "extra.raw_landmarks", "landmarks.point", "source_rect.item"])
    value = rng.choice(HOSTILE_JSON)
    marker = "\x00MUTANT\x00"
    if key.startswith("extra."):
        doc.setdefault("extra", {})[key.split(".", 1)[1]] = marker
    elif key == "landmarks.point":
        doc["landmarks"][rng.randrange(N_LANDMARKS)] = marker
    elif key == "source_rect.item":
        doc["source_rect"][rng.randrange(4)] = marker
    else:
        doc[key] = marker
    return json.dumps(doc).replace(json.dumps(marker), value, 1)


def _byte_mutant(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    start, end = _metadata_span(data)
    kind = rng.random()
    if kind < 0.15:
        return bytes(b[: rng.randrange(len(b))])  # truncated anywhere
    if kind < 0.3:
        i = rng.randrange(0, min(len(b), end + 64))  # header bytes, segment lengths included
        b[i] = rng.randrange(256)
        return bytes(b)
    for _ in range(rng.randint(1, 4)):  # inside the JSON: digits, quotes, brackets
        i = rng.randrange(start, end)
        b[i] = ord(rng.choice('0123456789-+.eE"[]{},:\\nNI')) if rng.random() < 0.8 else rng.randrange(256)
    return bytes(b)


def mutants(sources: list[bytes], n: int = N_MUTANTS, seed: int = SEED):
    rng = random.Random(seed)
    docs = [record_from_bytes(d).to_dict() for d in sources]
    for k in range(n):
        i = rng.randrange(len(sources))
        if k % 2:
            yield _byte_mutant(rng, sources[i])
        else:
            yield _with_json(sources[i], _json_mutant(rng, docs[i]))


def _sane(rec) -> None:
    lm = np.asarray(rec.landmarks)
    assert lm.shape == (N_LANDMARKS, 2) and np.isfinite(lm).all()
    assert np.isfinite(np.asarray(rec.source_landmarks)).all()
    assert 1 <= rec.size <= MAX_FACE_SIZE and "/" not in rec.source_filename and "\\" not in rec.source_filename
    assert np.isfinite(np.asarray(rec.image_to_face_mat)).all()
    json.dumps(rec.to_dict())  # writable again


@pytest.fixture(scope="module")
def corpus(sample_faces_ws):
    """(accepted mutants, rejected mutants) of three real faces of each side."""
    sources = [p.read_bytes() for side in ("src", "dst") for p in sample_faces_ws.aligned_paths(side)[:3]]
    accepted, rejected, kinds = [], [], set()
    for data in mutants(sources):
        try:
            rec = record_from_bytes(data, "mutant.jpg")
            _sane(rec)
            image, _ = face_from_bytes(data, "mutant.jpg")
            assert image.shape == (rec.size, rec.size, 3)
            accepted.append(data)
        except FaceFileError as e:
            assert "mutant.jpg" in e.message
            rejected.append(data)
            kinds.add(e.message.split(":", 2)[1].strip()[:30] if ":" in e.message else e.message)
    return accepted, rejected, kinds


def test_reader_raises_only_face_file_errors(corpus):
    accepted, rejected, kinds = corpus
    assert len(accepted) + len(rejected) == N_MUTANTS
    assert len(rejected) > N_MUTANTS // 2 and len(kinds) > 10  # the mutations do reach the checks
    assert accepted  # and some (e.g. a changed digit) leave a sane face


@pytest.fixture(scope="module")
def fuzzed_ws(sample_faces_ws, corpus, tmp_path_factory):
    """The real sample workspace plus 25 accepted and 25 rejected mutants on each side."""
    accepted, rejected, _ = corpus
    ws = Workspace(tmp_path_factory.mktemp("fuzz") / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    rng = random.Random(SEED)
    for side in ("src", "dst"):
        for k, data in enumerate(rng.sample(accepted, min(25, len(accepted))) + rng.sample(rejected, 25)):
            (ws.aligned_dir(side) / f"zz_mutant_{k:02d}.jpg").write_bytes(data)
    return ws


def _unreadable(ws: Workspace, side: str, pixels: bool = True) -> set[str]:
    bad = set()
    for p in ws.aligned_paths(side):
        try:
            (face_from_bytes if pixels else record_from_bytes)(p.read_bytes(), p.name)
        except FaceFileError:
            bad.add(p.name)
    return bad


@pytest.mark.parametrize("method", ["blur", "face-pitch", "hist", "oneface", "final"])
def test_sort_survives_mutants(fuzzed_ws, tmp_path, method):
    from facelab.stages import sort

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(fuzzed_ws.root, ws.root)
    bad = _unreadable(ws, "src")
    before = len(ws.aligned_paths("src"))
    s = sort.run(ws, "src", sort.SortSettings(by=method, target=40, workers=2))
    assert s.counts["skipped"] == len(bad) >= 25
    for name in bad:
        assert any(name in w for w in s.warnings) and (ws.aligned_dir("src") / name).is_file()
    trash = ws.frames_dir("src") / "aligned_trash"
    assert len(ws.aligned_paths("src")) + (len(list(trash.iterdir())) if trash.is_dir() else 0) == before


def test_faceset_tools_survive_mutants(fuzzed_ws, tmp_path):
    from facelab.stages import faceset

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(fuzzed_ws.root, ws.root)
    bad = _unreadable(ws, "src")
    s = faceset.debug_landmarks(ws, "src")
    assert s.counts["written"] == len(ws.aligned_paths("src")) - len(bad)
    summary, table = faceset.coverage(ws)
    assert summary.counts["src faces"] == 30 + 25 and table
    s = faceset.save_meta(ws, "src")
    assert s.counts["faces"] >= 55 - len(bad)
    assert faceset.restore_meta(ws, "src").counts["faces"] >= 30
    s = faceset.recover_names(ws, "src")
    assert len(ws.aligned_paths("src")) == 80
    s = faceset.export_dfl(ws, "src", tmp_path / "dfl")
    assert s.counts["exported"] + s.counts["skipped"] == 80 and s.counts["skipped"] >= len(bad)
    s = faceset.resize(ws, "src", 64)
    assert s.counts["skipped"] >= len(bad) and s.counts["faces"] == 80


def test_train_survives_mutants(fuzzed_ws, tmp_path, marker):
    from facelab.stages import train

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(fuzzed_ws.root, ws.root)
    bad = _unreadable(ws, "dst")
    s = train.run(ws, train.TrainSettings(model="quick", iterations=2, batch_size=2, device="cpu",
                                          architecture=(("resolution", 32),)), log=lambda _m: None, marker=marker)
    assert s.counts["iteration"] == 2
    skipped = [w for w in s.warnings if w.startswith("dst: skipped")]
    assert len(skipped) == len(bad)


def test_merge_reads_only_sane_records(fuzzed_ws):
    from facelab.stages.merge import group_records

    by_frame, warnings = group_records(fuzzed_ws.aligned_paths("dst"))
    assert sum(len(v) for v in by_frame.values()) == 80 - len(_unreadable(fuzzed_ws, "dst", pixels=False))
    assert warnings
    for recs in by_frame.values():
        for rec in recs:
            _sane(rec)


def test_rows_of_numbers_are_checked_as_strictly_as_single_numbers():
    """check_json_tree takes a list holding only floats at once (landmarks, matrices: most of a face's
    metadata); a non-finite number or one nested too deep is refused there as anywhere else."""
    from facelab.face_checks import check_json_tree

    check_json_tree({"landmarks": [[1.5, 2.0], [3.25, -4.0]], "m": [0.5, 1.0, 2.0]})
    for bad in ([1.0, float("nan")], [[2.0, float("inf")]], {"a": [[-float("inf")]]}):
        with pytest.raises(ValueError, match="non-finite"):
            check_json_tree(bad)
    with pytest.raises(ValueError, match="nested more than 3"):
        check_json_tree({"a": {"b": [1.0, 2.0]}}, max_depth=3)  # the floats sit at depth 4
    check_json_tree({"a": [1.0, 2.0]}, max_depth=3)
