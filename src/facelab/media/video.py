"""Video probing, streaming decode and H.264 encode (PyAV).

Frames cross this module's boundary as ``(H, W, 3) uint8`` BGR arrays. Decoding
is streaming: at most two decoded frames are alive at a time, so memory stays
flat however long the video is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facelab.errors import MediaError, SettingsError
from facelab.media.audio import mux_audio
from facelab.media.mp4tags import set_mp4_tag

__all__ = ["VideoInfo", "probe", "iter_frames", "write_video", "read_video_tags", "parse_bitrate"]

_NOT_VIDEO_HINT = "check that the file is a complete video (mp4, mkv, avi, mov, mpg, ...) and plays in a media player"

# Output container format by file suffix (the codec is always H.264).
_OUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found in a video file.

    ``fps`` is the video stream's average frame rate; ``frame_count`` comes from
    the container or, where it does not say (MPEG-PS, some AVI/MKV), from
    decoding every frame. ``duration`` is in seconds (container duration, else
    ``frame_count / fps``). The audio fields describe the first audio stream.
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
    return VideoInfo(path, width, height, fps, count, duration, audio is not None, audio_codec, audio_rate, video_codec)


def _decode(path: Path) -> Iterator[tuple[int, Fraction, av.VideoFrame]]:
    """Yield ``(index, time, av frame)`` of every decoded frame; errors become MediaError."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        start = stream.start_time or 0
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator) if stream.time_base else None
        frames = container.decode(stream)
        index = 0
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
                t = (frame.pts - start) * tb
            else:
                t = index / fps
            yield index, t, frame
            index += 1


def _to_bgr(frame: av.VideoFrame) -> np.ndarray:
    return np.ascontiguousarray(frame.to_ndarray(format="bgr24"))


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
        for index, t, frame in _decode(path):
            yield index, float(t), _to_bgr(frame)
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise SettingsError(f"fps must be a positive number, got {fps!r}", "use e.g. fps=5, or None for every frame")
    step = 1 / Fraction(fps).limit_denominator(1_000_000)
    k = 0  # index of the next grid point k * step
    prev: tuple[int, Fraction, av.VideoFrame] | None = None
    last_emitted = -1
    src_interval = Fraction(0)
    for index, t, frame in _decode(path):
        if prev is not None:
            src_interval = t - prev[1]
        while k * step <= t:
            g = k * step
            chosen = (index, t, frame)
            if prev is not None and g - prev[1] <= t - g:  # ties go to the earlier frame
                chosen = prev
            if chosen[0] != last_emitted:
                last_emitted = chosen[0]
                yield chosen[0], float(chosen[1]), _to_bgr(chosen[2])
            k += 1
        prev = (index, t, frame)
    # Grid points after the last frame's time still belong to it while they fall
    # within half a frame of it (the last frame covers [t, t + interval)).
    if prev is not None and prev[0] != last_emitted and k * step - prev[1] <= src_interval / 2:
        yield prev[0], float(prev[1]), _to_bgr(prev[2])


def read_video_tags(path: str | Path) -> dict[str, str]:
    """Container metadata of a video file (e.g. ``comment``, ``encoder``), as ``str -> str``."""
    path = _check_file(path)
    with _open(path) as container:
        return {str(k): str(v) for k, v in container.metadata.items()}


def parse_bitrate(bitrate: str | int) -> int:
    """``"8M"``, ``"800k"``, ``"2.5M"`` or ``800000`` -> bits per second."""
    if isinstance(bitrate, int) and not isinstance(bitrate, bool) and bitrate > 0:
        return bitrate
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:bps|b/s)?\s*", str(bitrate))
    if not m:
        raise SettingsError(f"bitrate {bitrate!r} is not understood", "use a number with an optional k or M suffix, e.g. 8M or 800k")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if not 10_000 <= value <= 1e9:
        raise SettingsError(f"bitrate {bitrate!r} is out of range", "use between 10k and 1000M")
    return int(value)


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
    bitrate: str | None = None,
    crf: int = 18,
) -> int:
    """Encode frames to an H.264 (yuv420p) video, with the audio of another file.

    Args:
        frames: ``(H, W, 3) uint8`` BGR images, all the same size; consumed one
            at a time. Odd sizes are padded to even by repeating the last row/column.
        out_path: ``.mp4`` (also ``.m4v``, ``.mov``, ``.mkv``).
        fps: frame rate; frame ``i`` is stamped at exactly ``i / fps``.
        audio_from: a file whose first audio track is copied (AAC) or re-encoded
            to AAC, kept in sync with the frames and cut at the video's end.
            Nothing happens if it has no audio.
        tags: container metadata (custom keys included, for MP4/MOV).
        bitrate: target bitrate such as ``"8M"``; if ``None`` quality is set by ``crf``.
        crf: x264 constant rate factor, 0 (lossless) to 51; 18 is visually lossless.

    Returns:
        The number of frames written.

    The file is written under a temporary name beside ``out_path`` and renamed
    when complete, so a killed run never leaves a half file under the real name.
    """
    out_path = Path(out_path)
    fmt = _OUT_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise MediaError(f"cannot write {out_path.name}: unsupported extension", f"use one of {', '.join(_OUT_FORMATS)}")
    rate = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
    if not rate > 0:
        raise SettingsError(f"fps must be positive, got {fps!r}", "use the frame rate of the destination video")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise SettingsError(f"crf must be an integer 0-51, got {crf!r}", "18 is visually lossless; higher is smaller")
    bit_rate = parse_bitrate(bitrate) if bitrate is not None else None
    audio_path = _check_file(audio_from) if audio_from is not None else None

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")
    options = {"movflags": "use_metadata_tags"} if fmt in ("mp4", "mov") else {}
    count = 0
    audio = None
    try:
        with av.open(str(tmp), mode="w", format=fmt, options=options) as out:
            for key, value in (tags or {}).items():
                out.metadata[str(key)] = str(value)
            stream = None
            shape = None
            for image in frames:
                image = _check_frame(image, count, shape)
                if stream is None:
                    shape = image.shape
                    stream = _add_h264_stream(out, rate, image.shape, bit_rate, crf)
                    audio = mux_audio(out, audio_path) if audio_path is not None else None
                frame = av.VideoFrame.from_ndarray(_pad_even(image), format="bgr24").reformat(format="yuv420p")
                frame.pts = count
                frame.time_base = stream.codec_context.time_base
                for packet in stream.encode(frame):
                    out.mux(packet)
                count += 1
                if audio is not None:
                    audio.advance(out, count / rate)
            if stream is None:
                raise MediaError(f"no frames to write to {out_path}", "the frame folder is empty")
            for packet in stream.encode(None):
                out.mux(packet)
            if audio is not None:
                audio.finish(out, count / rate)
        if fmt in ("mp4", "mov") and tags and "encoder" in tags:
            set_mp4_tag(tmp, "encoder", str(tags["encoder"]))  # libavformat overwrote it
        os.replace(tmp, out_path)
    except av.FFmpegError as e:
        raise MediaError(f"writing {out_path} failed ({e.strerror or e})", "check free disk space and the settings") from e
    finally:
        if audio is not None:
            audio.close()
        tmp.unlink(missing_ok=True)
    return count


def _check_frame(image: np.ndarray, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise MediaError(f"frame {index}: expected (H, W, 3) uint8 BGR, got {got}")
    if shape is not None and image.shape != shape:
        raise MediaError(
            f"frame {index} is {image.shape[1]}x{image.shape[0]}, the first frame was {shape[1]}x{shape[0]}",
            "all frames of a video must have the same size",
        )
    return np.ascontiguousarray(image)


def _add_h264_stream(out, rate: Fraction, shape: tuple[int, ...], bit_rate: int | None, crf: int):
    stream = out.add_stream("libx264", rate=rate)
    stream.width = shape[1] + shape[1] % 2
    stream.height = shape[0] + shape[0] % 2
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = 1 / rate
    opts = {"preset": "fast"}
    if bit_rate is not None:
        stream.bit_rate = bit_rate
    else:
        opts["crf"] = str(crf)
    stream.options = opts
    return stream
