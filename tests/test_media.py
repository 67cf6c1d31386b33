"""facelab.media (probe / decode / encode) and the `frames` and `video` steps, on real clips."""

from __future__ import annotations

import gc
import shutil
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import Interpolation
import cv2
import numpy as np
import pytest

from facelab.errors import MediaError, SettingsError, WorkspaceError
from facelab.media import VideoInfo, iter_frames, probe, read_video_tags, write_video
from facelab.provenance.labels import VIDEO_TAGS
from facelab.stages import frames as frames_stage
from facelab.stages import video as video_stage
from facelab.workspace import Workspace
from tests.conftest import SAMPLE_DST, SAMPLE_SRC, shared


# --- helpers -----------------------------------------------------------------
def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """First audio track as mono float32 samples, and its rate (independent of facelab.media)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in c.decode(stream):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
    return np.concatenate(chunks), rate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def grid_roundtrip(tmp_path_factory) -> Path:
    """The GRID clip decoded and re-encoded with its audio and the synthetic-media tags."""
    out = tmp_path_factory.mktemp("roundtrip") / "out.mp4"
    n = write_video((img for _, _, img in iter_frames(SAMPLE_DST)), out, Fraction(25), audio_from=SAMPLE_DST, tags=VIDEO_TAGS)
    assert n == 75
    return out


def make_workspace(tmp_path: Path, dst: Path = SAMPLE_DST, src: Path | None = None) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(dst, ws.root / f"data_dst{dst.suffix}")
    if src is not None:
        shutil.copy(src, ws.root / f"data_src{src.suffix}")
    return ws


# --- probe -------------------------------------------------------------------
def test_probe_grid_clip():
    info = probe(SAMPLE_DST)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (360, 288)
    assert info.fps == Fraction(25)
    assert info.frame_count == 75  # the MPEG-PS container says 0: counted by decoding
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert info.has_audio and info.audio_codec == "mp2" and info.audio_sample_rate == 44100


def test_probe_src_clip():
    info = probe(SAMPLE_SRC)
    assert (info.width, info.height, info.fps, info.frame_count) == (400, 300, Fraction(25), 765)
    assert info.duration == pytest.approx(30.6, abs=0.05)
    assert not info.has_audio and info.audio_codec is None and info.audio_sample_rate is None


def test_probe_missing_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist") as e:
        probe(tmp_path / "nope.mp4")
    assert e.value.hint


def test_probe_not_a_video(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 50)
    with pytest.raises(MediaError, match="not a readable video"):
        probe(fake)
    with pytest.raises(MediaError):
        next(iter_frames(fake))


def test_probe_truncated_header(tmp_path):
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(SAMPLE_SRC.read_bytes()[:2000])  # cut inside the moov box
    with pytest.raises(MediaError):
        probe(bad)


def test_probe_audio_only(tmp_path):
    """A file with audio but no video stream: the GRID clip's MP2 track copied alone."""
    audio_only = tmp_path / "speech.mka"
    with av.open(str(SAMPLE_DST)) as src, av.open(str(audio_only), "w") as out:
        a_in = src.streams.audio[0]
        a_out = out.add_stream_from_template(a_in)
        for packet in src.demux(a_in):
            if packet.dts is None:
                continue
            packet.stream = a_out
            out.mux(packet)
    with pytest.raises(MediaError, match="no video stream"):
        probe(audio_only)


# --- decode ------------------------------------------------------------------
def test_iter_frames_all():
    seen = 0
    for index, t, image in iter_frames(SAMPLE_DST):
        assert index == seen
        assert t == pytest.approx(index / 25)
        assert image.shape == (288, 360, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
        seen += 1
    assert seen == 75


def test_iter_frames_matches_opencv():
    """Frame 0 against OpenCV's own decoder (independent reference; both BGR)."""
    cap = cv2.VideoCapture(str(SAMPLE_DST))
    ok, ref = cap.read()
    cap.release()
    assert ok
    _, _, image = next(iter_frames(SAMPLE_DST))
    assert psnr(image, ref) > 35  # same bitstream; only YUV->BGR rounding may differ


@pytest.mark.parametrize(("path", "fps", "expected"), [(SAMPLE_DST, 5, 15), (SAMPLE_DST, 12.5, 38), (SAMPLE_SRC, 5, 153), (SAMPLE_DST, 30, 75)])
def test_iter_frames_subsample(path, fps, expected):
    kept = [(i, t) for i, t, _ in iter_frames(path, fps=fps)]
    assert len(kept) == expected
    indices = [i for i, _ in kept]
    assert indices == sorted(set(indices))
    if fps == 5:  # 25 -> 5 fps keeps exactly every 5th frame
        assert indices == list(range(0, 5 * expected, 5))


@pytest.mark.parametrize("fps", [0, -1, "5", True])
def test_iter_frames_bad_fps(fps):
    with pytest.raises(SettingsError):
        next(iter_frames(SAMPLE_DST, fps=fps))


def test_iter_frames_corrupt_midstream(tmp_path):
    data = bytearray(SAMPLE_SRC.read_bytes())
    start = len(data) // 3
    data[start : start + 20000] = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"corrupt\.mp4.*frame \d+"):
        for _ in iter_frames(bad):
            pass


def write_turned(frames, path: Path, degrees: int, hflip: bool = False, vflip: bool = False) -> None:
    """Store ``frames`` losslessly with a display matrix (as a phone stores its portrait clips)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264rgb", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "bgr24", {"qp": "0"}
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")))
        out.mux(stream.encode())


@pytest.mark.parametrize("degrees", [0, 90, 180, -90])
@pytest.mark.parametrize("hflip,vflip", [(False, False), (True, False), (False, True)])
def test_display_matrix_frames_come_upright(tmp_path, degrees, hflip, vflip):
    # A face frame stored as is, with a display matrix: iter_frames returns what a player shows
    # (PyAV's set_display_rotation: turned counter-clockwise by `degrees`, then mirrored), pixel for pixel.
    _, _, stored = next(iter_frames(SAMPLE_DST))
    stored = stored[:200, :300]  # not square, so a quarter turn shows in the shape
    write_turned([stored], tmp_path / "turned.mp4", degrees, hflip, vflip)
    shown = np.rot90(stored, k=degrees // 90)
    shown = shown[:, ::-1] if hflip else shown
    shown = shown[::-1] if vflip else shown
    _, _, got = next(iter_frames(tmp_path / "turned.mp4"))
    assert got.shape == shown.shape and np.array_equal(got, shown)
    info = probe(tmp_path / "turned.mp4")
    assert (info.height, info.width) == shown.shape[:2]


def test_decoding_a_clip_with_a_display_matrix_keeps_no_frames_alive(tmp_path):
    # Reading a frame's side data (where the display matrix is) ties the frame in a reference cycle: read
    # off every frame, each decoded frame stayed in memory until Python's cycle collector ran (a 765-frame
    # clip grew the process by 190 MB; 4K frames would fill it). It is read once a stream.
    faces = [image for _, _, image in iter_frames(SAMPLE_DST)][:30]
    write_turned([np.rot90(image, k=1) for image in faces], tmp_path / "phone.mp4", -90)
    gc.collect()
    gc.disable()
    try:
        assert sum(1 for _ in iter_frames(tmp_path / "phone.mp4")) == 30
        alive = sum(1 for o in gc.get_objects() if type(o) is av.VideoFrame)  # isinstance warns on a torch object
    finally:
        gc.enable()
    assert alive <= 2, alive


def test_frames_stage_phone_portrait_clip(tmp_path):
    # A portrait phone clip: frames stored turned a quarter, a -90 degree matrix turns them back for
    # display. The frames step writes them upright (the detector, the merge and result.mp4 all see
    # the face as the viewer does); frames written by an older facelab in the stored orientation are
    # not resumed into.
    upright = [image for _, _, image in iter_frames(SAMPLE_DST)][:8]
    ws = Workspace(tmp_path / "ws")
    ws.create()
    write_turned([np.rot90(image, k=1) for image in upright], ws.root / "data_dst.mp4", -90)
    frames_stage.run(ws, "dst")
    written = [cv2.imread(str(p)) for p in ws.frame_paths("dst")]
    assert len(written) == 8 and all(np.array_equal(a, b) for a, b in zip(written, upright, strict=True))
    record = frames_stage.read_record(ws, "dst")
    assert (record["width"], record["height"]) == (360, 288)

    step_record = frames_stage._record(ws, "dst")
    step_record.begin({**step_record.load().settings, "width": 288, "height": 360})  # an older run, killed
    with pytest.raises(WorkspaceError, match="another video or other settings"):
        frames_stage.run(ws, "dst")


ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


@pytest.mark.parametrize("sar,shown", [(Fraction(4, 3), (480, 288)), (Fraction(8, 9), (360, 324)), (Fraction(1), (360, 288))])
def test_frames_come_in_square_pixels(tmp_path, sar, shown):
    # DV, DVD and HDV store a wide picture in narrow pixels (or a tall one in wide): frames come stretched
    # to the shape players show (never shrunk), so faces keep their proportions and the result, written
    # in square pixels, plays at the source's shape.
    upright = [image for _, _, image in iter_frames(SAMPLE_DST)][:2]
    clip = tmp_path / "anamorphic.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264rgb", rate=25)
        stream.height, stream.width = upright[0].shape[:2]
        stream.pix_fmt, stream.options = "bgr24", {"qp": "0"}
        stream.codec_context.sample_aspect_ratio = sar
        for image in upright:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    info = probe(clip)
    assert (info.width, info.height) == shown
    for (_, _, got), image in zip(iter_frames(clip), upright, strict=True):
        assert np.array_equal(got, cv2.resize(image, shown, interpolation=cv2.INTER_CUBIC) if sar != 1 else image)


def combing(image: np.ndarray) -> float:
    """Mean distance of each line from the mean of its neighbours: high where lines alternate (interlace combs)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(np.abs(grey[1:-1] - (grey[:-2] + grey[2:]) / 2).mean())


def test_interlaced_frames_are_deinterlaced(tmp_path):
    # Broadcast-style interlaced H.264 (top field first) of a face panning 4 px per field (1/50 s):
    # decoded frames carry no combs (bwdif), one frame per frame at the same times.
    faces = [image for _, _, image in iter_frames(SAMPLE_DST)][:10]

    def panned(image: np.ndarray, field: int) -> np.ndarray:
        shift = np.float32([[1, 0, 4 * field - 40], [0, 1, 0]])
        return cv2.warpAffine(image, shift, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)

    progressive = [panned(face, 2 * i) for i, face in enumerate(faces)]
    woven = []
    for i, face in enumerate(faces):
        frame = progressive[i].copy()
        frame[1::2] = panned(face, 2 * i + 1)[1::2]  # the second field, 1/50 s later
        woven.append(frame)
    clip = tmp_path / "interlaced.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = faces[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"x264-params": "tff=1", "crf": "10"}
        for image in woven:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")))
        out.mux(stream.encode())
    assert probe(clip).interlaced and not probe(SAMPLE_DST).interlaced
    got = list(iter_frames(clip))
    assert [i for i, _, _ in got] == list(range(10)) and [t for _, t, _ in got] == pytest.approx([i / 25 for i in range(10)])
    progressive, interlaced = np.mean([combing(f) for f in progressive]), np.mean([combing(f) for f in woven])
    decoded = np.mean([combing(image) for _, _, image in got])
    assert interlaced > 2 * progressive and decoded < 1.25 * progressive, (progressive, interlaced, decoded)


def write_yuv(image: np.ndarray, path: Path, colorspace: int, name_it: bool) -> None:
    """One frame as H.264 4:2:0 converted with YUV matrix ``colorspace`` (1: BT.709, 5: BT.601); named in
    the stream or not (many cameras and editors write videos that do not say)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"qp": "0"}
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
            format="yuv420p", dst_colorspace=colorspace, dst_color_range=1, interpolation=ACCURATE | Interpolation.FULL_CHR_H_INP)
        if name_it:
            stream.codec_context.colorspace, stream.codec_context.color_range = colorspace, 1
            frame.colorspace, frame.color_range = colorspace, 1
        out.mux(stream.encode(frame))
        out.mux(stream.encode())


def player_view(path: Path) -> tuple[np.ndarray, int]:
    """The first frame as a player converts it (the matrix the stream names, else BT.709 from 1280 wide or
    577 high, BT.601 below; rounded, chroma interpolated), and the matrix the stream names (2: none)."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        named = int(frame.colorspace)
        matrix = named if named != 2 else (1 if frame.width >= 1280 or frame.height > 576 else 5)
        return frame.to_ndarray(format="bgr24", src_colorspace=matrix, interpolation=ACCURATE | Interpolation.FULL_CHR_H_INT), named


@pytest.mark.parametrize("size,named", [((1280, 720), True), ((1280, 720), False), ((360, 288), False)])
def test_colours_as_players_show_them(tmp_path, size, named):
    # A face frame as an HD camera clip naming BT.709, one that does not name it (players assume BT.709
    # for HD, BT.601 for SD): facelab decodes it as a player shows it, and its result names the matrix
    # it used, so a player shows the result in the source's colours (the background untouched).
    _, _, face = next(iter_frames(SAMPLE_DST))
    image = cv2.resize(face, size, interpolation=cv2.INTER_CUBIC)
    clip = tmp_path / "clip.mp4"
    write_yuv(image, clip, 1 if size[0] >= 1280 else 5, named)
    shown, _ = player_view(clip)
    _, _, decoded = next(iter_frames(clip))
    assert np.array_equal(decoded, shown)
    write_video([decoded], tmp_path / "result.mp4", Fraction(25), crf=0)
    result, result_names = player_view(tmp_path / "result.mp4")
    assert result_names == (1 if size[0] >= 1280 else 5)
    difference = result.astype(int) - shown
    assert np.abs(difference).mean() < 1.0 and np.abs(difference.reshape(-1, 3).mean(0)).max() < 0.2  # no colour cast


# --- HDR ------------------------------------------------------------------------------------------


def test_hdr_transfer_functions_meet_the_standards_anchor_points():
    from facelab.media import hdr

    # SMPTE ST 2084: 100 nits at 50.8 % signal, HDR reference white (203 nits) at 58 %, 1,000 nits at 75.2 %
    assert np.allclose(hdr.pq_inverse_eotf(np.array([100.0, 203.0, 1000.0])), [0.5081, 0.5807, 0.7518], atol=5e-4)
    assert np.allclose(hdr.pq_eotf(hdr.pq_inverse_eotf(np.array([0.1, 203.0, 4000.0]))), [0.1, 203.0, 4000.0], rtol=1e-6)
    # BT.2408: HDR reference white is 75 % HLG signal, shown at 203 nits on the 1,000-nit reference display
    grey = np.full((1, 1, 3), round(0.75 * 65280), np.uint16)
    assert abs(float(hdr.display_light(grey, hdr.HLG)[0, 0, 0]) - 1.0) < 0.01
    assert np.allclose(hdr.hlg_inverse_oetf(hdr.hlg_oetf(np.array([0.01, 1 / 12, 0.5, 1.0]))), [0.01, 1 / 12, 0.5, 1.0])
    # BT.2087: BT.709 white and primaries are inside BT.2020; the matrix keeps white white
    assert np.allclose(hdr.BT2020_TO_BT709.sum(1), 1.0, atol=1e-4)
    # highlights roll off: brighter stays brighter, nothing clips to white before the peak
    nits = np.array([50.0, 150.0, 203.0, 400.0, 1000.0])
    light = np.repeat((nits / hdr.REFERENCE_WHITE)[None, :, None], 3, axis=2).astype(np.float32)
    shown = hdr.to_sdr(light)[0, :, 0].astype(int)
    assert list(shown) == sorted(set(shown)) and shown[-1] == 255 and shown[2] < 250


@pytest.mark.parametrize("transfer", [18, 16], ids=["hlg", "pq"])
def test_hdr_clips_are_tone_mapped_as_an_sdr_screen_shows_them(tmp_path, transfer):
    from facelab.media import hdr

    # A phone's HDR clip (HLG on iPhones, PQ elsewhere): read as SDR it was flat and grey (mean abs 32 / 49 levels
    # off on this face); tone-mapped, the face under white comes back within a level or two, with no colour cast.
    ws = Workspace(tmp_path / "ws")
    ws.create()
    _, _, face = next(iter_frames(SAMPLE_DST))
    hdr.write_hdr_clip([face, face], ws.root / "data_dst.mp4", transfer)
    assert probe(ws.root / "data_dst.mp4").hdr and not probe(SAMPLE_DST).hdr
    with av.open(str(ws.root / "data_dst.mp4")) as c:
        as_sdr = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert np.abs(as_sdr.astype(int) - face).mean() > 25
    summary = frames_stage.run(ws, "dst")
    assert summary.counts["tone-mapped (HDR to SDR BT.709)"] == 2
    frame = cv2.imread(str(ws.frame_paths("dst")[0])).astype(int)
    assert np.abs(frame - face).mean() < 2.0 and np.abs((frame - face).reshape(-1, 3).mean(0)).max() < 0.5
    # frames written by a facelab that did not tone-map are not resumed into
    record = frames_stage._record(ws, "dst")
    saved = record.load()
    record.begin({k: v for k, v in saved.settings.items() if k != "tone_map"}, saved.done)
    record.close()
    with pytest.raises(WorkspaceError, match="--force"):
        frames_stage.run(ws, "dst")


def test_hevc_mov_probes_and_decodes():
    mov = shared("person_d_pyfeat_man/video/face_noface.mov")
    info = probe(mov)
    assert info.video_codec == "hevc" and (info.width, info.height) == (960, 540)
    assert info.frame_count == 169 and info.has_audio and info.audio_codec == "aac"
    n = 0
    for n, (_, _, image) in enumerate(iter_frames(mov), start=1):
        assert image.shape == (540, 960, 3)
    assert n == info.frame_count


# --- encode ------------------------------------------------------------------
def test_roundtrip_timing_and_tags(grid_roundtrip):
    info = probe(grid_roundtrip)
    assert (info.width, info.height, info.fps, info.frame_count) == (360, 288, Fraction(25), 75)
    assert info.video_codec == "h264"
    assert info.has_audio and info.audio_codec == "aac" and info.audio_sample_rate == 44100
    tags = read_video_tags(grid_roundtrip)
    for key, value in VIDEO_TAGS.items():  # 'encoder' included: libavformat overwrites it unless patched
        assert tags.get(key) == value, key
    with av.open(str(grid_roundtrip)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert times == pytest.approx([i / 25 for i in range(75)], abs=1e-6)


def test_roundtrip_pixels(grid_roundtrip):
    for (_, _, a), (_, _, b) in zip(iter_frames(SAMPLE_DST), iter_frames(grid_roundtrip), strict=True):
        assert psnr(a, b) > 35  # crf 18


def test_roundtrip_audio_duration_and_sync(grid_roundtrip):
    orig, rate = decode_audio(SAMPLE_DST)
    new, new_rate = decode_audio(grid_roundtrip)
    assert new_rate == rate
    assert abs(len(new) / rate - len(orig) / rate) < 0.1
    # Lag of the best cross-correlation over the first 2 s: the speech must not move.
    n = 2 * rate
    a, b = orig[:n] - orig[:n].mean(), new[:n] - new[:n].mean()
    corr = np.fft.irfft(np.fft.rfft(a, 2 * n) * np.conj(np.fft.rfft(b, 2 * n)))
    lag = int(np.argmax(corr))
    lag = lag - 2 * n if lag > n else lag
    assert abs(lag) <= rate // 1000  # within 1 ms


def test_audio_with_late_start_stays_in_sync(tmp_path):
    """The HEVC .mov's AAC track starts 2.43 s after its video: the gap must be kept."""
    mov = shared("person_d_pyfeat_man/video/face_noface.mov")
    out = tmp_path / "late.mp4"
    frames = (np.zeros((64, 64, 3), np.uint8) for _ in range(probe(mov).frame_count))
    write_video(frames, out, probe(mov).fps, audio_from=mov)
    orig, rate = decode_audio(mov)
    new, _ = decode_audio(out)
    lead = int(round(2.43 * rate))
    assert np.abs(new[: lead - 2000]).max() < 1e-4  # silence before the audio starts
    seg = orig[rate : 2 * rate]
    window = new[lead : lead + 3 * rate]
    corr = np.correlate(window, seg, mode="valid")
    assert abs(int(np.argmax(corr)) - rate) <= rate // 1000


def test_odd_size_padded(tmp_path):
    _, _, frame = next(iter_frames(SAMPLE_DST))
    odd = np.ascontiguousarray(frame[:101, :75])
    out = tmp_path / "odd.mp4"
    assert write_video([odd] * 5, out, Fraction(30000, 1001)) == 5
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.fps) == (76, 102, 5, Fraction(30000, 1001))
    assert not info.has_audio
    _, _, back = next(iter_frames(out))
    assert psnr(back[:101, :75], odd) > 30


def test_write_video_bad_frames(tmp_path):
    _, _, frame = next(iter_frames(SAMPLE_DST))
    out = tmp_path / "bad.mp4"
    with pytest.raises(MediaError, match="first frame"):
        write_video([frame, frame[:100]], out, Fraction(25))
    with pytest.raises(MediaError, match="uint8"):
        write_video([frame.astype(np.float32)], out, Fraction(25))
    with pytest.raises(MediaError, match="no frames"):
        write_video([], out, Fraction(25))
    with pytest.raises(SettingsError):
        write_video([frame], out, Fraction(25), crf=80)
    with pytest.raises(SettingsError):
        write_video([frame], out, Fraction(25), bitrate="fast")
    assert list(tmp_path.iterdir()) == []  # nothing under the real name, no temporary left


def test_write_video_interrupted_leaves_no_file(tmp_path):
    def frames():
        for i, (_, _, image) in enumerate(iter_frames(SAMPLE_DST)):
            if i == 10:
                raise KeyboardInterrupt
            yield image

    out = tmp_path / "result.mp4"
    with pytest.raises(KeyboardInterrupt):
        write_video(frames(), out, Fraction(25), audio_from=SAMPLE_DST)
    assert list(tmp_path.iterdir()) == []


def test_write_video_bitrate(tmp_path):
    out = tmp_path / "low.mp4"
    write_video((img for _, _, img in iter_frames(SAMPLE_DST)), out, Fraction(25), bitrate="200k")
    with av.open(str(out)) as c:
        rate = c.streams.video[0].bit_rate
    assert rate < 400_000


# --- frames step -------------------------------------------------------------
def test_frames_settings_validation():
    with pytest.raises(SettingsError, match="frames.format"):
        frames_stage.FramesSettings(format="bmp")
    with pytest.raises(SettingsError, match="frames.fps"):
        frames_stage.FramesSettings(fps=0)


def test_frames_stage_dst(tmp_path):
    ws = make_workspace(tmp_path)
    s = frames_stage.run(ws, "dst", frames_stage.FramesSettings(fps=5))
    assert any("ignored" in w for w in s.warnings)  # dst is always full rate
    frames = ws.frame_paths("dst")
    assert [p.name for p in frames] == [f"{i:05d}.png" for i in range(1, 76)]
    assert s.counts["frames"] == 75 and s.counts["written"] == 75
    ref = next(iter_frames(SAMPLE_DST))[2]
    assert np.array_equal(cv2.imread(str(frames[0])), ref)  # png is lossless
    record = frames_stage.read_record(ws, "dst")
    assert record["completed"] and record["frame_count"] == 75 and record["fps"] == "25/1"
    assert (record["width"], record["height"], record["format"], record["video"]) == (360, 288, "png", "data_dst.mpg")
    assert frames_stage.frame_timing(ws, "dst") == (Fraction(25), 75)

    # Re-run: nothing to do.
    mtime = frames[40].stat().st_mtime_ns
    s = frames_stage.run(ws, "dst")
    assert s.counts.get("skipped (already done, --force redoes)") == 75 and frames[40].stat().st_mtime_ns == mtime

    # Interrupted run: some frames missing, record not completed -> only those are written.
    for p in frames[10:20]:
        p.unlink()
    step_record = frames_stage._record(ws, "dst")
    step_record.begin(step_record.load().settings)  # as the killed run left it: begun, not finished
    s = frames_stage.run(ws, "dst")
    assert (s.counts["written"], s.counts["resumed"], s.counts["frames"]) == (10, 65, 75)
    assert len(ws.frame_paths("dst")) == 75 and frames[40].stat().st_mtime_ns == mtime
    assert frames_stage.read_record(ws, "dst")["completed"]

    # force: everything redone.
    s = frames_stage.run(ws, "dst", force=True)
    assert s.counts["written"] == 75 and len(ws.frame_paths("dst")) == 75


def test_frames_stage_src_subsampled_jpg(tmp_path):
    ws = make_workspace(tmp_path, src=SAMPLE_DST)
    s = frames_stage.run(ws, "src", frames_stage.FramesSettings(fps=5, format="jpg"))
    assert s.counts["frames"] == 15 and not s.warnings
    assert [p.name for p in ws.frame_paths("src")] == [f"{i:05d}.jpg" for i in range(1, 16)]
    assert frames_stage.frame_timing(ws, "src") == (Fraction(5), 15)
    # Other settings over existing frames: refused without force.
    with pytest.raises(WorkspaceError, match="another video or other settings") as e:
        frames_stage.run(ws, "src", frames_stage.FramesSettings(fps=10, format="jpg"))
    assert "--force" in e.value.hint


def test_frames_stage_no_video(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    with pytest.raises(WorkspaceError):
        frames_stage.run(ws, "dst")


def test_frame_timing_without_record(tmp_path):
    ws = make_workspace(tmp_path)
    assert frames_stage.frame_timing(ws, "dst") == (Fraction(25), 75)


# --- video step --------------------------------------------------------------
def test_video_stage_end_to_end(tmp_path, dst_frames, marker):
    ws = make_workspace(tmp_path)
    frames_stage.run(ws, "dst")
    with pytest.raises(WorkspaceError, match="merged") as e:
        video_stage.run(ws, marker=marker)
    assert "facelab merge" in e.value.hint
    for p in dst_frames:
        shutil.copy(p, ws.merged_dir / p.name)

    s = video_stage.run(ws, marker=marker)
    out = ws.result_path("mp4")
    assert s.counts["frames"] == 75 and not s.warnings and s.outputs == [str(out)]
    info = probe(out)
    assert (info.frame_count, info.fps, info.width, info.height) == (75, Fraction(25), 360, 288)
    assert info.has_audio and info.audio_codec == "aac"
    assert read_video_tags(out)["encoder"] == VIDEO_TAGS["encoder"]
    assert read_video_tags(out)["digital_source_type"] == VIDEO_TAGS["digital_source_type"]

    s = video_stage.run(ws, marker=marker)
    assert s.counts.get("skipped (up to date, --force redoes)", 0) > 0

    (ws.merged_dir / dst_frames[-1].name).unlink()
    s = video_stage.run(ws, force=True, marker=marker)
    assert s.counts["frames"] == 74 and any("74 merged frames" in w for w in s.warnings)
    assert probe(out).frame_count == 74


def test_video_settings_validation():
    with pytest.raises(SettingsError, match="crf"):
        video_stage.VideoSettings(crf=99)
    with pytest.raises(SettingsError, match="bitrate"):
        video_stage.VideoSettings(bitrate="lots")
