"""Temporal smoothing of landmark tracks (``extract dst --smooth``).

Design: smoothing needs the frames after a face as well as before it, so it
runs as a second phase once every frame is landmarked. Faces are linked into
tracks frame by frame (nearest face centre within half a face size), each
track is cut into segments at scene cuts, at frames without that face and at
big landmark jumps, and each segment is filtered with a centred Gaussian
window that is truncated (and renormalised) at the segment's ends.

A centred window has no lag (a causal filter such as one-euro trails a moving
head by a few frames), and truncating it at segment ends means no landmark is
ever pulled towards a face on the other side of a cut.

Shapes: a frame's faces are a list of ``(68, 2)`` float arrays in frame pixels.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SIGMA = 1.5  # frames
JUMP = 0.2  # a mean landmark move above this fraction of the face size breaks a track
LINK = 0.5  # a face links to the nearest face of the previous frame within this fraction of its size
CUT_DIFF = 15.0  # mean abs difference (0..255) of 32x32 grey thumbnails above which frames are a scene cut


def face_size(landmarks: np.ndarray) -> float:
    """Side of the landmarks' bounding box (geometric mean of width and height), pixels."""
    span = np.ptp(np.asarray(landmarks, np.float64), axis=0)
    return float(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0)))


def linked(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether face landmarks ``current`` can be the face ``previous`` one frame later: its centre within
    ``LINK`` of its size and its landmarks moved under ``JUMP`` of it on average. Not across a scene cut
    that moves the face, nor to another person beside it."""
    previous, current = np.asarray(previous, np.float64), np.asarray(current, np.float64)
    size = face_size(current)
    centre_moved = float(np.linalg.norm(previous.mean(0) - current.mean(0)))
    return centre_moved < LINK * size and float(np.linalg.norm(previous - current, axis=1).mean()) < JUMP * size


def thumbnail(image: np.ndarray) -> np.ndarray:
    """``(32, 32) float32`` grey thumbnail of an ``(H, W, 3) uint8`` BGR frame, for cut detection."""
    import cv2

    from facelab.checks import check_image

    check_image(image, "thumbnail image", channels=(3, 4), dtype=np.uint8)
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def is_cut(prev_thumb: np.ndarray, thumb: np.ndarray, threshold: float = CUT_DIFF) -> bool:
    """Whether two consecutive thumbnails (:func:`thumbnail`) lie on either side of a scene cut."""
    return float(np.abs(prev_thumb - thumb).mean()) > threshold


def build_tracks(frames: list[list[np.ndarray]], cuts: list[bool] | None = None) -> list[list[tuple[int, int]]]:
    """Link faces of consecutive frames into segments of ``(frame index, face index)``.

    Args:
        frames: per frame (in order), the ``(68, 2)`` landmarks of its faces.
        cuts: ``cuts[t]`` is True when frame ``t`` starts a new scene (``cuts[0]`` is ignored).

    Returns:
        Segments: each one face followed across consecutive frames with no cut,
        no gap and no jump. Every face is in exactly one segment.
    """
    if cuts is not None and len(cuts) != len(frames):
        raise ValueError(f"build_tracks: {len(cuts)} cut flags for {len(frames)} frames")
    segments: list[list[tuple[int, int]]] = []
    open_: dict[int, int] = {}  # face index in previous frame -> segment
    for t, faces in enumerate(frames):
        now: dict[int, int] = {}
        cut = bool(cuts[t]) if cuts is not None and t > 0 else False
        prev = frames[t - 1] if t > 0 else []
        taken: set[int] = set()
        for i, lm in enumerate(faces):
            seg = None
            if not cut and prev:
                centre = np.asarray(lm, np.float64).mean(0)
                dists = [np.linalg.norm(np.asarray(p, np.float64).mean(0) - centre) if j not in taken and j in open_ else np.inf for j, p in enumerate(prev)]
                j = int(np.argmin(dists))
                if np.isfinite(dists[j]) and linked(prev[j], lm):
                    seg = open_[j]
                    taken.add(j)
            if seg is None:
                segments.append([])
                seg = len(segments) - 1
            segments[seg].append((t, i))
            now[i] = seg
        open_ = now
    return segments


def smooth_segment(track: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Centred Gaussian filter along time of ``(T, N, 2)`` points, truncated at both ends; no lag."""
    track = np.asarray(track, np.float64)
    if track.ndim != 3 or track.shape[2] != 2:
        raise ValueError(f"smooth_segment: expected (T, N, 2), got {track.shape}")
    if sigma <= 0 or len(track) < 2:
        return track.copy()
    r = max(1, int(round(3 * sigma)))
    offsets = np.arange(-r, r + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    out = np.empty_like(track)
    n = len(track)
    for t in range(n):
        lo, hi = max(0, t - r), min(n, t + r + 1)
        w = weights[lo - t + r : hi - t + r]
        out[t] = np.tensordot(w / w.sum(), track[lo:hi], axes=1)
    return out


def smooth_landmarks(frames: list[list[np.ndarray]], cuts: list[bool] | None = None, sigma: float = DEFAULT_SIGMA) -> list[list[np.ndarray]]:
    """Smoothed copy of ``frames`` (same structure, ``(68, 2) float32`` each); see module docstring."""
    out = [[np.asarray(lm, np.float32).copy() for lm in faces] for faces in frames]
    for seg in build_tracks(frames, cuts):
        if len(seg) < 2:
            continue
        smoothed = smooth_segment(np.stack([frames[t][i] for t, i in seg]), sigma)
        for (t, i), lm in zip(seg, smoothed):
            out[t][i] = lm.astype(np.float32)
    return out
