"""Video tools on real footage: VFR timing through frames -> video, `cut`, `denoise`, video formats."""

from __future__ import annotations

import hashlib
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facelab.errors import SettingsError, WorkspaceError
from facelab.fileio import read_image
from facelab.media import iter_frames, read_timecode, shift_timecode
from facelab.stages import cut as cut_stage
from facelab.stages import denoise as denoise_stage
from facelab.stages import frames as frames_stage
from facelab.stages import video as video_stage
from facelab.workspace import Workspace
from tests.conftest import SAMPLE_DST, shared


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = s.start_time or 0
        return [float((f.pts - start) * s.time_base) for f in c.decode(s)]


def audio_mono(path: Path, track: int = 0, rate: int = 16000) -> np.ndarray:
    with av.open(str(path)) as c:
        res = av.AudioResampler(format="flt", layout="mono", rate=rate)
        out = [f.to_ndarray().reshape(-1) for fr in c.decode(c.streams.audio[track]) for f in res.resample(fr)]
    return np.concatenate(out)


def psnr(a, b) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def new_ws(tmp_path: Path, video: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(video, ws.root / f"data_dst{video.suffix}")
    return ws


# --- variable frame rate -----------------------------------------------------------
def test_vfr_timestamps_survive_frames_and_video(tmp_path, marker):
    src = shared("person_d_pyfeat_man/video/noface_face.mov")
    ws = new_ws(tmp_path, src)
    frames_stage.run(ws, "dst", frames_stage.FramesSettings(format="jpg"))
    record = frames_stage.read_record(ws, "dst")
    truth = frame_times(src)
    assert record["vfr"] is True and len(record["timestamps"]) == len(truth) == 169
    assert np.allclose(record["timestamps"], truth, atol=1e-5)
    # the merged frames: the extracted ones, as PNG (the merge step's output format)
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        cv2.imwrite(str(ws.merged_dir / f"{p.stem}.png"), cv2.resize(cv2.imread(str(p)), (320, 180)))
    s = video_stage.run(ws, marker=marker)
    assert s.counts["variable-rate frames"] == 169
    got = frame_times(ws.result_path("mp4"))
    assert len(got) == 169
    # each result frame at its source time, within a small fraction of a frame (~37 ms here)
    assert np.max(np.abs(np.array(got) - (np.array(truth) - truth[0]))) < 0.002
    # a constant-rate grid would be off by far more than a frame somewhere: the check can fail
    grid = np.arange(169) / float(Fraction(record["fps"]))
    assert np.max(np.abs(grid - np.array(truth))) > 0.04


# --- cut ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_track(tmp_path_factory) -> Path:
    """The GRID clip as H.264 with two AAC tracks: 0 = its own speech, 1 = another speaker (lbax4n)."""
    other = shared("grid_av/lbax4n.mpg")
    out = tmp_path_factory.mktemp("cut") / "talk.mp4"
    rate = 16000
    tracks = [audio_mono(SAMPLE_DST, rate=rate), audio_mono(other, rate=rate)]
    with av.open(str(SAMPLE_DST)) as c, av.open(str(out), "w") as o:
        v = o.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 360, 288, "yuv420p"
        auds = []
        for _ in tracks:
            a = o.add_stream("aac", rate=rate)
            a.layout = "mono"
            auds.append(a)
        for i, f in enumerate(c.decode(video=0)):
            nf = av.VideoFrame.from_ndarray(f.to_ndarray(format="yuv420p"), format="yuv420p")
            nf.pts, nf.time_base = i, Fraction(1, 25)
            o.mux(v.encode(nf))
        o.mux(v.encode(None))
        for a, samples in zip(auds, tracks):
            for k in range(0, len(samples), 1024):
                af = av.AudioFrame.from_ndarray(samples[None, k:k + 1024].copy(), format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = rate, k, Fraction(1, rate)
                o.mux(a.encode(af))
            o.mux(a.encode(None))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("track", [0, 1])
def test_cut_keeps_range_and_chosen_track(two_track, tmp_path, track):
    video = tmp_path / "talk.mp4"
    shutil.copy(two_track, video)
    before = hashlib.sha256(video.read_bytes()).hexdigest()
    s = cut_stage.run(video, cut_stage.CutSettings("00:00:00.600", "00:00:02.600", audio_track=track, bitrate="4"))
    out = tmp_path / "talk_cut.mp4"
    assert s.outputs == [str(out)] and out.is_file()
    assert hashlib.sha256(video.read_bytes()).hexdigest() == before
    times = frame_times(out)
    assert len(times) == 50 and abs(times[-1] + 0.04 - 2.0) < 1e-6
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        assert c.duration / av.time_base == pytest.approx(2.0, abs=0.1)
    # the frames are the source's frames 15..64 (frame-exact start)
    with av.open(str(video)) as c:
        src15 = next(f for i, f in enumerate(c.decode(video=0)) if i == 15).to_ndarray(format="bgr24")
    with av.open(str(out)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert psnr(first, src15) > 30
    got = audio_mono(out)
    segs = [audio_mono(video, t)[int(0.6 * 16000):int(2.6 * 16000)] for t in (0, 1)]
    c_chosen, c_other = _corr(got, segs[track]), _corr(got, segs[1 - track])
    assert c_chosen > 0.8 and c_other < 0.3, (c_chosen, c_other)


# --- timecode ----------------------------------------------------------------------
@pytest.mark.parametrize("start,frames,fps,expected", [
    ("01:00:00:00", 25, Fraction(25), "01:00:01:00"),
    ("01:00:00:00", 24, Fraction(25), "01:00:00:24"),
    ("23:59:59:24", 1, Fraction(25), "00:00:00:00"),  # wraps at 24 hours
    ("10:00:00:00", 24 * 3600, Fraction(24000, 1001), "11:00:00:00"),  # 23.976 counts at 24
    # drop-frame (29.97): numbers 0 and 1 are skipped each minute except every tenth
    ("00:00:59;29", 1, Fraction(30000, 1001), "00:01:00;02"),
    ("00:09:59;29", 1, Fraction(30000, 1001), "00:10:00;00"),
    ("00:00:00;00", 17982, Fraction(30000, 1001), "00:10:00;00"),
    ("00:00:00;00", 107892, Fraction(30000, 1001), "01:00:00;00"),
    ("00:01:00;02", -1, Fraction(30000, 1001), "00:00:59;29"),
    ("00:00:59;59", 1, Fraction(60000, 1001), "00:01:00;04"),  # 59.94 skips four
])
def test_shift_timecode(start, frames, fps, expected):
    assert shift_timecode(start, frames, fps) == expected


def test_timecode_follows_the_shot_through_cut_and_video(tmp_path, marker):
    # A camera clip starting at 10:00:00:00: cut from 1 s, then swapped: the result and its mask video
    # carry the cut's first-frame timecode (10:00:01:00), so they drop back into the edit in place.
    source = tmp_path / "take.mov"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        stream.metadata["timecode"] = "10:00:00:00"
        for _, _, image in iter_frames(SAMPLE_DST):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")))
        out.mux(stream.encode())
    assert read_timecode(source) == "10:00:00:00" and read_timecode(SAMPLE_DST) is None
    cut_stage.run(source, cut_stage.CutSettings("1", "2.5"))
    assert read_timecode(tmp_path / "take_cut.mov") == "10:00:01:00"

    ws = new_ws(tmp_path, tmp_path / "take_cut.mov")
    frames_stage.run(ws, "dst")
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    ws.merged_mask_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        shutil.copy(p, ws.merged_dir / p.name)
        cv2.imwrite(str(ws.merged_mask_dir / p.name), cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY))
    video_stage.run(ws, video_stage.VideoSettings(mask_video=True), marker=marker)
    assert read_timecode(ws.result_path("mp4")) == "10:00:01:00"
    assert read_timecode(ws.result_path("mp4").with_name("result_mask.mp4")) == "10:00:01:00"


def test_result_keeps_every_audio_track_and_surround(two_track, tmp_path, marker):
    # A dst with two audio tracks (its speech; another speaker, tagged as a second language) and one
    # with 5.1 sound (the speech on the centre channel): the result keeps both tracks, in order, with
    # their languages, and the six channels (before: the first track only, downmixed to stereo).
    with av.open(str(two_track)) as c, av.open(str(tmp_path / "tagged.mkv"), "w") as o:
        video_in = c.streams.video[0]
        streams = {video_in.index: o.add_stream_from_template(video_in)}
        for a, lang in zip(c.streams.audio, ("eng", "fra")):
            streams[a.index] = o.add_stream_from_template(a)
            streams[a.index].metadata["language"] = lang
        for packet in c.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    ws = new_ws(tmp_path, tmp_path / "tagged.mkv")
    frames_stage.run(ws, "dst")
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        shutil.copy(p, ws.merged_dir / p.name)
    video_stage.run(ws, marker=marker)
    result = ws.result_path("mp4")
    with av.open(str(result)) as c:
        assert [a.metadata.get("language") for a in c.streams.audio] == ["eng", "fra"]
    for track in (0, 1):
        expected = audio_mono(two_track, track)[: len(audio_mono(result, track))]
        assert _corr(audio_mono(result, track), expected) > 0.8
        assert _corr(audio_mono(result, track), audio_mono(two_track, 1 - track)) < 0.3

    speech, rate = audio_mono(SAMPLE_DST, rate=48000), 48000
    surround = np.zeros((6, len(speech)), np.float32)
    surround[2] = speech  # 5.1: FL FR FC LFE BL BR
    clip = tmp_path / "surround.mp4"
    with av.open(str(SAMPLE_DST)) as c, av.open(str(clip), "w") as o:
        v = o.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 360, 288, "yuv420p"
        a = o.add_stream("aac", rate=rate)
        a.layout = "5.1"
        for i, f in enumerate(c.decode(video=0)):
            nf = av.VideoFrame.from_ndarray(f.to_ndarray(format="yuv420p"), format="yuv420p")
            nf.pts, nf.time_base = i, Fraction(1, 25)
            o.mux(v.encode(nf))
        o.mux(v.encode(None))
        for k in range(0, surround.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(surround[:, k:k + 1024]), format="fltp", layout="5.1")
            af.sample_rate, af.pts, af.time_base = rate, k, Fraction(1, rate)
            o.mux(a.encode(af))
        o.mux(a.encode(None))
    ws = new_ws(tmp_path / "surround", clip)
    frames_stage.run(ws, "dst")
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        shutil.copy(p, ws.merged_dir / p.name)
    video_stage.run(ws, marker=marker)
    with av.open(str(ws.result_path("mp4"))) as c:
        assert c.streams.audio[0].codec_context.channels == 6
        channels = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    energy = (channels**2).mean(1)
    assert energy.argmax() == 2 and energy[2] > 20 * np.delete(energy, 2).max()


@pytest.mark.parametrize("fps,rate", [(25, Fraction(25)), (24, Fraction(24)), (12.5, Fraction(25, 2)), (50, Fraction(50)),
                                      (23.976, Fraction(24000, 1001)), (29.97, Fraction(30000, 1001)),
                                      (59.94, Fraction(60000, 1001)), (14.985, Fraction(15000, 1001))])
def test_video_fps_reads_ntsc_rates(fps, rate):
    assert video_stage._rate(fps) == rate


def test_video_of_an_image_sequence_dst(tmp_path, marker, merged_ws):
    # A VFX plate given as 16-bit TIFF images (no data_dst video): the frames are found and read as 8 bits;
    # the result needs --fps, and says so; with it the result has the frames at that rate (29.97 =
    # 30000/1001). With a dst video --fps is ignored, saying why.
    ws = Workspace(tmp_path / "ws")
    ws.create()
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(sorted(shared("person_a_franck/frames").glob("*.jpg"))[:12]):
        image = cv2.imread(str(p))
        cv2.imwrite(str(ws.frames_dir("dst") / f"plate.{1001 + i}.tif"), image.astype(np.uint16) * 257)  # 16-bit TIFF
        cv2.imwrite(str(ws.merged_dir / f"plate.{1001 + i}.png"), image)
    frames = ws.frame_paths("dst")
    assert len(frames) == 12 and np.array_equal(read_image(frames[0]), cv2.imread(str(sorted(shared("person_a_franck/frames").glob("*.jpg"))[0])))
    with pytest.raises(WorkspaceError, match="no video to take their frame rate") as e:
        video_stage.run(ws, marker=marker)
    assert "--fps" in e.value.hint
    summary = video_stage.run(ws, video_stage.VideoSettings(fps=29.97), marker=marker)
    with av.open(str(ws.result_path("mp4"))) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001) and c.streams.video[0].frames == 12
    assert any("no audio" in w for w in summary.warnings)
    summary = video_stage.run(merged_ws, video_stage.VideoSettings(fps=30), force=True, marker=marker)
    assert any("--fps 30 ignored" in w for w in summary.warnings) and summary.counts["fps"] == 25


def test_cut_keeps_every_audio_track_when_asked(two_track, tmp_path):
    video = tmp_path / "talk.mp4"
    shutil.copy(two_track, video)
    s = cut_stage.run(video, cut_stage.CutSettings("0.6", "2.6", all_audio=True))
    assert s.counts["audio_track"] == "all"
    out = tmp_path / "talk_cut.mp4"
    for track in (0, 1):
        got = audio_mono(out, track)
        segs = [audio_mono(video, t)[int(0.6 * 16000):int(2.6 * 16000)] for t in (0, 1)]
        assert _corr(got, segs[track]) > 0.8 and _corr(got, segs[1 - track]) < 0.3


def test_cut_errors(two_track, tmp_path):
    video = tmp_path / "talk.mp4"
    shutil.copy(two_track, video)
    for a, b in (("00:00:02.000", "00:00:01.000"), ("1:2:3:4", "5"), ("00:00:09.000", "00:00:10.000"), ("00:61:00", "00:62:00")):
        with pytest.raises(SettingsError):
            cut_stage.run(video, cut_stage.CutSettings(a, b))
    with pytest.raises(SettingsError, match=r"audio tracks: 0: aac.*1: aac"):
        cut_stage.run(video, cut_stage.CutSettings("0", "1", audio_track=2))
    assert not (tmp_path / "talk_cut.mp4").exists()
    assert cut_stage.parse_time("01:02:03.250") == 3723.25


# --- denoise -----------------------------------------------------------------------
def test_denoise_improves_psnr_keeps_edges_and_resumes(tmp_path, dst_frames):
    ws = new_ws(tmp_path, SAMPLE_DST)
    rng = np.random.default_rng(0)
    clean = [cv2.imread(str(p)) for p in dst_frames[:10]]
    for i, im in enumerate(clean):
        noisy = np.clip(im + rng.normal(0, 12, im.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(ws.frames_dir("dst") / f"{i + 1:05d}.png"), noisy)
    noisy = [cv2.imread(str(p)) for p in ws.frame_paths("dst")]
    s = denoise_stage.run(ws)
    assert s.counts["denoised"] == 10
    out = [cv2.imread(str(p)) for p in ws.frame_paths("dst")]
    before = np.mean([psnr(n, c) for n, c in zip(noisy, clean)])
    after = np.mean([psnr(o, c) for o, c in zip(out, clean)])
    assert after > before + 4, (before, after)

    def grad_energy(im):
        g = cv2.cvtColor(cv2.GaussianBlur(im, (3, 3), 0), cv2.COLOR_BGR2GRAY).astype(np.float32)
        return float(np.mean(cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2))

    ratio = np.mean([grad_energy(o) / grad_energy(c) for o, c in zip(out, clean)])
    assert ratio > 0.6, ratio
    # rerun skips; another factor refuses; resume continues after the recorded prefix
    mtimes = [p.stat().st_mtime_ns for p in ws.frame_paths("dst")]
    assert "skipped (already done, --force redoes)" in denoise_stage.run(ws).counts
    assert [p.stat().st_mtime_ns for p in ws.frame_paths("dst")] == mtimes
    with pytest.raises(WorkspaceError, match="already denoised"):
        denoise_stage.run(ws, denoise_stage.DenoiseSettings(factor=9))
    step_record = denoise_stage._record(ws)  # as a run killed after 7 frames leaves it
    step_record.begin(step_record.load().settings, [p.name for p in ws.frame_paths("dst")][:7])
    s = denoise_stage.run(ws)
    assert s.counts["denoised"] == 3 and s.counts["resumed_after"] == 7
    assert [p.stat().st_mtime_ns for p in ws.frame_paths("dst")][:7] == mtimes[:7]
    with pytest.raises(SettingsError):
        denoise_stage.DenoiseSettings(factor=21)


# --- video formats -----------------------------------------------------------------
@pytest.fixture(scope="module")
def merged_ws(tmp_path_factory) -> Workspace:
    """GRID clip as dst; merged = its frames; merged_mask = a real-content mask (bright skin areas)."""
    ws = new_ws(tmp_path_factory.mktemp("fmt"), SAMPLE_DST)
    frames_stage.run(ws, "dst")
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    ws.merged_mask_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        im = cv2.imread(str(p))
        shutil.copy(p, ws.merged_dir / p.name)
        mask = cv2.GaussianBlur(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), (9, 9), 0)
        cv2.imwrite(str(ws.merged_mask_dir / p.name), mask)
    return ws


def decode_all(path: Path, fmt: str) -> tuple[list[np.ndarray], Fraction, int, dict]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format=fmt) for f in c.decode(s)]
        return frames, s.average_rate, len(c.streams.audio), dict(c.metadata)


@pytest.mark.parametrize("fmt", ["mp4", "avi", "mp4-lossless", "mov-alpha"])
def test_video_formats(merged_ws, fmt, marker):
    ws = merged_ws
    s = video_stage.run(ws, video_stage.VideoSettings(format=fmt, mask_video=True), force=True, marker=marker)
    out, mask_out = Path(s.outputs[0]), Path(s.outputs[1])
    assert out.suffix == {"mp4": ".mp4", "avi": ".avi", "mp4-lossless": ".mp4", "mov-alpha": ".mov"}[fmt]
    from facelab.provenance.watermark import detect_video, embed

    # these "merged" frames are plain copies of the dst frames: the video step adds the watermark they lack
    assert s.counts["frames marked now"] == 75
    merged = [embed(cv2.imread(str(p))) for p in video_stage.merged_frames(ws)]
    masks = [cv2.imread(str(ws.merged_mask_dir / p.name), cv2.IMREAD_GRAYSCALE) for p in video_stage.merged_frames(ws)]
    frames, rate, n_audio, tags = decode_all(out, "bgra" if fmt == "mov-alpha" else "bgr24")
    assert len(frames) == 75 and rate == 25 and n_audio == 1
    assert detect_video(out).found
    from facelab.provenance.manifest import read_manifest

    report = read_manifest(out)
    if fmt == "avi":  # AVI has no place for a manifest: said, not hidden
        assert not report.found and any("C2PA" in w for w in s.warnings)
    else:
        assert report.valid and report.synthetic
    assert "Synthetic media" in tags.get("comment", "")
    if fmt == "mp4-lossless":
        assert all(np.array_equal(a, b) for a, b in zip(frames, merged))
    elif fmt == "mov-alpha":
        assert all(np.array_equal(a[..., 3], m) for a, m in zip(frames, masks))
        assert all(np.array_equal(a[..., :3], b) for a, b in zip(frames, merged))
    else:
        assert np.mean([psnr(a, b) for a, b in zip(frames, merged)]) > 30
    mframes, mrate, m_audio, _ = decode_all(mask_out, "gray")
    assert len(mframes) == 75 and mrate == 25 and m_audio == 0
    if fmt in ("mp4-lossless", "mov-alpha"):
        assert all(np.array_equal(a, m) for a, m in zip(mframes, masks))
    # up to date: skipped; another format is not mistaken for this one
    assert "skipped (up to date, --force redoes)" in video_stage.run(ws, video_stage.VideoSettings(format=fmt, mask_video=True), marker=marker).counts
