"""What the footage allows `facelab eval` to score: the sharpness a model of a given resolution can reach at
best, and how far the dst head poses lie from any src face's.

Sharpness ceiling.
A perfect model of resolution R reproduces the dst face exactly, but only at R
pixels: its face is the aligned dst face downscaled to R x R and scaled back up
when merged. This script builds that output for every dst frame of a workspace
(the dst face cut with the face type's matrix, area-downscaled to R, cubic-
upscaled, warped back and pasted inside the inner face) and prints eval's
sharpness ratio for it (:func:`facelab.eval.metrics.sharpness`, inner face =
landmarks 17-67). No model is involved, so the figure is a ceiling: no training
at R px can score above it on that footage.

Sharpness of the src footage (``src``). A swap shows src's face, so it can
be no more detailed than src's own frames are. For each dst face this takes
the src face nearest in (yaw, pitch), cut from its src frame at full detail,
gives it the dst face's colours the way the merge does (Reinhard in Lab inside
the landmark hulls), warps it onto the dst face and measures the same ratio;
again at R px. A src clip shot softer than dst caps the ratio below the
resolution ceiling, however long a model trains; a noisier or more textured
one lifts this line above it (noise no model reproduces counts as detail
here, so it is a guide, not a bound).

Through a model (``--model DIR``). The same src line through R px, then the trained model's own
reconstruction of those src faces, then its swap of the dst faces, each colour-matched and pasted alike: the
first step is what the decoder loses painting faces it trained on, the second what the swap path (a dst code
into the src decoder) loses on top of that. A second table does the same for the mouth's movement: the
opening read off each pasted face (eval's detector and landmarks) against the face as shot, for dst through
R px, the dst decoder's reconstruction, the swap, and the src decoder's reconstruction of src faces. With
``--model`` only these two tables are printed.

Pose coverage. For each dst face, the (yaw, pitch) distance to the nearest src
face, by the estimator eval uses (:func:`facelab.eval.metrics.head_pose` on the
stored landmarks). A decoder that never saw src at a dst pose has to invent it;
a large distance predicts a large ``pose_error_deg``. The estimator fits one
generic 3-D face, so part of a difference between two people is the shape of
their faces, not their pose.

Pose between people (``--people CLIP ...``). The same estimator's mean yaw,
pitch and roll over each clip (every 5th frame, the largest face). On GRID, where
every speaker sits in the same chair facing the same camera, the pitch read from
five speakers spans about 25 degrees: that is how much of a pitch difference
between two people is the shape of their faces. A swap's face takes src's shape,
so eval's ``pose_error_deg`` carries a steady part of that size, which
``pose_tracking_deg`` leaves out (docs/eval.md, "Pose between two people").

Usage (a workspace with data_dst frames and data_dst/aligned faces, e.g. the
one `facelab demo` makes, or bench_quality.py's ``<root>/<pair>/_faces``; and
any videos of one person each)::

    python benchmarks/bench_eval_ceilings.py WORKSPACE [WORKSPACE ...] [--face-type full] [--model WORKSPACE/model/quick]
    python benchmarks/bench_eval_ceilings.py --people ../shared/data/faces/grid_av/*.mpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facelab.align import face_matrix, hull_mask, transform_points, warp_image
from facelab.color import rct
from facelab.errors import FaceFileError
from facelab.eval import metrics as M
from facelab.eval.src_line import blend_in, through
from facelab.faceimage import read_record
from facelab.fileio import read_image

RESOLUTIONS = (64, 96, 128, 160, 192, 256)
WORK_SIZE = 512  # the crop is cut at this size first, so the downscale to R is the only loss of detail


def _faces(folder: Path) -> list:
    """The first face of each frame in an aligned folder, as face records."""
    records = []
    for path in sorted(folder.glob("*.*")):
        try:
            rec = read_record(path)
        except FaceFileError:
            continue
        if not rec.face_index:
            records.append(rec)
    return records


def _cut(workspace: Path, side: str, rec, face_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A face's frame, its landmarks in the frame, its frame-to-crop matrix and its crop (uint8 BGR, WORK_SIZE)."""
    frame = read_image(workspace / f"data_{side}" / rec.source_filename)
    landmarks = np.asarray(rec.source_landmarks, np.float64)
    mat = face_matrix(landmarks, face_type, WORK_SIZE)
    return frame, landmarks, mat, warp_image(frame, mat, WORK_SIZE)


def _pasted_sharpness(frame: np.ndarray, region: np.ndarray, mat: np.ndarray, face: np.ndarray, hull: np.ndarray) -> float:
    """Eval's sharpness in ``region`` of ``frame`` with the uint8 WORK_SIZE ``face`` blended in as the merge's
    overlay mode does: inside the dst face's landmark ``hull`` (WORK_SIZE, {0, 1}) feathered inward by the
    merge's default edge. (Pasted with a hard edge on ``region`` itself, as before 2026-12-06, the step between
    two faces along the region's border counted as detail: +0.1-0.2 on the src lines.)"""
    return M.sharpness(blend_in(frame, face, mat, hull), region)


def ceiling(workspace: Path, face_type: str, resolutions=RESOLUTIONS) -> dict[int, float]:
    """Mean sharpness ratio per resolution over the workspace's dst faces (first face of each frame)."""
    ratios: dict[int, list[float]] = {r: [] for r in resolutions}
    for rec in _faces(workspace / "data_dst" / "aligned"):
        frame, landmarks, mat, crop = _cut(workspace, "dst", rec, face_type)
        region = M.inner_face(landmarks, frame.shape)
        reference = M.sharpness(frame, region)
        hull = hull_mask(transform_points(landmarks, mat), (WORK_SIZE, WORK_SIZE), face_type)
        for r in resolutions:
            ratios[r].append(_pasted_sharpness(frame, region, mat, through(crop, r), hull) / reference)
    if not ratios[resolutions[0]]:
        raise SystemExit(f"{workspace}: no dst faces in data_dst/aligned (run `facelab extract dst` first)")
    return {r: float(np.mean(v)) for r, v in ratios.items()}


def _nearest_src(workspace: Path, face_type: str):
    """For each dst face (first of each frame): ``(frame, region, reference, mat, dst, src)``, where ``dst`` and
    ``src`` are ``(float crop, hull)`` at WORK_SIZE of that dst face and of the src face nearest to it in
    (yaw, pitch), ``region`` the inner face in the frame and ``reference`` the frame's own sharpness there."""
    src, dst = _faces(workspace / "data_src" / "aligned"), _faces(workspace / "data_dst" / "aligned")
    if not src or not dst:
        raise SystemExit(f"{workspace}: needs aligned faces on both sides")
    src_pose = np.array([M.head_pose(np.asarray(r.source_landmarks, np.float64))[:2] for r in src])

    def float_and_hull(landmarks: np.ndarray, mat: np.ndarray, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return crop.astype(np.float32) / 255.0, hull_mask(transform_points(landmarks, mat), (WORK_SIZE, WORK_SIZE), face_type)

    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for rec in dst:
        frame, landmarks, mat, crop = _cut(workspace, "dst", rec, face_type)
        region = M.inner_face(landmarks, frame.shape)
        j = int(np.linalg.norm(src_pose - M.head_pose(landmarks)[:2], axis=1).argmin())
        if j not in cache:
            cache[j] = float_and_hull(*_cut(workspace, "src", src[j], face_type)[1:])
        yield frame, region, M.sharpness(frame, region), mat, float_and_hull(landmarks, mat, crop), cache[j]


def _u8(face: np.ndarray) -> np.ndarray:
    return (np.clip(face, 0, 1) * 255 + 0.5).astype(np.uint8)


def src_ceiling(workspace: Path, face_type: str, resolutions=RESOLUTIONS) -> dict[str, float]:
    """Mean sharpness ratio over the dst faces when each is replaced by the src face nearest in pose, at the
    src footage's own detail (key ``"src"``) and at each model resolution R (keys ``"R"``)."""
    ratios: dict[str, list[float]] = {k: [] for k in ("src", *map(str, resolutions))}
    for frame, region, reference, mat, (d_face, d_hull), (s_face, s_hull) in _nearest_src(workspace, face_type):
        u8 = _u8(rct(s_face, d_face, s_hull, d_hull))
        for key in ratios:
            x = u8 if key == "src" else through(u8, int(key))
            ratios[key].append(_pasted_sharpness(frame, region, mat, x, d_hull) / reference)
    return {k: float(np.mean(v)) for k, v in ratios.items()}


def _through_model(fn, face: np.ndarray, r: int) -> np.ndarray:
    """A uint8 WORK_SIZE face area-downscaled to the model's ``r``, through ``fn`` (a model's swap or
    reconstruction: batch -> ``(faces, masks)``), cubic-upscaled back: float32 BGR in [0, 1]."""
    import torch

    x = torch.from_numpy(cv2.resize(face, (r, r), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = fn(x)[0][0].permute(1, 2, 0).float().numpy()
    return cv2.resize(y, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_CUBIC)


def model_lines(workspace: Path, model_dir: Path) -> dict[str, float]:
    """Where a trained swap model loses detail. Each dst face is replaced, colour-matched and pasted as in
    :func:`src_ceiling`, by: the nearest-pose src face through R px with no model (``"through"``); the model's
    reconstruction of that src face (``"src_recon"``); and the model's swap of the dst face itself (``"swap"``).
    ``through`` -> ``src_recon`` is what the src decoder loses painting a face it was trained on; ``src_recon``
    -> ``swap`` is what the swap path (a dst code into the src decoder) loses on top of that."""
    from facelab.train.checkpoint import load_checkpoint

    ck = load_checkpoint(model_dir, with_optimizer=False)
    model, r = ck.model.eval(), int(ck.config["resolution"])

    ratios: dict[str, list[float]] = {"through": [], "src_recon": [], "swap": []}
    for frame, region, reference, mat, (d_face, d_hull), (s_face, s_hull) in _nearest_src(workspace, ck.config["face_type"]):
        faces = {"through": through(_u8(rct(s_face, d_face, s_hull, d_hull)), r),
                 "src_recon": _u8(rct(_through_model(lambda t: model.reconstruct(t, "src"), _u8(s_face), r), d_face, s_hull, d_hull)),
                 "swap": _u8(rct(_through_model(model.swap, _u8(d_face), r), d_face, d_hull, d_hull))}
        for key, face in faces.items():
            ratios[key].append(_pasted_sharpness(frame, region, mat, face, d_hull) / reference)
    return {k: float(np.mean(v)) for k, v in ratios.items()}


def mouth_lines(workspace: Path, model_dir: Path) -> dict[str, tuple[float, float, float]]:
    """Where a trained swap model loses the mouth's movement. Each dst face is replaced, colour-matched and
    pasted as in :func:`model_lines`, by: itself through R px (``"through"``); the dst decoder's reconstruction
    of it (``"dst_recon"``); and the swap (``"swap"``); each src face (every n-th, about 80) by the src
    decoder's reconstruction (``"src_recon"``). The mouth opening is then read off the frame the way
    ``facelab eval`` does (its detector and dlib's 68 points). Returns ``(gain, correlation, median opening)``
    per key against the faces as shot (``"dst"``, ``"src"``: gain 1, correlation 1, their median): a decoder
    that paints its own person's mouth but a swap with a low gain means the dst codes sit where the src
    decoder paints a less open mouth (docs/quality.md, session 20)."""
    from facelab.detect import create_detector
    from facelab.eval.measure import FaceFinder
    from facelab.landmarks import create_landmarker
    from facelab.train.checkpoint import load_checkpoint

    ck = load_checkpoint(model_dir, with_optimizer=False)
    model, r, face_type = ck.model.eval(), int(ck.config["resolution"]), ck.config["face_type"]
    finder = FaceFinder(create_detector("retinaface", threads=2, device="cpu"), create_landmarker("dlib68"))

    out: dict[str, tuple[float, float, float]] = {}
    for side in ("dst", "src"):
        records = _faces(workspace / f"data_{side}" / "aligned")
        records = records[:: max(1, len(records) // 80)]
        kinds = ("through", "dst_recon", "swap") if side == "dst" else ("src_recon",)
        openings: dict[str, list[float]] = {k: [] for k in (side, *kinds)}
        for rec in records:
            frame, landmarks, mat, crop = _cut(workspace, side, rec, face_type)
            found, box = finder.find(frame, tuple(rec.source_rect))
            if found is None:
                continue
            hull = hull_mask(transform_points(landmarks, mat), (WORK_SIZE, WORK_SIZE), face_type)
            f = crop.astype(np.float32) / 255.0
            faces = {"through": lambda: through(crop, r), "swap": lambda: _through_model(model.swap, crop, r),
                     "dst_recon": lambda: _through_model(lambda t: model.reconstruct(t, "dst"), crop, r),
                     "src_recon": lambda: _through_model(lambda t: model.reconstruct(t, "src"), crop, r)}
            openings[side].append(M.mouth_opening(found))
            for k in kinds:
                face = faces[k]()
                face = face if face.dtype == np.uint8 else _u8(rct(face, f, hull, hull))
                openings[k].append(M.mouth_opening(finder.from_box(blend_in(frame, face, mat, hull), box)))
        ref = np.array(openings[side])
        for k, v in openings.items():
            v = np.array(v)
            out[k] = (M.gain(ref, v), M.correlation(ref, v), float(np.nanmedian(v)))
    return out


def _poses(folder: Path) -> np.ndarray:
    poses = []
    for path in sorted(folder.glob("*.*")):
        try:
            poses.append(M.head_pose(np.asarray(read_record(path).source_landmarks, np.float64))[:2])
        except FaceFileError:
            continue
    return np.asarray(poses, np.float64).reshape(-1, 2)


def pose_coverage(workspace: Path) -> dict[str, float]:
    """Mean and largest distance (degrees) from a dst face's (yaw, pitch) to the nearest src face's, and the
    mean pitch of each side."""
    src, dst = _poses(workspace / "data_src" / "aligned"), _poses(workspace / "data_dst" / "aligned")
    if not len(src) or not len(dst):
        raise SystemExit(f"{workspace}: needs aligned faces on both sides")
    nearest = np.linalg.norm(dst[:, None, :] - src[None, :, :], axis=2).min(1)
    return {"mean": float(nearest.mean()), "max": float(nearest.max()),
            "src_pitch": float(src[:, 1].mean()), "dst_pitch": float(dst[:, 1].mean())}


def clip_pose(clip: Path, step: int = 5, limit: int = 80) -> tuple[np.ndarray, int]:
    """Mean ``(yaw, pitch, roll)`` of the largest face in every ``step``-th frame of ``clip`` (at most ``limit``
    frames with a face), and how many frames that was."""
    from facelab.detect import create_detector
    from facelab.landmarks import create_landmarker
    from facelab.media.video import iter_frames

    detector, landmarker = create_detector("retinaface"), create_landmarker("dlib68")
    poses = []
    for index, _, frame in iter_frames(clip):
        if index % step:
            continue
        found = detector(frame)
        if found:
            face = max(found, key=lambda d: d.area)
            poses.append(M.head_pose(np.asarray(landmarker(frame, face), np.float64)))
        if len(poses) >= limit:
            break
    if not poses:
        raise SystemExit(f"{clip}: no face found")
    return np.mean(poses, 0), len(poses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspaces", nargs="*", type=Path)
    ap.add_argument("--face-type", default="full", help="the model's face type (quick: full)")
    ap.add_argument("--people", nargs="+", type=Path, default=[], metavar="CLIP",
                    help="videos of one person each: print the pose estimator's mean reading of each")
    ap.add_argument("--model", type=Path, default=None, metavar="DIR",
                    help="a trained swap model's folder (e.g. WORKSPACE/model/quick): where it loses detail")
    a = ap.parse_args()
    if not a.workspaces and not a.people:
        ap.error("give workspaces, --people clips, or both")
    if a.people:
        print("head pose the estimator reads, mean over each clip (degrees)")
        for clip in a.people:
            (yaw, pitch, roll), n = clip_pose(clip)
            print(f"{clip.name:<24} yaw {yaw:+6.1f}  pitch {pitch:+6.1f}  roll {roll:+6.1f}  ({n} frames)", flush=True)
        if not a.workspaces:
            return
    if a.model:  # only this table: the ceilings do not depend on a model
        print(f"through the model {a.model}: the nearest-pose src face through R px without it, its reconstruction"
              " by the model, and the model's swap of the dst face, each colour-matched and pasted alike")
        for ws in a.workspaces:
            c = model_lines(ws, a.model)
            print(f"{str(ws)[-40:]:<40} through {c['through']:.3f}  src_recon {c['src_recon']:.3f}  swap {c['swap']:.3f}")
        print("\nmouth opening read off the pasted faces as eval reads it: gain / correlation against the faces as"
              " shot, and the median opening (/ eye distance)")
        for ws in a.workspaces:
            m = mouth_lines(ws, a.model)
            print(f"{str(ws)[-40:]:<40} " + "  ".join(f"{k} {g:.2f} / {c:.2f} / {med:.3f}" for k, (g, c, med) in m.items()))
        return
    print("sharpness ratio a perfect model of each resolution would score (eval target: >= 0.70)")
    print(f"{'workspace':<40} " + " ".join(f"{r:>6} px" for r in RESOLUTIONS))
    for ws in a.workspaces:
        c = ceiling(ws, a.face_type)
        print(f"{str(ws)[-40:]:<40} " + " ".join(f"{c[r]:>9.3f}" for r in RESOLUTIONS))
    print("\nthe same with each dst face replaced by the src face nearest in pose (colour matched): what the src "
          "footage's own detail allows")
    print(f"{'workspace':<40} {'src':>9} " + " ".join(f"{r:>6} px" for r in RESOLUTIONS))
    for ws in a.workspaces:
        c = src_ceiling(ws, a.face_type)
        print(f"{str(ws)[-40:]:<40} {c['src']:>9.3f} " + " ".join(f"{c[str(r)]:>9.3f}" for r in RESOLUTIONS))
    print("\npose coverage: (yaw, pitch) distance from each dst face to the nearest src face, degrees")
    for ws in a.workspaces:
        p = pose_coverage(ws)
        print(f"{str(ws)[-40:]:<40} mean {p['mean']:.1f}  max {p['max']:.1f}  "
              f"(mean pitch: src {p['src_pitch']:+.1f}, dst {p['dst_pitch']:+.1f})")


if __name__ == "__main__":
    main()
