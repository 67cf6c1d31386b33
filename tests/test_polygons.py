"""Mask polygons (facelab.masks.polygons): checks, rasterizing, storage in real face files, DeepFaceLab
import and export, faces re-cut with their polygons, and the mask editor's folders (facelab.stages.mask_editor)."""

from __future__ import annotations

import pickle
import shutil

import cv2
import numpy as np
import pytest

from facelab.errors import FaceFileError, FacelabError, SettingsError
from facelab.faceimage import face_bytes, read_face, read_record, rewrite_record
from facelab.faceset import dfl
from facelab.faceset.resize import resize_face
from facelab.masks.polygons import (
    EXCLUDE,
    INCLUDE,
    POLYGONS_KEY,
    Polygon,
    from_dfl,
    rasterize,
    read_polygons,
    remap_extra,
    to_dfl,
    write_polygons,
)
from facelab import align
from facelab.stages import extract, faceset
from facelab.stages.mask_editor import move_face
from facelab.workspace import Workspace
from tests.test_dfl import _dfl_dict, _dfl_jpeg


def _square(kind: str, x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return Polygon(kind, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


# an include polygon over the lower face, a hole for a hand over the mouth, a smaller include back in it
DRAWN = [
    Polygon(INCLUDE, [[20.5, 30.25], [100.0, 28.0], [110.75, 90.5], [64.0, 120.0], [15.0, 95.0]]),
    _square(EXCLUDE, 40, 70, 90, 110),
    _square(INCLUDE, 55, 80, 75, 100),
]


@pytest.fixture()
def face(sample_faces_ws, tmp_path):
    """A copy of a real 128 px face file (GRID speaker)."""
    path = tmp_path / "00003_0.jpg"
    shutil.copy(sample_faces_ws.aligned_paths("dst")[1], path)
    return path


def _scan(data: bytes) -> bytes:
    """The JPEG from its start-of-scan on: the compressed pixels."""
    return data[dfl._segments(data)[1]:]


# --- Polygon -------------------------------------------------------------------------------------------


def test_polygon_keeps_a_float32_copy_and_checks_its_input():
    pts = np.array([[1, 2], [30, 2], [30, 40]], np.int64)
    p = Polygon(INCLUDE, pts)
    pts[0, 0] = 99
    assert p.points.dtype == np.float32 and p.points.shape == (3, 2) and p.points[0, 0] == 1
    with pytest.raises(ValueError):
        p.points[0, 0] = 5  # read-only: a Polygon is a value
    assert p == Polygon(INCLUDE, [[1, 2], [30, 2], [30, 40]]) and p != Polygon(EXCLUDE, p.points)
    for kind, bad, match in ((INCLUDE, [[0, 0], [1, 1]], r"N >= 3, got \(2, 2\)"), (INCLUDE, [1, 2, 3], r"got \(3,\)"),
                             (INCLUDE, [[0, 0], [1, np.nan], [2, 2]], "finite"), (INCLUDE, [[0, 0], [1e9, 1], [2, 2]], "within"),
                             ("inside", [[0, 0], [1, 1], [2, 0]], "'include' or 'exclude'"), (INCLUDE, [["a", 1]] * 3, "numbers")):
        with pytest.raises(ValueError, match=match):
            Polygon(kind, bad)


# --- rasterize -----------------------------------------------------------------------------------------


def test_rasterize_fills_in_order_include_one_exclude_zero():
    inc, exc = _square(INCLUDE, 4, 4, 20, 20), _square(EXCLUDE, 8, 8, 12, 12)
    expected = np.zeros((32, 32), np.float32)
    expected[4:21, 4:21] = 1  # OpenCV fills the edge pixels too
    out = rasterize([inc], 32)
    assert out.dtype == np.float32 and out.shape == (32, 32)
    np.testing.assert_array_equal(out, expected)
    expected[8:13, 8:13] = 0
    np.testing.assert_array_equal(rasterize([inc, exc], 32), expected)
    # order matters: an include drawn after the exclude fills the hole again
    np.testing.assert_array_equal(rasterize([inc, exc, inc], 32), rasterize([inc], 32))
    np.testing.assert_array_equal(rasterize([exc, inc], 32), rasterize([inc], 32))
    # an exclude alone draws nothing; points are truncated to whole pixels as DeepFaceLab does
    assert not rasterize([exc], 32).any()
    np.testing.assert_array_equal(rasterize([_square(INCLUDE, 4.9, 4.2, 20.99, 20.5)], 32), rasterize([inc], 32))
    # (H, W) sizes; a polygon reaching past the border is clipped
    wide = rasterize([_square(INCLUDE, -10, 2, 50, 5)], (8, 40))
    assert wide.shape == (8, 40) and wide[2:6].all() and not wide[:2].any() and not wide[6:].any()


def test_rasterize_matches_a_point_in_polygon_reference():
    """A concave polygon against an independent inside test on pixel centres (ray casting, numpy): every
    pixel farther than one pixel from the outline agrees."""
    pts = np.array([[10, 10], [100, 20], [60, 50], [110, 110], [20, 90]], np.float64)
    out = rasterize([Polygon(INCLUDE, pts)], 128)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float64)
    inside = np.zeros((128, 128), bool)
    dist = np.full((128, 128), np.inf)
    for (x0, y0), (x1, y1) in zip(pts, np.roll(pts, -1, axis=0)):
        crosses = (y0 > yy) != (y1 > yy)
        x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0 if y1 != y0 else 1e-12)
        inside ^= crosses & (xx < x_at)
        t = np.clip(((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
        dist = np.minimum(dist, np.hypot(xx - x0 - t * (x1 - x0), yy - y0 - t * (y1 - y0)))
    far = dist > 1.0
    np.testing.assert_array_equal(out[far].astype(bool), inside[far])
    assert 0.3 < out.mean() < 0.6


def test_rasterize_bad_input():
    with pytest.raises(TypeError, match="expected Polygon, got list"):
        rasterize([[[0, 0], [1, 1], [2, 0]]], 16)
    with pytest.raises(ValueError, match="positive size"):
        rasterize(DRAWN, 0)


# --- storage in face files -----------------------------------------------------------------------------


def test_write_read_round_trip_leaves_everything_else_as_it_was(face):
    original = face.read_bytes()
    image, record = read_face(face)
    assert read_polygons(face) == []
    write_polygons(face, DRAWN)
    assert read_polygons(face) == DRAWN  # the points are exact at 0.001 px
    data = face.read_bytes()
    assert _scan(data) == _scan(original)  # the compressed pixels, byte for byte
    image2, record2 = read_face(face)
    np.testing.assert_array_equal(image2, image)
    d, d2 = record.to_dict(), record2.to_dict()
    d2["extra"] = dict(d2["extra"])
    assert d2["extra"].pop(POLYGONS_KEY) == [p.to_json() for p in DRAWN]
    assert d2 == d
    # stored as documented: plain JSON in drawing order
    assert record2.extra[POLYGONS_KEY][1] == {"kind": "exclude", "points": [[40.0, 70.0], [90.0, 70.0], [90.0, 110.0], [40.0, 110.0]]}
    # saving again changes nothing; removing them gives back the original file byte for byte
    write_polygons(face, read_polygons(face))
    assert face.read_bytes() == data
    write_polygons(face, [])
    assert face.read_bytes() == original


def test_png_face_round_trip(face, tmp_path):
    image, record = read_face(face)
    png = tmp_path / "face.png"
    png.write_bytes(face_bytes(image, record, ".png"))
    write_polygons(png, DRAWN[:2])
    assert read_polygons(png) == DRAWN[:2]
    np.testing.assert_array_equal(read_face(png)[0], image)


def test_bad_polygons_and_non_faces_are_named(face, tmp_path):
    record = read_record(face)
    rewrite_record(face, record.replace(extra={**record.extra, POLYGONS_KEY: [{"kind": "include", "points": [[0, 0]]}]}))
    with pytest.raises(FaceFileError, match=r"mask polygons facelab cannot read: extra.mask_polygons\[0\]"):
        read_polygons(face)
    assert "seg_ie_polys" not in dfl.record_to_dfl(read_record(face))  # export leaves them out, the face goes
    write_polygons(face, DRAWN)  # drawing again replaces them
    assert read_polygons(face) == DRAWN
    plain = tmp_path / "plain.jpg"
    cv2.imwrite(str(plain), read_face(face)[0])
    for fn in (read_polygons, lambda p: write_polygons(p, DRAWN)):
        with pytest.raises(FaceFileError, match="no facelab face metadata"):
            fn(plain)


# --- DeepFaceLab -----------------------------------------------------------------------------------------


def _dfl_face(image, rec, **polys) -> bytes:
    return _dfl_jpeg(image, pickle.dumps({**_dfl_dict(rec), **polys}, protocol=4))


def test_import_dfl_polygons(face, tmp_path):
    """DFL 2's seg_ie_polys (dict form: includes sorted first, as DFL 2 reads them; the older list form too)
    and the seed's ie_polys (drawn as stored) land in mask_polygons; broken ones are dropped and counted."""
    image, rec = read_face(face)
    src = tmp_path / "dfl"
    src.mkdir()
    dfl2 = {"polys": [{"type": 1, "pts": DRAWN[0].points}, {"type": 0, "pts": DRAWN[1].points},
                      {"type": 1, "pts": DRAWN[2].points}, {"type": 7, "pts": DRAWN[2].points},
                      {"type": 1, "pts": np.zeros((0, 2), np.float32)}, {"type": 0, "pts": np.ones((2, 2), np.float32)}]}
    (src / "a.jpg").write_bytes(_dfl_face(image, rec, seg_ie_polys=dfl2))
    (src / "b.jpg").write_bytes(_dfl_face(image, rec, seg_ie_polys=[(1, DRAWN[0].points), (0, DRAWN[1].points), (1, DRAWN[2].points)]))
    (src / "c.jpg").write_bytes(_dfl_face(image, rec, ie_polys=[(1, DRAWN[0].points.tolist()), (0, DRAWN[1].points), (1, DRAWN[2].points)]))
    (src / "d.jpg").write_bytes(_dfl_face(image, rec, seg_ie_polys=None))
    ws = Workspace(tmp_path / "ws")
    ws.create()
    assert faceset.import_dfl(ws, src, "src").counts["imported"] == 4
    aligned = ws.aligned_dir("src")
    dfl2_order = [DRAWN[0], DRAWN[2], DRAWN[1]]
    assert read_polygons(aligned / "a.jpg") == dfl2_order and read_record(aligned / "a.jpg").extra["dfl_polygons_dropped"] == 2
    assert read_polygons(aligned / "b.jpg") == dfl2_order
    assert read_polygons(aligned / "c.jpg") == DRAWN and "dfl_polygons_dropped" not in read_record(aligned / "c.jpg").extra
    assert read_polygons(aligned / "d.jpg") == [] and POLYGONS_KEY not in read_record(aligned / "d.jpg").extra
    # what DFL 2 trains on: includes, then excludes; here the hole covers the later include
    assert rasterize(read_polygons(aligned / "a.jpg"), 128)[90, 65] == 0 and rasterize(DRAWN, 128)[90, 65] == 1


def test_from_dfl_odd_values():
    assert from_dfl(None) == ([], 1) and from_dfl({"polys": "x"}) == ([], 1) and from_dfl({"polys": []}) == ([], 0)
    polys, dropped = from_dfl([(True, DRAWN[0].points), (1, [[0, 0], [1]]), "junk", (np.int64(0), DRAWN[1].points)])
    assert polys == [DRAWN[1]] and dropped == 3
    assert to_dfl([]) is None
    assert to_dfl(DRAWN)["polys"][1]["type"] == 0 and to_dfl(DRAWN)["polys"][1]["pts"].dtype == np.float32


def test_export_dfl_writes_polygons_back(sample_faces_ws, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    faces = ws.aligned_paths("src")
    ordered = [DRAWN[0], DRAWN[2], DRAWN[1]]  # includes first: DFL 2 draws them the same way
    write_polygons(faces[0], ordered)
    out = tmp_path / "dfl_out"
    assert faceset.export_dfl(ws, "src", out).counts["exported"] == len(faces)
    d = dfl.read_dfl_dict((out / faces[0].name).read_bytes())
    assert [p["type"] for p in d["seg_ie_polys"]["polys"]] == [1, 1, 0]
    np.testing.assert_array_equal(d["seg_ie_polys"]["polys"][2]["pts"], DRAWN[1].points)
    assert "seg_ie_polys" not in dfl.read_dfl_dict((out / faces[1].name).read_bytes())
    back = Workspace(tmp_path / "back")
    back.create()
    faceset.import_dfl(back, out, "src")
    assert read_polygons(back.aligned_dir("src") / faces[0].name) == ordered


# --- faces cut again -----------------------------------------------------------------------------------


def test_resize_moves_the_polygons_with_the_pixels(sample_faces_ws, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    path = ws.aligned_paths("dst")[0]
    write_polygons(path, DRAWN)
    before = rasterize(read_polygons(path), 128)
    resize_face(path, ws.frames_dir("dst"), 64)
    image, rec = read_face(path)
    assert image.shape == (64, 64, 3)
    for old, new in zip(DRAWN, read_polygons(path)):
        assert new.kind == old.kind
        np.testing.assert_allclose(new.points, old.points / 2, atol=2e-3)
    after = cv2.resize(rasterize(read_polygons(path), 64), (128, 128), interpolation=cv2.INTER_NEAREST)
    assert np.abs(after - before).mean() < 0.03


def test_smoothing_keeps_the_polygons_on_the_same_frame_pixels(sample_faces_ws, tmp_path):
    """``extract --smooth`` re-cuts faces from moved landmarks: each polygon point, taken back to frame pixels,
    stays where it was drawn."""
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    path = ws.aligned_paths("dst")[5]
    write_polygons(path, DRAWN)
    before = read_record(path)
    assert extract.smooth_faces(ws, "dst", extract.ExtractSettings(size=128, smooth=True)) == 30
    after = read_record(path)
    assert after.extra["smoothed"] and not np.allclose(after.image_to_face_mat, before.image_to_face_mat, atol=1e-6)
    for old, new in zip(DRAWN, read_polygons(path)):
        np.testing.assert_allclose(align.transform_points(new.points, align.invert_affine(after.image_to_face_mat)),
                                   align.transform_points(old.points, align.invert_affine(before.image_to_face_mat)), atol=0.01)


def test_remap_extra():
    extra = {"detector_score": 0.9, POLYGONS_KEY: [p.to_json() for p in DRAWN]}
    old = np.array([[2.0, 0, 10], [0, 2.0, 20]])
    new = np.array([[1.0, 0, 5], [0, 1.0, 10]])  # the same face cut at half the scale
    moved = remap_extra(extra, old, new)
    assert moved["detector_score"] == 0.9 and extra[POLYGONS_KEY][0] == DRAWN[0].to_json()
    np.testing.assert_allclose(moved[POLYGONS_KEY][1]["points"], (DRAWN[1].points / 2).tolist(), atol=1e-3)
    assert remap_extra({"a": 1}, old, new) == {"a": 1}
    broken = {POLYGONS_KEY: "junk"}
    assert remap_extra(broken, old, new) is broken


# --- the mask editor's folders -------------------------------------------------------------------------------


def test_move_face_between_aligned_confirmed_and_skipped(sample_faces_ws, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(sample_faces_ws.root, ws.root)
    name = ws.aligned_paths("src")[0].name
    data = (ws.aligned_dir("src") / name).read_bytes()
    confirmed = move_face(ws, "src", name, "confirmed")
    assert confirmed == ws.confirmed_dir("src") / name and confirmed.read_bytes() == data
    assert name not in [p.name for p in ws.aligned_paths("src")]
    assert move_face(ws, "src", name, "confirmed") == confirmed  # already there
    skipped = move_face(ws, "src", name, "skipped")
    assert skipped.parent == ws.skipped_dir("src") and not confirmed.exists()
    assert move_face(ws, "src", name, "aligned") == ws.aligned_dir("src") / name and (ws.aligned_dir("src") / name).read_bytes() == data
    # nothing is overwritten: a face of the same name already confirmed stays
    shutil.copy(ws.aligned_dir("src") / name, ws.confirmed_dir("src") / name)
    with pytest.raises(FacelabError, match="is there already"):
        move_face(ws, "src", name, "confirmed")
    with pytest.raises(FacelabError, match="no face nope.jpg"):
        move_face(ws, "src", "nope.jpg", "skipped")
    with pytest.raises(FacelabError, match="bad face file name"):
        move_face(ws, "src", "../x.jpg", "skipped")
    with pytest.raises(SettingsError, match="cannot move a face to 'trash'"):
        move_face(ws, "src", name, "trash")
