"""Training augmentation: random warp, random affine and flip (numpy + OpenCV, per sample).

The autoencoder sees a *warped* face and must output the *unwarped* one. The
warp is a smooth random deformation (a coarse grid of random offsets,
interpolated to every pixel), so the network cannot just copy pixels: it must
learn what a face of this person looks like. That is what later lets it paint
the src person into dst poses. A random similarity transform and a mirror flip
(applied to input, target and mask alike) add pose variety.

Images are ``(R, R, 3) uint8`` BGR, masks ``(R, R) float32``; nothing is
modified in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facelab.align import warp_image
from facelab.checks import check_image, describe


@dataclass(frozen=True)
class AugmentOptions:
    rotation: float = 10.0  # degrees, +-
    scale: float = 0.05  # +- fraction
    scale_bias: float = 0.0  # fixed extra scale as a fraction (src face scale: --src-scale 10 -> 0.10)
    shift: float = 0.05  # +- fraction of the side
    flip: bool = True
    warp: bool = True
    warp_cells: int = 5  # grid of control points per side (DeepFaceLab uses about 5)
    warp_strength: float = 0.24  # offset std as a fraction of the cell size


def random_affine(rng: np.random.Generator, size: int, opts: AugmentOptions = AugmentOptions()) -> np.ndarray:
    """A random ``(2, 3)`` similarity about the centre (and mirror, if ``opts.flip``); scaled by ``1 + opts.scale_bias``."""
    angle = rng.uniform(-opts.rotation, opts.rotation)
    scale = 1.0 + opts.scale_bias + rng.uniform(-opts.scale, opts.scale)
    c = (size - 1) / 2  # pixel centres are integers: the image centre is (size - 1) / 2
    mat = cv2.getRotationMatrix2D((c, c), angle, scale)
    mat[:, 2] += rng.uniform(-opts.shift, opts.shift, 2) * size
    if opts.flip and rng.random() < 0.5:
        mat[0] = -mat[0]
        mat[0, 2] += size - 1  # x -> (size - 1) - x
    return mat


def random_warp_maps(rng: np.random.Generator, size: int, cells: int = 5, strength: float = 0.24) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random deformation as ``cv2.remap`` maps ``(size, size) float32`` (x and y).

    Offsets are drawn at ``(cells + 1)^2`` grid points (the border points stay
    fixed so the face is not pulled off the image), upsampled bicubically and
    added to the identity map: with no offset the maps are exactly the
    identity, so the warped input has the target's scale and position. (Until
    2026-12-04 the grid's *positions* were upsampled instead, and OpenCV's
    half-pixel resize made that map a 1.2x stretch about the centre: every
    warped input was the face shrunk to 83 %, which the network then had to
    enlarge, and which blurred every swap trained with the warp.)
    """
    step = size / cells
    noise = rng.normal(0, step * strength, (2, cells + 1, cells + 1)).astype(np.float32)
    noise[:, [0, -1], :] = 0
    noise[:, :, [0, -1]] = 0
    ident = np.arange(size, dtype=np.float32)
    mx = ident[None, :] + cv2.resize(noise[0], (size, size), interpolation=cv2.INTER_CUBIC)
    my = ident[:, None] + cv2.resize(noise[1], (size, size), interpolation=cv2.INTER_CUBIC)
    return mx, my


def random_warp(image: np.ndarray, rng: np.random.Generator, cells: int = 5, strength: float = 0.24) -> np.ndarray:
    """Warp one ``(H, W, C)`` square image smoothly at random; returns a new array, same shape and dtype."""
    check_image(image, "random_warp", channels=None, dtype=None, gray=True)
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"random_warp: expected a square (S, S) or (S, S, C) image, got {describe(image)}")
    mx, my = random_warp_maps(rng, image.shape[0], cells, strength)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def doubled(mat: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` transform ``mat`` of an ``R x R`` image as the same transform of that image at ``2R``
    (pixel centres at integers: pixel ``x`` of the small image is at ``2x + 0.5`` in the large one, which is
    also where ``cv2.resize(..., INTER_AREA)`` takes it from)."""
    s = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    return (s @ np.vstack([mat, [0.0, 0.0, 1.0]]) @ np.linalg.inv(s))[:2]


def transform_face(image: np.ndarray, mat: np.ndarray, detail: np.ndarray | None = None) -> np.ndarray:
    """``image`` (``R x R``) moved by the affine ``mat``, keeping its fine detail.

    With ``detail``, the same face at ``2R``, it is resampled bicubically at 2R and area-averaged down to R:
    as sharp as ``image`` itself. Without, bicubically at R. Measured on the demo's src faces (mean absolute
    Laplacian of the inner face against the untransformed face, random affines of :class:`AugmentOptions`):
    bilinear at R 0.79, bicubic at R 0.95, from 2R 1.00. Until 2026-12-06 training targets were resampled
    bilinearly, so every model learned to paint a fifth less detail than its faces hold.
    """
    size = image.shape[0]
    if detail is None:
        return warp_image(image, mat, size)
    return cv2.resize(warp_image(detail, doubled(mat), 2 * size), (size, size), interpolation=cv2.INTER_AREA)


def augment_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, opts: AugmentOptions = AugmentOptions(),
                   detail: np.ndarray | None = None):
    """One training sample: ``(warped input, target, target mask)``.

    Input and target share the random affine/flip; only the input is warped. ``mask`` is ``(R, R)`` or
    ``(R, R, K)`` float32 (K <= 4 masks moved together); the target mask keeps that shape. ``detail``: the
    face at ``2R`` (``(2R, 2R, 3) uint8``), if the dataset keeps one; the target is then cut from it
    (:func:`transform_face`).
    """
    size = image.shape[0]
    mat = random_affine(rng, size, opts)
    target = transform_face(image, mat, detail)
    tmask = cv2.warpAffine(mask, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    tmask = tmask.reshape(mask.shape)  # OpenCV drops a last axis of 1
    if not opts.warp:
        return target, target, tmask
    # compose warp and affine into one remap of the original: the warp says where
    # in the *transformed* image to sample; map that back through the inverse affine
    mx, my = random_warp_maps(rng, size, opts.warp_cells, opts.warp_strength)
    inv = cv2.invertAffineTransform(mat)
    sx = inv[0, 0] * mx + inv[0, 1] * my + inv[0, 2]
    sy = inv[1, 0] * mx + inv[1, 1] * my + inv[1, 2]
    warped = cv2.remap(image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return warped, target, tmask
