"""The step record (facelab.steprecord): header + append-only journal, torn lines, versions, legacy files."""

from __future__ import annotations

import json

import pytest

from facelab.errors import FacelabError
from facelab.steprecord import FORMAT, Saved, fingerprint, read_journal
from facelab.workspace import Workspace


def test_begin_done_finish_round_trip(tmp_path):
    ws = Workspace(tmp_path)
    record = ws.step_record("extract", "src")
    assert record.load() is None and record.header_path.parent == ws.state_dir("src")
    record.begin({"face_type": "whole_face", "size": 256})
    record.done("00001.png")
    record.done("00002.png", "abc")
    saved = record.load()  # read back mid-run: header plus journal
    assert saved.done == {"00001.png": fingerprint({"face_type": "whole_face", "size": 256}), "00002.png": "abc"}
    assert not saved.completed and saved.settings == {"face_type": "whole_face", "size": 256}
    record.finish({"faces": 2})
    header = json.loads(record.header_path.read_text())
    assert header["format"] == FORMAT and header["step"] == "extract" and header["completed"]
    assert header["fingerprint"] == fingerprint(header["settings"]) and header["summary"] == {"faces": 2}
    assert record.journal_path.read_bytes() == b""  # absorbed by the header
    assert ws.step_record("extract", "src").load().done == saved.done


def test_begin_keeps_only_the_items_given(tmp_path):
    record = Workspace(tmp_path).step_record("merge")
    record.begin({"a": 1})
    for item in ("x", "y", "z"):
        record.done(item, "f")
    record.close()
    kept = {k: v for k, v in record.load().done.items() if k != "y"}
    record.begin({"a": 2}, kept)
    assert record.load().done == {"x": "f", "z": "f"} and record.load().settings == {"a": 2}


def test_a_torn_last_journal_line_is_ignored_and_the_lines_before_kept(tmp_path):
    record = Workspace(tmp_path).step_record("merge")
    record.begin({})
    record.done("00001", "a")
    record.done("00002", "b")
    record.close()
    with open(record.journal_path, "ab") as f:
        f.write(b'{"item":"00003","f')  # a kill in the middle of an append
    assert read_journal(record.journal_path) == {"00001": "a", "00002": "b"}
    assert record.load().done == {"00001": "a", "00002": "b"}
    record.begin({}, record.load().done)  # the next run starts from what was whole
    record.done("00003", "c")
    assert record.load().done == {"00001": "a", "00002": "b", "00003": "c"}


def test_a_record_of_a_newer_facelab_asks_to_upgrade(tmp_path):
    record = Workspace(tmp_path).step_record("merge")
    record.begin({})
    header = json.loads(record.header_path.read_text())
    record.header_path.write_text(json.dumps({**header, "format": FORMAT + 1}))
    with pytest.raises(FacelabError, match="newer facelab") as e:
        record.load()
    assert "upgrade facelab" in e.value.hint


def test_an_unreadable_header_or_another_step_version_starts_afresh(tmp_path):
    record = Workspace(tmp_path).step_record("merge", step_version=3)
    record.begin({"a": 1}, {"x": "f"})
    assert record.load().done == {"x": "f"}
    assert Workspace(tmp_path).step_record("merge", step_version=4).load() is None
    record.header_path.write_text('{"format": 1, "st')
    assert record.load() is None


def test_legacy_files_are_read_then_removed_by_the_first_write(tmp_path):
    folder = Workspace(tmp_path).state_dir("dst")
    folder.mkdir(parents=True)
    old = folder / "old_done.txt"
    old.write_text("a\nb\n")

    def legacy(f):
        p = f / "old_done.txt"
        return Saved(settings={"v": 1}, done={n: "old" for n in p.read_text().split()}, legacy_files=[p]) if p.exists() else None

    record = Workspace(tmp_path).step_record("thing", legacy=legacy)
    saved = record.load()  # the first use migrates
    assert saved.done == {"a": "old", "b": "old"} and not old.exists() and record.header_path.is_file()
    assert record.load().done == {"a": "old", "b": "old"} and record.load().settings == {"v": 1}
    record.reset()
    assert record.load() is None and not record.header_path.exists()


def test_resetting_frames_resets_denoise_also_in_its_old_format(tmp_path):
    ws = Workspace(tmp_path)
    ws.step_record("denoise").begin({"factor": 5}, ["00001.png"])
    ws.state_dir("dst").joinpath("denoise.json").write_text("{}")
    ws.step_record("frames", "src").begin({})
    ws.step_record("frames", "src").reset()  # another side: dst's denoise stays
    assert ws.step_record("denoise").load() is not None
    ws.step_record("frames").reset()
    assert ws.step_record("denoise").load() is None and not list(ws.state_dir("dst").iterdir())
