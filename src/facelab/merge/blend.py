"""Mask shaping and the ways a face is blended into a frame.

Conventions: images are ``(H, W, 3) float32`` BGR in ``[0, 1]``; masks are
``(H, W) float32`` in ``[0, 1]`` (an ``(H, W, 1)`` mask is accepted too).
Nothing here modifies its inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

from facelab.checks import check_image, check_mask, check_same_shape

REFERENCE_FACE_SIZE = 512
"""Erode and blur are given in pixels of a face this many pixels wide (see :func:`erode_blur_mask`)."""


def _check_mask(mask: np.ndarray, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    """The checked ``(H, W)`` mask as ``float32`` clipped to ``[0, 1]`` (a new array)."""
    mask = check_mask(mask, name, shape=shape)
    return np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)


def erode_blur_mask(mask: np.ndarray, erode: int = 0, blur: int = 0) -> np.ndarray:
    """Shrink or grow a face mask, then feather its edge inward.

    Works on a mask in aligned-face space (the square crop the model sees).
    As in DeepFaceLab, the amounts are relative to the face size: they are
    pixels of a :data:`REFERENCE_FACE_SIZE` (512) px face, scaled to the
    mask's side (``erode=32`` on a 256 px mask erodes 16 px).

    Args:
        mask: ``(S, S)`` (or ``(H, W)``) float32 mask in ``[0, 1]``.
        erode: ``-200..200``; positive shrinks the mask, negative grows it.
        blur: ``0..400``; width of the soft edge (the merge passes its default
            feather plus the ``blur`` setting, see ``facelab.merge.compose.feather_width``). The edge is feathered inward:
            the mask is first eroded by half the width, then Gaussian-blurred
            with a kernel of that width, so nothing outside the (eroded or
            grown) mask becomes non-zero and the core stays at 1.

    Returns:
        ``(H, W) float32`` mask in ``[0, 1]``. Pixels within the blur width of
        the crop border are zero, so the mask fades out before the crop's edge.
    """
    mask = _check_mask(mask, None, "erode_blur_mask")
    if not -200 <= int(erode) <= 200 or not 0 <= int(blur) <= 400:
        raise ValueError(f"erode_blur_mask: erode must be in -200..200 and blur in 0..400, got {erode}, {blur}")
    scale = max(mask.shape) / REFERENCE_FACE_SIZE
    ero = int(round(abs(erode) * scale)) * (1 if erode >= 0 else -1)
    radius = int(round(blur * scale / 2))  # half the feather width
    out = mask.copy()
    if ero == 0 and radius == 0:
        return out
    pad = max(-ero, 0) + 1  # room to grow beyond the crop; zero outside it
    out = cv2.copyMakeBorder(out, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if ero > 0:
        out = cv2.erode(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ero + 1, 2 * ero + 1)))
    elif ero < 0:
        out = cv2.dilate(out, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (-2 * ero + 1, -2 * ero + 1)))
    out = out[pad:-pad, pad:-pad]
    if radius > 0:
        # erode with a zero border: the feather stays inside the mask and the crop
        # a square kernel, matching the Gaussian's square support: nothing
        # leaks past the mask even at the kernel's corners
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        out = cv2.erode(out, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        # sigma ~ radius / 2.5: the Gaussian is ~0 at the kernel edge, so the
        # feather ends where the eroded-away band ends
        out = cv2.GaussianBlur(out, (2 * radius + 1, 2 * radius + 1), radius / 2.5, borderType=cv2.BORDER_CONSTANT)
    return np.clip(out, 0.0, 1.0)


def overlay(frame: np.ndarray, face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Alpha-blend ``face`` over ``frame``: ``frame * (1 - mask) + face * mask``.

    Args:
        frame: ``(H, W, 3) float32`` BGR ``[0, 1]``.
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, already in frame geometry.
        mask: ``(H, W)`` float32 ``[0, 1]``.

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]``.
    """
    check_image(frame, "overlay frame")
    check_image(face, "overlay face")
    check_same_shape(face, frame, "overlay", "face", "frame")
    m = _check_mask(mask, frame.shape, "overlay mask")[..., None]
    return frame * (1.0 - m) + face * m  # exact at m == 0 and m == 1


def paste(frame: np.ndarray, face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paste ``face`` over ``frame`` where ``mask >= 0.5``, no blending (the ``raw-rgb`` mode).

    Args:
        frame: ``(H, W, 3) float32`` BGR ``[0, 1]``.
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, already in frame geometry.
        mask: ``(H, W)`` float32 ``[0, 1]``.

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]``, a new array.
    """
    check_image(frame, "paste frame")
    check_image(face, "paste face")
    check_same_shape(face, frame, "paste", "face", "frame")
    hard = check_mask(mask, "paste mask", shape=frame.shape) >= 0.5
    out = frame.copy()
    out[hard] = face[hard]
    return out


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def seamless(frame: np.ndarray, face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson-blend ``face`` into ``frame`` inside ``mask`` (``cv2.seamlessClone``, NORMAL_CLONE).

    The gradients of ``face`` are kept and its colours adjusted so it meets the
    frame at the mask's edge (Pérez, Gangnet, Blake 2003). The clone runs on
    the mask's bounding box only, with a replicated border so masks touching
    the frame's edge work. The result is then alpha-blended with ``mask`` so
    that pixels where ``mask == 0`` equal ``frame`` exactly and a soft mask
    edge stays soft.

    Args:
        frame: ``(H, W, 3) float32`` BGR ``[0, 1]``.
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, already in frame geometry.
        mask: ``(H, W)`` float32 ``[0, 1]``; the clone region is ``mask > 0``.

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]``. The clone itself is computed in
        8 bits (OpenCV's limit).
    """
    check_image(frame, "seamless frame")
    check_image(face, "seamless face")
    check_same_shape(face, frame, "seamless", "face", "frame")
    soft = _check_mask(mask, frame.shape, "seamless mask")
    region = soft > 0
    if not region.any():
        return frame.copy()
    ys, xs = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    if min(y1 - y0, x1 - x0) < 3:  # too small to solve; plain overlay
        return overlay(frame, face, soft)
    margin = 4
    box = (slice(y0, y1), slice(x0, x1))

    def padded(a: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(a, margin, margin, margin, margin, cv2.BORDER_REPLICATE)

    dst = padded(_to_u8(frame[box]))
    src = padded(_to_u8(face[box]))
    clone_mask = cv2.copyMakeBorder(region[box].astype(np.uint8) * 255, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
    # seamlessClone centres the mask's bounding box on `center` (top-left = center - size // 2)
    h, w = y1 - y0, x1 - x0
    center = (margin + w // 2, margin + h // 2)
    cloned = cv2.seamlessClone(src, dst, clone_mask, center, cv2.NORMAL_CLONE)
    result = face.copy()
    result[box] = cloned[margin : margin + h, margin : margin + w].astype(np.float32) / 255.0
    return overlay(frame, result, soft)


def _hist_inputs(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None, threshold: int, name: str) -> np.ndarray:
    """Check the histogram-match inputs; the ``(H, W) bool`` pixels to measure."""
    check_image(face, f"{name} face")
    check_image(reference, f"{name} reference")
    check_same_shape(face, reference, name, "face", "reference")
    if not 1 <= int(threshold) <= 255:
        raise ValueError(f"{name}: threshold must be in 1..255, got {threshold}")
    return np.ones(face.shape[:2], bool) if mask is None else _check_mask(mask, face.shape, f"{name} mask") > 0.5


def hist_match(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, threshold: int = 238) -> np.ndarray:
    """Per-channel histogram matching of ``face`` to ``reference`` inside ``mask``.

    Each channel value ``v`` of ``face`` maps to ``Q_ref(F_face(v) * threshold / 255)``,
    where ``F_face`` is the face's cumulative distribution (mid-rank) and
    ``Q_ref`` the reference's quantile function, both measured on the pixels
    with ``mask > 0.5``. ``threshold=255`` is plain histogram matching; lower
    values squeeze the face into the reference's lower ``threshold / 255`` of
    values, so the reference's brightest ``(255 - threshold) / 255`` (specular
    highlights) are left out, as DeepFaceLab's hist-match threshold does.
    (Until 2026-12-04 facelab stretched the other way, which pushed the face's
    brightest 7 % per channel to the reference maximum: pale pink patches on
    the cheeks and nose at the default 238.)

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to change.
        reference: ``(H, W, 3) float32`` BGR ``[0, 1]`` (same size as ``face``).
        mask: optional ``(H, W)`` mask of the pixels to measure in both.
        threshold: ``1..255``.

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]`` (every pixel mapped); ``face``
        copied when the mask is empty.
    """
    sel = _hist_inputs(face, reference, mask, threshold, "hist_match")
    if not sel.any():
        return face.copy()
    out = np.empty_like(face)
    squeeze = int(threshold) / 255.0
    for c in range(3):
        out[..., c] = _match_channel(face[..., c], reference[..., c], sel, squeeze)
    return np.clip(out, 0.0, 1.0)


def _match_channel(chan: np.ndarray, ref: np.ndarray, sel: np.ndarray, squeeze: float) -> np.ndarray:
    """Map every value of ``chan`` through ``Q_ref(F_chan(v) * squeeze)`` (measured on ``sel``; ``squeeze`` in (0, 1])."""
    f_vals = np.sort(chan[sel])
    r_vals = np.sort(ref[sel])
    lo = np.searchsorted(f_vals, chan, side="left")
    hi = np.searchsorted(f_vals, chan, side="right")
    q = np.clip((lo + hi) / (2.0 * len(f_vals)) * squeeze, 0.0, 1.0)
    ref_q = (np.arange(len(r_vals)) + 0.5) / len(r_vals)
    return np.interp(q, ref_q, r_vals).astype(np.float32)


def hist_match_bw(face: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None, threshold: int = 238) -> np.ndarray:
    """Histogram-match only the luma of ``face`` to ``reference``; keep the face's chroma.

    Both images go to YCrCb (OpenCV, float: Y in ``[0, 1]``); ``Y`` is matched
    as one channel of :func:`hist_match` (same mask and threshold rules) and
    ``Cr``/``Cb`` of ``face`` are kept, so the swap takes the dst face's
    lighting and contrast but keeps its own skin tone. Pixels whose new
    luma falls outside the BGR gamut are clipped, which moves their chroma.

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to change.
        reference: ``(H, W, 3) float32`` BGR ``[0, 1]`` (same size as ``face``).
        mask: optional ``(H, W)`` mask of the pixels to measure in both.
        threshold: ``1..255``.

    Returns:
        ``(H, W, 3) float32`` BGR ``[0, 1]``; ``face`` copied when the mask is empty.
    """
    sel = _hist_inputs(face, reference, mask, threshold, "hist_match_bw")
    if not sel.any():
        return face.copy()
    ycc = cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb)
    ref_y = cv2.cvtColor(reference, cv2.COLOR_BGR2YCrCb)[..., 0]
    ycc[..., 0] = _match_channel(ycc[..., 0], ref_y, sel, int(threshold) / 255.0)
    return np.clip(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR), 0.0, 1.0)
