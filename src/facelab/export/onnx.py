"""Write a face-swap model (or a mask network) as one ONNX file that real-time players load.

The layout is the one DeepFaceLab's ``.dfm`` export made and DeepFaceLive and
FaceFusion read (a ``.dfm`` file *is* an ONNX file)::

    inputs   in_face:0              float32 [N, R, R, 3]  BGR in [0, 1], N dynamic, R static
             morph_value:0          float32 [1]           only when the model can morph (see below)
    outputs  out_face_mask:0        float32 [N, R, R, 1]  the mask the model predicts for the dst face itself
             out_celeb_face:0       float32 [N, R, R, 3]  the swapped face, BGR in [0, 1]
             out_celeb_face_mask:0  float32 [N, R, R, 1]  the swapped face's mask

Players take the outputs by position, so the order is part of the format.
``out_face_mask`` is the dst-side reconstruction's mask (``reconstruct(x, "dst")``),
as DeepFaceLab's export; a model without a dst-side reconstruction gives its swap
mask there.

Morph: a LIAE-style model (``liaef128``, ``sae`` with a ``liae`` archi) has one
decoder fed by ``cat(inter, inter_ab)``, where ``inter`` is ``inter_ab`` for the
swap and ``inter_b`` for the dst reconstruction. Its graph takes ``morph_value``
and decodes ``cat(m * inter_ab + (1 - m) * inter_b, inter_ab)``: 1 is the full
swap (bit for bit the same code as ``swap``), 0 the dst face, between them an
identity blend in code space (DeepFaceLab's AMP does the same with a channel
split). DF-style models (two decoders) get no morph input: the only blend
available there is a cross-fade of two decoded images, a double exposure rather
than a face in between, and a player would show it as a broken slider.

``fp16``: weights and arithmetic in float16, the inputs and outputs stay
float32 (a cast at each end inside the graph), so a player's float32 feed works
unchanged. The float32 graph is traced and then converted (:func:`to_fp16`):
tracing a float16 network runs it in float16 on the CPU, which took 30 s to
3 minutes per default-size model on 2 cores against 1 to 5 s for this.

The legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) is
used: it needs only the ``onnx`` package afterwards (for the metadata), names
inputs and outputs exactly as given and keeps a plain graph of Conv / Gemm /
DepthToSpace nodes (opset 17, IR version 8: onnxruntime 1.15 and later read it).
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facelab.errors import FacelabError, ModelError, SettingsError

FORMATS = ("dfm", "onnx")
OPSET = 17
IR_VERSION = 8
IN_FACE, MORPH = "in_face:0", "morph_value:0"
OUT_FACE_MASK, OUT_CELEB, OUT_CELEB_MASK = "out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"
SWAP_OUTPUTS = (OUT_FACE_MASK, OUT_CELEB, OUT_CELEB_MASK)
OUT_MASK = "out_mask:0"
SYNTHETIC_NOTICE = ("This model produces synthetic (AI-generated) faces of a person. Anything made with it is "
                    "synthetic media and must be labelled as such.")
MASK_NOTICE = ("This model segments faces (the mask of the visible face) for face replacement with facelab. The faces "
               "swapped with it are synthetic media and must be labelled as such.")


# --- the graphs ------------------------------------------------------------------------------------------------


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def can_morph(model: nn.Module) -> bool:
    """Whether the model's exported graph takes ``morph_value`` (LIAE-style: ``inter_ab`` and ``inter_b``
    into one shared decoder)."""
    return hasattr(model, "inter_ab") and hasattr(model, "inter_b")


def _parts(model: nn.Module):
    """``(encode, decode)`` of a model whose structure the graph can share, else None.

    ``encode`` maps faces to encoder features; ``decode(decoder, z) -> (face, mask)``. Sharing the encoder
    between the swap and the dst mask runs it once per frame instead of twice (what a real-time player
    feels); a model of another structure falls back to ``swap`` and ``reconstruct``.
    """
    if hasattr(model, "decode") and hasattr(model, "encode"):  # sae: multi-scale decoders, first scale is full size
        return model.encode, lambda dec, z: model.decode(dec, z)[0]
    if hasattr(model, "encoder"):
        return model.encoder, lambda dec, z: dec(z)
    return None


class SwapGraph(nn.Module):
    """What the exported file computes: NHWC faces in, ``(out_face_mask, out_celeb_face, out_celeb_face_mask)``
    NHWC out (see the module docstring); ``morph`` only for a model where :func:`can_morph`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.morph = can_morph(model)

    def _swap_and_dst_mask(self, x: torch.Tensor, morph: torch.Tensor | None):
        m, parts = self.model, _parts(self.model)
        if parts is not None and self.morph:
            encode, decode = parts
            e = encode(x)
            ab, b = m.inter_ab(e), m.inter_b(e)
            mix = ab if morph is None else morph * ab + (1 - morph) * b
            face, mask = decode(m.decoder, torch.cat([mix, ab], 1))
            _, dst_mask = decode(m.decoder, torch.cat([b, ab], 1))
            return face, mask, dst_mask
        if parts is not None and hasattr(m, "decoder_src") and hasattr(m, "decoder_dst") and hasattr(m, "inter"):
            encode, decode = parts
            z = m.inter(encode(x))
            face, mask = decode(m.decoder_src, z)
            _, dst_mask = decode(m.decoder_dst, z)
            return face, mask, dst_mask
        face, mask = m.swap(x)
        dst_mask = m.reconstruct(x, "dst")[1] if hasattr(m, "reconstruct") else mask
        return face, mask, dst_mask

    def forward(self, in_face: torch.Tensor, morph_value: torch.Tensor | None = None):
        face, mask, dst_mask = self._swap_and_dst_mask(_nchw(in_face), morph_value)
        if getattr(self.model, "config", {}).get("learn_mask") is False:
            # no mask branch: the model's masks are ones sized by a traced batch length; ones like the face instead
            mask = dst_mask = torch.ones_like(face[:, :1])
        return tuple(_nhwc(t) for t in (dst_mask, face, mask))


class MaskGraph(nn.Module):
    """A segmentation network's exported graph: ``in_face (N, R, R, 3)`` BGR [0, 1] -> ``out_mask (N, R, R, 1)``
    in [0, 1] (the network's logits through a sigmoid)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, in_face: torch.Tensor) -> torch.Tensor:
        return _nhwc(torch.sigmoid(self.module(_nchw(in_face))))


# --- writing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """What :func:`export_swap_model` / :func:`export_mask_model` wrote."""

    path: Path
    bytes: int
    seconds: float
    resolution: int
    morph: bool
    fp16: bool
    metadata: dict[str, str]


def check_out_path(out: str | Path, fmt: str | None = None) -> Path:
    """``out`` as a Path if a file can be written there (its folder exists and it is not a folder); else
    :class:`FacelabError` with what to do. ``fmt`` (``dfm``/``onnx``) is checked against :data:`FORMATS`."""
    if fmt is not None and fmt not in FORMATS:
        raise SettingsError(f"export format {fmt!r} is not known", f"use one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise FacelabError(f"{out} is a folder", f"give a file name, e.g. {out / ('model.' + (fmt or 'onnx'))}")
    if not out.parent.is_dir():
        raise FacelabError(f"cannot write {out}: the folder {out.parent} does not exist", "create it first or choose another --out")
    return out


def to_fp16(proto) -> None:
    """Turn a float32 ONNX model into float16 weights and arithmetic in place, keeping float32 inputs and outputs.

    Float initialisers and ``Constant`` nodes become float16 and every ``Cast`` to float32 a cast to float16;
    a ``Cast`` to float16 follows each float32 input and a ``Cast`` back to float32 precedes each float32
    output. Enough for the plain graphs :class:`SwapGraph` and :class:`MaskGraph` trace (convolutions, dense
    layers, activations, reshapes); the exported numbers are checked against PyTorch in the tests."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    g = proto.graph

    def half(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for i, t in enumerate(g.initializer):
        if t.data_type == FLOAT:
            g.initializer[i].CopyFrom(half(t))
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Constant" and a.name == "value" and a.t.data_type == FLOAT:
                a.t.CopyFrom(half(a.t))
            if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                a.i = HALF

    def rename(old: str, new: str) -> None:
        for node in g.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]

    first, last = [], []
    for v in g.input:
        if v.type.tensor_type.elem_type == FLOAT:
            rename(v.name, v.name + "_fp16")
            first.append(helper.make_node("Cast", [v.name], [v.name + "_fp16"], to=HALF, name=v.name + "_to_fp16"))
    for v in g.output:
        if v.type.tensor_type.elem_type == FLOAT:
            rename(v.name, v.name + "_fp16")
            last.append(helper.make_node("Cast", [v.name + "_fp16"], [v.name], to=FLOAT, name=v.name + "_to_fp32"))
    nodes = first + list(g.node) + last
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # intermediate types changed; onnxruntime infers them again


def _export(graph: nn.Module, args: tuple, input_names: list[str], output_names: list[str], out: Path,
            metadata: dict[str, str], out_channels: dict[str, int], resolution: int) -> Exported:
    """Trace ``graph`` to ONNX, fix shapes, IR version and metadata, then write ``out`` atomically."""
    import onnx

    from facelab.fileio import atomic_write_bytes

    start = time.perf_counter()
    dynamic = {name: {0: "N"} for name in input_names + output_names if name != MORPH}
    with tempfile.TemporaryDirectory(prefix="facelab-export-") as tmp:
        raw = Path(tmp) / "graph.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
            with torch.no_grad():
                torch.onnx.export(graph, args, str(raw), dynamo=False, input_names=input_names, output_names=output_names,
                                  opset_version=OPSET, dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load(str(raw))
    if metadata.get("facelab.precision") == "fp16":
        to_fp16(proto)
    proto.ir_version = IR_VERSION
    for o in proto.graph.output:  # the tracer leaves generated names on the static dims: state them
        dims = o.type.tensor_type.shape.dim
        del dims[:]
        for value in ("N", resolution, resolution, out_channels[o.name]):
            d = dims.add()
            if isinstance(value, str):
                d.dim_param = value
            else:
                d.dim_value = value
    proto.producer_name = "facelab"
    proto.producer_version = metadata.get("facelab.version", "")
    proto.doc_string = metadata["facelab.notice"]
    del proto.metadata_props[:]
    for k, v in metadata.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write_bytes(out, data)
    return Exported(out, len(data), time.perf_counter() - start, resolution, MORPH in input_names,
                    metadata.get("facelab.precision") == "fp16", dict(metadata))


def _base_metadata(fp16: bool, extra: dict[str, Any] | None) -> dict[str, str]:
    from facelab import __version__

    meta = {"facelab.synthetic": "true", "facelab.notice": SYNTHETIC_NOTICE, "facelab.version": __version__,
            "facelab.precision": "fp16" if fp16 else "fp32"}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta


def export_swap_model(model: nn.Module, out: str | Path, fp16: bool = False, save_id: str | None = None,
                      metadata: dict[str, Any] | None = None) -> Exported:
    """Write a face-swap model (``swap`` / ``reconstruct`` of :mod:`facelab.models`) as ``out`` (layout in the
    module docstring). The model is not changed (a copy is traced).

    Metadata written: ``facelab.synthetic`` = ``true`` and a sentence saying so, ``facelab.version``,
    ``facelab.architecture``, ``facelab.config`` (JSON), ``facelab.face_type``, ``facelab.resolution``,
    ``facelab.save_id`` (when given), ``facelab.morph``, ``facelab.precision``, plus ``metadata``.
    """
    import copy

    out = check_out_path(out)
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "resolution" not in config or "face_type" not in config:
        raise ModelError(f"{type(model).__name__} has no config with resolution and face_type", "export a facelab swap model")
    r = int(config["resolution"])
    graph = SwapGraph(copy.deepcopy(model).eval().cpu().float()).eval()
    meta = _base_metadata(fp16, None)
    meta.update({"facelab.kind": "swap", "facelab.architecture": str(getattr(model, "architecture", type(model).__name__)),
                 "facelab.config": json.dumps(config, sort_keys=True), "facelab.face_type": str(config["face_type"]),
                 "facelab.resolution": str(r), "facelab.morph": "true" if graph.morph else "false"})
    if save_id:
        meta["facelab.save_id"] = str(save_id)
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    faces = torch.rand(2, r, r, 3)
    args: tuple = (faces, torch.ones(1)) if graph.morph else (faces,)
    inputs = [IN_FACE, MORPH] if graph.morph else [IN_FACE]
    return _export(graph, args, inputs, list(SWAP_OUTPUTS), out, meta,
                   {OUT_FACE_MASK: 1, OUT_CELEB: 3, OUT_CELEB_MASK: 1}, r)


def export_mask_model(module: nn.Module, resolution: int, out: str | Path, fp16: bool = False,
                      metadata: dict[str, Any] | None = None) -> Exported:
    """Write a mask network as ``out``: input ``in_face:0`` float32 ``[N, R, R, 3]`` BGR in [0, 1], output
    ``out_mask:0`` float32 ``[N, R, R, 1]`` in [0, 1].

    ``module`` maps ``(N, 3, R, R)`` BGR [0, 1] faces to ``(N, 1, R, R)`` logits (e.g. ``facelab.seg.net``); the
    sigmoid is inside the exported graph. The module is not changed (a copy is traced). Metadata as
    :func:`export_swap_model` (``facelab.kind`` = ``mask``), plus ``metadata``."""
    import copy

    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 2048:
        raise SettingsError(f"export_mask_model: resolution {resolution!r} is not allowed", "use a whole number from 8 to 2048")
    out = check_out_path(out)
    graph = MaskGraph(copy.deepcopy(module).eval().cpu().float()).eval()
    meta = _base_metadata(fp16, {"facelab.kind": "mask", "facelab.notice": MASK_NOTICE, "facelab.resolution": resolution,
                                 **(metadata or {})})
    return _export(graph, (torch.rand(2, resolution, resolution, 3),), [IN_FACE], [OUT_MASK], out, meta,
                   {OUT_MASK: 1}, resolution)
