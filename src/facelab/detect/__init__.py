"""Face detectors behind one registry.

A detector is a callable object ``detect(image) -> list[Detection]`` taking an
``(H, W, 3) uint8`` BGR frame. Register a new one with :func:`register_detector`
(see ``retinaface.py`` for the template)::

    @register_detector("mydet")
    class MyDetector:
        def __init__(self, threads: int = 0, **options): ...
        def __call__(self, image): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from facelab.errors import SettingsError
from facelab.registry import Registry


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in frame pixels.
        score: confidence in ``[0, 1]``.
        points: ``(5, 2) float32`` eye centres, nose tip, mouth corners (subject's
            right eye first), or ``None`` if the detector gives none.
    """

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


class Detector(Protocol):
    def __call__(self, image: np.ndarray) -> list[Detection]: ...


DETECTORS = Registry("detector", ("facelab.detect.retinaface",))
register_detector = DETECTORS.register
list_detectors = DETECTORS.names


def create_detector(name: str = "retinaface", **options: Any) -> Detector:
    """Build a registered detector by name."""
    return DETECTORS.create(name, **options)


DEVICE_HINT = "use auto (the best GPU, else the CPU), cpu, cuda or cuda:N"


def parse_device(device: str) -> str:
    """Check and normalise a detector device name: ``"auto" | "cpu" | "cuda" | "cuda:N"``.

    ``"cuda"`` is ``"cuda:0"``, as in torch. Raises :class:`SettingsError` for anything else.
    """
    d = str(device).strip().lower()
    if d in ("auto", "cpu"):
        return d
    if d == "cuda":
        return "cuda:0"
    if d.startswith("cuda:") and d[5:].isdigit():
        return f"cuda:{int(d[5:])}"
    raise SettingsError(f"device={device!r} is not a device", DEVICE_HINT)


def onnx_providers(device: str, available: list[str] | None = None) -> list[Any]:
    """ONNX Runtime execution providers, most preferred first, for ``device`` (see :func:`parse_device`).

    ``auto`` uses ONNX Runtime's CUDA provider on the GPU with the most memory when
    this ONNX Runtime has one (the ``onnxruntime-gpu`` package), then the CPU.
    ``cuda:N`` without a CUDA provider raises :class:`SettingsError`. ``available``
    overrides ``onnxruntime.get_available_providers()``.
    """
    d = parse_device(device)
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    has_cuda = "CUDAExecutionProvider" in available
    if d == "cpu":
        return ["CPUExecutionProvider"]
    if d == "auto":
        preferred: list[Any] = [("CUDAExecutionProvider", {"device_id": _best_gpu()})] if has_cuda else []
        if "CoreMLExecutionProvider" in available:
            preferred.append("CoreMLExecutionProvider")
        return preferred + ["CPUExecutionProvider"]
    if not has_cuda:
        raise SettingsError(
            f"device={device!r}: no CUDA GPU is usable here (ONNX Runtime offers {', '.join(available) or 'nothing'})",
            "use --device auto or cpu; to detect on an NVIDIA GPU install onnxruntime-gpu and a CUDA runtime",
        )
    index = int(d[5:])
    count = _gpu_count()
    if count is not None and index >= count:
        raise SettingsError(f"device={device!r}: there is no GPU {index} ({count} CUDA device(s) found)",
                            f"use cuda:0..cuda:{count - 1}, auto or cpu" if count else "use --device auto or cpu")
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _gpu_count() -> int | None:
    """Number of CUDA devices as torch sees them, or ``None`` if torch cannot tell (a CPU build)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None  # a CPU build of torch says nothing about onnxruntime-gpu's devices
    return torch.cuda.device_count()


def _best_gpu() -> int:
    """Index of the CUDA device with the most memory (0 when torch cannot tell)."""
    count = _gpu_count()
    if not count:
        return 0
    import torch

    return max(range(count), key=lambda i: torch.cuda.get_device_properties(i).total_memory)


def rotate_image(image: np.ndarray, angle: int) -> np.ndarray:
    """Rotate by 0/90/180/270 degrees clockwise."""
    k = {0: 0, 90: 1, 180: 2, 270: 3}[angle]
    return np.ascontiguousarray(np.rot90(image, -k)) if k else image


def unrotate_points(points: np.ndarray, angle: int, shape: tuple[int, int]) -> np.ndarray:
    """Map ``(N, 2)`` points found in an image rotated clockwise by ``angle`` back to the original ``shape`` (H, W)."""
    h, w = shape[:2]
    p = np.asarray(points, np.float32)
    x, y = p[:, 0], p[:, 1]
    if angle == 0:
        return p.copy()
    if angle == 90:  # rotated (x, y) = (h - 1 - y0, x0)
        return np.stack([y, h - 1 - x], 1)
    if angle == 180:
        return np.stack([w - 1 - x, h - 1 - y], 1)
    if angle == 270:  # rotated (x, y) = (y0, w - 1 - x0)
        return np.stack([w - 1 - y, x], 1)
    raise ValueError(f"angle must be 0, 90, 180 or 270, got {angle}")


def is_upright(detection: Detection, max_roll_deg: float = 50.0) -> bool:
    """Whether the face's eyes are above its mouth (roll within ``max_roll_deg``); True without points."""
    if detection.points is None:
        return True
    p = detection.points
    down = (p[3] + p[4]) / 2 - (p[0] + p[1]) / 2  # eyes -> mouth
    roll = np.degrees(np.arctan2(-down[0], down[1]))
    return abs(roll) <= max_roll_deg


def detect_with_rotation(detector: Detector, image: np.ndarray, angles=(0, 90, 270, 180)) -> tuple[list[Detection], int, np.ndarray]:
    """Detect upright faces; if none, retry on the frame rotated by 90, 270 and 180 degrees.

    Landmark models need upright faces, so a face found lying on its side or
    upside down counts only in the rotation that stands it up.

    Returns:
        ``(detections, angle, rotated_image)``: detections are in the
        coordinates of ``rotated_image`` (the frame turned clockwise by
        ``angle``); map points back with :func:`unrotate_points`.
    """
    for angle in angles:
        rotated = rotate_image(image, angle)
        found = [d for d in detector(rotated) if is_upright(d)]
        if found:
            return found, angle, rotated
    return [], 0, image


def unrotate_box(box: tuple[float, float, float, float], angle: int, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Axis-aligned bounds, in the original frame of ``shape``, of a box found in the frame rotated by ``angle``."""
    x0, y0, x1, y1 = box
    corners = unrotate_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), angle, shape)
    lo, hi = corners.min(0), corners.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
