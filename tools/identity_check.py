"""Run the demo's steps at a fixed iteration count and fingerprint what they wrote, to prove a refactor
changed no result.

    PYTHONPATH=src python tools/identity_check.py run /tmp/before --out before.json
    ... change the code ...
    PYTHONPATH=src python tools/identity_check.py run /tmp/after --out after.json
    python tools/identity_check.py compare before.json after.json

``run`` does, in an empty folder: frames (src at the demo's 10 fps, dst all), extract (dst with debug
images), ``--iterations`` of the demo's ``quick`` model with a fixed seed on the CPU, merge and video.
It then fingerprints every file by content, not bytes, where the bytes carry something random or
dated: images by their decoded pixels, result videos by frames, timestamps and decoded audio (see
:func:`_video`), face files by
pixels plus their face record, weights tensor by tensor (not the random ``save_id``), JSON without its
clock readings. C2PA manifests are signed afresh each time, so they are left out.

``compare`` lists every file whose fingerprint differs, split into *outputs* (frames, faces, weights,
merged frames, video: these must match) and *records* (JSON and text files that say what a step did,
whose format a refactor may change on purpose).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

# keys of JSON records that hold a clock reading or a random id: left out of fingerprints
VOLATILE = ("save_id", "time", "seconds", "minutes_done", "elapsed", "date", "started", "finished", "updated",
            "rate", "per_second", "duration_s", "ms")
RECORD_SUFFIXES = {".json", ".txt", ".jsonl", ".toml"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def _pixels(image: np.ndarray) -> str:
    return f"{image.shape}:{image.dtype}:{_sha(np.ascontiguousarray(image).tobytes())}"


def _volatile(key: str) -> bool:
    k = key.lower()
    return any(v in k for v in VOLATILE)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _volatile(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _image(path: Path) -> str:
    import cv2

    from facelab.faceimage import read_record

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return "unreadable:" + _sha(path.read_bytes())
    out = _pixels(image)
    try:
        record = read_record(path)
    except Exception:  # not a face file
        return out
    return out + " record:" + _sha(json.dumps(_strip(record.to_dict()), sort_keys=True).encode())


def _weights(path: Path) -> str:
    from safetensors import safe_open

    parts = []
    with safe_open(str(path), "pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if not _volatile(k)}
        parts.append(json.dumps(meta, sort_keys=True))
        for name in sorted(f.keys()):
            t = f.get_tensor(name)
            parts.append(f"{name}:{tuple(t.shape)}:{t.dtype}:{_sha(t.contiguous().view(-1).view(dtype=__import__('torch').uint8).numpy().tobytes())}")
    return _sha("\n".join(parts).encode())


def _video(path: Path, reference: Path | None) -> str:
    """Frame count, timestamps, codec, tags and decoded audio exactly; the picture as its mean absolute
    difference from the merged frames it was encoded from (``reference``): x264's frame threads do not
    give bit-identical pictures from run to run of the same code (measured: up to 25 levels apart)."""
    import av
    import cv2

    audio, pts, diffs = hashlib.sha256(), [], []
    refs = sorted(reference.glob("*.png")) if reference is not None and reference.is_dir() else []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        head = f"{stream.codec_context.name} {stream.width}x{stream.height} tags:{_sha(json.dumps(dict(container.metadata), sort_keys=True).encode())}"
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    pts.append(frame.pts)
                    if len(pts) <= len(refs):
                        ref = cv2.imread(str(refs[len(pts) - 1]))
                        image = frame.to_ndarray(format="bgr24")[: ref.shape[0], : ref.shape[1]]
                        diffs.append(float(np.abs(image.astype(np.int16) - ref).mean()))
                elif isinstance(frame, av.AudioFrame):
                    audio.update(frame.to_ndarray().tobytes())
    mad = f" mad={np.mean(diffs):.2f}" if diffs else ""
    return f"{head} frames={len(pts)} pts:{_sha(str(pts).encode())} audio:{audio.hexdigest()[:24]}{mad}"


def _same(a: str, b: str, mad_tolerance: float = 0.25) -> bool:
    """Equal fingerprints, a video's ``mad=`` allowed to move by ``mad_tolerance`` levels."""
    if a == b:
        return True
    if " mad=" not in a or " mad=" not in b:
        return False
    (ha, ma), (hb, mb) = a.rsplit(" mad=", 1), b.rsplit(" mad=", 1)
    return ha == hb and abs(float(ma) - float(mb)) <= mad_tolerance


def _record(path: Path) -> str:
    if path.suffix == ".json":
        try:
            return _sha(json.dumps(_strip(json.loads(path.read_text())), sort_keys=True).encode())
        except ValueError:
            pass
    if path.suffix == ".jsonl":
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.dumps(_strip(json.loads(line)), sort_keys=True))
            except ValueError:
                lines.append(line)
        return _sha("\n".join(lines).encode())
    return _sha(path.read_bytes())


def fingerprint(root: Path) -> dict[str, dict[str, str]]:
    """``{"outputs": {relative path: fingerprint}, "records": {...}}`` of every file under ``root``."""
    outputs, records = {}, {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if "backups" in path.parts or suffix in {".c2pa", ".key", ".pem"}:
            continue
        if suffix in {".png", ".jpg", ".jpeg"}:
            outputs[rel] = _image(path)
        elif suffix == ".safetensors":
            outputs[rel] = _weights(path)
        elif suffix in {".mp4", ".mov", ".mkv", ".avi"} and path.parent == root and not path.name.startswith("data_"):  # results
            outputs[rel] = _video(path, root / "data_dst" / "merged")
        elif suffix in RECORD_SUFFIXES:
            records[rel] = _record(path)
        else:
            outputs[rel] = _sha(path.read_bytes())
    return {"outputs": outputs, "records": records}


def run(root: Path, iterations: int, seed: int) -> dict[str, float]:
    """The demo's steps at a fixed iteration count; returns each step's seconds."""
    import torch

    from facelab.merge.compose import MergeSettings
    from facelab.provenance import default_marker
    from facelab.stages import demo, extract, frames, merge, train, video
    from facelab.workspace import Workspace

    torch.set_num_threads(max(1, torch.get_num_threads()))
    marker = default_marker()  # as the CLI builds it: the key of $FACELAB_HOME (default ~/.facelab)
    ws = Workspace(root)
    demo.prepare(ws)
    seconds = {}
    steps = [
        ("frames src", lambda: frames.run(ws, "src", frames.FramesSettings(fps=demo.SRC_FPS))),
        ("frames dst", lambda: frames.run(ws, "dst")),
        ("extract src", lambda: extract.run(ws, "src", extract.ExtractSettings())),
        ("extract dst", lambda: extract.run(ws, "dst", extract.ExtractSettings(debug=True))),
        ("train", lambda: train.run(ws, train.TrainSettings(model=demo.MODEL, iterations=iterations, seed=seed,
                                                            device="cpu"), log=lambda s: None, marker=marker)),
        ("merge", lambda: merge.run(ws, demo.MODEL, MergeSettings(), marker=marker)),
        ("video", lambda: video.run(ws, marker=marker)),
    ]
    for name, step in steps:
        t0 = time.perf_counter()
        summary = step()
        seconds[name] = round(time.perf_counter() - t0, 2)
        print(f"{name}: {seconds[name]:.1f} s  {summary.line()}", flush=True)
    return seconds


def compare(a: dict, b: dict) -> int:
    """Print the differences; return how many outputs differ."""
    bad = 0
    for kind in ("outputs", "records"):
        fa, fb = a[kind], b[kind]
        only_a, only_b = sorted(set(fa) - set(fb)), sorted(set(fb) - set(fa))
        diff = sorted(k for k in set(fa) & set(fb) if not _same(fa[k], fb[k]))
        same = len(set(fa) & set(fb)) - len(diff)
        print(f"{kind}: {same} identical, {len(diff)} differ, {len(only_a)} only in first, {len(only_b)} only in second")
        for label, names in (("differs", diff), ("only in first", only_a), ("only in second", only_b)):
            for name in names[:20]:
                print(f"  {label}: {name}")
            if len(names) > 20:
                print(f"  ... and {len(names) - 20} more")
        if kind == "outputs":
            bad = len(diff) + len(only_a) + len(only_b)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the steps in an empty folder and fingerprint the result")
    r.add_argument("folder", type=Path)
    r.add_argument("--out", type=Path, required=True, help="JSON file for the fingerprints")
    r.add_argument("--iterations", type=int, default=40)
    r.add_argument("--seed", type=int, default=7)
    f = sub.add_parser("fingerprint", help="fingerprint an existing workspace")
    f.add_argument("folder", type=Path)
    f.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="compare two fingerprint files")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        return 1 if compare(json.loads(args.first.read_text()), json.loads(args.second.read_text())) else 0
    seconds = run(args.folder, args.iterations, args.seed) if args.command == "run" else {}
    args.out.write_text(json.dumps({**fingerprint(args.folder), "seconds": seconds}, indent=1, sort_keys=True))
    print(f"fingerprints of {args.folder} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
