"""Video probing, streaming decode and H.264 encode (PyAV).

Frames cross this module's boundary as ``(H, W, 3) uint8`` BGR arrays. Decoding
is streaming: at most two decoded frames are alive at a time, so memory stays
flat however long the video is.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from math import gcd
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from facelab.errors import MediaError, SettingsError
from facelab.media import hdr
from facelab.media.audio import AudioTrack, count_audio_tracks, mux_audio
from facelab.media.mp4tags import set_mp4_tag

__all__ = ["CODECS", "Codec", "VideoInfo", "is_vfr", "iter_frames", "parse_bitrate", "probe", "read_video_tags", "write_video"]

_NOT_VIDEO_HINT = "check that the file is a complete video (mp4, mkv, avi, mov, mpg, ...) and plays in a media player"

# Output container format by file suffix.
_OUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".mpg": "mpeg", ".mpeg": "mpeg"}


@dataclass(frozen=True)
class Codec:
    """A video encoder setting: ``encoder`` name, the pixel format fed to it, whether it is
    lossless (no CRF/bitrate), whether frames carry alpha (``(H, W, 4)`` BGRA input),
    the containers it may go in, and whether it needs a constant frame rate."""

    encoder: str
    pix_fmt: str
    lossless: bool = False
    alpha: bool = False
    containers: tuple[str, ...] = ("mp4", "mov", "matroska")
    cfr_only: bool = False


CODECS = {
    "h264": Codec("libx264", "yuv420p"),
    # RGB H.264 at qp 0: decodes to exactly the input pixels.
    "h264-lossless": Codec("libx264rgb", "bgr24", lossless=True, containers=("mp4", "mov", "matroska", "avi")),
    "mpeg4": Codec("mpeg4", "yuv420p", containers=("avi", "mp4", "mov", "matroska")),
    "mpeg1": Codec("mpeg1video", "yuv420p", containers=("mpeg",), cfr_only=True),
    # QuickTime Animation (RLE): lossless RGB, or ARGB with alpha.
    "qtrle": Codec("qtrle", "rgb24", lossless=True, containers=("mov",)),
    "qtrle-alpha": Codec("qtrle", "argb", lossless=True, alpha=True, containers=("mov",)),
}
# Default codec and audio codec per container.
_DEFAULT_CODEC = {"mp4": "h264", "mov": "h264", "matroska": "h264", "avi": "mpeg4", "mpeg": "mpeg1"}
_AUDIO_CODEC = {"mp4": "aac", "mov": "aac", "matroska": "aac", "avi": "aac", "mpeg": "mp2"}
# Frame rates MPEG-1 video can signal.
_MPEG1_RATES = (Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50),
                Fraction(60000, 1001), Fraction(60))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found in a video file.

    ``fps`` is the video stream's average frame rate; ``frame_count`` comes from
    the container or, where it does not say (MPEG-PS, some AVI/MKV), from
    decoding every frame. ``duration`` is in seconds (container duration, else
    ``frame_count / fps``). The audio fields describe the first audio stream.
    ``width`` and ``height`` are the size players show, in square pixels (a stored
    frame stretched by its pixel aspect and turned by its display matrix, as
    :func:`iter_frames` returns it). ``hdr``: the video is coded
    with a PQ or HLG transfer (HDR); :func:`iter_frames` tone-maps it to SDR (:mod:`facelab.media.hdr`). ``interlaced``:
    its first frame is, so :func:`iter_frames` deinterlaces it.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int
    duration: float
    has_audio: bool
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    video_codec: str = ""
    hdr: bool = False
    interlaced: bool = False


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"video file {path} does not exist", "check the path (and the file name's extension)")
    if not path.is_file():
        raise MediaError(f"{path} is not a file", "give the path of a video file")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise MediaError(f"{path} is not a readable video ({e.strerror or e})", _NOT_VIDEO_HINT) from e


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "no streams"
        raise MediaError(f"{path} has no video stream (found: {kinds})", "give a file with a video track")
    return container.streams.video[0]


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate.numerator, rate.denominator)
    return Fraction(25)


def probe(path: str | Path, count_frames: bool = True) -> VideoInfo:
    """Describe a video file.

    Args:
        path: a video file.
        count_frames: when the container does not store the frame count, decode
            the whole video to count it (exact). With ``False`` the count is then
            estimated as ``round(duration * fps)``.

    Raises:
        MediaError: missing file, not a video, corrupt, or no video stream.
    """
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = _stream_fps(stream)
        duration = 0.0
        if container.duration:
            duration = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        count = int(stream.frames or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
        width, height = _square_size(width, height, _pixel_aspect(stream))
        first = _first_frame(container, stream)
        transform = None if first is None else _display_transform(first)
        if transform is not None and transform[0]:  # shown as players show it (a phone's portrait clip)
            width, height = height, width
        is_hdr = first is not None and hdr.is_hdr(first)
        interlaced = first is not None and bool(first.interlaced_frame)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_codec = audio.codec_context.name if audio is not None else None
        audio_rate = int(audio.codec_context.sample_rate) if audio is not None else None
        video_codec = stream.codec_context.name
    if count <= 0:
        if count_frames:
            count = sum(1 for _ in _decode(path))
        else:
            count = round(duration * fps)
    if not duration:
        duration = float(count / fps)
    if width <= 0 or height <= 0:
        raise MediaError(f"{path}: the video stream has no frame size", _NOT_VIDEO_HINT)
    return VideoInfo(path, width, height, fps, count, duration, audio is not None, audio_codec, audio_rate, video_codec, is_hdr, interlaced)


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> av.VideoFrame | None:
    try:
        return next(container.decode(stream), None)
    except av.FFmpegError:
        return None


def _deinterlaced(frames: Iterator[av.VideoFrame], stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """``frames``, with interlaced ones deinterlaced (FFmpeg's bwdif, one frame out per frame in, so the
    count and times stay) when the first is interlaced (broadcast and DV footage); else as they come.

    Interlaced frames hold two half-frames from moments 1/50 s apart: a moving face shows combs, which
    the detector, the model and the merge would all take for the face.
    """
    first = next(frames, None)
    if first is None:
        return
    if not first.interlaced_frame:
        yield first
        yield from frames
        return
    graph = av.filter.Graph()
    source, sink = graph.add_buffer(template=stream), graph.add("buffersink")
    deinterlace = graph.add("bwdif", mode="send_frame", parity="auto", deint="interlaced")
    source.link_to(deinterlace)
    deinterlace.link_to(sink)
    graph.configure()
    for frame in itertools.chain([first], frames, [None]):  # None flushes the last frame out
        graph.push(frame)
        while True:
            try:
                yield graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break


def _decode(path: Path, seek_to: float = 0.0) -> Iterator[tuple[int, Fraction, Callable[[], np.ndarray]]]:
    """Yield ``(index, time, image)`` of every decoded frame, ``image()`` converting it (to BGR as players
    show it: :func:`_to_bgr`) only when called; errors become MediaError.

    With ``seek_to`` > 0 decoding starts at a key frame at or before that time (seconds)
    and ``index`` is ``-1`` (unknown) for every frame; times stay exact.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        sar = _pixel_aspect(stream)
        start = stream.start_time or 0
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator) if stream.time_base else None
        seeked = False
        if seek_to > 1 and tb is not None:
            try:
                container.seek(int(Fraction(seek_to - 1).limit_denominator(1000) / tb) + start, stream=stream, backward=True)
                seeked = True
            except av.FFmpegError:
                container.seek(0)
        frames = _deinterlaced(container.decode(stream), stream)
        index = 0
        transform: tuple[bool, bool, bool] | None = None  # the display matrix, read off the first frame
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as e:
                raise MediaError(
                    f"{path}: decoding failed at frame {index} ({e.strerror or e})",
                    "the file is corrupt from there on; re-download or re-encode it (e.g. `ffmpeg -i in -c:v libx264 out.mp4`)",
                ) from e
            if frame.pts is not None and tb is not None:
                t = frame.pts * (Fraction(frame.time_base) if frame.time_base else tb) - start * tb
            elif seeked:
                raise MediaError(f"{path}: frames have no timestamps after seeking", "re-encode the video (e.g. to mp4)")
            else:
                t = index / fps
            if seeked and index == 0 and t > seek_to:  # the seek overshot: decode from the start instead
                yield from _decode(path)
                return
            if index == 0:
                # Once a stream: reading a frame's side data ties it in a reference cycle, so every frame read
                # that way stayed in memory until Python's cycle collector ran (180 MB over 700 small frames).
                transform = _display_transform(frame)
            yield (-1 if seeked else index), t, partial(_to_bgr, frame, sar, transform)
            index += 1


def iter_frames_between(path: str | Path, start: float, end: float) -> Iterator[tuple[float, np.ndarray]]:
    """Decode the frames whose time ``t`` (seconds from the stream start) has ``start <= t < end``.

    Times are compared to the microsecond. Seeks near ``start`` first, so cutting late in a long video does not decode all of it.

    Yields:
        ``(t, image)`` with ``image`` ``(H, W, 3) uint8`` BGR.
    """
    path = _check_file(path)
    eps = 1e-6  # times are compared to the microsecond, so 2.6 includes a frame at 13/5 s
    for _, t, image in _decode(path, seek_to=float(start)):
        if t >= end - eps:
            return
        if t >= start - eps:
            yield float(t), image()


def is_vfr(timestamps: list[float], fps: Fraction | float, tolerance: float = 0.25) -> bool:
    """Whether frame times stray from the regular grid ``t0 + i / fps`` by more than
    ``tolerance`` of a frame interval (i.e. the video has a variable frame rate)."""
    if len(timestamps) < 2:
        return False
    t = np.asarray(timestamps, dtype=np.float64)
    grid = t[0] + np.arange(len(t)) / float(fps)
    return bool(np.max(np.abs(t - grid)) > tolerance / float(fps))


def _display_transform(frame: av.VideoFrame) -> tuple[bool, bool, bool] | None:
    """How to turn a decoded frame the way players show it: ``(transpose, flip_columns, flip_rows)``
    from the frame's display matrix (phones store portrait video landscape with a 90 degree
    matrix), or ``None`` when it has none or it is not a quarter turn or mirror.

    The matrix maps a stored pixel ``(x, y)`` to ``(a x + c y, b x + d y)`` shown (libavutil's
    display.h, rows ``a b u / c d v / x y w``); only its signs and zeros matter here.
    """
    data = frame.side_data.get("DISPLAYMATRIX")
    if data is None:
        return None
    m = np.frombuffer(bytes(data), dtype=np.int32, count=9).astype(np.float64)
    a, b, c, d = np.round(m[[0, 1, 3, 4]] / 65536.0).astype(int)
    if abs(a) + abs(d) == 2 and b == c == 0:
        transform = (False, a < 0, d < 0)
    elif abs(b) + abs(c) == 2 and a == d == 0:  # shown x comes from stored y: a quarter turn
        transform = (True, c < 0, b < 0)
    else:
        return None  # not axis-aligned (or scaled): decode as stored
    return None if transform == (False, False, False) else transform


_UNSPECIFIED = 2  # AVCOL_SPC_UNSPECIFIED: the video does not name its YUV matrix
# swscale's default YUV <-> RGB conversions truncate and drop chroma samples: a 4:2:0 round trip came out
# 2.3 levels darker (mean abs error 2.1 on a 720p face); rounded, with chroma interpolated on the way back
# and averaged on the way in: no bias, error 0.66. Decoding a 720p frame takes 8.5 ms instead of 3.7
# (benchmarks/bench_media.py); encoding is dominated by x264 either way.
_FROM_YUV = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_TO_YUV = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP


def _is_hd(width: int, height: int) -> bool:
    """Players read a video that does not name its YUV matrix as BT.709 when it is this big, else BT.601."""
    return width >= 1280 or height > 576


def _pixel_aspect(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The width of a stored pixel over its height (DV, DVD and HDV store wide pictures in narrow pixels);
    None when the video does not say or its pixels are square. The container's figure first, as FFmpeg reads it."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar is not None and sar.numerator > 0 and sar.denominator > 0:
            return None if sar == 1 else Fraction(sar.numerator, sar.denominator)
    return None


def _square_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """The size in square pixels: the stored picture stretched (never shrunk, so no detail is lost) to its
    shown shape."""
    if sar is None:
        return width, height
    return (round(width * sar), height) if sar > 1 else (width, round(height / sar))


def _to_bgr(frame: av.VideoFrame, sar: Fraction | None = None,
            transform: tuple[bool, bool, bool] | None = None) -> np.ndarray:
    """The frame as players show it: ``(H, W, 3) uint8`` BGR, converted by the YUV matrix the video names
    (else the one players assume for its size; an HDR frame tone-mapped to SDR, :mod:`facelab.media.hdr`), stretched to square pixels by the stream's pixel aspect
    ``sar`` and turned by its display matrix (``transform``: :func:`_display_transform` of the stream's
    first frame)."""
    if hdr.is_hdr(frame):
        image = hdr.frame_to_sdr_bgr(frame)
    elif frame.format.name.startswith("yuv"):
        matrix = None
        if frame.colorspace == _UNSPECIFIED:
            # FFmpeg's converter assumes BT.601 for any size; players assume BT.709 for HD, and so must we,
            # or a result (which names its matrix) shows other colours than its source in the same player.
            matrix = Colorspace.ITU709 if _is_hd(frame.width, frame.height) else Colorspace.ITU601
        image = frame.to_ndarray(format="bgr24", src_colorspace=matrix, interpolation=_FROM_YUV)
    else:
        image = frame.to_ndarray(format="bgr24")
    size = _square_size(image.shape[1], image.shape[0], sar)
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    if transform is not None:
        transpose, flip_columns, flip_rows = transform
        if transpose:
            image = image.transpose(1, 0, 2)
        if flip_columns:
            image = image[:, ::-1]
        if flip_rows:
            image = image[::-1]
    return np.ascontiguousarray(image)


def iter_frames(path: str | Path, fps: float | Fraction | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode a video frame by frame.

    Args:
        path: a video file.
        fps: if given, keep only the frame nearest to each point of a regular
            grid ``0, 1/fps, 2/fps, ...`` (e.g. ``fps=5`` of a 25 fps video keeps
            every 5th frame). At or above the video's own rate every frame is kept.

    Yields:
        ``(index, time, image)``: the 0-based index of the frame in the video,
        its time in seconds from the start of the stream, and the image,
        ``(H, W, 3) uint8`` BGR.

    Raises:
        MediaError: unreadable file, or a corrupt packet (naming the frame index reached).
    """
    path = _check_file(path)
    if fps is None:
        for index, t, image in _decode(path):
            yield index, float(t), image()
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise SettingsError(f"fps must be a positive number, got {fps!r}", "use e.g. fps=5, or None for every frame")
    step = 1 / Fraction(fps).limit_denominator(1_000_000)
    k = 0  # index of the next grid point k * step
    prev: tuple[int, Fraction, Callable[[], np.ndarray]] | None = None
    last_emitted = -1
    src_interval = Fraction(0)
    for index, t, image in _decode(path):
        if prev is not None:
            src_interval = t - prev[1]
        while k * step <= t:
            g = k * step
            chosen = (index, t, image)
            if prev is not None and g - prev[1] <= t - g:  # ties go to the earlier frame
                chosen = prev
            if chosen[0] != last_emitted:
                last_emitted = chosen[0]
                yield chosen[0], float(chosen[1]), chosen[2]()
            k += 1
        prev = (index, t, image)
    # Grid points after the last frame's time still belong to it while they fall
    # within half a frame of it (the last frame covers [t, t + interval)).
    if prev is not None and prev[0] != last_emitted and k * step - prev[1] <= src_interval / 2:
        yield prev[0], float(prev[1]), prev[2]()


def read_video_tags(path: str | Path) -> dict[str, str]:
    """Container metadata of a video file (e.g. ``comment``, ``encoder``), as ``str -> str``."""
    path = _check_file(path)
    with _open(path) as container:
        return {str(k): str(v) for k, v in container.metadata.items()}


_BITRATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)\s*(bps|b/s|bit/s)?\s*")


def parse_bitrate(bitrate: str | float, option: str = "--bitrate") -> int:
    """A video bitrate in bits per second, from DeepFaceLab's unit: megabits per second.

    One reading for every command (``video`` and ``cut``) and for settings files:

    - a bare number, as a number or a string, is megabits per second: ``8``, ``"8"``,
      ``2.5`` -> 8,000,000 / 2,500,000;
    - a ``k`` or ``M`` suffix (any case, optionally followed by ``bps``, ``b/s`` or
      ``bit/s``): ``"8M"``, ``"800k"``, ``"8 Mbit/s"``;
    - a unit without a prefix is plain bits per second: ``"800000bps"``.

    Args:
        bitrate: the value as given.
        option: the option or setting it came from, named in the error.

    Returns:
        Bits per second, 10 kbit/s to 1000 Mbit/s.

    Raises:
        SettingsError: not understood, or out of range (the message names ``option``).
    """
    if isinstance(bitrate, bool):
        raise SettingsError(f"{option} {bitrate!r} is not a bitrate", "give megabits per second, e.g. 8 (or 8M, 800k)")
    if isinstance(bitrate, (int, float)):
        value = float(bitrate) * 1e6
    else:
        m = _BITRATE.fullmatch(str(bitrate))
        if not m:
            raise SettingsError(f"{option} {bitrate!r} is not understood",
                                "give megabits per second as in DeepFaceLab, e.g. 8, or a number with k or M, e.g. 8M or 800k")
        prefix, unit = m.group(2).lower(), m.group(3)
        scale = {"k": 1e3, "m": 1e6}[prefix] if prefix else (1 if unit else 1e6)
        value = float(m.group(1)) * scale
    if not 10_000 <= value <= 1e9:
        raise SettingsError(f"{option} {bitrate!r} is out of range ({value / 1e6:g} Mbit/s)",
                            "use 0.01-1000 megabits per second, e.g. 8 (or 10k-1000M)")
    return int(round(value))


def _pad_even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    fps: Fraction | float,
    audio_from: str | Path | None = None,
    tags: dict[str, str] | None = None,
    bitrate: str | float | None = None,
    crf: int = 18,
    *,
    codec: str | None = None,
    timestamps: Sequence[float | Fraction] | None = None,
    audio_track: int | str = 0,
    audio_start: float | Fraction = 0,
    timecode: str | None = None,
) -> int:
    """Encode frames to a video file, with the audio of another file.

    Args:
        frames: ``(H, W, 3) uint8`` BGR images (``(H, W, 4)`` BGRA for an alpha
            codec), all the same size; consumed one at a time. Odd sizes are
            padded to even by repeating the last row/column (not for lossless codecs).
        out_path: ``.mp4``/``.m4v``, ``.mov``, ``.mkv``, ``.avi`` or ``.mpg``.
        fps: frame rate; without ``timestamps`` frame ``i`` is stamped at exactly ``i / fps``.
        audio_from: a file whose audio track ``audio_track`` (index among its audio
            streams) is re-encoded (AAC; MP2 in ``.mpg``), kept in sync with the frames
            and cut at the video's end. Nothing happens if it has no audio.
        tags: container metadata (custom keys included, for MP4/MOV; AVI keeps only
            its standard keys such as ``comment``).
        bitrate: target bitrate, read by :func:`parse_bitrate` (bare numbers are megabits per
            second: ``8`` or ``"8"``, like ``"8M"``); if ``None`` quality is set by ``crf``
            (MPEG-4/MPEG-1: a fixed quantiser). Ignored by lossless codecs.
        crf: x264 constant rate factor, 0 (lossless) to 51; 18 is visually lossless.
        codec: a key of :data:`CODECS` (default: H.264, MPEG-4 part 2 in AVI, MPEG-1 in MPG).
        timestamps: one time in seconds per frame (variable frame rate), increasing;
            ``timestamps[0]`` becomes time 0. ``None``: the regular ``i / fps`` grid.
        audio_track: which audio stream of ``audio_from`` (index among its audio streams), or
            ``"all"``: every one, in order, each with its language tag.
        audio_start: seconds into ``audio_from``'s video that become time 0 (for cuts).
        timecode: the first frame's SMPTE timecode (``HH:MM:SS:FF``), written as the video
            stream's tag (a timecode track in MP4/MOV); None: none.

    Returns:
        The number of frames written.

    Raises:
        MediaError: unsupported extension/codec pair, bad frames, a missing audio track, encoder failure.
        SettingsError: bad fps, crf or bitrate.

    The file is written under a temporary name beside ``out_path`` and renamed
    when complete, so a killed run never leaves a half file under the real name.
    """
    out_path = Path(out_path)
    fmt = _OUT_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise MediaError(f"cannot write {out_path.name}: unsupported extension", f"use one of {', '.join(_OUT_FORMATS)}")
    codec = codec or _DEFAULT_CODEC[fmt]
    if codec not in CODECS:
        raise SettingsError(f"unknown video codec {codec!r}", f"use one of {', '.join(CODECS)}")
    spec = CODECS[codec]
    if fmt not in spec.containers:
        raise MediaError(f"codec {codec} cannot go in {out_path.suffix} files", f"use {', '.join(spec.containers)}")
    rate = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
    if not rate > 0:
        raise SettingsError(f"fps must be positive, got {fps!r}", "use the frame rate of the destination video")
    if spec.cfr_only:
        if timestamps is not None:
            raise MediaError(f"{out_path.suffix} ({spec.encoder}) cannot store a variable frame rate", "write .mp4 or .mkv instead")
        if rate not in _MPEG1_RATES:
            raise MediaError(f"{spec.encoder} cannot store {float(rate):g} fps", "write .mp4 or .mkv instead")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise SettingsError(f"crf must be an integer 0-51, got {crf!r}", "18 is visually lossless; higher is smaller")
    bit_rate = parse_bitrate(bitrate) if bitrate is not None else None
    audio_path = _check_file(audio_from) if audio_from is not None else None
    time_base, pts = _time_base(rate, timestamps, spec)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")
    options = {"movflags": "use_metadata_tags"} if fmt in ("mp4", "mov") else {}
    count = 0
    audio: list[AudioTrack] = []
    try:
        with av.open(str(tmp), mode="w", format=fmt, options=options) as out:
            for key, value in (tags or {}).items():
                out.metadata[str(key)] = str(value)
            stream = None
            shape = None
            for image in frames:
                image = _check_frame(image, count, shape, 4 if spec.alpha else 3)
                if stream is None:
                    shape = image.shape
                    stream = _add_stream(out, spec, rate, time_base, image.shape, bit_rate, crf)
                    if timecode:
                        stream.metadata["timecode"] = timecode
                    audio = _add_audio(out, audio_path, audio_track, audio_start, _AUDIO_CODEC[fmt])
                if pts is not None and count >= len(pts):
                    raise MediaError(f"more frames than timestamps ({len(pts)}) for {out_path.name}", "give one timestamp per frame")
                frame = _to_av_frame(image, spec)
                frame.pts = pts[count] if pts is not None else count
                frame.time_base = time_base
                for packet in stream.encode(frame):
                    out.mux(packet)
                count += 1
                for track in audio:
                    track.advance(out, _end_time(count, rate, pts, time_base))
            if stream is None:
                raise MediaError(f"no frames to write to {out_path}", "the frame folder is empty")
            for packet in stream.encode(None):
                out.mux(packet)
            for track in audio:
                track.finish(out, _end_time(count, rate, pts, time_base))
        if fmt in ("mp4", "mov") and tags and "encoder" in tags:
            set_mp4_tag(tmp, "encoder", str(tags["encoder"]))  # libavformat overwrote it
        os.replace(tmp, out_path)
    except av.FFmpegError as e:
        raise MediaError(f"writing {out_path} failed ({e.strerror or e})", "check free disk space and the settings") from e
    finally:
        for track in audio:
            track.close()
        tmp.unlink(missing_ok=True)
    return count


def _add_audio(out, source: Path | None, track: int | str, start: float | Fraction, codec: str) -> list[AudioTrack]:
    """The audio streams to copy into ``out``: track ``track`` of ``source`` or, with ``"all"``, every one."""
    if source is None:
        return []
    tracks: list[AudioTrack] = []
    try:
        for index in range(count_audio_tracks(source)) if track == "all" else [track]:
            opened = mux_audio(out, source, index, start, codec)
            if opened is not None:
                tracks.append(opened)
    except BaseException:
        for opened in tracks:
            opened.close()
        raise
    return tracks


def _time_base(rate: Fraction, timestamps, spec: Codec) -> tuple[Fraction, list[int] | None]:
    """Encoder time base and integer pts per frame (``None``: pts = frame index, time base 1/rate)."""
    if timestamps is None:
        return 1 / rate, None
    ts = [Fraction(t).limit_denominator(1_000_000) for t in timestamps]
    if not ts:
        raise MediaError("no timestamps given", "give one timestamp per frame")
    t0 = ts[0]
    ts = [t - t0 for t in ts]
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise MediaError("frame timestamps must increase", "check the frames step record (data_dst/.facelab/frames.record.json)")
    den = 1
    for t in ts:
        den = den * t.denominator // gcd(den, t.denominator)
        if den > 90_000:
            den = 90_000  # finer than any container needs: round to 1/90000 s
            break
    if spec.encoder == "mpeg4" and den > 65_535:
        den = 30_000
    tb = Fraction(1, den)
    pts = [round(t / tb) for t in ts]
    for i in range(1, len(pts)):  # rounding must keep them strictly increasing
        pts[i] = max(pts[i], pts[i - 1] + 1)
    return tb, pts


def _end_time(count: int, rate: Fraction, pts: list[int] | None, time_base: Fraction) -> Fraction:
    """End of the ``count`` frames written so far, seconds (the next frame's start)."""
    if pts is None:
        return count / rate
    if count < len(pts):
        return pts[count] * time_base
    return pts[-1] * time_base + 1 / rate


def _yuv_colorspace(spec: Codec, shape: tuple[int, ...]) -> Colorspace | None:
    """The YUV matrix facelab writes (and names in the stream): BT.709 for HD, BT.601 below; None for RGB codecs."""
    if not spec.pix_fmt.startswith("yuv"):
        return None
    return Colorspace.ITU709 if _is_hd(shape[1], shape[0]) else Colorspace.ITU601


def _to_av_frame(image: np.ndarray, spec: Codec) -> av.VideoFrame:
    if spec.alpha:
        return av.VideoFrame.from_ndarray(image, format="bgra").reformat(format=spec.pix_fmt)
    if spec.lossless:
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        return frame if spec.pix_fmt == "bgr24" else frame.reformat(format=spec.pix_fmt)
    image = _pad_even(image)
    colorspace = _yuv_colorspace(spec, image.shape)
    frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
        format=spec.pix_fmt, dst_colorspace=colorspace, dst_color_range=ColorRange.MPEG, interpolation=_TO_YUV)
    frame.colorspace, frame.color_range = colorspace, ColorRange.MPEG
    return frame


def _check_frame(image: np.ndarray, index: int, shape: tuple[int, ...] | None, channels: int = 3) -> np.ndarray:
    kind = "BGR" if channels == 3 else "BGRA"
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != channels or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise MediaError(f"frame {index}: expected (H, W, {channels}) uint8 {kind}, got {got}")
    if shape is not None and image.shape != shape:
        raise MediaError(
            f"frame {index} is {image.shape[1]}x{image.shape[0]}, the first frame was {shape[1]}x{shape[0]}",
            "all frames of a video must have the same size",
        )
    return np.ascontiguousarray(image)


def _add_stream(out, spec: Codec, rate: Fraction, time_base: Fraction, shape: tuple[int, ...], bit_rate: int | None, crf: int):
    stream = out.add_stream(spec.encoder, rate=rate)
    pad = 0 if spec.lossless else 1  # 4:2:0 needs even sizes
    stream.width = shape[1] + (shape[1] % 2) * pad
    stream.height = shape[0] + (shape[0] % 2) * pad
    stream.pix_fmt = spec.pix_fmt
    stream.codec_context.time_base = time_base
    colorspace = _yuv_colorspace(spec, (stream.height, stream.width))
    if colorspace is not None:  # name the matrix and range, so no player has to guess them
        stream.codec_context.colorspace, stream.codec_context.color_range = colorspace, ColorRange.MPEG
    opts: dict[str, str] = {}
    if spec.encoder in ("libx264", "libx264rgb"):
        opts["preset"] = "fast"
        if spec.lossless:
            opts["qp"] = "0"
        elif bit_rate is not None:
            stream.bit_rate = bit_rate
        else:
            opts["crf"] = str(crf)
    elif not spec.lossless:  # mpeg4 / mpeg1video: bitrate-driven; default ~0.4 bit per pixel
        stream.bit_rate = bit_rate if bit_rate is not None else int(max(500_000, 0.4 * shape[0] * shape[1] * float(rate)))
        stream.codec_context.qmin = 2
    stream.options = opts
    return stream
