"""Carry the audio of a source video into a video being written (PyAV).

The audio is decoded and re-encoded to AAC, AAC included. Why not copy AAC
packets: the source's encoder delay and edit list do not survive a packet copy,
and the copied track came out ~25 ms early (measured on a .mov whose audio
starts 2.43 s in); decoding applies them, so re-encoding keeps sync to the
sample. Audio time 0 is the source's *video* start, so sound stays in sync with
frames ``0, 1/fps, ...`` of the new file: audio that starts late is preceded by
silence (a start offset in an MP4 edit list was read back 24 ms off), audio
before the video's start and after the new video's end is dropped. Audio is
written interleaved with the video as frames are added.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from facelab.errors import MediaError

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_MP2_RATES = (48000, 44100, 32000, 24000, 22050, 16000)
# codec -> (sample rates it takes, samples per frame)
_CODECS = {"aac": (_AAC_RATES, 1024), "mp2": (_MP2_RATES, 1152)}


class AudioTrack:
    """Audio stream ``track`` of ``source`` (index among its audio streams), re-encoded to AAC
    (or MP2 for MPEG-PS) into the open output ``out``; output time 0 is ``start`` seconds after
    the source's video start.

    Call :meth:`advance` with the time written so far (seconds) after each video
    frame, then :meth:`finish` with the video's duration.
    """

    def __init__(self, out: av.container.OutputContainer, source: Path, track: int = 0,
                 start: float | Fraction = 0, codec: str = "aac") -> None:
        self.source = source
        if codec not in _CODECS:
            raise MediaError(f"audio codec {codec!r} is not supported", f"use one of {', '.join(_CODECS)}")
        try:
            self._in = av.open(str(source), mode="r")
        except av.FFmpegError as e:
            raise MediaError(f"cannot read audio from {source} ({e.strerror or e})", "check the dst video") from e
        audios = self._in.streams.audio
        if not 0 <= track < len(audios):
            self._in.close()
            raise MediaError(f"{source} has no audio track {track}", f"available: {describe_audio_tracks(source) or 'none'}")
        in_audio = audios[track]
        video = self._in.streams.video[0] if self._in.streams.video else None
        # Source video start, in seconds: audio before it is cut, a late audio start is kept as a gap.
        self._offset = Fraction(0)
        if video is not None and video.start_time is not None and video.time_base:
            self._offset = video.start_time * Fraction(video.time_base.numerator, video.time_base.denominator)
        self._offset += Fraction(start)  # output time 0 is `start` seconds into the source video
        if start > 2:  # skip decoding what is cut anyway (seek lands at or before the target)
            try:
                tb = in_audio.time_base
                target = (self._offset - 1) / Fraction(tb.numerator, tb.denominator)
                self._in.seek(int(target), stream=in_audio, backward=True)
            except (av.FFmpegError, TypeError, ZeroDivisionError):
                self._in.seek(0)
        allowed, self._frame_size = _CODECS[codec]
        rate = in_audio.codec_context.sample_rate
        rate = rate if rate in allowed else 48000
        self._layout, self._channels = _out_layout(in_audio.codec_context.channels, codec)
        self._rate = rate
        self.stream = out.add_stream(codec, rate=rate)
        self.stream.layout = self._layout
        per_channel = 128_000 if codec == "mp2" else 96_000 if self._channels <= 2 else 64_000  # 5.1: 384 kbit/s
        self.stream.bit_rate = per_channel * self._channels
        if in_audio.metadata.get("language"):  # a dub or a commentary keeps its name in players' track menus
            self.stream.metadata["language"] = in_audio.metadata["language"]
        self.stream.codec_context.time_base = Fraction(1, rate)
        self._in_stream = in_audio
        self._limit: Fraction | None = None  # seconds; set by finish()
        self._packets = self._encode_packets()
        self._pending: tuple[Fraction, av.Packet] | None = None
        self._done = False

    # --- public --------------------------------------------------------------
    def advance(self, out: av.container.OutputContainer, until: float | Fraction) -> None:
        """Mux audio packets that start before ``until`` seconds."""
        until = Fraction(until)
        while not self._done:
            if self._pending is None:
                try:
                    self._pending = next(self._packets)
                except StopIteration:
                    self._done = True
                    break
            t, packet = self._pending
            if t >= until:
                break
            out.mux(packet)
            self._pending = None

    def finish(self, out: av.container.OutputContainer, duration: float | Fraction) -> None:
        """Write the rest of the audio up to ``duration`` seconds and close the source."""
        self._limit = Fraction(duration)
        try:
            self.advance(out, self._limit)
            if self._pending is not None and self._pending[0] < self._limit:
                out.mux(self._pending[1])
            self._pending = None
            # The generator trims to self._limit; drain it (nothing past the limit is muxed).
            for t, packet in self._packets:
                if t < self._limit:
                    out.mux(packet)
        finally:
            self._in.close()

    def close(self) -> None:
        self._in.close()

    # --- re-encode ---------------------------------------------------------------
    def _encode_packets(self) -> Iterator[tuple[Fraction, av.Packet]]:
        rate = self._rate
        resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=rate)
        buf = np.zeros((self._channels, 0), dtype=np.float32)
        cursor: int | None = None  # output sample index of buf[:, 0]
        skip = 0  # source samples still to drop before output time 0
        tb_in = Fraction(self._in_stream.time_base.numerator, self._in_stream.time_base.denominator)

        first_time: list[Fraction] = []  # time of the first decoded frame, seconds

        def frames_from_decoder() -> Iterator[av.AudioFrame]:
            for packet in self._demux():
                try:
                    decoded = packet.decode()
                except av.FFmpegError as e:
                    raise MediaError(f"{self.source}: audio decoding failed ({e.strerror or e})", "re-encode the video's audio") from e
                for frame in decoded:
                    if not first_time:
                        first_time.append(frame.pts * tb_in if frame.pts is not None else Fraction(0))
                    yield from resampler.resample(frame)
            yield from resampler.resample(None)

        for frame in frames_from_decoder():
            samples = frame.to_ndarray().reshape(buf.shape[0], -1)
            if cursor is None:
                lead = round((first_time[0] - self._offset) * rate)
                cursor = 0
                skip = max(0, -lead)  # audio starts before the video (or the cut): drop the lead-in
                if lead > 0:  # audio starts after the video: lead in with silence, a frame at a time
                    silence = np.zeros((buf.shape[0], self._frame_size), np.float32)
                    for _ in range(lead // self._frame_size):
                        yield from self._encode_chunk(silence, cursor)
                        cursor += self._frame_size
                    samples = np.concatenate([silence[:, : lead % self._frame_size], samples], axis=1)
            if skip:
                dropped = min(skip, samples.shape[1])
                samples, skip = samples[:, dropped:], skip - dropped
            buf = np.concatenate([buf, samples], axis=1)
            while buf.shape[1] >= self._frame_size:
                chunk, buf = buf[:, :self._frame_size], buf[:, self._frame_size:]
                yield from self._encode_chunk(chunk, cursor)
                cursor += self._frame_size
                if self._limit is not None and cursor >= self._limit * rate:
                    buf = buf[:, :0]
                    break
            if self._limit is not None and cursor is not None and cursor >= self._limit * rate:
                break
        if cursor is not None and buf.shape[1]:
            yield from self._encode_chunk(buf, cursor)
        for packet in self.stream.encode(None):
            yield Fraction(packet.pts or 0, rate), packet

    def _encode_chunk(self, chunk: np.ndarray, cursor: int) -> Iterator[tuple[Fraction, av.Packet]]:
        rate = self._rate
        if self._limit is not None:
            keep = int(round(self._limit * rate)) - cursor
            if keep <= 0:
                return
            chunk = chunk[:, :keep]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self._layout)
        frame.sample_rate = rate
        frame.pts = cursor
        frame.time_base = Fraction(1, rate)
        for packet in self.stream.encode(frame):
            yield Fraction(packet.pts, rate), packet

    def _demux(self) -> Iterator[av.Packet]:
        try:
            for packet in self._in.demux(self._in_stream):
                if packet.size == 0 and packet.pts is None:
                    continue  # flush packet
                yield packet
        except av.FFmpegError as e:
            raise MediaError(f"{self.source}: reading audio failed ({e.strerror or e})", "re-encode the video's audio") from e


def _out_layout(channels: int, codec: str) -> tuple[str, int]:
    """The output channel layout and count for a source of ``channels``: mono and stereo are kept; with
    AAC 5.1 too, and 7.1 is downmixed to 5.1 (PyAV cannot build an 8-plane frame); anything else goes
    to stereo (MP2 has no surround)."""
    if channels <= 2:
        return ("mono", 1) if channels == 1 else ("stereo", 2)
    return ("5.1", 6) if codec == "aac" and channels >= 6 else ("stereo", 2)


def describe_audio_tracks(source: str | Path) -> str:
    """``"0: aac 44100 Hz stereo (eng), 1: ..."``: the audio streams of a file, by index among audio streams."""
    try:
        with av.open(str(source), mode="r") as c:
            parts = []
            for i, a in enumerate(c.streams.audio):
                lang = a.metadata.get("language")
                parts.append(f"{i}: {a.codec_context.name} {a.codec_context.sample_rate} Hz "
                             f"{a.codec_context.channels} ch" + (f" ({lang})" if lang else ""))
            return ", ".join(parts)
    except av.FFmpegError as e:
        raise MediaError(f"cannot read audio from {source} ({e.strerror or e})", "check the video") from e


def count_audio_tracks(source: str | Path) -> int:
    """How many audio streams ``source`` has."""
    try:
        with av.open(str(source), mode="r") as c:
            return len(c.streams.audio)
    except av.FFmpegError as e:
        raise MediaError(f"cannot read audio from {source} ({e.strerror or e})", "check the video") from e


def mux_audio(out: av.container.OutputContainer, source: Path, track: int = 0,
              start: float | Fraction = 0, codec: str = "aac") -> AudioTrack | None:
    """Add audio stream ``track`` (index among audio streams) of ``source`` to ``out``, re-encoded to
    ``codec`` (``"aac"`` or ``"mp2"``), with output time 0 at ``start`` seconds into the source video;
    ``None`` if the source has no audio. Raises MediaError if it has audio but not that track."""
    n = count_audio_tracks(source)
    if n == 0:
        return None
    return AudioTrack(out, source, track=track, start=start, codec=codec)
