"""facelab export: every registered swap model as a DeepFaceLive / FaceFusion file, its numbers against PyTorch,
the checks players make when they open it, its provenance metadata, and `merge --onnx`."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facelab.errors import FacelabError, ModelError, SettingsError
from facelab.export import export_mask_model, export_swap_model, load_onnx_predictor, player_check
from facelab.export.onnx import IN_FACE, IR_VERSION, MORPH, OPSET, OUT_MASK, SWAP_OUTPUTS
from facelab.inference import Predictor
from facelab.models import list_models

# every registered model, plus the sae archis whose graph differs (liae: morph input; -ud: pixel-shuffle output)
# and quick with its extra full-size level
CASES = [(name, {}) for name in list_models()] + [("sae", {"archi": "liae-ud"}), ("sae", {"learn_mask": False}),
                                                  ("quick", {"double_res": True})]
TOLERANCE = {False: 1e-4, True: 5e-3}  # fp32, fp16 (float16 keeps ~3 decimal digits)


def _id(case) -> str:
    name, extra = case
    return name + "".join(f"-{k}={v}" for k, v in extra.items())


@pytest.fixture(scope="module")
def faces(sample_faces_ws):
    """``faces(n, size) -> (n, size, size, 3) float32`` BGR [0, 1]: real aligned dst faces."""
    paths = sample_faces_ws.aligned_paths("dst")

    def load(n: int, size: int) -> np.ndarray:
        return np.stack([cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_AREA)
                         for p in paths[:n]]).astype(np.float32) / 255

    return load


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_model_exports_and_onnxruntime_matches_pytorch(case, fp16, tiny_model, faces, tmp_path):
    name, extra = case
    torch.manual_seed(0)
    model = tiny_model(name, **extra)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    done = export_swap_model(model, tmp_path / f"{name}.dfm", fp16=fp16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "export changed the model"
    assert next(model.parameters()).dtype == torch.float32

    r = model.config["resolution"]
    x = faces(3, r)  # a batch size other than the traced one (2): N is dynamic
    torch_p, onnx_p = Predictor(model, torch.device("cpu")), load_onnx_predictor(done.path)
    assert (onnx_p.resolution, onnx_p.face_type) == (torch_p.resolution, torch_p.face_type)
    (f1, m1), (f2, m2) = torch_p.predict(x), onnx_p.predict(x)
    d1, d2 = torch_p.predict_dst_mask(x), onnx_p.predict_dst_mask(x)
    assert f2.shape == (3, r, r, 3) and m2.shape == d2.shape == (3, r, r) and f2.dtype == np.float32
    diff = max(np.abs(f1 - f2).max(), np.abs(m1 - m2).max(), np.abs(d1 - d2).max())
    print(f"{_id(case)} {'fp16' if fp16 else 'fp32'}: max abs difference {diff:.2e}, {done.bytes} bytes, {done.seconds:.2f} s")
    assert diff < TOLERANCE[fp16]
    assert done.morph == (name == "liaef128" or extra.get("archi", "").startswith("liae"))


@pytest.mark.parametrize("case", [("liaef128", {}), ("sae", {"archi": "liae"})], ids=_id)
def test_morph_value_blends_from_the_dst_face_to_the_full_swap(case, tiny_model, faces, tmp_path):
    name, extra = case
    torch.manual_seed(0)
    model = tiny_model(name, **extra)
    path = export_swap_model(model, tmp_path / "m.dfm").path
    x = faces(2, 32)
    sess = _session(path)

    def celeb(m: float) -> np.ndarray:
        return sess.run(None, {IN_FACE: x, MORPH: np.float32([m])})[1]

    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        swap = model.swap(t)[0].permute(0, 2, 3, 1).numpy()
        dst = model.reconstruct(t, "dst")[0].permute(0, 2, 3, 1).numpy()
    assert np.abs(celeb(1.0) - swap).max() < 1e-4
    assert np.abs(celeb(0.0) - dst).max() < 1e-4
    half, apart = celeb(0.5), np.abs(swap - dst).max()  # an untrained model: small, but far above rounding
    assert apart > 1e-4 and np.abs(half - swap).max() > 0.2 * apart and np.abs(half - dst).max() > 0.2 * apart


def test_the_file_passes_deepfacelives_open_checks_and_has_the_players_layout(tiny_model, tmp_path):
    torch.manual_seed(0)
    path = export_swap_model(tiny_model("sae", archi="liae"), tmp_path / "m.dfm").path
    info = player_check(path)
    assert info.resolution == 32 and info.morph
    assert [n for n, _ in info.inputs] == [IN_FACE, MORPH]
    assert info.inputs[0][1][1:] == (32, 32, 3) and isinstance(info.inputs[0][1][0], str)  # N dynamic, R static
    assert info.inputs[1][1] == (1,)
    assert [n for n, _ in info.outputs] == list(SWAP_OUTPUTS)
    assert [s[1:] for _, s in info.outputs] == [(32, 32, 1), (32, 32, 3), (32, 32, 1)]
    no_morph = player_check(export_swap_model(tiny_model("quick"), tmp_path / "q.dfm").path)
    assert not no_morph.morph and [n for n, _ in no_morph.inputs] == [IN_FACE]


def test_opset_ir_version_and_provenance_metadata(tiny_model, tmp_path):
    import onnx

    from facelab import __version__

    model = tiny_model("df")
    done = export_swap_model(model, tmp_path / "df.onnx", fp16=True, save_id="abc123")
    proto = onnx.load(str(done.path))
    assert proto.ir_version <= 8 and proto.ir_version == IR_VERSION
    assert all(o.version <= 17 for o in proto.opset_import if o.domain in ("", "ai.onnx")) and OPSET <= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["facelab.synthetic"] == "true" and "synthetic" in meta["facelab.notice"]
    assert meta["facelab.version"] == __version__
    assert (meta["facelab.architecture"], meta["facelab.face_type"], meta["facelab.resolution"]) == ("df", "full", "32")
    assert meta["facelab.save_id"] == "abc123" and meta["facelab.precision"] == "fp16" and meta["facelab.morph"] == "false"
    assert "synthetic" in proto.doc_string
    # fp16: float32 in and out, float16 weights
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    assert {i.data_type for i in proto.graph.initializer if len(i.dims) > 1} == {onnx.TensorProto.FLOAT16}
    fp32 = export_swap_model(model, tmp_path / "df32.onnx")
    print(f"df at 32 px: fp32 {fp32.bytes} bytes, fp16 {done.bytes} bytes")
    assert done.bytes < 0.6 * fp32.bytes


class _TinySegmenter(nn.Module):
    """A stand-in for facelab.seg.net: (N, 3, R, R) BGR [0, 1] -> (N, 1, R, R) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 4


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_a_mask_network_exports_with_the_sigmoid_inside(fp16, faces, tmp_path):
    torch.manual_seed(0)
    net = _TinySegmenter().eval()
    done = export_mask_model(net, 32, tmp_path / "seg.onnx", fp16=fp16, metadata={"facelab.segmenter": "tiny"})
    sess = _session(done.path)
    assert [i.name for i in sess.get_inputs()] == [IN_FACE] and sess.get_inputs()[0].shape[1:] == [32, 32, 3]
    assert [o.name for o in sess.get_outputs()] == [OUT_MASK]
    x = faces(3, 32)
    got = sess.run(None, {IN_FACE: x})[0]
    with torch.no_grad():
        want = torch.sigmoid(net(torch.from_numpy(x).permute(0, 3, 1, 2))).permute(0, 2, 3, 1).numpy()
    assert got.shape == (3, 32, 32, 1) and got.dtype == np.float32 and 0 <= got.min() and got.max() <= 1
    diff = np.abs(got - want).max()
    print(f"mask network {'fp16' if fp16 else 'fp32'}: max abs difference {diff:.2e}")
    assert diff < TOLERANCE[fp16]
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    assert meta["facelab.synthetic"] == "true" and meta["facelab.kind"] == "mask" and meta["facelab.segmenter"] == "tiny"
    with pytest.raises(ModelError, match="face segmenter.*not a face-swap model"):  # players would refuse it
        player_check(done.path)
    with pytest.raises(SettingsError, match="resolution"):
        export_mask_model(net, 0, tmp_path / "bad.onnx")


def test_a_foreign_file_without_our_metadata_needs_a_face_type(tiny_model, tmp_path):
    import onnx

    path = export_swap_model(tiny_model("quick"), tmp_path / "foreign.dfm").path
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    with pytest.raises(SettingsError) as e:
        load_onnx_predictor(path)
    assert "--face-type whole" in e.value.hint
    assert load_onnx_predictor(path, face_type="whole").face_type == "whole"
    with pytest.raises(FacelabError, match="no exported model"):
        load_onnx_predictor(tmp_path / "nosuch.dfm")
    (tmp_path / "junk.dfm").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime"):
        load_onnx_predictor(tmp_path / "junk.dfm")


def test_verify_reads_the_labels_of_an_exported_swap_model_and_segmenter(tiny_model, tmp_path):
    import onnx
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.errors import MediaError
    from facelab.provenance.verify import verify_file

    swap = export_swap_model(tiny_model("quick"), tmp_path / "swap.dfm").path
    mask = export_mask_model(_TinySegmenter().eval(), 32, tmp_path / "seg.onnx").path
    for path, kind, says in ((swap, "swap", "produces synthetic (AI-generated) faces"), (mask, "mask", "segments faces")):
        report = verify_file(path)
        assert report.marked and report.watermark is None and not report.manifest.found, path
        assert report.tags["facelab.kind"] == kind and says in report.tags["facelab.notice"]
        assert onnx.load(str(path)).doc_string == report.tags["facelab.notice"]
    foreign = tmp_path / "foreign.onnx"  # another program's model: nothing of ours in it
    proto = onnx.load(str(swap))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    assert not verify_file(foreign).marked and verify_file(foreign).tags == {}
    (tmp_path / "junk.dfm").write_bytes(b"not a model")
    with pytest.raises(MediaError, match="not an ONNX model"):
        verify_file(tmp_path / "junk.dfm")
    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(swap), str(mask)]).exit_code == 0
    assert runner.invoke(app, ["verify", str(swap), str(foreign)]).exit_code == 1


# --- the command and merge --onnx -------------------------------------------------------------------------------


@pytest.fixture()
def trained(trained_quick_ws, tmp_path):
    from facelab.workspace import Workspace

    shutil.copytree(trained_quick_ws.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _cli(ws, *args):
    from typer.testing import CliRunner

    from facelab.cli import app

    return CliRunner().invoke(app, ["-w", str(ws.root), *args])


def test_export_command_writes_beside_the_model_folder_and_refuses_bad_input(trained, tmp_path):
    ok = _cli(trained, "export", "quick")
    assert ok.exit_code == 0, ok.output
    out = trained.model_root / "quick.dfm"
    assert out.is_file() and str(out) in ok.output.replace("\n", "")
    assert "face coverage 1.5" in ok.output  # a full-face model: DeepFaceLive's crop for it
    info = player_check(out)
    assert info.resolution == 32 and info.metadata["facelab.save_id"]
    # a model folder by its path, another format and name, fp16
    by_path = _cli(trained, "export", str(trained.model_dir("quick")), "--format", "onnx", "--out", str(tmp_path / "q.onnx"),
                   "--fp16")
    assert by_path.exit_code == 0, by_path.output
    assert load_onnx_predictor(tmp_path / "q.onnx").metadata["facelab.precision"] == "fp16"

    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args, kind, words in [
        (("quick", "--format", "pt"), SettingsError, "dfm, onnx"),
        (("nosuch",), FacelabError, "give a model name"),
        (("quick", "--out", str(tmp_path / "missing" / "m.dfm")), FacelabError, "does not exist"),
        (("quick", "--out", str(tmp_path)), FacelabError, "is a folder"),
    ]:
        bad = _cli(trained, "export", *args)
        assert bad.exit_code != 0 and isinstance(bad.exception, kind), (args, bad.output, bad.exception)
        assert words in str(bad.exception), (args, str(bad.exception))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, nothing half-written


def test_a_failed_export_leaves_no_file(trained, tmp_path, monkeypatch):
    import onnx

    from facelab.stages import export

    def broken(_proto, *a, **k):
        raise RuntimeError("checker failed")

    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(RuntimeError):
        export.run(trained, "quick", export.ExportSettings(out=tmp_path / "m.dfm"))
    assert not any(tmp_path.glob("*m.dfm*")) and not any(tmp_path.glob(".*tmp"))


def test_merge_with_the_exported_file_gives_the_pytorch_models_frames_and_marks_them(trained, tmp_path, marker):
    from facelab.merge.compose import MergeSettings
    from facelab.merge.ranges import FrameRange
    from facelab.provenance.verify import verify_file
    from facelab.stages import export, merge

    path = tmp_path / "quick.dfm"
    export.run(trained, "quick", export.ExportSettings(out=path))
    settings = MergeSettings(mode="overlay", mask="learned-dst*learned", color="none")
    only = FrameRange(1, 8)

    def frames() -> dict[str, np.ndarray]:
        return {p.name: cv2.imread(str(p)) for p in sorted(trained.merged_dir.glob("*.png"))}

    a = merge.run(trained, "quick", settings, device="cpu", only=only, marker=marker)
    torch_frames = frames()
    b = merge.run(trained, "quick", settings, device="cpu", only=only, marker=marker, onnx=path)
    onnx_frames = frames()
    assert a.counts["merged"] == b.counts["merged"] >= 3 and b.counts["skipped"] == 0  # another model: rendered again
    diff = max(np.abs(torch_frames[k].astype(int) - onnx_frames[k].astype(int)).max() for k in torch_frames)
    print(f"merge --onnx against the PyTorch model: max pixel difference {diff} over {len(torch_frames)} frames")
    assert torch_frames.keys() == onnx_frames.keys() and diff <= 2
    assert verify_file(trained.merged_dir / sorted(onnx_frames)[0]).marked  # marked exactly as before
    again = merge.run(trained, "quick", settings, device="cpu", only=only, marker=marker, onnx=path)
    assert again.counts["skipped"] == again.counts["frames"]  # the same file: nothing to do
    shown = _cli(trained, "merge", "--onnx", str(path), "--preview", "1", "--mode", "overlay")  # the CLI, one frame
    assert shown.exit_code == 0, shown.output
    assert verify_file(trained.merged_preview_dir / "00001.png").marked
    with pytest.raises(SettingsError, match="face type"):
        merge.run(trained, "quick", settings, device="cpu", only=only, marker=marker, face_type="whole")
    with pytest.raises(SettingsError, match="full-face model"):
        merge.run(trained, "quick", settings, device="cpu", only=only, marker=marker, onnx=path, face_type="whole")
