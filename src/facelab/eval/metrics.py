"""Quality metrics of a face swap, as pure functions of images and landmarks.

Conventions: images are ``(H, W, 3) uint8`` BGR frames; masks ``(H, W) bool`` (or
``uint8``/``float`` where said); landmarks ``(68, 2)`` pixel coordinates in iBUG
300-W order (17-26 brows, 27-35 nose, 36-41 the subject's right eye, 42-47 the
left eye, 48-59 outer lips, 60-67 inner lips). Every per-frame measure returns a
Python ``float`` (``nan`` when it is undefined), so callers can average with
``nanmean``. ``docs/eval.md`` states each definition in words.
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.align import umeyama
from facelab.checks import check_image, check_points
from facelab.faceset.pose import yaw_pitch

INNER = np.arange(17, 68)
"""The inner face: brows, nose, eyes and mouth (no jaw line)."""
RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)


# --- checks -----------------------------------------------------------------------


def _image(x: np.ndarray, name: str) -> np.ndarray:
    return check_image(x, name, dtype=np.uint8)


def _pair(a: np.ndarray, b: np.ndarray, name: str) -> None:
    _image(a, name)
    _image(b, name)
    if a.shape != b.shape:
        raise ValueError(f"{name}: images differ in shape: {a.shape} and {b.shape}")


def _mask(m: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    m = np.asarray(m)
    if m.shape != tuple(shape[:2]):
        raise ValueError(f"{name}: expected an (H, W) mask of {tuple(shape[:2])}, got {m.shape}")
    return m.astype(bool) if m.dtype != bool else m


def _landmarks(p: np.ndarray, name: str) -> np.ndarray:
    return check_points(p, name, count=68, what="landmarks")


# --- regions ----------------------------------------------------------------------


def hull_region(landmarks: np.ndarray, shape: tuple[int, ...], points: np.ndarray | None = None) -> np.ndarray:
    """``(H, W) bool``: the filled convex hull of ``landmarks[points]`` (default all 68) in an image of ``shape``."""
    p = _landmarks(landmarks, "hull_region")
    if points is not None:
        p = p[points]
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(p).astype(np.int32)), 1)
    return mask.astype(bool)


def inner_face(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(H, W) bool``: hull of landmarks 17-67 (brows, nose, eyes, mouth), the region most metrics read."""
    return hull_region(landmarks, shape, INNER)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """``(H, W) bool`` mask grown by a disc of ``radius`` pixels."""
    r = max(0, int(round(radius)))
    if r == 0:
        return np.asarray(mask, bool).copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(np.asarray(mask, np.uint8), k).astype(bool)


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance in pixels between the two eye centres (means of points 36-41 and 42-47)."""
    p = _landmarks(landmarks, "inter_ocular")
    return float(np.linalg.norm(p[LEFT_EYE].mean(0) - p[RIGHT_EYE].mean(0)))


# --- per-frame measures -----------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def sharpness(image: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute Laplacian (3x3, 4-neighbour) of the grey image inside ``region``, grey levels 0..255.

    ``sharpness(out) / sharpness(dst)`` over the same region is the sharpness ratio
    (1 = as detailed as the dst face, under 1 = blurrier)."""
    _image(image, "sharpness")
    region = _mask(region, image.shape, "sharpness")
    if not region.any():
        return float("nan")
    lap = cv2.Laplacian(_gray(image), cv2.CV_32F, ksize=1)
    return float(np.abs(lap[region]).mean())


def expression_error(out: np.ndarray, dst: np.ndarray) -> float:
    """Landmark error of the output face against the dst face, points 17-67.

    The output points are mapped onto the dst points by the least-squares
    similarity transform (rotation, uniform scale, shift: :func:`facelab.align.umeyama`),
    so head position and size do not count; the mean point distance that remains
    is divided by the dst inter-ocular distance. 0 = the same expression."""
    return float(np.linalg.norm(expression_residual(out, dst), axis=1).mean())


def roll(landmarks: np.ndarray) -> float:
    """In-plane rotation in degrees: the angle of the line from the right eye centre (36-41, image left) to the
    left eye centre (42-47); positive when the face tilts clockwise in the image (its left eye lower)."""
    p = _landmarks(landmarks, "roll")
    v = p[LEFT_EYE].mean(0) - p[RIGHT_EYE].mean(0)
    return float(np.degrees(np.arctan2(v[1], v[0])))


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees: yaw and pitch from :func:`facelab.faceset.pose.yaw_pitch`, roll from :func:`roll`."""
    yaw, pitch = yaw_pitch(_landmarks(landmarks, "head_pose"))
    return yaw, pitch, roll(landmarks)


def pose_error(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Mean of the absolute yaw, pitch and roll differences, degrees (roll difference wrapped to +-180)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    d[2] = min(d[2], 360.0 - d[2])
    return float(d.mean())


def expression_residual(out: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``(51, 2)``: what :func:`expression_error` averages, kept per point.

    The output's points 17-67 after the similarity fit onto the dst points, minus
    the dst points, divided by the dst inter-ocular distance and turned by the dst
    face's roll, so the vectors are in the face's own axes (x from its right eye to
    its left, y down the face) and compare across frames. The mean length of the
    rows is ``expression_error(out, dst)``; ``nan`` rows where the dst eyes coincide."""
    o, d = _landmarks(out, "expression_residual")[INNER], _landmarks(dst, "expression_residual")[INNER]
    mat = umeyama(o, d)
    iod = inter_ocular(dst)
    if not iod > 0:
        return np.full((len(INNER), 2), np.nan)
    t = np.radians(roll(dst))
    unroll = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return ((o @ mat[:, :2].T + mat[:, 2] - d) / iod) @ unroll.T


def steady_and_moving(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split per-frame differences ``(N, ...)`` (``nan`` rows: not measured) into the clip's steady part, their
    median over frames, and what moves: ``values - steady``.

    Between two people the steady part of a landmark or pose difference is mostly
    the shape of their faces (a generic-face pose estimate reads a longer nose or a
    lower jaw as pitch); what moves is the output failing to follow dst."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v.reshape(len(v), -1)).all(1) if len(v) else np.zeros(0, bool)
    steady = np.median(v[ok], 0) if ok.any() else np.full(v.shape[1:], np.nan)
    return steady, v - steady


def pose_difference(out: tuple[float, float, float], dst: tuple[float, float, float]) -> np.ndarray:
    """Signed ``(yaw, pitch, roll)`` of the output minus dst's, degrees, roll wrapped to +-180; the absolute
    values average to :func:`pose_error`."""
    d = np.asarray(out, np.float64) - np.asarray(dst, np.float64)
    d[2] = (d[2] + 180.0) % 360.0 - 180.0
    return d


def mouth_opening(landmarks: np.ndarray) -> float:
    """Distance between the inner lips' middle points (62 top, 66 bottom) / inter-ocular distance."""
    p = _landmarks(landmarks, "mouth_opening")
    iod = inter_ocular(p)
    return float(np.linalg.norm(p[66] - p[62]) / iod) if iod > 0 else float("nan")


def eye_opening(landmarks: np.ndarray) -> float:
    """Eye aspect ratio averaged over both eyes: ``(|p1 - p5| + |p2 - p4|) / (2 |p0 - p3|)`` of each eye's six points."""
    p = _landmarks(landmarks, "eye_opening")
    ratios = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        e = p[eye]
        width = np.linalg.norm(e[0] - e[3])
        if width <= 0:
            return float("nan")
        ratios.append((np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2 * width))
    return float(np.mean(ratios))


def background_change(out: np.ndarray, references: list[np.ndarray], outside: np.ndarray) -> float:
    """Mean absolute difference (grey levels 0..255, over B, G, R) between ``out`` and the closest of
    ``references`` (the dst frame, and the dst frame carrying facelab's watermark), over the pixels of
    ``outside``. 0 = the background was left untouched."""
    _image(out, "background_change")
    outside = _mask(outside, out.shape, "background_change")
    if not outside.any():
        return float("nan")
    m = outside.astype(np.uint8)
    best = float("inf")
    for ref in references:
        _pair(out, ref, "background_change")
        best = min(best, float(np.mean(cv2.mean(cv2.absdiff(out, ref), mask=m)[:3])))
    return best


def seam_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """``(H, W) bool`` border of a blend mask (``uint8`` 0..255 or ``float`` 0..1): its soft edge (values
    strictly between 2 % and 98 %) plus ``width`` pixels either side of where it crosses one half."""
    m = np.asarray(mask)
    m = m.astype(np.float32) / 255.0 if m.dtype == np.uint8 else m.astype(np.float32)
    if m.ndim != 2:
        raise ValueError(f"seam_band: expected an (H, W) mask, got {m.shape}")
    soft = (m > 0.02) & (m < 0.98)
    inside = (m >= 0.5).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    edge = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, k).astype(bool)
    return soft | edge


def _gradient(image: np.ndarray) -> np.ndarray:
    g = _gray(image)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def seam_ratio(out: np.ndarray, dst: np.ndarray, band: np.ndarray) -> float:
    """Mean gradient magnitude (3x3 Sobel of grey) of ``out`` over the mask border ``band`` divided by that of
    ``dst`` over the same pixels. 1 = the border is as smooth as the original there; above 1 = a visible seam."""
    _pair(out, dst, "seam_ratio")
    band = _mask(band, out.shape, "seam_ratio")
    if not band.any():
        return float("nan")
    d = float(_gradient(dst)[band].mean())
    return float(_gradient(out)[band].mean()) / d if d > 0 else float("nan")


def _lab(image: np.ndarray, blur: float = 0.0) -> np.ndarray:
    f = image.astype(np.float32) / 255.0
    if blur > 0:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    return cv2.cvtColor(f, cv2.COLOR_BGR2Lab)  # L 0..100, a* b* about -127..127


def mean_lab(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``(3,) float64`` mean CIE L*, a*, b* (D65) inside ``region``."""
    _image(image, "mean_lab")
    region = _mask(region, image.shape, "mean_lab")
    if not region.any():
        return np.full(3, np.nan)
    return _lab(image)[region].mean(0).astype(np.float64)


COLOR_BLUR = 2.0
"""Gaussian sigma (pixels) applied before the per-pixel colour comparison: texture of the new face is not colour."""


def color_difference(out: np.ndarray, dst: np.ndarray, region: np.ndarray, blur: float = COLOR_BLUR) -> tuple[float, float]:
    """``(mean, 95th percentile)`` over ``region`` of the per-pixel chroma difference
    ``sqrt(da*^2 + db*^2)`` (CIE Lab units) between ``out`` and ``dst``, both smoothed by a Gaussian of
    ``blur`` pixels. Lightness is left out: a new face may be lit differently; a coloured patch is not."""
    _pair(out, dst, "color_difference")
    region = _mask(region, out.shape, "color_difference")
    if not region.any():
        return float("nan"), float("nan")
    d = _lab(out, blur)[..., 1:] - _lab(dst, blur)[..., 1:]
    per_pixel = np.sqrt((d[region] ** 2).sum(1))
    return float(per_pixel.mean()), float(np.percentile(per_pixel, 95))


# --- per-sequence measures --------------------------------------------------------


def _centred_pairs(a: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The steps of two ``(T,)`` series where both are finite, each minus its mean; ``None`` with fewer than 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"{name}: expected two (T,) series, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    return a[ok] - a[ok].mean(), b[ok] - b[ok].mean()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two ``(T,)`` series over the steps where both are finite; ``nan`` with fewer
    than 3 such steps or a constant series."""
    pairs = _centred_pairs(a, b, "correlation")
    if pairs is None:
        return float("nan")
    x, y = pairs
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def gain(reference: np.ndarray, follower: np.ndarray) -> float:
    """Least-squares slope of ``follower`` on ``reference`` (two ``(T,)`` series) over the steps where both are
    finite: how far the follower moves per unit the reference moves (1 = as far, 0 = not at all, negative =
    the other way). Noise in the follower does not bias it; ``nan`` with fewer than 3 such steps or a
    constant reference."""
    pairs = _centred_pairs(reference, follower, "gain")
    if pairs is None:
        return float("nan")
    x, y = pairs
    den = (x * x).sum()
    return float((x * y).sum() / den) if den > 0 else float("nan")


def jitter(tracks: np.ndarray) -> np.ndarray:
    """Landmark jitter per frame: ``(T, 68, 2)`` landmarks (``nan`` where no face) -> ``(T,)``.

    At frame t: the mean over the 68 points of ``|L[t+1] - 2 L[t] + L[t-1]|`` (the second difference,
    i.e. acceleration, which steady motion does not produce), divided by the inter-ocular distance at t.
    ``nan`` at the first and last frame and wherever one of the three frames has no face."""
    L = np.asarray(tracks, np.float64)
    if L.ndim != 3 or L.shape[1:] != (68, 2):
        raise ValueError(f"jitter: expected (T, 68, 2) landmarks, got {L.shape}")
    out = np.full(len(L), np.nan)
    if len(L) < 3:
        return out
    acc = np.linalg.norm(L[2:] - 2 * L[1:-1] + L[:-2], axis=2).mean(1)
    iod = np.linalg.norm(L[1:-1, LEFT_EYE].mean(1) - L[1:-1, RIGHT_EYE].mean(1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:-1] = np.where(iod > 0, acc / iod, np.nan)
    return out


def color_flicker(offsets: np.ndarray) -> np.ndarray:
    """Face colour flicker against dst: ``(T, 3)`` per-frame Lab offsets ``mean_lab(out) - mean_lab(dst)`` over
    the inner face -> ``(T,)`` Euclidean change of that offset from the previous frame (``nan`` at the first
    frame and next to a frame without a face). A constant offset does not flicker; 0 = the face's colour
    follows the dst frame's exactly."""
    c = np.asarray(offsets, np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"color_flicker: expected (T, 3) offsets, got {c.shape}")
    out = np.full(len(c), np.nan)
    if len(c) >= 2:
        out[1:] = np.linalg.norm(c[1:] - c[:-1], axis=1)
    return out


# --- reconstruction ---------------------------------------------------------------

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable filter of ``(H, W, C)`` by ``taps`` along both axes, 'valid' region only (no padding)."""
    k = len(taps)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=0) @ taps  # (H-k+1, W, C)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ taps  # (H-k+1, W-k+1, C)


def _float_pair(a: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"{name}: expected two equal (H, W) or (H, W, C) images, got {a.shape} and {b.shape}")
    if a.dtype == np.uint8 or b.dtype == np.uint8:
        if a.dtype != b.dtype:
            raise ValueError(f"{name}: mixed dtypes {a.dtype} and {b.dtype}")
        a, b = a / 255.0, b / 255.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    return a, b


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Structural similarity (Wang, Bovik, Sheikh, Simoncelli 2004) of two images.

    Images: ``(H, W)`` or ``(H, W, C)``, ``uint8`` (0..255) or float in ``[0, 1]``; the dynamic range L is 1
    after scaling. Local means, variances and covariance come from an 11x11 Gaussian window (sigma 1.5),
    at every position where the window lies wholly inside the image; ``C1 = (0.01 L)^2``,
    ``C2 = (0.03 L)^2``; the SSIM map is averaged over those positions and over channels. With
    ``region`` (``(H, W)`` bool), only windows centred inside it are averaged."""
    x, y = _float_pair(a, b, "ssim")
    h, w = x.shape[:2]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim: images {h}x{w} are smaller than the {SSIM_WINDOW} px window")
    g = _gaussian_taps(SSIM_WINDOW, SSIM_SIGMA)
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    if region is None:
        return float(smap.mean())
    r = SSIM_WINDOW // 2
    centres = _mask(region, (h, w), "ssim")[r:h - r, r:w - r]
    return float(smap[centres].mean()) if centres.any() else float("nan")


PSNR_CAP = 100.0
"""dB reported for identical images (the true value is infinite, which JSON cannot hold)."""


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` on the ``[0, 1]`` scale (uint8 is divided by
    255), MSE over all channels of the pixels in ``region`` (default all); :data:`PSNR_CAP` when equal."""
    x, y = _float_pair(a, b, "psnr")
    d = (x - y) ** 2
    if region is not None:
        d = d[_mask(region, x.shape[:2], "psnr")]
    if d.size == 0:
        return float("nan")
    mse = float(d.mean())
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else float(10 * np.log10(1.0 / mse))
