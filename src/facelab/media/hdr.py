"""HDR video (PQ or HLG, BT.2020) to the SDR BT.709 frames the rest of facelab works on.

Phones record HDR by default (HLG on iPhones, PQ or HLG elsewhere). Read as if it were SDR, an HDR frame
looks flat and grey, and its skin colours are off: faces are found less often and a model learns the wrong
colours. Decoding tone-maps it the way a player on an SDR screen shows it, after ITU-R BT.2408:

1. the 10-bit R'G'B' signal (BT.2020 matrix, the range the video names) to display light in nits: PQ by its
   EOTF (SMPTE ST 2084); HLG by its inverse OETF and the BT.2100 OOTF for a 1,000-nit display;
2. HDR reference white, 203 nits, becomes SDR white (1.0): faces and everything under white keep their
   brightness, where a plain scale by the peak would darken them five times;
3. BT.2020 primaries to BT.709 (colours outside BT.709 clipped);
4. highlights over :data:`KNEE` of white roll off smoothly, reaching white at 1,000 nits (luminance only,
   so hues stay), instead of clipping at 203;
5. the BT.1886 display's gamma 2.4, inverted, gives the 8-bit code value.

An SDR frame mapped into HDR the BT.2408 way comes back within a few levels wherever it is under the knee
(tested). The result video is SDR BT.709, as every facelab output.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Colorspace, Interpolation

PQ, HLG = 16, 18  # AVCOL_TRC_SMPTE2084, AVCOL_TRC_ARIB_STD_B67
TRANSFERS = (PQ, HLG)
BT2020 = 9  # AVCOL_PRI_BT2020 / AVCOL_SPC_BT2020_NCL

REFERENCE_WHITE = 203.0
"""Nits of HDR reference (diffuse) white, shown as SDR white (ITU-R BT.2408)."""
HLG_PEAK = 1000.0
"""The display HLG is shown on (nits): BT.2100's reference, with system gamma 1.2."""
PEAK = 1000.0
"""Nits shown as SDR white: the peak most HDR video is mastered to (and HLG's reference display)."""
KNEE = 0.8
"""Luminance (SDR white = 1) over which highlights are compressed; under it the mapping is the identity."""
DISPLAY_GAMMA = 2.4  # BT.1886
METHOD = "bt2408 white 203 nits, hlg 1000 nits, knee 0.8 reinhard to 1000 nits, gamma 2.4"
"""Names this mapping in the records of steps that store tone-mapped frames (a change makes them stale)."""

BT2020_TO_BT709 = np.array([[1.660491, -0.587641, -0.072850],
                            [-0.124550, 1.132900, -0.008349],
                            [-0.018151, -0.100579, 1.118730]], np.float32)
"""Linear BT.2020 RGB to linear BT.709 RGB (ITU-R BT.2087)."""
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593], np.float32)
LUMA_709 = np.array([0.2126, 0.7152, 0.0722], np.float32)

# SMPTE ST 2084 constants
_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
# ARIB STD-B67 (HLG) constants
_A = 0.17883277
_B = 1 - 4 * _A
_C = 0.5 - _A * np.log(4 * _A)

_SCALE = 65280.0  # swscale's 16-bit RGB holds full signal (1.0) as 255 * 256


def is_hdr(frame: av.VideoFrame) -> bool:
    """The frame is coded with a PQ or HLG transfer."""
    return int(frame.color_trc) in TRANSFERS


def pq_eotf(signal: np.ndarray) -> np.ndarray:
    """PQ signal in [0, 1] -> display light in nits (0-10,000)."""
    p = np.power(np.clip(signal, 0.0, 1.0), 1 / _M2)
    return 10000.0 * np.power(np.maximum(p - _C1, 0.0) / (_C2 - _C3 * p), 1 / _M1)


def pq_inverse_eotf(nits: np.ndarray) -> np.ndarray:
    """Display light in nits -> PQ signal in [0, 1]."""
    y = np.power(np.clip(np.asarray(nits, np.float64) / 10000.0, 0.0, 1.0), _M1)
    return np.power((_C1 + _C2 * y) / (1 + _C3 * y), _M2)


def hlg_inverse_oetf(signal: np.ndarray) -> np.ndarray:
    """HLG signal in [0, 1] -> scene light in [0, 1]."""
    v = np.clip(signal, 0.0, 1.0)
    return np.where(v <= 0.5, v * v / 3, (np.exp((v - _C) / _A) + _B) / 12)


def hlg_oetf(scene: np.ndarray) -> np.ndarray:
    """Scene light in [0, 1] -> HLG signal in [0, 1]."""
    e = np.clip(np.asarray(scene, np.float64), 0.0, 1.0)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), _A * np.log(np.maximum(12 * e - _B, 1e-12)) + _C)


def _lut(transfer: int) -> np.ndarray:
    """Every 16-bit code (signal * :data:`_SCALE`) -> linear light: nits (PQ) or scene light (HLG)."""
    codes = np.arange(65536, dtype=np.float64) / _SCALE
    return (pq_eotf(codes) if transfer == PQ else hlg_inverse_oetf(codes)).astype(np.float32)


_LUTS: dict[int, np.ndarray] = {}


def display_light(rgb16: np.ndarray, transfer: int) -> np.ndarray:
    """``(H, W, 3) uint16`` R'G'B' (BT.2020) -> linear BT.2020 display light, SDR white = 1."""
    if transfer not in _LUTS:
        _LUTS[transfer] = _lut(transfer)
    light = _LUTS[transfer][rgb16]
    if transfer == HLG:  # the OOTF: a scene-light pixel is shown at peak * luminance^(gamma - 1) * itself
        y = cv2.pow(np.maximum(cv2.transform(light, LUMA_2020[None]), 0.0), 0.2)
        y *= HLG_PEAK / REFERENCE_WHITE
        return cv2.multiply(light, cv2.merge([y, y, y]))
    light *= 1.0 / REFERENCE_WHITE
    return light


def roll_off(y: np.ndarray) -> np.ndarray:
    """Luminance (SDR white = 1) -> the luminance shown: itself up to :data:`KNEE`, then an extended Reinhard
    curve with the same slope at the knee that reaches 1 at :data:`PEAK` nits, so highlights up to the usual
    mastering peak keep their shading (what is brighter still is white)."""
    t = np.maximum(y - KNEE, 0.0) / (1 - KNEE)
    w = (PEAK / REFERENCE_WHITE - KNEE) / (1 - KNEE)  # t at the peak
    return np.where(y <= KNEE, y, np.minimum(KNEE + (1 - KNEE) * t * (1 + t / (w * w)) / (1 + t), 1.0))


def to_sdr(light2020: np.ndarray, primaries: int = BT2020) -> np.ndarray:
    """Linear display light (SDR white = 1), BT.2020 primaries unless ``primaries`` names others
    (then taken as BT.709) -> ``(H, W, 3) uint8`` BGR, BT.709, gamma 2.4."""
    rgb = cv2.transform(light2020, BT2020_TO_BT709) if primaries == BT2020 else light2020
    np.maximum(rgb, 0.0, out=rgb)
    y = cv2.transform(rgb, LUMA_709[None])
    bright = y > KNEE
    if bright.any():
        rgb[bright] *= (roll_off(y[bright]) / y[bright])[:, None]
    np.minimum(rgb, 1.0, out=rgb)
    code = cv2.pow(rgb, 1 / DISPLAY_GAMMA)
    return cv2.cvtColor(cv2.convertScaleAbs(code, alpha=255.0), cv2.COLOR_RGB2BGR)


def signal_from_sdr(bgr: np.ndarray, transfer: int) -> np.ndarray:
    """The inverse mapping, for tests and benchmarks: an SDR frame as an HDR master of it holds it (BT.2408: SDR
    white at 203 nits, BT.709 colours inside BT.2020), as BT.2020 R'G'B' in [0, 1] (float64)."""
    light = np.power(bgr[..., ::-1].astype(np.float64) / 255, DISPLAY_GAMMA) @ np.linalg.inv(BT2020_TO_BT709.astype(np.float64)).T
    nits = np.maximum(light, 0) * REFERENCE_WHITE
    if transfer == PQ:
        return pq_inverse_eotf(nits)
    shown_luma = nits @ LUMA_2020.astype(np.float64)  # undo the OOTF: scene luma = (display luma / peak)^(1/1.2)
    scene_luma = np.power(shown_luma / HLG_PEAK, 1 / 1.2)
    return hlg_oetf(nits / (HLG_PEAK * np.power(np.maximum(scene_luma, 1e-12), 0.2))[..., None])


def write_hdr_clip(images: list[np.ndarray], path: str | Path, transfer: int, rate: int = 25) -> None:
    """SDR BGR frames (:func:`signal_from_sdr`) as a 10-bit HEVC clip tagged as phones tag HDR: BT.2020,
    limited range, ``transfer`` (:data:`PQ` or :data:`HLG`). For tests and benchmarks."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=rate)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p10le"
        stream.options = {"x265-params": "log-level=error", "crf": "4"}
        cc = stream.codec_context
        cc.color_trc, cc.color_primaries, cc.colorspace, cc.color_range = transfer, BT2020, BT2020, 1
        for image in images:
            rgb16 = np.round(signal_from_sdr(image, transfer) * _SCALE).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(rgb16, format="rgb48le").reformat(format="yuv420p10le",
                                                                                 dst_colorspace=Colorspace.BT2020)
            frame.color_trc, frame.color_primaries, frame.colorspace, frame.color_range = transfer, BT2020, BT2020, 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


# Chroma interpolated and rounded, as for SDR (facelab.media.video); with 16-bit RGB out, swscale's bilinear
# filter with FULL_CHR_H_INT returns garbage (mean error 30 % on a real face), its bicubic one 0.09 %.
_FROM_YUV10 = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def frame_to_sdr_bgr(frame: av.VideoFrame) -> np.ndarray:
    """An HDR frame (:func:`is_hdr`) as an SDR screen shows it: ``(H, W, 3) uint8`` BGR, BT.709."""
    matrix = Colorspace.BT2020 if int(frame.colorspace) in (2, BT2020) else None  # unnamed: HDR is BT.2020
    rgb16 = frame.to_ndarray(format="rgb48le", src_colorspace=matrix, interpolation=_FROM_YUV10)
    primaries = int(frame.color_primaries)
    return to_sdr(display_light(rgb16, int(frame.color_trc)), BT2020 if primaries == 2 else primaries)
