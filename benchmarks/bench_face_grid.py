"""Seconds and memory of the UI face grid's library layer on a 10,000-face set.

The set is built from real faces: aligned faces extracted from the shipped src
clip (src_clm_cap13.mp4), each copied many times under new names with its record
given a frame of its own (every 50th frame gets a second face, for the
"several faces" filter). Copies are byte copies with a new record, no re-encoding.

    PYTHONPATH=src python benchmarks/bench_face_grid.py [--n 10000] [--size 256] [--thumbs 500]

Prints: list time cold (every face measured, the blur score included) and warm
(from the cache), sorted and filtered lists, sort_plan by blur, thumbnail time per
face (made, then cached), delete + undo of 100 faces, and memory: ``tracemalloc``
peak of a warm listing, the process's maximum resident set size, the cache's size.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("FACELAB_QUIET", "1")

import av
import cv2

from facelab.faceimage import embed_jpeg, record_from_bytes
from facelab.faceset import browse, thumbs, trash
from facelab.stages import extract
from facelab.workspace import Workspace

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "facelab" / "sample_data"


def base_faces(root: Path, size: int, frames: int = 30) -> list[Path]:
    ws = Workspace(root / "base")
    ws.create()
    with av.open(str(SAMPLES / "src_clm_cap13.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 8 == 0:
                cv2.imwrite(str(ws.frames_dir("src") / f"{i + 1:05d}.png"), f.to_ndarray(format="bgr24"))
                if len(ws.frame_paths("src")) >= frames:
                    break
    extract.run(ws, "src", extract.ExtractSettings(size=size, workers=2))
    return ws.aligned_paths("src")


def face_set(base: list[Path], ws: Workspace, n: int) -> None:
    """``n`` faces in ``ws``'s src aligned folder: copies of ``base``, each with a frame name of its own."""
    out = ws.aligned_dir("src")
    out.mkdir(parents=True, exist_ok=True)
    data = [p.read_bytes() for p in base]
    records = [record_from_bytes(d) for d in data]
    frame = 0
    for i in range(n):
        k = i % len(base)
        index = 1 if i % 50 == 1 else 0  # the face after every 50th is that frame's second face
        frame += index == 0
        rec = records[k].replace(source_filename=f"{frame:05d}.png", face_index=index)
        (out / f"{frame:05d}_{index}.jpg").write_bytes(embed_jpeg(data[k], rec))


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=256, help="face size in pixels")
    ap.add_argument("--thumbs", type=int, default=500, help="faces given a thumbnail")
    ap.add_argument("--workers", type=int, default=0, help="threads measuring faces (0: all cores)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        base = base_faces(root, args.size)
        ws = Workspace(root / "ws")
        ws.create()
        face_set(base, ws, args.n)
        mb = sum(p.stat().st_size for p in ws.aligned_paths("src")) / 2**20
        print(f"set: {args.n} faces of {args.size} px from {len(base)} real faces, {mb:.0f} MB, built in "
              f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} cores")

        cold, entries = timed(lambda: browse.list_faces(ws, "src", workers=args.workers))
        print(f"list_faces cold (every face measured): {cold:.2f} s ({cold / args.n * 1e3:.2f} ms/face)")
        warm, entries = timed(lambda: browse.list_faces(ws, "src"), repeat=5)
        print(f"list_faces warm: {warm:.3f} s for {len(entries)} faces")
        t_blur, _ = timed(lambda: browse.list_faces(ws, "src", sort="blur"), repeat=3)
        print(f"list_faces warm, sort='blur': {t_blur:.3f} s")
        filt = browse.FaceFilter(several_faces=True)
        t_filt, several = timed(lambda: browse.list_faces(ws, "src", filters=filt), repeat=3)
        print(f"list_faces warm, several_faces: {t_filt:.3f} s ({len(several)} faces)")
        t_low, _ = timed(lambda: browse.list_faces(ws, "src", filters=browse.FaceFilter(blur_lowest_percent=5)), repeat=3)
        print(f"list_faces warm, blur_lowest_percent=5: {t_low:.3f} s")
        t_plan, _ = timed(lambda: browse.sort_plan(ws, "src", "face-yaw"), repeat=3)
        print(f"sort_plan face-yaw (from the cache): {t_plan:.3f} s")

        ids = [e.id for e in entries[: args.thumbs]]
        made, _ = timed(lambda: [thumbs.thumbnail(ws, i, 128) for i in ids])
        cached, _ = timed(lambda: [thumbs.thumbnail(ws, i, 128) for i in ids], repeat=3)
        print(f"thumbnail 128 px: {made / len(ids) * 1e3:.2f} ms/face made, {cached / len(ids) * 1e3:.3f} ms/face cached")

        names = [e.name for e in entries[:100]]
        t_del, _ = timed(lambda: trash.delete_faces(ws, "src", names))
        t_undo, _ = timed(lambda: trash.undo(ws, "src"))
        print(f"delete 100 faces: {t_del * 1e3:.0f} ms, undo: {t_undo * 1e3:.0f} ms")

        tracemalloc.start()
        browse.list_faces(ws, "src")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        cache_mb = ws.face_list_cache("src").stat().st_size / 2**20
        print(f"memory: warm listing tracemalloc peak {peak / 2**20:.1f} MB; process max RSS {rss:.0f} MB; "
              f"cache file {cache_mb:.1f} MB")


if __name__ == "__main__":
    main()
