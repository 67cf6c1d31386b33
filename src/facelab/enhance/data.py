"""Training pairs for an enhancer: a sharp src face and a smaller, slightly degraded copy of it.

The enhancer will be fed a swap model's output, which is softer than a real
downscaled face. So the small input is the sharp face shrunk by area averaging
(``cv2.INTER_AREA``, what a camera's sensor does), then, at random, a little
Gaussian blur, sensor-like noise and JPEG compression. Flips and random
crops (the face shifted by up to ``shift`` of its side) add variety; the target
is a crop of the loaded face, never resampled here (the stage loads faces at
``target + margin`` px only when the aligned images are at least that large,
so the targets are real pixels; otherwise it loads them at the target size and
leaves out the shift).

Images are ``uint8`` BGR ``(H, W, 3)`` numpy arrays; nothing is modified in
place. A batch is a pure function of ``(faces, seed, iteration)``, so a
resumed run sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DegradeOptions:
    """Random augmentation and degradation of the training pairs (probabilities are per face)."""

    flip: bool = True
    shift: float = 1 / 16  # faces are loaded this much larger and cut at a random offset
    # Mild on purpose. Measured (srnet 16 ch / 2 blocks, 32 -> 64 px, Adam lr 1e-3, 150 iterations, 6 held-out faces; mean
    # abs. error, bicubic 0.0089 clean / 0.0209 blurred with sigma 0.8): blur 50 % up to sigma 1.2 gave
    # 0.0097 / 0.0177 (worse than bicubic on clean faces: it over-sharpens them), these values 0.0074 / 0.0192,
    # no degradation 0.0070 / 0.0198.
    blur: float = 0.3  # probability of a Gaussian blur of the input
    blur_sigma: tuple[float, float] = (0.2, 0.8)  # its sigma in input pixels
    noise: float = 0.2  # probability of Gaussian noise on the input
    noise_sigma: float = 2.0  # its largest standard deviation in uint8 levels
    jpeg: float = 0.2  # probability of JPEG compression of the input
    jpeg_quality: tuple[int, int] = (70, 95)


def margin(target_size: int, scale: int, opts: DegradeOptions = DegradeOptions()) -> int:
    """Extra pixels per side to load faces at, for random crops of ``target_size``; a multiple of ``scale``."""
    return round(target_size * opts.shift / scale) * scale


def degrade(small: np.ndarray, rng: np.random.Generator, opts: DegradeOptions = DegradeOptions()) -> np.ndarray:
    """Random blur, noise and JPEG of a ``(R, R, 3) uint8`` face (a new array)."""
    out = small
    if rng.random() < opts.blur:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(*opts.blur_sigma)))
    if rng.random() < opts.noise:
        noise = rng.normal(0.0, rng.uniform(0.5, opts.noise_sigma), out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < opts.jpeg:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*opts.jpeg_quality, endpoint=True))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out.copy() if out is small else out


def make_pair(face: np.ndarray, target_size: int, scale: int, rng: np.random.Generator,
              opts: DegradeOptions = DegradeOptions(), augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from a ``(S', S', 3) uint8`` face, ``S' >= target_size``.

    Returns ``(input (R, R, 3) uint8, target (S, S, 3) uint8)`` with ``S = target_size``, ``R = S / scale``.
    Without ``augment`` the crop is centred and the input only shrunk (an evaluation pair).
    """
    if face.ndim != 3 or face.shape[0] != face.shape[1] or face.shape[0] < target_size or target_size % scale:
        raise ValueError(f"make_pair: expected a square uint8 face of at least {target_size} px "
                         f"(a multiple of {scale}), got {face.shape}")
    room = face.shape[0] - target_size
    if augment:
        y, x = rng.integers(0, room + 1, 2)
    else:
        y = x = room // 2
    target = face[y:y + target_size, x:x + target_size]
    if augment and opts.flip and rng.random() < 0.5:
        target = target[:, ::-1]
    target = np.ascontiguousarray(target)
    small = cv2.resize(target, (target_size // scale,) * 2, interpolation=cv2.INTER_AREA)
    return (degrade(small, rng, opts) if augment else small), target


def make_batch(faces: np.ndarray, target_size: int, scale: int, batch_size: int, seed: int, iteration: int,
               opts: DegradeOptions = DegradeOptions()) -> tuple[np.ndarray, np.ndarray]:
    """A random batch ``(inputs (B, R, R, 3), targets (B, S, S, 3))`` uint8 from ``(N, S', S', 3)`` faces."""
    rng = np.random.default_rng([seed, iteration])
    idx = rng.choice(len(faces), batch_size, replace=batch_size > len(faces))
    pairs = [make_pair(faces[i], target_size, scale, rng, opts) for i in idx]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
