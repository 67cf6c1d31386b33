"""facelab sort: every method on real aligned faces (tests/conftest.py: sample_faces_ws)."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.faceimage import read_face, read_record, write_face
from facelab.faceset import features
from facelab.faceset import sort as fsort
from facelab.faceset.pose import mirror_landmarks, project, yaw_pitch
from facelab.stages import sort
from facelab.stages.extract import ExtractSettings, FoundFace, find_faces, make_face
from facelab.workspace import Workspace
from tests.conftest import shared


@pytest.fixture
def ws(sample_faces_ws, tmp_path) -> Workspace:
    shutil.copytree(sample_faces_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def add_copy(ws: Workspace, side: str, src: Path, name: str, fn=lambda img: img, record=None) -> str:
    image, rec = read_face(src)
    rec = record or rec
    extra = {k: v for k, v in rec.extra.items() if k != "original_filename"}  # a new file, not a renamed one
    write_face(ws.aligned_dir(side) / name, fn(image), rec.replace(extra=extra))
    return name


def ranks(ws: Workspace, side: str) -> dict[str, int]:
    """original name -> position after sorting (from the NNNNN_ prefix), checking the names agree with metadata."""
    out = {}
    for p in ws.aligned_paths(side):
        orig = read_record(p).extra["original_filename"]
        prefix, rest = p.name.split("_", 1)
        assert rest == orig, (p.name, orig)
        out[orig] = int(prefix)
    return out


def run(ws, side="src", **kw) -> dict[str, int]:
    sort.run(ws, side, sort.SortSettings(workers=2, **kw))
    return ranks(ws, side)


def test_blur_blurred_copy_sorts_after_its_original(ws):
    faces = ws.aligned_paths("src")[:6]
    for p in faces:
        add_copy(ws, "src", p, f"{p.stem}_blurred.jpg", lambda im: cv2.GaussianBlur(im, (7, 7), 0))
    r = run(ws, by="blur")
    assert len(r) == 36
    for p in faces:
        assert r[f"{p.stem}_blurred.jpg"] > r[p.name]
    # the blurred copies are the blurriest of the whole set
    assert min(r[f"{p.stem}_blurred.jpg"] for p in faces) >= 30


def test_motion_blur_sorts_directionally_blurred_copy_last(ws):
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9  # horizontal motion
    faces = ws.aligned_paths("dst")[:4]
    for p in faces:
        add_copy(ws, "dst", p, f"{p.stem}_motion.jpg", lambda im: cv2.filter2D(im, -1, kernel))
    r = run(ws, side="dst", by="motion-blur")
    assert sorted(r[f"{p.stem}_motion.jpg"] for p in faces) == [30, 31, 32, 33]


def test_pose_estimator_recovers_known_rotations():
    for yaw, pitch in [(0, 0), (30, 0), (-25, 10), (0, -20), (15, 25)]:
        y, p = yaw_pitch(project(yaw, pitch))
        assert abs(y - yaw) < 2.5 and abs(p - pitch) < 1.0


def test_yaw_of_a_really_mirrored_frame_flips_and_pitch_stays(ws, detector, landmarker):
    # the src face turned furthest from the set's median yaw, re-detected in the flipped frame
    feats = features.compute(ws.aligned_paths("src"), ["pose"])
    yaws = np.array([f["pose"][0] for f in feats])
    rec = feats[int(np.argmax(np.abs(yaws - np.median(yaws))))]["record"]
    frame = cv2.imread(str(ws.frames_dir("src") / rec.source_filename))
    flipped = np.ascontiguousarray(frame[:, ::-1])
    found = find_faces(flipped, detector, landmarker, ExtractSettings(size=128))
    _, mrec = make_face(flipped, found[0], 0, "mirror.png", ExtractSettings(size=128))
    y0, p0 = yaw_pitch(rec.landmarks)
    y1, p1 = yaw_pitch(mrec.landmarks)
    assert abs(y0) > 4
    assert np.sign(y1) == -np.sign(y0) and abs(y1 + y0) < 0.5 * abs(y0) + 2
    assert abs(p1 - p0) < 4


def test_face_yaw_puts_mirrored_face_on_the_other_side(ws):
    paths = ws.aligned_paths("src")
    feats = features.compute(paths, ["pose"])
    yaws = np.array([f["pose"][0] for f in feats])
    i = int(np.argmax(yaws))
    image, rec = read_face(paths[i])
    mirrored = rec.replace(landmarks=mirror_landmarks(rec.landmarks, image.shape[1]))
    add_copy(ws, "src", paths[i], "mirror.jpg", lambda im: np.ascontiguousarray(im[:, ::-1]), mirrored)
    r = run(ws, by="face-yaw")
    assert r["mirror.jpg"] == 0 and r[paths[i].name] == 30  # yaw ascending: most negative first


def test_face_pitch_mirrored_face_keeps_pitch_and_sets_separate(ws):
    # GRID speaker (dst) looks down at the camera more than the webcam man (src)
    for p in ws.aligned_paths("dst")[:10]:
        add_copy(ws, "src", p, f"dst_{p.name}")
    paths = ws.aligned_paths("src")
    img, rec = read_face(paths[0])
    assert abs(yaw_pitch(mirror_landmarks(rec.landmarks, img.shape[1]))[1] - yaw_pitch(rec.landmarks)[1]) < 1e-3
    r = run(ws, by="face-pitch")
    dst_ranks = sorted(v for k, v in r.items() if k.startswith("dst_"))
    assert dst_ranks == list(range(30, 40))  # heads lowered last


def test_source_rect_size_largest_first(ws):
    r = run(ws, by="source-rect-size")
    sizes = {read_record(p).extra["original_filename"]: features.rect_size(None, read_record(p)) for p in ws.aligned_paths("src")}
    order = sorted(r, key=r.get)
    assert [sizes[n] for n in order] == sorted(sizes.values(), reverse=True)
    assert len(set(sizes.values())) > 5


def _mixed(ws, n_dst=30):
    for p in ws.aligned_paths("dst")[:n_dst]:
        add_copy(ws, "src", p, f"zdst_{p.name}")


def _switches(r):
    seq = [k.startswith("zdst_") for k in sorted(r, key=r.get)]
    return sum(a != b for a, b in itertools.pairwise(seq))


def test_hist_groups_look_alikes(ws):
    _mixed(ws)
    assert _switches(run(ws, by="hist")) <= 3


def test_absdiff_groups_look_alikes(ws):
    _mixed(ws)
    assert _switches(run(ws, by="absdiff")) <= 3


def test_hist_chain_and_dissimilarity_match_the_full_distance_matrix(ws, monkeypatch):
    """The histogram methods work a block of rows at a time and remember a few neighbours per
    face, so 30,000 faces no longer need a 7 GB matrix; the order must be the full matrix's."""
    _mixed(ws)
    paths = ws.aligned_paths("src") + ws.aligned_paths("src")[:4]  # exact duplicates: ties
    hists = np.stack([features.histogram(*read_face(p)) for p in paths])
    roots = fsort.hist_roots(hists)
    full = fsort.hist_distances(roots, roots)
    expected = fsort.greedy_chain(lambda i, rest: full[i, rest], len(paths))
    monkeypatch.setattr(fsort, "BLOCK_ELEMENTS", 3 * len(paths))  # blocks of 3 rows
    for k in (1, 3, fsort.NEIGHBOURS):  # k = 1: most steps fall back to the full row
        assert fsort.hist_chain(roots, k=k) == expected
    np.testing.assert_allclose(fsort.hist_dissimilarity(roots), full.sum(1))


def test_hist_dissim_puts_faces_with_near_duplicates_last(ws):
    _mixed(ws, n_dst=3)  # 3 faces of another person: no near-duplicates among 30 src faces
    r = run(ws, by="hist-dissim")
    assert sorted(v for k, v in r.items() if k.startswith("zdst_")) == [0, 1, 2]


def test_brightness_and_hue(ws):
    p = ws.aligned_paths("src")[3]
    add_copy(ws, "src", p, "dark.jpg", lambda im: (im * 0.5).astype(np.uint8))
    add_copy(ws, "src", p, "bright.jpg", lambda im: np.clip(im * 1.4 + 20, 0, 255).astype(np.uint8))
    r = run(ws, by="brightness")
    assert r["bright.jpg"] == 0 and r["dark.jpg"] == 31
    # hue: a copy tinted green (OpenCV hue ~60) sorts before the skin-toned faces (hue ~10)
    p = next(q for q in ws.aligned_paths("src") if q.name.endswith("_" + p.name))
    add_copy(ws, "src", p, "green.jpg", lambda im: np.clip(im.astype(np.int32) * [0.6, 1.3, 0.6], 0, 255).astype(np.uint8))
    r = run(ws, by="hue")
    assert r["green.jpg"] == 0


def test_black_face_cut_by_frame_border_sorts_last(ws):
    rec = read_record(ws.aligned_paths("src")[5])
    frame = cv2.imread(str(ws.frames_dir("src") / rec.source_filename))
    x0 = int(rec.source_landmarks[:, 0].mean())  # cut the frame through the middle of the face
    cut = np.ascontiguousarray(frame[:, x0:])
    lm = rec.source_landmarks - np.array([x0, 0], np.float32)
    from facelab.detect import Detection

    box = rec.source_rect
    found = FoundFace(Detection((box[0] - x0, box[1], box[2] - x0, box[3]), 0.9, None), lm)
    image, record = make_face(cut, found, 0, "cut.png", ExtractSettings(size=128))
    write_face(ws.aligned_dir("src") / "cut_0.jpg", image, record)
    r = run(ws, by="black")
    assert r["cut_0.jpg"] == 30


def test_origname_round_trip_after_another_sort(ws):
    before = [p.name for p in ws.aligned_paths("src")]
    run(ws, by="blur")
    assert [p.name for p in ws.aligned_paths("src")] != [f"{i:05d}_{n}" for i, n in enumerate(before)]
    r = run(ws, by="origname")
    assert sorted(r, key=r.get) == before  # frame names 00001.png ... sort like the original names
    assert not (ws.frames_dir("src") / "aligned_trash").exists()


def test_oneface_moves_every_face_of_a_multi_face_frame_to_trash(ws, detector, landmarker):
    image = cv2.imread(str(shared("group/multi_face.jpg")))
    found = find_faces(image, detector, landmarker, ExtractSettings(size=128))
    assert len(found) >= 2
    for i, f in enumerate(found):
        face, record = make_face(image, f, i, "multi_face.jpg", ExtractSettings(size=128))
        write_face(ws.aligned_dir("src") / f"multi_face_{i}.jpg", face, record)
    r = run(ws, by="oneface")
    assert len(r) == 30 and not any(k.startswith("multi_face") for k in r)
    trash = sorted(p.name for p in (ws.frames_dir("src") / "aligned_trash").iterdir())
    assert trash == sorted(f"multi_face_{i}.jpg" for i in range(len(found)))
    assert all(read_record(p).extra["original_filename"] == p.name for p in (ws.frames_dir("src") / "aligned_trash").iterdir())


def test_identity_reference_person_first(ws):
    _mixed(ws, n_dst=10)
    ref_frame = ws.frames_dir("src") / read_record(ws.aligned_paths("src")[0]).source_filename
    r = run(ws, by="identity", reference=ref_frame)  # a plain frame: the face is detected
    assert all(not k.startswith("zdst_") for k in sorted(r, key=r.get)[:30])
    last = max(r, key=r.get)  # an aligned face of the other person
    ref_face = next(p for p in ws.aligned_paths("src") if p.name.endswith("_" + last))
    r = run(ws, by="identity", reference=ref_face)
    assert all(k.startswith("zdst_") for k in sorted(r, key=r.get)[:10])


def test_final_keeps_target_balanced_over_yaw_and_sharpest(ws):
    paths = ws.aligned_paths("src")
    for p in paths:
        add_copy(ws, "src", p, f"{p.stem}_blurred.jpg", lambda im: cv2.GaussianBlur(im, (5, 5), 0))
    feats = {p.name: features.compute([p], ["pose"])[0]["pose"][0] for p in paths}
    r = run(ws, by="final", target=12)
    trash = [p.name for p in (ws.frames_dir("src") / "aligned_trash").iterdir()]
    assert len(r) == 12 and len(trash) == 48
    kept = set(r)
    # sharpest kept: a blurred copy is only kept together with its (identical-pose) original
    for name in kept:
        if name.endswith("_blurred.jpg"):
            assert name.replace("_blurred", "") in kept
    # balanced: the most turned faces both ways survive, though most faces are near-frontal
    assert max(feats, key=feats.get) in kept and min(feats, key=feats.get) in kept
    kept_yaws = np.array([feats[n.replace("_blurred", "")] for n in kept])
    all_yaws = np.array(list(feats.values()))
    assert kept_yaws.std() > all_yaws.std()
    # kept faces are ordered by yaw
    order = sorted(r, key=r.get)
    assert [feats[n.replace("_blurred", "")] for n in order] == sorted(kept_yaws)


@pytest.mark.parametrize("fail_at", [5, 40])  # during phase 1 (to temporary names) and during phase 2
def test_interrupted_rename_loses_nothing_and_is_finished_next_time(ws, monkeypatch, fail_at):
    before = {p.name for p in ws.aligned_paths("src")}
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(a, b):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt
        real_replace(a, b)

    run(ws, by="blur")  # first sort stores the original names; a later sort is interrupted
    monkeypatch.setattr(fsort.os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt):
        sort.run(ws, "src", sort.SortSettings(by="face-yaw", workers=2))
    monkeypatch.setattr(fsort.os, "replace", real_replace)
    now = sorted(ws.aligned_dir("src").glob("*.jpg"))  # hidden temporary names included
    assert len(now) == 30
    assert {read_record(p).extra["original_filename"] for p in now} == before
    summary = sort.run(ws, "src", sort.SortSettings(by="origname", workers=2))
    assert summary.warnings and "interrupted" in summary.warnings[0]
    r = ranks(ws, "src")
    assert sorted(r, key=r.get) == sorted(before)
    assert not any(p.name.startswith(".") for p in ws.aligned_dir("src").iterdir())


def test_cli_sort_and_settings_errors(ws):
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.errors import SettingsError

    res = CliRunner().invoke(app, ["-w", str(ws.root), "sort", "dst", "--by", "final", "--target", "10"])
    assert res.exit_code == 0, res.output
    assert "to trash: 20" in res.output
    assert len(ws.aligned_paths("dst")) == 10
    res = CliRunner().invoke(app, ["-w", str(ws.root), "sort", "src", "--by", "identity"])
    assert isinstance(res.exception, SettingsError)
    with pytest.raises(SettingsError):
        sort.SortSettings(by="nonsense")
