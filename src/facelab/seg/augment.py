"""Augmentation for the segmenter: many looks of each labelled face, and occluders it never saw.

A few dozen labels only train a segmenter that generalises if every batch shows
them in new conditions. Per sample, in this order (face and target move
together; only the face gets the photometric changes):

1. background borrowing: outside its (softened) target the face is replaced by
   another face of the set, so "not face" is never one fixed backdrop;
2. glasses: a pair of lenses on the eyes (sunglasses, tinted or clear, with
   a frame, a bridge and the arms), drawn at the eye positions of the face
   type's template; they stay *in* the target, the labelling convention (glasses
   belong to the face), so a dark pair of lenses is not taken for an occluder;
3. occluders, cut out of the target: the real ones the labels cut out (a
   labelled hand, fringe or microphone, :attr:`facelab.seg.data.SegFaces.occluders`),
   pasted at their own place or anywhere on the face, moved, turned, mirrored
   and re-tinted; and synthetic ones: blobs and finger-like capsules textured
   with another face's *skin*, and thin dark hair strands; this is how the
   segmenter learns that a skin-coloured hand in front of the chin is not
   chin, before the user labels a single hand;
4. geometry: rotation, scale, shift, mirror flip and a smooth elastic warp;
5. photometry: hue/saturation/brightness, levels (gamma, contrast), blur (gaussian
   or motion), a lens flare, sensor noise and JPEG artefacts.

Faces ``(R, R, 3) uint8`` BGR, targets ``(R, R) float32 [0, 1]``; inputs are not modified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facelab.train.augment import AugmentOptions, random_affine, random_warp_maps

Donor = Callable[[], tuple[np.ndarray, np.ndarray]]  # another (face, target) of the set, at random


@dataclass(frozen=True)
class SegAugment:
    """Probabilities and ranges of :func:`augment`; ``SegAugment.off()`` changes nothing."""

    background: float = 0.4
    occluder: float = 0.5
    hair: float = 0.15
    glasses: float = 0.15
    pasted: float = 0.3  # a real occluder cut from a label (when the labels have any)
    rotation: float = 20.0
    scale: float = 0.15
    shift: float = 0.06
    flip: bool = True
    elastic: float = 0.5
    color: float = 0.8
    blur: float = 0.25
    flare: float = 0.1
    noise: float = 0.2
    jpeg: float = 0.3

    @classmethod
    def off(cls) -> "SegAugment":
        from dataclasses import fields

        return cls(**{f.name: False if f.name == "flip" else 0 for f in fields(cls)})


def _soft(mask: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    k = int(rng.integers(0, max(2, size // 64))) * 2 + 1
    return cv2.GaussianBlur(mask, (k, k), 0) if k > 1 else mask


def borrow_background(face: np.ndarray, target: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``face`` with everything outside its target replaced by ``donor`` (a soft seam)."""
    alpha = _soft(target, rng, face.shape[0])[..., None]
    return (face * alpha + donor * (1 - alpha) + 0.5).astype(np.uint8)


def _occluder_shape(rng: np.random.Generator, size: int, target: np.ndarray) -> np.ndarray:
    """A ``(R, R) float32`` alpha of one occluder that overlaps the face: an ellipse, a polygon blob or a
    few parallel capsules (fingers), placed at a random point of the target, edges softened."""
    alpha = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(target > 0.5)
    if len(xs) == 0:
        return alpha
    i = rng.integers(len(xs))
    cx, cy = float(xs[i]), float(ys[i])
    kind = rng.integers(3)
    s = size * rng.uniform(0.08, 0.3)
    if kind == 0:
        cv2.ellipse(alpha, (int(cx), int(cy)), (int(s), int(s * rng.uniform(0.3, 1.0))), rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    elif kind == 1:
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = s * rng.uniform(0.5, 1.2, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(alpha, [np.round(pts * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    else:  # fingers: parallel capsules coming in from outside the face
        theta = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(theta), np.sin(theta)])
        nrm = np.array([-d[1], d[0]])
        width = size * rng.uniform(0.03, 0.06)
        for k in range(int(rng.integers(1, 5))):
            base = np.array([cx, cy]) + nrm * (k - 1.5) * width * 2.1
            tip = base - d * s * rng.uniform(0.2, 0.6)
            end = base + d * size
            cv2.line(alpha, tuple(np.round(tip).astype(int)), tuple(np.round(end).astype(int)), 1.0,
                     max(2, int(width * 2)), cv2.LINE_AA)
    return _soft(alpha, rng, size)


def _skin_texture(donor: np.ndarray, donor_target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A full-size texture from the donor's face pixels (a random shift and zoom of the donor), re-tinted."""
    size = donor.shape[0]
    mat = random_affine(rng, size, AugmentOptions(rotation=180, scale=0.5, shift=0.25))
    tex = cv2.warpAffine(donor, mat, (size, size), borderMode=cv2.BORDER_REFLECT)
    shift = rng.normal(0, 12, 3)
    return np.clip(tex.astype(np.float32) + shift, 0, 255)


def add_occluders(face: np.ndarray, target: np.ndarray, donor: tuple[np.ndarray, np.ndarray],
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste one or two occluders over the face; the target loses what they cover."""
    out, tgt = face.astype(np.float32), target.copy()
    for _ in range(int(rng.integers(1, 3))):
        alpha = _occluder_shape(rng, face.shape[0], tgt)
        if rng.random() < 0.7:
            tex = _skin_texture(*donor, rng)
        else:  # a plain object: one colour with a gentle light gradient
            colour = rng.uniform(0, 255, 3)
            ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.2), face.shape[0], dtype=np.float32)
            tex = colour[None, None, :] * ramp[:, None, None]
        out = out * (1 - alpha[..., None]) + tex * alpha[..., None]
        tgt = tgt * (1 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), tgt


def paste_occluder(face: np.ndarray, target: np.ndarray, occluder: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste one real occluder (``(patch, alpha, (y, x))`` from :func:`facelab.seg.data.occluder_of`) over the
    face: at its own place (faces are aligned, so a fringe lands on the forehead) or on a random point of
    the face, scaled, turned, maybe mirrored, re-tinted; the target loses what it covers."""
    size = face.shape[0]
    patch, alpha, (y0, x0) = occluder
    h, w = alpha.shape
    canvas = np.zeros((size, size, 3), np.float32)
    cover = np.zeros((size, size), np.float32)
    y1, x1 = min(size, y0 + h), min(size, x0 + w)
    canvas[y0:y1, x0:x1] = patch[: y1 - y0, : x1 - x0]
    cover[y0:y1, x0:x1] = alpha[: y1 - y0, : x1 - x0]
    centre = np.array([x0 + w / 2, y0 + h / 2])
    if rng.random() < 0.5:
        to = centre + rng.normal(0, size * 0.05, 2)
    else:
        ys, xs = np.nonzero(target > 0.5)
        i = rng.integers(len(xs)) if len(xs) else None
        to = np.array([xs[i], ys[i]], np.float64) if i is not None else centre
    mat = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), rng.uniform(-25, 25), rng.uniform(0.75, 1.25))
    if rng.random() < 0.5:  # mirrored about its own centre
        mat = mat @ np.array([[-1, 0, 2 * centre[0]], [0, 1, 0], [0, 0, 1]])
    mat[:, 2] += to - centre
    canvas = cv2.warpAffine(canvas, mat, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    cover = cv2.warpAffine(cover, mat, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    canvas *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    out = face.astype(np.float32) * (1 - cover[..., None]) + canvas * cover[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), target * (1 - cover)


def add_hair(face: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Thin dark curved strands across the upper face (a fringe); cut out of the target."""
    size = face.shape[0]
    alpha = np.zeros((size, size), np.float32)
    ys, xs = np.nonzero(target > 0.5)
    if len(ys) == 0:
        return face.copy(), target.copy()
    top = ys.min() + (ys.max() - ys.min()) * rng.uniform(0.05, 0.35)
    colour = rng.uniform(10, 90) * np.array(rng.uniform(0.7, 1.1, 3))
    for _ in range(int(rng.integers(3, 12))):
        x0 = rng.uniform(xs.min(), xs.max())
        pts = np.stack([x0 + np.cumsum(rng.normal(0, size * 0.02, 8)) + np.linspace(0, rng.normal(0, size * 0.15), 8),
                        np.linspace(ys.min() - size * 0.05, top + rng.uniform(0, size * 0.15), 8)], 1)
        cv2.polylines(alpha, [np.round(pts * 16).astype(np.int32)], False, 1.0, int(rng.integers(1, 4)), cv2.LINE_AA, shift=4)
    out = face.astype(np.float32) * (1 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), target * (1 - alpha)


def template_eyes(face_type: str, size: int) -> np.ndarray:
    """``(2, 2)`` pixel centres of the two eyes (image left first) in a ``size`` face of ``face_type``, from the
    canonical face the faces are aligned to (an aligned face's eyes sit within a few pixels of them)."""
    from facelab.align import FACE_TYPE_CROPS, MEAN_FACE_68
    from facelab.types import FaceType

    cx, cy, r = FACE_TYPE_CROPS[FaceType.parse(face_type)]
    k = size / (2 * r)
    eyes = np.stack([MEAN_FACE_68[36:42].mean(0), MEAN_FACE_68[42:48].mean(0)])
    return (eyes - [cx - r, cy - r]) * k


def add_glasses(face: np.ndarray, eyes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pair of glasses drawn over the eyes at ``eyes`` (``(2, 2)`` pixels): sunglasses (dark or mirrored
    lenses), tinted or clear lenses, round or rectangular, with a frame, a bridge and the arms towards the
    ears. Only the face changes: glasses belong to the face (the labels' convention)."""
    size = face.shape[0]
    eyes = eyes + rng.normal(0, size * 0.008, (2, 2))
    left, right = eyes
    span = float(np.linalg.norm(right - left))
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    half_w = span * rng.uniform(0.36, 0.5)
    half_h = half_w * rng.uniform(0.55, 0.85)
    lens = np.zeros((size, size), np.float32)
    frame = np.zeros((size, size), np.float32)
    thick = max(1, int(round(size * rng.uniform(0.004, 0.02))))
    rect = rng.random() < 0.5
    for c in eyes:
        c = c + np.array([0.0, half_h * rng.uniform(-0.1, 0.25)])
        if rect:
            box = cv2.boxPoints(((float(c[0]), float(c[1])), (2 * half_w, 2 * half_h), angle))
            pts = np.round(box * 16).astype(np.int32)
            cv2.fillPoly(lens, [pts], 1.0, cv2.LINE_AA, shift=4)
            cv2.polylines(frame, [pts], True, 1.0, thick, cv2.LINE_AA, shift=4)
        else:
            centre, axes = (int(round(c[0])), int(round(c[1]))), (int(half_w), int(half_h))
            cv2.ellipse(lens, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
            cv2.ellipse(frame, centre, axes, angle, 0, 360, 1.0, thick, cv2.LINE_AA)
    d = (right - left) / max(span, 1e-6)
    inner_l, inner_r = left + d * half_w, right - d * half_w
    cv2.line(frame, tuple(np.round(inner_l).astype(int)), tuple(np.round(inner_r).astype(int)), 1.0, thick, cv2.LINE_AA)
    for c, sign in ((left, -1), (right, 1)):  # the arms, from the outer edge of each lens towards the ear
        start = c + sign * d * half_w
        cv2.line(frame, tuple(np.round(start).astype(int)), tuple(np.round(start + sign * d * span * 0.6).astype(int)),
                 1.0, thick, cv2.LINE_AA)
    out = face.astype(np.float32)
    kind = rng.random()
    if kind < 0.5:  # sunglasses: dark or mirrored, a sheen across
        colour = rng.uniform(5, 60) * rng.uniform(0.7, 1.3, 3)
        if rng.random() < 0.3:
            colour = rng.uniform(40, 200, 3)
        opacity = rng.uniform(0.85, 1.0)
    elif kind < 0.75:  # tinted
        colour, opacity = rng.uniform(30, 200, 3), rng.uniform(0.25, 0.6)
    else:  # clear
        colour, opacity = rng.uniform(150, 255, 3), rng.uniform(0.0, 0.15)
    yy = np.linspace(rng.uniform(0.7, 1.2), rng.uniform(0.7, 1.2), size, dtype=np.float32)[:, None, None]
    alpha = (lens * opacity)[..., None]
    out = out * (1 - alpha) + np.clip(colour * yy, 0, 255) * alpha
    if kind < 0.5 and rng.random() < 0.7:  # a highlight across the lenses
        glint = np.zeros((size, size), np.float32)
        p0 = left + np.array([-half_w * 0.6, -half_h * rng.uniform(0, 0.6)])
        cv2.line(glint, tuple(np.round(p0).astype(int)), tuple(np.round(p0 + np.array([half_w, half_h * 0.8])).astype(int)),
                 1.0, max(1, int(half_h * 0.25)), cv2.LINE_AA)
        glint = cv2.GaussianBlur(glint, (0, 0), max(1.0, half_h * 0.1)) * lens * rng.uniform(0.2, 0.6)
        out = out + glint[..., None] * 255
    frame_colour = rng.uniform(0, 80, 3) if rng.random() < 0.7 else rng.uniform(80, 255, 3)
    out = out * (1 - frame[..., None]) + frame_colour * frame[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def geometry(face: np.ndarray, target: np.ndarray, rng: np.random.Generator, opts: SegAugment) -> tuple[np.ndarray, np.ndarray]:
    """The same random similarity (+ flip, + elastic warp) applied to face and target."""
    size = face.shape[0]
    mat = random_affine(rng, size, AugmentOptions(rotation=opts.rotation, scale=opts.scale, shift=opts.shift, flip=opts.flip))
    inv = cv2.invertAffineTransform(mat)
    if rng.random() < opts.elastic:
        mx, my = random_warp_maps(rng, size, 5, 0.15)
    else:
        mx, my = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    sx = (inv[0, 0] * mx + inv[0, 1] * my + inv[0, 2]).astype(np.float32)
    sy = (inv[1, 0] * mx + inv[1, 1] * my + inv[1, 2]).astype(np.float32)
    return (cv2.remap(face, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
            cv2.remap(target, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def photometry(face: np.ndarray, rng: np.random.Generator, opts: SegAugment) -> np.ndarray:
    """Colour, levels, blur, flare, noise and JPEG changes of a ``(R, R, 3) uint8`` face."""
    out = face
    size = face.shape[0]
    if rng.random() < opts.color:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-8, 8)) % 180
        hsv[..., 1] *= rng.uniform(0.6, 1.4)
        hsv[..., 2] *= rng.uniform(0.6, 1.3)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
        # levels: gamma and contrast about mid grey
        f = out.astype(np.float32) / 255
        f = np.power(f, rng.uniform(0.7, 1.4))
        f = (f - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.08, 0.08)
        out = np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < opts.blur:
        if rng.random() < 0.5:
            k = int(rng.integers(1, max(2, size // 48))) * 2 + 1
            out = cv2.GaussianBlur(out, (k, k), 0)
        else:
            k = int(rng.integers(3, max(4, size // 24)))
            kernel = np.zeros((k, k), np.float32)
            kernel[k // 2] = 1 / k
            rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
            kernel = cv2.warpAffine(kernel, rot, (k, k))
            out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < opts.flare:
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        cx, cy = rng.uniform(0, size, 2)
        glow = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size * rng.uniform(0.1, 0.4)) ** 2))
        out = np.clip(out + glow[..., None] * rng.uniform(60, 200) * rng.uniform(0.8, 1.0, 3), 0, 255).astype(np.uint8)
    if rng.random() < opts.noise:
        out = np.clip(out + rng.normal(0, rng.uniform(2, 10), out.shape), 0, 255).astype(np.uint8)
    if rng.random() < opts.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 80))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def augment(face: np.ndarray, target: np.ndarray, rng: np.random.Generator, donor: Donor,
            opts: SegAugment = SegAugment(), eyes: np.ndarray | None = None,
            occluders: Sequence[tuple] = ()) -> tuple[np.ndarray, np.ndarray]:
    """One training sample (see the module docstring); new arrays, same shapes and dtypes. ``eyes``: the
    template eye positions (:func:`template_eyes`) for the glasses; None leaves glasses out. ``occluders``:
    the real occluders to paste (:func:`paste_occluder`)."""
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8 or target.shape != face.shape[:2]:
        raise ValueError(f"augment: expected (R, R, 3) uint8 face and (R, R) target, got {face.shape} {face.dtype}, {target.shape}")
    target = target.astype(np.float32)
    if rng.random() < opts.background:
        face = borrow_background(face, target, donor()[0], rng)
    if eyes is not None and rng.random() < opts.glasses:  # before the occluders: a hand goes in front of glasses
        face = add_glasses(face, eyes, rng)
    if len(occluders) and rng.random() < opts.pasted:
        face, target = paste_occluder(face, target, occluders[int(rng.integers(len(occluders)))], rng)
    if rng.random() < opts.occluder:
        face, target = add_occluders(face, target, donor(), rng)
    if rng.random() < opts.hair:
        face, target = add_hair(face, target, rng)
    face, target = geometry(face, target, rng, opts)
    return photometry(face, rng, opts), np.clip(target, 0.0, 1.0)
