"""Input checks shared by every array op: one place that says what an op expected and what it got.

Every op that takes an image, a mask, points or an affine checks it first with
one of these functions, so a wrong input fails the same way everywhere:

- not a ``numpy.ndarray`` (a list, a tensor, None):
  ``TypeError("rct face: expected numpy.ndarray, got list")``;
- an ndarray of the wrong shape *or dtype*:
  ``ValueError("rct face: expected (H, W, 3) float32, got (128, 128) float32")``.

A wrong dtype is a ``ValueError``, not a ``TypeError``: the object is of the
right type (an array), and its dtype is part of the layout the op expects, as
its channel count is, so shape and dtype are stated and checked together (and
a uint8 frame passed where a float32 one belongs raised ``ValueError`` before
these checks existed too).

Points and affine matrices are the exception to "ndarray only": face records
store them as lists, so :func:`check_points` and :func:`check_affine` convert
any array-like to ``float64`` (a no-op for a ``float64`` array) and check the
shape of the result.

The checks read ``.shape`` and ``.dtype`` only and never copy an array (the
merge runs them per face, per frame); each returns its input (:func:`check_mask`
a view of it) so a call can sit inside an expression.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTypes = Any
"""A numpy dtype (``np.float32``), a tuple of them, or None for any dtype."""


def describe(x: Any) -> str:
    """What an input is, for a message: ``"(128, 128) float32"`` for an array, else its type's name."""
    if isinstance(x, np.ndarray):
        return f"{x.shape} {x.dtype}"
    return type(x).__name__


def check_ndarray(x: Any, name: str) -> np.ndarray:
    """``x`` itself; ``TypeError`` naming ``name`` when it is not a ``numpy.ndarray``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected numpy.ndarray, got {type(x).__name__}")
    return x


def _dtype_ok(x: np.ndarray, dtype: DTypes) -> bool:
    if dtype is None:
        return True
    if isinstance(dtype, tuple):
        return any(x.dtype == d for d in dtype)
    return x.dtype == dtype


def _dtype_name(dtype: DTypes) -> str:
    if dtype is None:
        return ""
    if isinstance(dtype, tuple):
        return " " + "|".join(np.dtype(d).name for d in dtype)
    return " " + np.dtype(dtype).name


def _fail(x: np.ndarray, name: str, expected: str) -> None:
    raise ValueError(f"{name}: expected {expected}, got {describe(x)}")


def check_image(
    x: Any,
    name: str,
    *,
    channels: int | tuple[int, ...] | None = 3,
    dtype: DTypes = np.float32,
    gray: bool = False,
) -> np.ndarray:
    """Check an ``(H, W, C)`` image; return it unchanged.

    Args:
        x: the input.
        name: the op and argument, as the message should start (``"overlay face"``).
        channels: the allowed ``C``: one count, a tuple of counts, or None for any.
        dtype: the allowed dtype(s), or None for any.
        gray: also allow a 2-D ``(H, W)`` image.

    Raises:
        TypeError: ``x`` is not a ``numpy.ndarray``.
        ValueError: ``"<name>: expected (H, W, 3) float32, got (H, W) ..."`` for a wrong shape or dtype.
    """
    check_ndarray(x, name)
    if x.ndim == 3:
        c = x.shape[2]
        shape_ok = channels is None or (c in channels if isinstance(channels, tuple) else c == channels)
    else:
        shape_ok = gray and x.ndim == 2
    if not shape_ok or not _dtype_ok(x, dtype):
        if channels is None:
            c = "C"
        elif isinstance(channels, tuple):
            c = "|".join(str(k) for k in channels)
        else:
            c = str(channels)
        expected = f"(H, W, {c}){_dtype_name(dtype)}"
        if gray:
            expected = f"(H, W) or {expected}"
        _fail(x, name, expected)
    return x


def check_mask(x: Any, name: str, *, shape: tuple[int, ...] | None = None, dtype: DTypes = None) -> np.ndarray:
    """Check an ``(H, W)`` mask (an ``(H, W, 1)`` one is accepted); return it as ``(H, W)`` (a view, no copy).

    Args:
        x: the input.
        name: the op and argument (``"seamless mask"``).
        shape: the image shape the mask must match (its first two sides), or None.
        dtype: the allowed dtype(s), or None (default) for any.

    Raises:
        TypeError: ``x`` is not a ``numpy.ndarray``.
        ValueError: wrong number of dimensions, size or dtype.
    """
    check_ndarray(x, name)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim != 2 or not _dtype_ok(x, dtype):
        _fail(x, name, f"an (H, W){_dtype_name(dtype)} mask")
    if shape is not None and x.shape != tuple(shape[:2]):
        _fail(x, name, f"a {tuple(shape[:2])} mask to match the image")
    return x


def check_points(x: Any, name: str, *, count: int | None = None, what: str = "points") -> np.ndarray:
    """``x`` as ``(N, 2) float64`` points (any array-like; no copy for a float64 array).

    Args:
        count: the required ``N`` (``68`` for landmarks), or None for any.
        what: what the points are, for the message (``"landmarks"``).

    Raises:
        ValueError: not ``(N, 2)`` (or not ``(count, 2)``).
    """
    pts = np.asarray(x, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or (count is not None and pts.shape[0] != count):
        _fail(pts, name, f"({'N' if count is None else count}, 2) {what}")
    return pts


def check_affine(x: Any, name: str = "affine") -> np.ndarray:
    """``x`` as a ``(2, 3) float64`` affine matrix (any array-like; no copy for a float64 array).

    Raises:
        ValueError: not ``(2, 3)``.
    """
    mat = np.asarray(x, dtype=np.float64)
    if mat.shape != (2, 3):
        _fail(mat, name, "a (2, 3) affine matrix")
    return mat


def check_same_shape(a: np.ndarray, b: np.ndarray, name: str, a_name: str, b_name: str) -> None:
    """``ValueError`` when two already-checked arrays differ in shape (``"overlay: face (4, 4, 3) and frame ..."``)."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: {a_name} {a.shape} and {b_name} {b.shape} differ in shape")
