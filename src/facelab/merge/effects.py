"""Image effects of the merge that make a sharp, clean swap match a softer video.

Face effects take and return an aligned face ``(R, R, 3) float32`` BGR in
``[0, 1]``; :func:`motion_blur` works on a face already in frame geometry and
:func:`denoise_frame` on a whole ``(H, W, 3) uint8`` frame. Amounts are the
merge settings' integers; 0 returns the input unchanged (copied), so an option
that is off costs nothing. Sizes are relative to the face, so a setting looks
the same for a 96 px and a 512 px model.
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.checks import check_image

COLOR_DEGRADE_LEVELS = 8
"""Levels per channel of the reduced-precision face that ``degrade_color`` blends toward
(8 = 3 bits per channel, 512 colours, about DeepFaceLab's 256-colour palette)."""


def _check_amount(amount: int, lo: int, hi: int, name: str) -> int:
    if not lo <= int(amount) <= hi:
        raise ValueError(f"{name}: amount must be in {lo}..{hi}, got {amount}")
    return int(amount)


def degrade_color(face: np.ndarray, power: int) -> np.ndarray:
    """Blend a face toward a copy quantised to :data:`COLOR_DEGRADE_LEVELS` levels per channel.

    DeepFaceLab's "color degrade power": a swap with smoother colour gradients
    than the (compressed) video looks pasted on; a little banding hides that.

    Args:
        face: ``(R, R, 3) float32`` BGR ``[0, 1]``.
        power: ``0..100``, the weight of the quantised copy in percent.

    Returns:
        ``(R, R, 3) float32`` BGR ``[0, 1]``.
    """
    check_image(face, "degrade_color")
    p = _check_amount(power, 0, 100, "degrade_color") / 100.0
    if p == 0:
        return face.copy()
    steps = COLOR_DEGRADE_LEVELS - 1
    quantised = np.round(face * steps) / steps
    return np.clip(face * (1.0 - p) + quantised * p, 0.0, 1.0).astype(np.float32)


def bicubic_degrade(face: np.ndarray, power: int) -> np.ndarray:
    """Downscale a face bicubically by ``1 + 3 * power / 100`` (up to 4x) and scale it back.

    Args:
        face: ``(R, R, 3) float32`` BGR ``[0, 1]``.
        power: ``0..100``.

    Returns:
        ``(R, R, 3) float32`` BGR ``[0, 1]``, as sharp as a face ``R / factor`` px wide.
    """
    check_image(face, "bicubic_degrade")
    p = _check_amount(power, 0, 100, "bicubic_degrade")
    h, w = face.shape[:2]
    factor = 1.0 + 3.0 * p / 100.0
    small = (max(1, int(round(w / factor))), max(1, int(round(h / factor))))
    if p == 0 or small == (w, h):
        return face.copy()
    down = cv2.resize(face, small, interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.resize(down, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def sharpen(face: np.ndarray, amount: int) -> np.ndarray:
    """Unsharp-mask (``amount > 0``) or blur (``amount < 0``) a face.

    Both use a Gaussian of sigma ``R / 128`` px (1 px on a 128 px face): positive
    amounts add ``1.5 * amount / 100`` times the detail above that Gaussian
    (``face + k * (face - blur)``); negative amounts blend toward a Gaussian of
    twice that sigma, with weight ``-amount / 100``.

    Args:
        face: ``(R, R, 3) float32`` BGR ``[0, 1]``.
        amount: ``-100..100``.

    Returns:
        ``(R, R, 3) float32`` BGR ``[0, 1]``.
    """
    check_image(face, "sharpen")
    a = _check_amount(amount, -100, 100, "sharpen") / 100.0
    if a == 0:
        return face.copy()
    sigma = max(face.shape[:2]) / 128.0
    if a > 0:
        blurred = cv2.GaussianBlur(face, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return np.clip(face + (1.5 * a) * (face - blurred), 0.0, 1.0)
    blurred = cv2.GaussianBlur(face, (0, 0), 2.0 * sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(face * (1.0 + a) - blurred * a, 0.0, 1.0)


FACE_EFFECTS = {"bicubic_degrade": bicubic_degrade, "degrade_color": degrade_color, "sharpen": sharpen}
"""The aligned-face effects, keyed by their merge setting, in the order the merge applies them:
``effect(face (R, R, 3) float32 BGR [0, 1], amount) -> new (R, R, 3) float32 BGR [0, 1]``; amount 0 is a copy."""


def motion_kernel(dx: float, dy: float, length: int) -> np.ndarray:
    """``(K, K) float32`` line kernel of ``length`` px along ``(dx, dy)``, summing to 1."""
    k = max(int(length), 1)
    size = 2 * (k // 2) + 1
    kernel = np.zeros((size, size), np.float32)
    norm = float(np.hypot(dx, dy))
    ux, uy = (dx / norm, dy / norm) if norm > 0 else (1.0, 0.0)
    c = size // 2
    half = (k - 1) / 2.0
    # sample the segment densely and splat: thin, centred, any angle
    for t in np.linspace(-half, half, 4 * k + 1):
        kernel[int(round(c + uy * t)), int(round(c + ux * t))] += 1.0
    return kernel / kernel.sum()


def motion_blur(face: np.ndarray, motion: tuple[float, float] | None, power: int, face_width: float) -> np.ndarray:
    """Blur a face (in frame geometry) along its motion between the previous frame and this one.

    As DeepFaceLab: the blur length is the motion's length (frame pixels) times
    ``power / 100``, at most a quarter of the face's width (a longer smear
    only shows that the face moved fast, not where it is).

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the predicted face warped into the frame ROI.
        motion: ``(dx, dy)`` in frame pixels, or None (no blur).
        power: ``0..100``.
        face_width: the face's width in frame pixels (caps the blur length).

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]``.
    """
    check_image(face, "motion_blur")
    p = _check_amount(power, 0, 100, "motion_blur")
    if p == 0 or motion is None:
        return face.copy()
    dx, dy = (float(v) for v in motion)
    length = int(round(min(np.hypot(dx, dy) * p / 100.0, face_width / 4.0)))
    if length < 2:
        return face.copy()
    return cv2.filter2D(face, -1, motion_kernel(dx, dy, length), borderType=cv2.BORDER_REPLICATE)


def denoise_frame(frame: np.ndarray, power: int) -> np.ndarray:
    """Denoise a whole frame before the merge, as DeepFaceLab's "image denoise power".

    Each full 100 of ``power`` is one 5x5 median filter pass; the rest blends
    one more pass in proportionally (``power=150``: one pass, then half of a
    second). Median filtering is fast enough for every frame (a few ms at
    1280x720), unlike non-local means.

    Args:
        frame: ``(H, W, 3) uint8`` BGR.
        power: ``0..500``.

    Returns:
        ``(H, W, 3) uint8`` BGR.
    """
    check_image(frame, "denoise_frame", dtype=np.uint8)
    n = _check_amount(power, 0, 500, "denoise_frame")
    out = frame.copy()
    while n > 0:
        filtered = cv2.medianBlur(out, 5)
        if n >= 100:
            out = filtered
        else:
            w = n / 100.0
            out = cv2.addWeighted(out, 1.0 - w, filtered, w, 0.0)
        n -= 100
    return out
