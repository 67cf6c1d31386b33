"""One convention test per kind of swappable part, parametrized over the part's own table (issue 11, point 8).

- models (:data:`facelab.models.MODELS`): save, load, identical output;
- colour transfers (:data:`facelab.color.COLOR_TRANSFERS`), merge masks
  (:data:`facelab.merge.masks.MASKS`), blends and histogram matches
  (:data:`facelab.merge.modes.MERGE_MODES`), face effects
  (:data:`facelab.merge.effects.FACE_EFFECTS`): inputs untouched, dtype, shape
  and range kept, a new array returned, and the shared input checks
  (:mod:`facelab.checks`) on a wrong type and a wrong dtype.

A part added to its table is tested here without a line changed. Everything
runs on real faces cut from the shipped clips (:func:`sample_faces_ws`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from facelab.align import hull_mask
from facelab.color import COLOR_TRANSFERS
from facelab.faceimage import read_face
from facelab.merge.effects import FACE_EFFECTS
from facelab.merge.masks import MASKS, MaskInputs
from facelab.merge.modes import MERGE_MODES
from facelab.models import list_models

ROOT = Path(__file__).resolve().parents[1]

# the distinct functions behind the merge modes: one test each, however many modes share one
BLENDS = {m.blend.__name__: m.blend for m in MERGE_MODES.values() if m.blend is not None}
HIST_MATCHES = {m.hist.__name__: m.hist for m in MERGE_MODES.values() if m.hist is not None}
EFFECT_AMOUNT = 60  # a middle amount every face effect accepts and that changes the face


@pytest.fixture(scope="module")
def faces(sample_faces_ws):
    """A src face and a dst face (128 px ``float32`` BGR ``[0, 1]``) with their landmarks and hull masks."""
    out = {}
    for side in ("src", "dst"):
        image, rec = read_face(sample_faces_ws.aligned_paths(side)[0])
        lm = np.asarray(rec.landmarks, np.float32)
        out[side] = (image.astype(np.float32) / 255, hull_mask(lm, image.shape[:2], rec.face_type), lm)
    return out


def run_untouched(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing if it changed any array argument."""
    copies = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    out = fn(*args, **kwargs)
    for a, c in zip(args, copies):
        if c is not None:
            np.testing.assert_array_equal(a, c, err_msg=f"{fn.__name__} modified its input")
    return out


def assert_new_face(out, like: np.ndarray, *args) -> None:
    """``out`` is a new ``float32`` array of ``like``'s shape in ``[0, 1]`` that shares no memory with an input."""
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == like.shape
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert not any(isinstance(a, np.ndarray) and np.shares_memory(out, a) for a in args)


def assert_checks_input(fn, args: tuple, index: int) -> None:
    """The shared checks on argument ``index``: a list is a TypeError, uint8 a ValueError naming both layouts."""
    bad = list(args)
    bad[index] = args[index].tolist()
    with pytest.raises(TypeError, match="expected numpy.ndarray, got list"):
        fn(*bad)
    bad[index] = (args[index] * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) float32, got \(\d+, \d+, 3\) uint8"):
        fn(*bad)


# --- colour transfers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(COLOR_TRANSFERS))
def test_color_transfer_convention(name, faces):
    fn = COLOR_TRANSFERS[name]
    (face, f_mask, _), (ref, r_mask, _) = faces["src"], faces["dst"]
    out = run_untouched(fn, face, ref, f_mask, r_mask)
    assert_new_face(out, face, face, ref)
    assert np.abs(out - face).mean() > 1e-3  # it did recolour the src face towards the dst face
    assert_checks_input(fn, (face, ref, f_mask, r_mask), 0)
    assert_checks_input(fn, (face, ref, f_mask, r_mask), 1)


# --- merge masks -----------------------------------------------------------------------------------------------


def _face_everywhere_segmenter():
    """A real (untrained, 64 px, whole-face) segmenter whose output is biased to "face": the segmentation masks
    run their whole path (re-cut to the segmenter's face type, network, back) and give a face-sized mask."""
    import torch

    from facelab.seg.model import SegmenterRunner, create_segmenter

    torch.manual_seed(0)
    net = create_segmenter(resolution=64, face_type="whole").eval()
    with torch.no_grad():
        net.head.bias.fill_(4.0)
    return SegmenterRunner(net)


@pytest.mark.parametrize("name", MASKS.names())
def test_mask_provider_convention(name, faces):
    (src, src_hull, _), (dst, dst_hull, dst_lm) = faces["src"], faces["dst"]
    inputs = MaskInputs(dst_faces=dst[None], pred_faces=src[None], pred_masks=src_hull[None],
                        dst_masks=np.clip(dst_hull[None] * 0.9, 0, 1), hulls=dst_hull[None],
                        landmarks=dst_lm[None], face_type="full",
                        segmenter=_face_everywhere_segmenter() if name.startswith("segmentation") else None)
    copies = {k: v.copy() for k, v in vars(inputs).items() if isinstance(v, np.ndarray)}
    out = MASKS.get(name)(inputs)
    for k, v in copies.items():
        np.testing.assert_array_equal(getattr(inputs, k), v, err_msg=f"mask {name!r} modified inputs.{k}")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == dst_hull[None].shape
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.5  # a real face has a mask


# --- blends and histogram matches (the functions behind the merge modes) ---------------------------------------


@pytest.mark.parametrize("name", list(BLENDS))
def test_blend_convention(name, faces):
    from facelab.merge.blend import erode_blur_mask

    fn = BLENDS[name]
    (face, _, _), (frame, hull, _) = faces["src"], faces["dst"]
    mask = erode_blur_mask(hull, 0, 32)  # soft-edged, as the merge gives it
    out = run_untouched(fn, frame, face, mask)
    assert_new_face(out, frame, frame, face, mask)
    np.testing.assert_array_equal(out[mask == 0], frame[mask == 0])  # outside the mask the frame stays
    assert np.abs(out - frame)[mask > 0.99].mean() > 0.01  # inside it the face went in
    assert_checks_input(fn, (frame, face, mask), 0)
    assert_checks_input(fn, (frame, face, mask), 1)


@pytest.mark.parametrize("name", list(HIST_MATCHES))
def test_hist_match_convention(name, faces):
    fn = HIST_MATCHES[name]
    (face, _, _), (ref, hull, _) = faces["src"], faces["dst"]
    out = run_untouched(fn, face, ref, hull, 238)
    assert_new_face(out, face, face, ref, hull)
    assert_checks_input(fn, (face, ref, hull, 238), 0)
    assert_checks_input(fn, (face, ref, hull, 238), 1)


def test_every_mode_is_in_the_docs_and_the_cli_help():
    from typer.testing import CliRunner

    from facelab.cli import app

    doc = (ROOT / "docs" / "merge.md").read_text()
    section = doc.split("## Modes", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `([a-z-]+)`", section, re.M) == list(MERGE_MODES)
    r = CliRunner().invoke(app, ["merge", "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"})
    text = " ".join(r.output.split())
    assert all(name in text for name in MERGE_MODES)


# --- face effects ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FACE_EFFECTS))
def test_face_effect_convention(name, faces):
    fn = FACE_EFFECTS[name]
    face = faces["src"][0]
    out = run_untouched(fn, face, EFFECT_AMOUNT)
    assert_new_face(out, face, face)
    assert np.abs(out - face).mean() > 1e-4  # the amount did something
    off = run_untouched(fn, face, 0)
    assert_new_face(off, face, face)
    np.testing.assert_array_equal(off, face)  # 0 is off: an unchanged copy
    assert_checks_input(fn, (face, EFFECT_AMOUNT), 0)


# --- models ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_model_save_load_gives_identical_output(name, tiny_model, faces, tmp_path):
    from facelab.train.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = tiny_model(name).eval()
    r = model.config["resolution"]
    batch = torch.from_numpy(np.stack([faces[s][0] for s in ("src", "dst")])).permute(0, 3, 1, 2)
    batch = torch.nn.functional.interpolate(batch, size=(r, r), mode="area").contiguous()
    with torch.no_grad():
        want = model.swap(batch)
    save_checkpoint(tmp_path / name, model, None, {}, {"iteration": 0})
    loaded = load_checkpoint(tmp_path / name, with_optimizer=False)
    assert loaded.architecture == name and loaded.config == model.config
    with torch.no_grad():
        got = loaded.model.eval().swap(batch)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
