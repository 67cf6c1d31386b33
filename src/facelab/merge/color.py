"""Colour transfer: make one face image take on the colours of another.

Methods, all in :data:`COLOR_TRANSFERS` (run by name with :func:`color_transfer`):
``rct`` (Lab mean/std), ``lct`` (BGR mean/covariance), ``mkl`` (the optimal
linear map between the BGR Gaussians), ``idt`` (iterative distribution transfer)
and ``sot`` (sliced optimal transport); the last two match the whole 3-D colour
distribution, not only its first two moments.

All take ``(H, W, 3) float32`` BGR images in ``[0, 1]`` and return
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

    The colour channels (a*, b*) are matched in mean, and their spread is
    narrowed to the source's but never widened: a face from a model early in
    training is blurred and has less colour spread than the real dst face, and
    widening it turns the faint grey-blue shading around its eyes and chin into
    teal and green patches (measured with ``facelab eval`` after 5 minutes of
    ``quick`` on two pairs: colour flicker 0.90 -> 0.77 and 0.44 -> 0.40, mean
    a*b* difference 9.7 -> 9.5 and 6.5 -> 6.0). Lightness keeps Reinhard's
    full match.

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``target`` unchanged (copied)
        when a mask selects fewer than 2 pixels (one pixel has no spread to match).
    """
    _check_image(target, "rct target")
    _check_image(source, "rct source")
    t_lab = cv2.cvtColor(target, cv2.COLOR_BGR2Lab)
    s_lab = cv2.cvtColor(source, cv2.COLOR_BGR2Lab)
    t_px = _selected(t_lab, target_mask, "rct target_mask")
    s_px = _selected(s_lab, source_mask, "rct source_mask")
    if len(t_px) < 2 or len(s_px) < 2:
        return np.clip(target, 0.0, 1.0)
    t_mean, t_std = t_px.mean(0), t_px.std(0)
    s_mean, s_std = s_px.mean(0), s_px.std(0)
    scale = s_std / np.maximum(t_std, _EPS)
    scale[1:] = np.minimum(scale[1:], 1.0)  # a*, b*: narrow, never widen (see above)
    out = (t_lab - t_mean.astype(np.float32)) * scale.astype(np.float32) + s_mean.astype(np.float32)
    # keep Lab inside the gamut OpenCV converts back sensibly
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    out[..., 1:] = np.clip(out[..., 1:], -127.0, 127.0)
    return np.clip(cv2.cvtColor(out, cv2.COLOR_Lab2BGR), 0.0, 1.0)


def _sqrtm_psd(cov: np.ndarray, inverse: bool = False, floor: float = _EPS) -> np.ndarray:
    """Symmetric square root (or inverse square root) of a PSD 3x3 matrix, eigenvalues floored at ``floor``."""
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, floor)
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


def _measured(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None,
    source_mask: np.ndarray | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Check both images and return the measured ``(K, 3)`` target and ``(M, 3)`` source pixels (float64)."""
    _check_image(target, f"{name} target")
    _check_image(source, f"{name} source")
    t_px = _selected(target, target_mask, f"{name} target_mask")
    s_px = _selected(source, source_mask, f"{name} source_mask")
    return t_px, s_px


def mkl(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Monge-Kantorovitch linear colour transfer: the optimal-transport linear map between two Gaussians.

    Pitie, Kokaram, "The linear Monge-Kantorovitch linear colour mapping for
    example-based colour transfer" (CVMP 2007). Maps ``x -> T (x - mu_t) + mu_s``
    in BGR with
    ``T = C_t^(-1/2) (C_t^(1/2) C_s C_t^(1/2))^(1/2) C_t^(-1/2)``, the one symmetric
    positive map with ``T C_t T = C_s``; of all linear maps that give the measured
    target pixels mean ``mu_s`` and covariance ``C_s`` (before clipping), it moves
    the colours the least (unlike :func:`lct`, it does not rotate them).

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``target`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    t_px, s_px = _measured(target, source, target_mask, source_mask, "mkl")
    if len(t_px) < 2 or len(s_px) < 2:
        return np.clip(target, 0.0, 1.0)
    t_mean, s_mean = t_px.mean(0), s_px.mean(0)
    t_cov = np.cov(t_px, rowvar=False, bias=True)
    s_cov = np.cov(s_px, rowvar=False, bias=True)
    t_half, t_inv_half = _sqrtm_psd(t_cov), _sqrtm_psd(t_cov, inverse=True)
    # no floor inside: the middle product's eigenvalues are variance products (~1e-4) and may be tiny
    middle = _sqrtm_psd(t_half @ s_cov @ t_half, floor=0.0)
    transform = t_inv_half @ middle @ t_inv_half
    flat = target.reshape(-1, 3) - t_mean.astype(np.float32)
    out = flat @ transform.T.astype(np.float32) + s_mean.astype(np.float32)
    return np.clip(out.reshape(target.shape), 0.0, 1.0).astype(np.float32)


# --- 1-D marginal matching, shared by idt and sot -----------------------------------------------


def _marginal_maps(t_proj: np.ndarray, s_proj: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monotone 1-D maps that send each row of ``t_proj`` to the distribution of that row of ``s_proj``.

    Rows, not columns: reductions along contiguous rows are several times faster
    in numpy than along the 3 columns of an ``(N, 3)`` array.

    Args:
        t_proj: ``(D, K) float32`` projections of the measured target pixels.
        s_proj: ``(D, M) float32`` projections of the measured source pixels.
        bins: histogram bins per row.

    Returns:
        ``(first, width, shift)``: per row the bin centres ``first + width * k``
        (``k = 0..bins-1``; ``first``, ``width`` ``(D, 1) float32``) and
        ``shift (D, bins) float32``, the displacement ``Q_s(F_t(v)) - v`` at each
        centre (``F_t`` the target CDF, ``Q_s`` the source quantile function, both
        from histograms, linear within a bin). See :func:`_apply_maps`.
    """
    d = t_proj.shape[0]
    lo = np.minimum(t_proj.min(1), s_proj.min(1)).astype(np.float64)
    hi = np.maximum(t_proj.max(1), s_proj.max(1)).astype(np.float64)
    # a grid a hair wider than the measured range: every measured value lands in a bin without clipping
    width = np.maximum(hi - lo, _EPS) * (1 + 1e-4) / bins
    lo32, inv32 = lo.astype(np.float32)[:, None], (1.0 / width).astype(np.float32)[:, None]
    offsets = (np.arange(d) * bins).astype(np.float32)[:, None]

    def cdf(proj: np.ndarray) -> np.ndarray:
        pos = proj - lo32
        pos *= inv32
        pos += offsets  # row k's bins are k * bins .. k * bins + bins - 1 of one bincount
        # a tiny count in every bin keeps the CDF strictly increasing, so np.interp can invert it
        hist = np.bincount(pos.astype(np.int32).ravel(), minlength=d * bins).reshape(d, bins) + 1e-3
        c = np.zeros((d, bins + 1))
        np.cumsum(hist, axis=1, out=c[:, 1:])
        return c / c[:, -1:]

    cdf_t, cdf_s = cdf(t_proj), cdf(s_proj)
    # Knots at bin centres, each sent to the source quantile of the middle of its bin's probability
    # mass: a point mass (a constant image, saturated pixels) then goes to the middle of its quantile
    # range, not to its lower end; when source == target every centre maps to itself.
    edges = np.arange(bins + 1, dtype=np.float64)  # in bin units: value = lo + width * edge
    mid_t = 0.5 * (cdf_t[:, :-1] + cdf_t[:, 1:])
    shift = np.stack([(np.interp(mid_t[k], cdf_s[k], edges) - edges[:-1] - 0.5) * width[k] for k in range(d)])
    return (lo + 0.5 * width).astype(np.float32)[:, None], width.astype(np.float32)[:, None], shift.astype(np.float32)


def _apply_maps(proj: np.ndarray, first: np.ndarray, width: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``(D, N) float32`` displacements of ``(D, N)`` projections under the maps of :func:`_marginal_maps`.

    Linear between knots; outside them the end displacement is kept (a
    shift, not a clamp), so unmeasured pixels beyond the measured range keep their order.
    """
    d, knots = shift.shape
    # one more column (slope 0 after the last knot) so the last knot needs no special case
    value = np.concatenate([shift, shift[:, -1:]], axis=1)
    slope = np.diff(value, axis=1, append=value[:, -1:])
    pos = proj - first
    pos /= width
    np.minimum(np.maximum(pos, 0.0, out=pos), knots - 1, out=pos)
    pos += (np.arange(d) * (knots + 1)).astype(np.float32)[:, None]  # into row k of the flattened tables
    i = pos.astype(np.int32)
    pos -= i  # now the fraction within the bin
    pos *= np.take(slope.ravel(), i)
    pos += np.take(value.ravel(), i)
    return pos


def _rows(
    target: np.ndarray, t_px: np.ndarray, s_px: np.ndarray, masked: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(3, N)`` all target pixels, ``(3, K)`` measured target pixels (``None`` when they are all
    of them) and ``(3, M)`` measured source pixels, ``float32``, one channel per contiguous row."""
    pixels = np.array(target.reshape(-1, 3).T, order="C")  # always a copy: it is updated in place
    measured = np.ascontiguousarray(t_px.T, dtype=np.float32) if masked else None
    return pixels, measured, np.ascontiguousarray(s_px.T, dtype=np.float32)


def _from_rows(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, np.float32)
    out.reshape(-1, 3)[:] = pixels.T
    return np.clip(out, 0.0, 1.0, out=out)


def _check_positive(value: float, name: str, minimum: float = 1) -> None:
    if not value >= minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {value!r}")


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random ``(3, 3)`` rotation (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def idt(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
    *,
    iterations: int = 10,
    bins: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Iterative distribution transfer: match the full 3-D colour distribution by repeated 1-D matching.

    Pitie, Kokaram, Dahyot, "N-dimensional probability density function transfer
    and its application to colour transfer" (ICCV 2005). Each iteration draws a
    random rotation of BGR space (from ``seed``, so the result is deterministic),
    projects the measured target and source pixels on its three axes, matches each
    1-D marginal by histogram (CDF) matching and rotates back. The per-iteration
    1-D maps are applied to every target pixel, so the masks only choose the
    statistics.

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.
        iterations: number of random rotations (>= 0; 0 returns ``target``).
        bins: histogram bins per 1-D marginal (>= 2).
        seed: seed of the random rotations.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``target`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    t_px, s_px = _measured(target, source, target_mask, source_mask, "idt")
    _check_positive(iterations, "idt iterations", 0)
    _check_positive(bins, "idt bins", 2)
    if len(t_px) < 2 or len(s_px) < 2:
        return np.clip(target, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    pixels, measured, source_px = _rows(target, t_px, s_px, target_mask is not None)
    for _ in range(iterations):
        rot = _random_rotation(rng).astype(np.float32)  # columns are the three axes
        t_proj = rot.T @ (pixels if measured is None else measured)
        lo, width, shift = _marginal_maps(t_proj, rot.T @ source_px, bins)
        if measured is not None:
            pixels += rot @ _apply_maps(rot.T @ pixels, lo, width, shift)
            measured += rot @ _apply_maps(t_proj, lo, width, shift)
        else:
            pixels += rot @ _apply_maps(t_proj, lo, width, shift)
    return _from_rows(pixels, target.shape)


def sot(
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
    *,
    iterations: int = 10,
    batch_directions: int = 4,
    step: float = 1.0,
    bins: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Sliced optimal transport colour transfer: descend the sliced Wasserstein distance to the source colours.

    Rabin, Peyre, Delon, Bernot, "Wasserstein barycenter and its application to
    texture mixing" (SSVM 2011); Bonneel et al., "Sliced and Radon Wasserstein
    barycenters of measures" (2015). Each iteration draws ``batch_directions``
    random unit directions in BGR space (from ``seed``); along each, the 1-D
    optimal transport of the measured target projections to the source ones (the
    monotone map ``Q_s(F_t(v)) - v``, from histograms with ``bins`` bins) gives a
    displacement; every target pixel moves by ``3 * step`` times the mean over the
    directions of displacement times direction (a random unit direction has
    ``E[d d^T] = I / 3``, so ``step = 1`` is the full move in expectation). The
    maps are applied to every target pixel, so the masks only choose the statistics.

    Args:
        target: ``(H, W, 3) float32`` BGR ``[0, 1]``, the image to recolour.
        source: ``(H', W', 3) float32`` BGR ``[0, 1]``, whose colours to take.
        target_mask: optional ``(H, W)`` mask of the target pixels to measure.
        source_mask: optional ``(H', W')`` mask of the source pixels to measure.
        iterations: number of descent steps (>= 0; 0 returns ``target``).
        batch_directions: random directions per step (>= 1).
        step: step length (> 0), 1 the full move in expectation; smaller is
            smoother and slower.
        bins: histogram bins per 1-D projection (>= 2).
        seed: seed of the random directions.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``target`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    t_px, s_px = _measured(target, source, target_mask, source_mask, "sot")
    _check_positive(iterations, "sot iterations", 0)
    _check_positive(batch_directions, "sot batch_directions", 1)
    _check_positive(bins, "sot bins", 2)
    if not step > 0:
        raise ValueError(f"sot step: expected > 0, got {step!r}")
    if len(t_px) < 2 or len(s_px) < 2:
        return np.clip(target, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    pixels, measured, source_px = _rows(target, t_px, s_px, target_mask is not None)
    for _ in range(iterations):
        dirs = rng.standard_normal((3, batch_directions))
        dirs = (dirs / np.linalg.norm(dirs, axis=0)).astype(np.float32)  # columns are unit directions
        back = dirs * np.float32(3.0 * step / batch_directions)  # 3 x the mean over directions, x the step
        t_proj = dirs.T @ (pixels if measured is None else measured)
        lo, width, shift = _marginal_maps(t_proj, dirs.T @ source_px, bins)
        if measured is not None:
            pixels += back @ _apply_maps(dirs.T @ pixels, lo, width, shift)
            measured += back @ _apply_maps(t_proj, lo, width, shift)
        else:
            pixels += back @ _apply_maps(t_proj, lo, width, shift)
    return _from_rows(pixels, target.shape)


COLOR_TRANSFERS = {"rct": rct, "lct": lct, "mkl": mkl, "idt": idt, "sot": sot}


def color_transfer(
    name: str,
    target: np.ndarray,
    source: np.ndarray,
    target_mask: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Run the colour transfer called ``name`` (a key of :data:`COLOR_TRANSFERS`) with its defaults.

    Same arguments and result as the functions themselves; raises ``ValueError``
    naming the known methods for an unknown ``name``.
    """
    if name not in COLOR_TRANSFERS:
        raise ValueError(f"color transfer: unknown name {name!r}, expected one of {', '.join(COLOR_TRANSFERS)}")
    return COLOR_TRANSFERS[name](target, source, target_mask, source_mask)
