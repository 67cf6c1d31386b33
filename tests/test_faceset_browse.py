"""The library layer of the UI's face-set page (faceset.browse, faceid, thumbs, trash, detail) on real
aligned faces (tests/conftest.py: ``ws``, a fresh copy of ``sample_faces_ws``)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import read_face, read_record, rewrite_record, write_face
from facelab.faceset import browse, detail, thumbs, trash
from facelab.faceset import sort as fsort
from facelab.faceset.faceid import BadFaceId, FaceNotFound, frame_path, locate
from facelab.faceset.features import sharpness
from facelab.faceset.pose import yaw_pitch
from facelab.stages import extract, sort
from facelab.workspace import Workspace


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


def second_face(ws: Workspace, side: str, of: Path) -> Path:
    """A second face of ``of``'s frame: a real face of the set given that frame and face index 1."""
    other = next(p for p in ws.aligned_paths(side) if p != of)
    rec = read_record(of)
    image, _ = read_face(other)
    out = of.with_name(f"{Path(rec.source_filename).stem}_1.jpg")
    write_face(out, image, read_record(other).replace(source_filename=rec.source_filename, face_index=1))
    return out


# --- listing -----------------------------------------------------------------------------------------


def test_list_faces_gives_each_face_with_its_record_and_blur_score(ws):
    entries = browse.list_faces(ws, "src", workers=2)
    paths = ws.aligned_paths("src")
    assert [e.name for e in entries] == [p.name for p in paths] and len(entries) == 30
    for e, p in zip(entries, paths):
        image, rec = read_face(p)
        assert e.id == f"data_src/aligned/{p.name}" and locate(ws, e.id) == ("src", p)
        assert (e.source, e.face_index, e.size, e.face_type) == (rec.source_filename, rec.face_index, 128, "full")
        assert e.blur_score == sharpness(image, rec)  # the value sort --by blur uses, exactly
        assert (e.yaw, e.pitch) == pytest.approx(yaw_pitch(rec.landmarks))
        assert e.faces_in_frame == 1 and e.error is None
    json.dumps([e.to_dict() for e in entries])  # what the UI sends


def test_list_cache_measures_each_face_once_and_again_only_when_it_changes(ws, monkeypatch):
    browse.list_faces(ws, "dst", workers=2)
    assert ws.face_list_cache("dst").is_file()
    measured: list[str] = []
    real = browse._measure
    monkeypatch.setattr(browse, "_measure", lambda p: measured.append(p.name) or real(p))
    first = browse.list_faces(ws, "dst")
    assert measured == []
    # renamed (as sort does) and moved to the trash: still cached
    a, b = ws.aligned_paths("dst")[:2]
    os.replace(a, a.with_name("00000_" + a.name))
    trash.delete_faces(ws, "dst", [b.name])
    browse.list_faces(ws, "dst")
    assert [e.name for e in browse.list_faces(ws, "dst", where="trash")] == [b.name]
    assert measured == []
    # rewritten: measured again, alone
    c = ws.aligned_paths("dst")[5]
    image, rec = read_face(c)
    write_face(c, cv2.GaussianBlur(image, (9, 9), 0), rec)
    after = {e.name: e for e in browse.list_faces(ws, "dst")}
    assert measured == [c.name]
    assert after[c.name].blur_score < next(e for e in first if e.name == c.name).blur_score


def test_damaged_cache_is_measured_again(ws):
    ws.face_list_cache("src").parent.mkdir(parents=True, exist_ok=True)
    ws.face_list_cache("src").write_text('{"format": 1, "faces": {"x": {"blur": "high"}}')  # cut short
    entries = browse.list_faces(ws, "src", workers=2)
    assert len(entries) == 30 and all(e.blur_score is not None for e in entries)
    doc = json.loads(ws.face_list_cache("src").read_text())
    assert len(doc["faces"]) == 30


def test_filters_several_faces_blur_and_unreadable(ws):
    paths = ws.aligned_paths("src")
    extra = second_face(ws, "src", paths[3])
    image, rec = read_face(paths[7])
    write_face(paths[7].with_name("blurred.jpg"), cv2.GaussianBlur(image, (11, 11), 0), rec.replace(face_index=2))
    cv2.imwrite(str(ws.aligned_dir("src") / "holiday.jpg"), cv2.imread(str(ws.frame_paths("src")[0])))  # no face record

    several = browse.list_faces(ws, "src", filters=browse.FaceFilter(several_faces=True), workers=2)
    # paths[7]'s frame now has faces 0 and 2, paths[3]'s faces 0 and 1
    assert sorted(e.name for e in several) == sorted([paths[3].name, extra.name, paths[7].name, "blurred.jpg"])
    assert all(e.faces_in_frame == 2 for e in several)

    everything = browse.list_faces(ws, "src")
    scores = sorted(e.blur_score for e in everything if e.error is None)
    lowest = browse.list_faces(ws, "src", filters=browse.FaceFilter(blur_lowest_percent=10))
    assert len(lowest) == math.ceil(32 * 0.10) and "blurred.jpg" in {e.name for e in lowest}
    assert sorted(e.blur_score for e in lowest) == scores[:4]
    below = browse.list_faces(ws, "src", filters=browse.FaceFilter(blur_below=scores[10]))
    assert sorted(e.blur_score for e in below) == scores[:10]

    bad = browse.list_faces(ws, "src", filters=browse.FaceFilter(unreadable=True))
    assert [e.name for e in bad] == ["holiday.jpg"] and "no facelab face metadata" in bad[0].error
    assert browse.list_faces(ws, "src", sort="blur")[-1].name == "holiday.jpg"  # unreadable files last
    with pytest.raises(SettingsError):
        browse.FaceFilter(blur_lowest_percent=0)


def test_frames_without_face_come_from_extract(ws8):
    extract.run(ws8, "dst", extract.ExtractSettings(size=64))
    assert browse.frames_without_face(ws8, "dst") == ["data_dst/00008.png"]
    with open(ws8.no_face_list("dst"), "a") as f:
        f.write("00099.png\n../../etc/passwd\n")  # a frame deleted since, and a line that is no frame name
    assert browse.frames_without_face(ws8, "dst") == ["data_dst/00008.png"]


# --- orders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, target", [("blur", 2000), ("face-yaw", 2000), ("origname", 2000), ("hist", 2000), ("final", 20)])
def test_sort_order_is_the_order_facelab_sort_gives(ws, method, target):
    before = digests(ws.aligned_dir("src"))
    plan = browse.sort_plan(ws, "src", method, target=target, workers=2)
    assert digests(ws.aligned_dir("src")) == before  # nothing renamed or rewritten
    if method in browse.CHEAP_METHODS:
        assert [e.name for e in browse.list_faces(ws, "src", sort=method)] == browse.sort_order(ws, "src", method)

    sort.run(ws, "src", sort.SortSettings(by=method, target=target, workers=2))
    ranked = sorted(ws.aligned_paths("src"), key=lambda p: int(p.name.split("_", 1)[0]))
    assert [read_record(p).extra["original_filename"] for p in ranked] == plan.order
    assert sorted(p.name for p in ws.trash_dir("src").glob("*.jpg")) == sorted(plan.trash)
    assert len(plan.trash) == (10 if method == "final" else 0)


def test_sort_plan_refuses_unknown_methods(ws):
    with pytest.raises(SettingsError):
        browse.sort_plan(ws, "src", "shuffle")
    with pytest.raises(SettingsError):
        browse.list_faces(ws, "src", sort="hist")  # not from the cache: sort_plan computes it
    assert "hist" not in browse.CHEAP_METHODS and "blur" in browse.CHEAP_METHODS
    assert set(browse.CHEAP_METHODS) <= set(fsort.METHODS)


# --- ids ---------------------------------------------------------------------------------------------


def test_bad_ids_are_refused(ws, tmp_path):
    face = ws.aligned_paths("src")[0]
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(face.read_bytes())
    (ws.aligned_dir("src") / "link.jpg").symlink_to(outside)
    frame = ws.frame_paths("src")[0].name
    bad = [str(face), "/data_src/aligned/" + face.name, "../ws/data_src/aligned/" + face.name,
           "data_src/aligned/../aligned/" + face.name, "data_src/aligned/sub/" + face.name, "data_src\\aligned\\" + face.name,
           f"data_src/{frame}", "data_src/aligned_debug/" + face.name, "data_src/.facelab/face_list.json",
           "data_src/aligned/link.jpg", "data_src/aligned/" + face.stem + ".txt", None, 7]
    for file_id in bad:
        for call in (lambda i: locate(ws, i), lambda i: thumbs.thumbnail(ws, i), lambda i: detail.face_detail(ws, i)):
            with pytest.raises(BadFaceId):
                call(file_id)
    with pytest.raises(FaceNotFound):
        thumbs.thumbnail(ws, "data_src/aligned/99999_0.jpg")
    # frames: the source frame view opens data_<side>/<frame> and nothing else
    assert frame_path(ws, f"data_src/{frame}") == ws.frames_dir("src") / frame
    (ws.frames_dir("src") / "99998.png").symlink_to(outside)
    for frame_id in ["data_src/99998.png", f"/data_src/{frame}", f"data_src/aligned/../{frame}", f"data_src/x/{frame}",
                     "data_src/aligned/" + face.name, "data_src/no_face.txt"]:
        with pytest.raises(BadFaceId):
            frame_path(ws, frame_id)
    with pytest.raises(FaceNotFound):
        frame_path(ws, "data_dst/99999.png")
    assert not any(ws.thumbs_dir("src").rglob("*.jpg"))
    assert isinstance(BadFaceId("x"), FacelabError)


# --- thumbnails --------------------------------------------------------------------------------------


def test_thumbnail_is_cached_and_made_again_when_the_face_changes(ws):
    face = ws.aligned_paths("src")[0]
    file_id = f"data_src/aligned/{face.name}"
    t = thumbs.thumbnail(ws, file_id, size=64)
    assert t.parent.parent == ws.thumbs_dir("src")
    img = cv2.imread(str(t))
    reference = cv2.resize(read_face(face)[0], (64, 64), interpolation=cv2.INTER_AREA)
    assert img.shape == (64, 64, 3) and np.abs(img.astype(int) - reference).mean() < 4
    stamp = t.stat().st_mtime_ns
    assert thumbs.thumbnail(ws, file_id, size=64) == t and t.stat().st_mtime_ns == stamp  # not made again

    image, rec = read_face(face)
    write_face(face, image[:, ::-1].copy(), rec)
    t2 = thumbs.thumbnail(ws, file_id, size=64)
    assert t2 != t and np.abs(cv2.imread(str(t2)).astype(int) - reference[:, ::-1]).mean() < 4
    assert thumbs.thumbnail(ws, file_id, size=128).parent.name == "128"
    assert cv2.imread(str(thumbs.thumbnail(ws, file_id, size=128))).shape == (128, 128, 3)  # never enlarged past the face
    assert thumbs.prune_thumbnails(ws, "src") == 1 and not t.exists() and t2.exists()
    with pytest.raises(SettingsError):
        thumbs.thumbnail(ws, file_id, size=0)


def test_thumbnail_asked_by_many_threads_at_once(ws, monkeypatch):
    file_id = f"data_dst/aligned/{ws.aligned_paths('dst')[0].name}"
    results, errors = [], []
    encoded = threading.Barrier(8)  # every thread has made the thumbnail: all write it at once
    real_encode = thumbs.encode_image
    monkeypatch.setattr(thumbs, "encode_image", lambda *a: (real_encode(*a), encoded.wait())[0])

    def ask():
        try:
            results.append(thumbs.thumbnail(ws, file_id, size=96))
        except Exception as e:  # noqa: BLE001 - the test reports any failure of a thread
            errors.append(e)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert cv2.imread(str(results[0])).shape == (96, 96, 3)
    assert [p.name for p in results[0].parent.iterdir()] == [results[0].name]  # no temporary file left


# --- delete, restore, undo, redo -------------------------------------------------------------------------


def test_delete_restore_undo_redo_round_trip_is_byte_identical(ws):
    aligned, bin_ = ws.aligned_dir("src"), ws.trash_dir("src")
    start = digests(aligned)
    names = sorted(start)[:3]
    # a face of the same name already in the trash (another face): the deleted one gets another name
    bin_.mkdir(exist_ok=True)
    (bin_ / names[0]).write_bytes((aligned / sorted(start)[-1]).read_bytes())
    in_bin = digests(bin_)

    act = trash.delete_faces(ws, "src", names + ["gone.jpg"])
    assert act.missing == ["gone.jpg"] and len(act.moved) == 3
    stem, ext = os.path.splitext(names[0])
    assert (f"data_src/aligned/{names[0]}", f"data_src/aligned_trash/{stem}_1{ext}") in act.moved
    assert set(digests(aligned)) == set(start) - set(names)
    assert digests(bin_)[f"{stem}_1{ext}"] == start[names[0]] and digests(bin_)[names[1]] == start[names[1]]

    assert trash.undo(ws, "src").op == "undo"
    assert digests(aligned) == start and digests(bin_) == in_bin
    assert trash.redo(ws, "src").op == "redo"
    assert set(digests(aligned)) == set(start) - set(names)
    assert trash.redo(ws, "src") is None

    act = trash.restore_faces(ws, "src", [names[1]])
    assert act.moved == [(f"data_src/aligned_trash/{names[1]}", f"data_src/aligned/{names[1]}")]
    assert trash.history(ws, "src")["undo"][-1] == {"id": act.id, "kind": "restore", "faces": 1}
    trash.undo(ws, "src")  # the restore
    trash.undo(ws, "src")  # the delete
    assert digests(aligned) == start and digests(bin_) == in_bin
    assert trash.undo(ws, "src") is None
    assert trash.history(ws, "src") == {"undo": [], "redo": [{"id": act.id, "kind": "restore", "faces": 1},
                                                             trash.history(ws, "src")["redo"][1]]}
    trash.delete_faces(ws, "src", [names[2]])  # a new action forgets what was undone
    assert trash.history(ws, "src")["redo"] == [] and trash.redo(ws, "src") is None


def test_bad_names_are_refused_before_anything_moves(ws, tmp_path):
    start = digests(ws.aligned_dir("src"))
    name = sorted(start)[0]
    for bad in ["../" + name, "/etc/passwd", "sub/x.jpg", "..", ".hidden.jpg", "notes.txt", "a:b.jpg", ""]:
        with pytest.raises(BadFaceId):
            trash.delete_faces(ws, "src", [name, bad])
        with pytest.raises(BadFaceId):
            trash.restore_faces(ws, "src", [bad])
    assert digests(ws.aligned_dir("src")) == start
    # a trash folder that links out of the workspace is refused
    os.symlink(tmp_path, ws.trash_dir("dst"))
    with pytest.raises(FacelabError, match="outside the workspace"):
        trash.delete_faces(ws, "dst", [ws.aligned_paths("dst")[0].name])
    assert list(tmp_path.glob("*.jpg")) == []


def test_a_delete_killed_midway_leaves_every_face_whole_and_is_finished_next_time(ws, monkeypatch):
    aligned, bin_ = ws.aligned_dir("dst"), ws.trash_dir("dst")
    start = digests(aligned)
    names = sorted(start)[:5]
    real, calls = os.replace, []

    def killed_after_two(a, b):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies: no `end` line, no clean-up
        calls.append(a)
        real(a, b)

    monkeypatch.setattr(trash.os, "replace", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        trash.delete_faces(ws, "dst", names)
    monkeypatch.setattr(trash.os, "replace", real)
    both = {**digests(aligned), **digests(bin_)}
    assert both == start and len(digests(bin_)) == 2  # every face in one folder or the other, whole

    finished = trash.recover(ws, "dst")
    assert finished is not None and len(finished.moved) == 5 and set(digests(bin_)) == set(names)
    assert trash.recover(ws, "dst") is None
    trash.undo(ws, "dst")
    assert digests(aligned) == start and digests(bin_) == {}


def test_a_move_that_fails_puts_back_the_moved_faces(ws, monkeypatch):
    start = digests(ws.aligned_dir("src"))
    real, calls = os.replace, []

    def disk_error_on_third(a, b):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        real(a, b)

    monkeypatch.setattr(trash.os, "replace", disk_error_on_third)
    with pytest.raises(FacelabError, match="could not move"):
        trash.delete_faces(ws, "src", sorted(start)[:5])
    monkeypatch.setattr(trash.os, "replace", real)
    assert digests(ws.aligned_dir("src")) == start
    assert trash.history(ws, "src") == {"undo": [], "redo": []} and trash.recover(ws, "src") is None


def test_a_journal_naming_paths_outside_the_set_moves_nothing(ws, tmp_path):
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(b"keep me")
    ws.trash_journal("src").parent.mkdir(parents=True, exist_ok=True)
    lines = [{"op": "do", "id": "x", "kind": "delete", "moves": [["aligned", "../../../victim.jpg", "trash", "v.jpg"]]},
             {"op": "do", "id": "y", "kind": "restore", "moves": [["trash", str(victim), "aligned", "v.jpg"]]}]
    ws.trash_journal("src").write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert trash.recover(ws, "src") is None and trash.undo(ws, "src") is None
    assert victim.read_bytes() == b"keep me"


# --- one face ----------------------------------------------------------------------------------------


def test_face_detail_overlay_mask_and_source_frame(ws):
    face = ws.aligned_paths("src")[2]
    rec = read_record(face)
    rewrite_record(face, rec.replace(extra={**rec.extra, "notes": "n" * 500, "track": list(range(50)), "score": 0.75}))
    file_id = f"data_src/aligned/{face.name}"
    d = detail.face_detail(ws, file_id)
    json.dumps(d)
    assert d["source_filename"] == rec.source_filename and d["source_frame"] == f"data_src/{rec.source_filename}"
    assert np.allclose(d["landmarks"], rec.landmarks, atol=0.01) and len(d["source_landmarks"]) == 68
    assert (d["face_type"], d["size"], d["face_index"], d["in_trash"]) == ("full", 128, rec.face_index, False)
    assert d["extra"]["score"] == 0.75 and d["extra"]["track"] == "list of 50" and len(d["extra"]["notes"]) == 203
    assert d["blur_score"] == pytest.approx(sharpness(*read_face(face)))

    overlay = detail.face_overlay(ws, file_id)
    assert overlay.shape == (256, 256, 3) and overlay.dtype == np.uint8
    plain = cv2.resize(read_face(face)[0], (256, 256), interpolation=cv2.INTER_CUBIC)
    x, y = np.round(rec.landmarks[30] * 2).astype(int)  # the nose tip, drawn as a green dot
    assert overlay[y, x, 1] > 200 and overlay[y, x, 1] > plain[y, x, 1]

    mask = detail.face_mask(ws, file_id)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    x, y = np.round(rec.landmarks[30]).astype(int)
    assert mask[y, x] == 255 and mask[0, 0] == 0

    (ws.frames_dir("src") / rec.source_filename).unlink()
    assert detail.source_frame_id(ws, file_id) is None
