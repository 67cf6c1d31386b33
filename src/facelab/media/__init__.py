"""Video decode/encode and audio pass-through (PyAV).

Frames are ``(H, W, 3) uint8`` BGR at this boundary. Decoding streams frame by
frame; writing goes to a temporary file that is renamed when complete.
"""

from facelab.media.timecode import read_timecode, shift_timecode
from facelab.media.video import (
    CODECS,
    Codec,
    VideoInfo,
    is_vfr,
    iter_frames,
    iter_frames_between,
    parse_bitrate,
    probe,
    read_video_tags,
    write_video,
)

__all__ = ["CODECS", "Codec", "VideoInfo", "is_vfr", "iter_frames", "iter_frames_between", "parse_bitrate", "probe", "read_timecode", "read_video_tags",
           "shift_timecode", "write_video"]
