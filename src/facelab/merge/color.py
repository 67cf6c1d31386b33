"""Colour transfer: make one face image take on the colours of another.

Both functions take ``(H, W, 3) float32`` BGR images in ``[0, 1]`` and return
the recoloured ``target`` with the same shape, ``float32``, clipped to
``[0, 1]``. Optional ``(H, W)`` masks choose the pixels the statistics are
computed from (pixels where the mask is ``> 0.5``); the transfer itself is
applied to every pixel of ``target``. ``source`` and ``target`` may differ in
size.
"""

from __future__ import annotations

import cv2
import numpy as np

_EPS = 1e-6


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.float32:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: expected (H, W, 3) float32 in [0, 1], got {got}")
    return image


def _selected(pixels: np.ndarray, mask: np.ndarray | None, name: str) -> np.ndarray:
    """``(K, 3) float64`` pixels where ``mask > 0.5`` (all pixels when no mask)."""
    if mask is None:
        return pixels.reshape(-1, 3).astype(np.float64)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"{name}: expected a ({pixels.shape[0]}, {pixels.shape[1]}) mask, got {mask.shape}")
    return pixels[mask > 0.5].astype(np.float64)


def rct(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Reinhard colour transfer: match per-channel mean and standard deviation in Lab.

    Reinhard, Ashikhmin, Gooch, Shirley, "Color transfer between images" (2001),
    with OpenCV's CIE L*a*b* (float input: L in ``[0, 100]``, a/b about
    ``[-127, 127]``) instead of lαβ.

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``. If either mask selects no pixel,
        ``target`` is returned unchanged (copied).
    """
    _check_image(target, "rct target")
    _check_image(source, "rct source")
    t_lab = cv2.cvtColor(target, cv2.COLOR_BGR2Lab)
    s_lab = cv2.cvtColor(source, cv2.COLOR_BGR2Lab)
    t_px = _selected(t_lab, target_mask, "rct target_mask")
    s_px = _selected(s_lab, source_mask, "rct source_mask")
    if len(t_px) == 0 or len(s_px) == 0:
        return np.clip(target, 0.0, 1.0)
    t_mean, t_std = t_px.mean(0), t_px.std(0)
    s_mean, s_std = s_px.mean(0), s_px.std(0)
    scale = s_std / np.maximum(t_std, _EPS)
    out = (t_lab - t_mean.astype(np.float32)) * scale.astype(np.float32) + s_mean.astype(np.float32)
    # keep Lab inside the gamut OpenCV converts back sensibly
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    out[..., 1:] = np.clip(out[..., 1:], -127.0, 127.0)
    return np.clip(cv2.cvtColor(out, cv2.COLOR_Lab2BGR), 0.0, 1.0)


def _sqrtm_psd(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root (or inverse square root) of a PSD 3x3 matrix."""
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, _EPS)
    d = 1.0 / np.sqrt(w) if inverse else np.sqrt(w)
    return (v * d) @ v.T


def lct(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Linear colour transfer: match the mean and 3x3 colour covariance in BGR.

    Maps ``x -> T (x - mu_t) + mu_s`` with ``T = C_s^(1/2) C_t^(-1/2)`` (symmetric
    matrix square roots by eigendecomposition, Hertzmann's "PCA" variant), so
    the measured target pixels end with mean ``mu_s`` and covariance ``C_s``
    (before clipping).

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``target`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    _check_image(target, "lct target")
    _check_image(source, "lct source")
    t_px = _selected(target, target_mask, "lct target_mask")
    s_px = _selected(source, source_mask, "lct source_mask")
    if len(t_px) < 2 or len(s_px) < 2:
        return np.clip(target, 0.0, 1.0)
    t_mean, s_mean = t_px.mean(0), s_px.mean(0)
    t_cov = np.cov(t_px, rowvar=False, bias=True)
    s_cov = np.cov(s_px, rowvar=False, bias=True)
    transform = _sqrtm_psd(s_cov) @ _sqrtm_psd(t_cov, inverse=True)
    flat = target.reshape(-1, 3) - t_mean.astype(np.float32)
    out = flat @ transform.T.astype(np.float32) + s_mean.astype(np.float32)
    return np.clip(out.reshape(target.shape), 0.0, 1.0).astype(np.float32)
