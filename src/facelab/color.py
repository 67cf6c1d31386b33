"""Colour transfer, shared by training and the merge: make one face take on the colours of another.

Methods, all in :data:`COLOR_TRANSFERS` (run by name with :func:`color_transfer`):
``rct`` (Lab mean/std), ``lct`` (BGR mean/covariance), ``mkl`` (the optimal
linear map between the BGR Gaussians), ``idt`` (iterative distribution transfer)
and ``sot`` (sliced optimal transport); the last two match the whole 3-D colour
distribution, not only its first two moments.

Which face is which (the same in every function here):

- ``face``: the face to recolour. In training (``color_transfer`` option,
  :meth:`facelab.train.dataset.FaceDataset.sample`) a src face; in the merge
  (``color`` setting) the predicted, swapped face.
- ``reference``: the face whose colours ``face`` takes, always a dst face: a
  random dst face in training, the dst face being replaced in the merge.

(Until issue 11 these were called ``target`` and ``source``, which read as the
dst and src faces, the opposite of what they were; the old keywords still work
with a ``DeprecationWarning``.)

All take ``(H, W, 3) float32`` BGR images in ``[0, 1]`` and return the
recoloured ``face``, a new ``(H, W, 3) float32`` array clipped to ``[0, 1]``;
neither input is modified. Optional ``(H, W)`` masks choose the pixels the
statistics are computed from (pixels where the mask is ``> 0.5``); the transfer
itself is applied to every pixel of ``face``. ``reference`` may differ from
``face`` in size.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import cv2
import numpy as np

from facelab.checks import check_image, check_mask

_EPS = 1e-6

_OLD_KEYWORDS = {"target": "face", "source": "reference", "target_mask": "face_mask", "source_mask": "reference_mask"}
_WHICH = {"face": "the face to recolour", "reference": "the dst face whose colours to take",
          "face_mask": "the pixels of face to measure", "reference_mask": "the pixels of reference to measure"}


def _renamed_keywords(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Let callers still pass the old keywords (``target=``, ``source=``, ...) with a ``DeprecationWarning``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if kwargs and not _OLD_KEYWORDS.keys().isdisjoint(kwargs):
            for old, new in _OLD_KEYWORDS.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}: got both {old}= (the old name) and {new}=")
                    warnings.warn(f"{fn.__name__}: the keyword {old}= is now {new}= ({_WHICH[new]})",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
        return fn(*args, **kwargs)

    return wrapper



def _selected(pixels: np.ndarray, mask: np.ndarray | None, name: str) -> np.ndarray:
    """``(K, 3) float64`` pixels where ``mask > 0.5`` (all pixels when no mask)."""
    if mask is None:
        return pixels.reshape(-1, 3).astype(np.float64)
    mask = check_mask(mask, name, shape=pixels.shape)
    return pixels[mask > 0.5].astype(np.float64)


@_renamed_keywords
def rct(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Reinhard colour transfer: match per-channel mean and standard deviation in Lab.

    Reinhard, Ashikhmin, Gooch, Shirley, "Color transfer between images" (2001),
    with OpenCV's CIE L*a*b* (float input: L in ``[0, 100]``, a/b about
    ``[-127, 127]``) instead of lαβ.

    The colour channels (a*, b*) are matched in mean, and their spread is
    narrowed to the reference's but never widened: a face from a model early in
    training is blurred and has less colour spread than the real dst face, and
    widening it turns the faint grey-blue shading around its eyes and chin into
    teal and green patches (measured with ``facelab eval`` after 5 minutes of
    ``quick`` on two pairs: colour flicker 0.90 -> 0.77 and 0.44 -> 0.40, mean
    a*b* difference 9.7 -> 9.5 and 6.5 -> 6.0). Lightness keeps Reinhard's
    full match.

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the face to recolour (src face in
            training, the swapped face in the merge).
        reference: ``(H', W', 3) float32`` BGR ``[0, 1]``, the dst face whose colours to take.
        face_mask: optional ``(H, W)`` mask of the ``face`` pixels to measure.
        reference_mask: optional ``(H', W')`` mask of the ``reference`` pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``face`` unchanged (copied)
        when a mask selects fewer than 2 pixels (one pixel has no spread to match).
    """
    check_image(face, "rct face")
    check_image(reference, "rct reference")
    f_lab = cv2.cvtColor(face, cv2.COLOR_BGR2Lab)
    r_lab = cv2.cvtColor(reference, cv2.COLOR_BGR2Lab)
    f_px = _selected(f_lab, face_mask, "rct face_mask")
    r_px = _selected(r_lab, reference_mask, "rct reference_mask")
    if len(f_px) < 2 or len(r_px) < 2:
        return np.clip(face, 0.0, 1.0)
    f_mean, f_std = f_px.mean(0), f_px.std(0)
    r_mean, r_std = r_px.mean(0), r_px.std(0)
    scale = r_std / np.maximum(f_std, _EPS)
    scale[1:] = np.minimum(scale[1:], 1.0)  # a*, b*: narrow, never widen (see above)
    out = (f_lab - f_mean.astype(np.float32)) * scale.astype(np.float32) + r_mean.astype(np.float32)
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


def _measured(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None,
    reference_mask: np.ndarray | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Check both images and return the measured ``(K, 3)`` face and ``(M, 3)`` reference pixels (float64)."""
    check_image(face, f"{name} face")
    check_image(reference, f"{name} reference")
    f_px = _selected(face, face_mask, f"{name} face_mask")
    r_px = _selected(reference, reference_mask, f"{name} reference_mask")
    return f_px, r_px


def _gaussians(f_px: np.ndarray, r_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means and (population) 3x3 covariances of the measured face and reference pixels."""
    return f_px.mean(0), r_px.mean(0), np.cov(f_px, rowvar=False, bias=True), np.cov(r_px, rowvar=False, bias=True)


@_renamed_keywords
def lct(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Linear colour transfer: match the mean and 3x3 colour covariance in BGR.

    Maps ``x -> T (x - mu_f) + mu_r`` with ``T = C_r^(1/2) C_f^(-1/2)`` (symmetric
    matrix square roots by eigendecomposition, Hertzmann's "PCA" variant), so
    the measured face pixels end with mean ``mu_r`` and covariance ``C_r``
    (before clipping).

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the face to recolour (src face in
            training, the swapped face in the merge).
        reference: ``(H', W', 3) float32`` BGR ``[0, 1]``, the dst face whose colours to take.
        face_mask: optional ``(H, W)`` mask of the ``face`` pixels to measure.
        reference_mask: optional ``(H', W')`` mask of the ``reference`` pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``face`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    f_px, r_px = _measured(face, reference, face_mask, reference_mask, "lct")
    if len(f_px) < 2 or len(r_px) < 2:
        return np.clip(face, 0.0, 1.0)
    f_mean, r_mean, f_cov, r_cov = _gaussians(f_px, r_px)
    transform = _sqrtm_psd(r_cov) @ _sqrtm_psd(f_cov, inverse=True)
    flat = face.reshape(-1, 3) - f_mean.astype(np.float32)
    out = flat @ transform.T.astype(np.float32) + r_mean.astype(np.float32)
    return np.clip(out.reshape(face.shape), 0.0, 1.0).astype(np.float32)


@_renamed_keywords
def mkl(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Monge-Kantorovitch linear colour transfer: the optimal-transport linear map between two Gaussians.

    Pitie, Kokaram, "The linear Monge-Kantorovitch linear colour mapping for
    example-based colour transfer" (CVMP 2007). Maps ``x -> T (x - mu_f) + mu_r``
    in BGR with
    ``T = C_f^(-1/2) (C_f^(1/2) C_r C_f^(1/2))^(1/2) C_f^(-1/2)``, the one symmetric
    positive map with ``T C_f T = C_r``; of all linear maps that give the measured
    face pixels mean ``mu_r`` and covariance ``C_r`` (before clipping), it moves
    the colours the least (unlike :func:`lct`, it does not rotate them).

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the face to recolour (src face in
            training, the swapped face in the merge).
        reference: ``(H', W', 3) float32`` BGR ``[0, 1]``, the dst face whose colours to take.
        face_mask: optional ``(H, W)`` mask of the ``face`` pixels to measure.
        reference_mask: optional ``(H', W')`` mask of the ``reference`` pixels to measure.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``face`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    f_px, r_px = _measured(face, reference, face_mask, reference_mask, "mkl")
    if len(f_px) < 2 or len(r_px) < 2:
        return np.clip(face, 0.0, 1.0)
    f_mean, r_mean, f_cov, r_cov = _gaussians(f_px, r_px)
    f_half, f_inv_half = _sqrtm_psd(f_cov), _sqrtm_psd(f_cov, inverse=True)
    # no floor inside: the middle product's eigenvalues are variance products (~1e-4) and may be tiny
    middle = _sqrtm_psd(f_half @ r_cov @ f_half, floor=0.0)
    transform = f_inv_half @ middle @ f_inv_half
    flat = face.reshape(-1, 3) - f_mean.astype(np.float32)
    out = flat @ transform.T.astype(np.float32) + r_mean.astype(np.float32)
    return np.clip(out.reshape(face.shape), 0.0, 1.0).astype(np.float32)


# --- 1-D marginal matching, shared by idt and sot -----------------------------------------------


def _marginal_maps(f_proj: np.ndarray, r_proj: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monotone 1-D maps that send each row of ``f_proj`` to the distribution of that row of ``r_proj``.

    Rows, not columns: reductions along contiguous rows are several times faster
    in numpy than along the 3 columns of an ``(N, 3)`` array.

    Args:
        f_proj: ``(D, K) float32`` projections of the measured face pixels.
        r_proj: ``(D, M) float32`` projections of the measured reference pixels.
        bins: histogram bins per row.

    Returns:
        ``(first, width, shift)``: per row the bin centres ``first + width * k``
        (``k = 0..bins-1``; ``first``, ``width`` ``(D, 1) float32``) and
        ``shift (D, bins) float32``, the displacement ``Q_r(F_f(v)) - v`` at each
        centre (``F_f`` the face CDF, ``Q_r`` the reference quantile function, both
        from histograms, linear within a bin). See :func:`_apply_maps`.
    """
    d = f_proj.shape[0]
    lo = np.minimum(f_proj.min(1), r_proj.min(1)).astype(np.float64)
    hi = np.maximum(f_proj.max(1), r_proj.max(1)).astype(np.float64)
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

    cdf_f, cdf_r = cdf(f_proj), cdf(r_proj)
    # Knots at bin centres, each sent to the reference quantile of the middle of its bin's probability
    # mass: a point mass (a constant image, saturated pixels) then goes to the middle of its quantile
    # range, not to its lower end; when reference == face every centre maps to itself.
    edges = np.arange(bins + 1, dtype=np.float64)  # in bin units: value = lo + width * edge
    mid_f = 0.5 * (cdf_f[:, :-1] + cdf_f[:, 1:])
    shift = np.stack([(np.interp(mid_f[k], cdf_r[k], edges) - edges[:-1] - 0.5) * width[k] for k in range(d)])
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
    face: np.ndarray, f_px: np.ndarray, r_px: np.ndarray, masked: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(3, N)`` all face pixels, ``(3, K)`` measured face pixels (``None`` when they are all
    of them) and ``(3, M)`` measured reference pixels, ``float32``, one channel per contiguous row."""
    pixels = np.array(face.reshape(-1, 3).T, order="C")  # always a copy: it is updated in place
    measured = np.ascontiguousarray(f_px.T, dtype=np.float32) if masked else None
    return pixels, measured, np.ascontiguousarray(r_px.T, dtype=np.float32)


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


@_renamed_keywords
def idt(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    *,
    iterations: int = 10,
    bins: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Iterative distribution transfer: match the full 3-D colour distribution by repeated 1-D matching.

    Pitie, Kokaram, Dahyot, "N-dimensional probability density function transfer
    and its application to colour transfer" (ICCV 2005). Each iteration draws a
    random rotation of BGR space (from ``seed``, so the result is deterministic),
    projects the measured face and reference pixels on its three axes, matches each
    1-D marginal by histogram (CDF) matching and rotates back. The per-iteration
    1-D maps are applied to every face pixel, so the masks only choose the
    statistics.

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the face to recolour (src face in
            training, the swapped face in the merge).
        reference: ``(H', W', 3) float32`` BGR ``[0, 1]``, the dst face whose colours to take.
        face_mask: optional ``(H, W)`` mask of the ``face`` pixels to measure.
        reference_mask: optional ``(H', W')`` mask of the ``reference`` pixels to measure.
        iterations: number of random rotations (>= 0; 0 returns ``face``).
        bins: histogram bins per 1-D marginal (>= 2).
        seed: seed of the random rotations.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``face`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    f_px, r_px = _measured(face, reference, face_mask, reference_mask, "idt")
    _check_positive(iterations, "idt iterations", 0)
    _check_positive(bins, "idt bins", 2)
    if len(f_px) < 2 or len(r_px) < 2:
        return np.clip(face, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    pixels, measured, reference_px = _rows(face, f_px, r_px, face_mask is not None)
    for _ in range(iterations):
        rot = _random_rotation(rng).astype(np.float32)  # columns are the three axes
        f_proj = rot.T @ (pixels if measured is None else measured)
        lo, width, shift = _marginal_maps(f_proj, rot.T @ reference_px, bins)
        if measured is not None:
            pixels += rot @ _apply_maps(rot.T @ pixels, lo, width, shift)
            measured += rot @ _apply_maps(f_proj, lo, width, shift)
        else:
            pixels += rot @ _apply_maps(f_proj, lo, width, shift)
    return _from_rows(pixels, face.shape)


@_renamed_keywords
def sot(
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
    *,
    iterations: int = 10,
    batch_directions: int = 4,
    step: float = 1.0,
    bins: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Sliced optimal transport colour transfer: descend the sliced Wasserstein distance to the reference colours.

    Rabin, Peyre, Delon, Bernot, "Wasserstein barycenter and its application to
    texture mixing" (SSVM 2011); Bonneel et al., "Sliced and Radon Wasserstein
    barycenters of measures" (2015). Each iteration draws ``batch_directions``
    random unit directions in BGR space (from ``seed``); along each, the 1-D
    optimal transport of the measured face projections to the reference ones (the
    monotone map ``Q_r(F_f(v)) - v``, from histograms with ``bins`` bins) gives a
    displacement; every face pixel moves by ``3 * step`` times the mean over the
    directions of displacement times direction (a random unit direction has
    ``E[d d^T] = I / 3``, so ``step = 1`` is the full move in expectation). The
    maps are applied to every face pixel, so the masks only choose the statistics.

    Args:
        face: ``(H, W, 3) float32`` BGR ``[0, 1]``, the face to recolour (src face in
            training, the swapped face in the merge).
        reference: ``(H', W', 3) float32`` BGR ``[0, 1]``, the dst face whose colours to take.
        face_mask: optional ``(H, W)`` mask of the ``face`` pixels to measure.
        reference_mask: optional ``(H', W')`` mask of the ``reference`` pixels to measure.
        iterations: number of descent steps (>= 0; 0 returns ``face``).
        batch_directions: random directions per step (>= 1).
        step: step length (> 0), 1 the full move in expectation; smaller is
            smoother and slower.
        bins: histogram bins per 1-D projection (>= 2).
        seed: seed of the random directions.

    Returns:
        ``(H, W, 3) float32`` BGR in ``[0, 1]``; ``face`` unchanged (copied)
        when a mask selects fewer than 2 pixels.
    """
    f_px, r_px = _measured(face, reference, face_mask, reference_mask, "sot")
    _check_positive(iterations, "sot iterations", 0)
    _check_positive(batch_directions, "sot batch_directions", 1)
    _check_positive(bins, "sot bins", 2)
    if not step > 0:
        raise ValueError(f"sot step: expected > 0, got {step!r}")
    if len(f_px) < 2 or len(r_px) < 2:
        return np.clip(face, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    pixels, measured, reference_px = _rows(face, f_px, r_px, face_mask is not None)
    for _ in range(iterations):
        dirs = rng.standard_normal((3, batch_directions))
        dirs = (dirs / np.linalg.norm(dirs, axis=0)).astype(np.float32)  # columns are unit directions
        back = dirs * np.float32(3.0 * step / batch_directions)  # 3 x the mean over directions, x the step
        f_proj = dirs.T @ (pixels if measured is None else measured)
        lo, width, shift = _marginal_maps(f_proj, dirs.T @ reference_px, bins)
        if measured is not None:
            pixels += back @ _apply_maps(dirs.T @ pixels, lo, width, shift)
            measured += back @ _apply_maps(f_proj, lo, width, shift)
        else:
            pixels += back @ _apply_maps(f_proj, lo, width, shift)
    return _from_rows(pixels, face.shape)


COLOR_TRANSFERS = {"rct": rct, "lct": lct, "mkl": mkl, "idt": idt, "sot": sot}


@_renamed_keywords
def color_transfer(
    name: str,
    face: np.ndarray,
    reference: np.ndarray,
    face_mask: np.ndarray | None = None,
    reference_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Run the colour transfer called ``name`` (a key of :data:`COLOR_TRANSFERS`) with its defaults.

    Same arguments and result as the functions themselves; raises ``ValueError``
    naming the known methods for an unknown ``name``.
    """
    if name not in COLOR_TRANSFERS:
        raise ValueError(f"color transfer: unknown name {name!r}, expected one of {', '.join(COLOR_TRANSFERS)}")
    return COLOR_TRANSFERS[name](face, reference, face_mask, reference_mask)
