"""Run an exported swap model (ours or a DeepFaceLive ``.dfm``) with onnxruntime, as the merge's predictor.

:func:`player_check` applies the checks DeepFaceLive makes when it opens a
``.dfm`` (``modelhub/DFLive/DFMModel.py``): the first input's name contains
``in_face`` and its height and width are fixed numbers; a second input, if
any, is named ``morph_value``; no third input. It then takes the three outputs
by position (``out_face_mask, out_celeb_face, out_celeb_face_mask``), as
FaceFusion's ``deep_swapper`` does; the check holds us to that too.

:class:`OnnxPredictor` has the interface of :class:`facelab.inference.Predictor`
(``resolution``, ``face_type``, ``predict``, ``predict_dst_mask``), so the merge
renders with it exactly as with the PyTorch model, marking included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError, ModelError, SettingsError

FACE_TYPES = ("half", "mid", "full", "whole", "head")


@dataclass(frozen=True)
class PlayerInfo:
    """What a player learns from a file when it opens it."""

    resolution: int
    morph: bool
    inputs: tuple[tuple[str, tuple], ...]
    outputs: tuple[tuple[str, tuple], ...]
    metadata: dict[str, str]


def _session(path: Path, device: str = "cpu"):
    import onnxruntime as ort

    if not path.is_file():
        raise FacelabError(f"no exported model {path}", "give the .dfm or .onnx file written by `facelab export`")
    providers = ["CPUExecutionProvider"]
    d = str(device).strip().lower()
    if d != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(d[5:]) if d.startswith("cuda:") and d[5:].isdigit() else 0
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warnings on stderr about unused initialisers etc.
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
        raise ModelError(f"{path} is not a model onnxruntime can open: {str(e).splitlines()[0][:200]}",
                         "export it again with `facelab export`") from e


def player_check(session_or_path, name: str = "") -> PlayerInfo:
    """DeepFaceLive's checks on opening a ``.dfm`` (module docstring), plus the three outputs with 3 / 1 channels
    at the input's size. Raises :class:`ModelError` saying which check failed."""
    sess = _session(Path(session_or_path)) if isinstance(session_or_path, (str, Path)) else session_or_path
    what = name or str(session_or_path)
    ins, outs = sess.get_inputs(), sess.get_outputs()
    fix = "export it with `facelab export`"
    if not ins or "in_face" not in ins[0].name:
        raise ModelError(f"{what}: the first input is not in_face (DeepFaceLive refuses it)", fix)
    if len(ins) > 2 or (len(ins) == 2 and "morph_value" not in ins[1].name):
        raise ModelError(f"{what}: inputs {[i.name for i in ins]} are not in_face and morph_value", fix)
    shape = list(ins[0].shape)
    if len(shape) != 4 or not all(isinstance(v, int) for v in shape[1:]) or shape[1] != shape[2] or shape[3] != 3:
        raise ModelError(f"{what}: in_face has shape {shape}, not [N, R, R, 3] with a fixed R", fix)
    r = int(shape[1])
    if len(outs) != 3:
        if sess.get_modelmeta().custom_metadata_map.get("facelab.kind") == "mask":
            raise ModelError(f"{what} is an exported face segmenter (in_face:0 -> out_mask:0), not a face-swap model",
                             "give the file `facelab export` wrote for a face-swap model; the merge's segmentation "
                             "masks use the segmenter's folder (model/segmenter) directly")
        raise ModelError(f"{what}: {len(outs)} outputs, players expect 3 (face mask, celeb face, celeb mask)", fix)
    for o, channels in zip(outs, (1, 3, 1)):
        s = list(o.shape)
        if len(s) != 4 or s[1:] != [r, r, channels]:
            raise ModelError(f"{what}: output {o.name} has shape {s}, expected [N, {r}, {r}, {channels}]", fix)
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    return PlayerInfo(r, len(ins) == 2, tuple((i.name, tuple(i.shape)) for i in ins), tuple((o.name, tuple(o.shape)) for o in outs),
                      meta)


def file_id(path: str | Path) -> str:
    """``onnx:<first 16 hex digits of the file's sha256>``: the merge's model id for an exported file, so
    switching files (or re-exporting) renders the frames again."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "onnx:" + h.hexdigest()[:16]


class OnnxPredictor:
    """An exported swap model run by onnxruntime, with the merge's predictor interface.

    Attributes:
        resolution: side ``R`` of the faces it takes and returns (the file's ``in_face`` shape).
        face_type: our metadata's ``facelab.face_type``, else the ``face_type`` given.
        model_id: :func:`file_id` of the file.
        morph: the file takes ``morph_value``; the merge feeds 1.0 (the full swap, as the PyTorch model).
        metadata: the file's metadata.
    """

    def __init__(self, path: str | Path, face_type: str | None = None, device: str = "cpu") -> None:
        self.path = Path(path)
        self.session = _session(self.path, device)
        info = player_check(self.session, str(self.path))
        self.resolution, self.morph, self.metadata = info.resolution, info.morph, info.metadata
        saved = self.metadata.get("facelab.face_type")
        if face_type is not None and face_type not in FACE_TYPES:
            raise SettingsError(f"face_type {face_type!r} is not one of {', '.join(FACE_TYPES)}", "DeepFaceLive models are whole")
        if saved is not None and face_type is not None and saved != face_type:
            raise SettingsError(f"{self.path} was exported from a {saved}-face model, not {face_type}",
                                "leave out --face-type: facelab's files carry their face type")
        if saved is None and face_type is None:
            raise SettingsError(f"{self.path} does not say which face type it was trained on (not a facelab export)",
                                "pass --face-type whole for DeepFaceLive's and FaceFusion's models (whole face), "
                                "or the type it was trained on")
        self.face_type = str(saved or face_type)
        self.model_id = file_id(self.path)
        self._in = self.session.get_inputs()[0].name
        self._morph_name = self.session.get_inputs()[1].name if self.morph else None
        self._last: tuple[np.ndarray, list[np.ndarray]] | None = None

    def _run(self, batch: np.ndarray, what: str) -> list[np.ndarray]:
        batch = np.asarray(batch)
        r = self.resolution
        if batch.ndim != 4 or batch.shape[1:] != (r, r, 3):
            raise ValueError(f"{what}: expected (N, {r}, {r}, 3) float32 BGR faces, got {batch.shape} {batch.dtype}")
        x = np.ascontiguousarray(batch, np.float32)
        last = self._last
        if last is not None and last[0].shape == x.shape and np.array_equal(last[0], x):
            return last[1]  # predict then predict_dst_mask on the same faces: one run gives both
        feed = {self._in: x}
        if self._morph_name is not None:
            feed[self._morph_name] = np.ones(1, np.float32)
        outs = self.session.run(None, feed)
        self._last = (x.copy(), outs)
        return outs

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, R, R, 3) float32`` BGR in ``[0, 1]`` -> ``((N, R, R, 3), (N, R, R))`` float32 in ``[0, 1]``."""
        _, face, mask = self._run(batch, "predict")
        return np.asarray(face, np.float32), np.asarray(mask[..., 0], np.float32)

    def predict_dst_mask(self, batch: np.ndarray) -> np.ndarray:
        """The file's ``out_face_mask`` (the mask predicted for the dst faces themselves): ``(N, R, R) float32``."""
        return np.asarray(self._run(batch, "predict_dst_mask")[0][..., 0], np.float32)


def load_onnx_predictor(path: str | Path, device: str = "cpu", face_type: str | None = None) -> OnnxPredictor:
    """:class:`OnnxPredictor` of an exported file (``device``: ``cpu``; ``auto``/``cuda``/``cuda:N`` use
    onnxruntime's CUDA provider when it is installed, else the CPU)."""
    return OnnxPredictor(path, face_type, device)
