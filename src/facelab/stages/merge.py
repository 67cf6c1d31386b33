"""``facelab merge``: put the model's faces back into every dst frame.

Reads ``data_dst/*.png`` frames and the face records of ``data_dst/aligned``,
writes ``data_dst/merged/<frame>.png`` (invisibly watermarked, labelled as
synthetic and carrying a signed C2PA manifest, :mod:`facelab.provenance`) and ``data_dst/merged_mask/<frame>.png``
(grayscale blend mask). Frames without a face are copied through unchanged but
for the watermark (PSNR ~48 dB against the input).

Pipeline: frames are decoded ahead on worker threads; alignment and the model
run on the calling thread (one batch per frame); colour transfer, blending,
PNG encoding and writing run on worker threads (OpenCV, zlib and most numpy
work release the GIL). At most a few frames are in flight, so memory does not
grow with the clip. Threads rather than processes: on 2 cores
``benchmarks/bench_merge.py`` measured a 2-process pool within noise of 2
threads (1280x720, overlay+rct: 40 frames/s with 2 threads vs 23 with 1 on a
quiet machine), and threads need no pickling of frames or of the model. Finished frames are skipped on a re-run; the resolved
settings are saved in ``data_dst/.facelab/merge.json`` and a change of
settings (or model) renders every frame again.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facelab.device import resolve_device
from facelab.errors import FaceFileError, WorkspaceError
from facelab.faceimage import FaceRecord, read_record
from facelab.fileio import atomic_write_bytes, atomic_write_json, encode_image, read_image
from facelab.merge.compose import MergeSettings, Predictor, PreparedFaces, compose_faces, prepare_faces
from facelab.pipeline import prefetch
from facelab.progress import track
from facelab.provenance.labels import label_png
from facelab.provenance.manifest import sign_bytes
from facelab.provenance.watermark import embed
from facelab.stages import Summary
from facelab.workspace import Workspace

STATE_FILE = "merge.json"


def group_records(aligned: list[Path]) -> tuple[dict[str, list[FaceRecord]], list[str]]:
    """Face records by ``source_filename``, each list sorted by face index; plus warnings."""
    groups: dict[str, list[FaceRecord]] = defaultdict(list)
    bad: list[str] = []
    for path in aligned:
        try:
            rec = read_record(path)
        except FaceFileError:
            bad.append(path.name)
            continue
        groups[rec.source_filename].append(rec)
    for recs in groups.values():
        recs.sort(key=lambda r: r.face_index)
    warnings = []
    if bad:
        warnings.append(f"{len(bad)} aligned file(s) without valid face metadata were ignored (e.g. {bad[0]})")
    return dict(groups), warnings


def _write_png(path: Path, image: np.ndarray) -> None:
    atomic_write_bytes(path, label_png(encode_image(image, ".png")))


def _write_synthetic_png(path: Path, image: np.ndarray) -> None:
    """A merged frame: invisible watermark, IPTC labels and a signed C2PA manifest (see facelab.provenance)."""
    png = label_png(encode_image(embed(image), ".png"))
    atomic_write_bytes(path, sign_bytes(png, "image/png", path.name))


def _finish(
    frame: np.ndarray,
    prepared: PreparedFaces | None,
    faces: np.ndarray | None,
    masks: np.ndarray | None,
    settings: MergeSettings,
    out_path: Path,
    mask_path: Path,
) -> None:
    """Blend (when there are faces) and write one frame; runs on a worker thread."""
    if prepared is None:
        merged, mask = frame, np.zeros(frame.shape[:2], np.uint8)
    else:
        merged, mask = compose_faces(frame, prepared, faces, masks, settings)
    _write_png(mask_path, mask)
    _write_synthetic_png(out_path, merged)  # written last: its presence marks the frame done


def run(
    ws: Workspace,
    model_name: str,
    settings: MergeSettings = MergeSettings(),
    device: str = "auto",
    force: bool = False,
    *,
    predictor: Predictor | None = None,
    workers: int | None = None,
) -> Summary:
    """Merge every dst frame with the faces predicted by ``model/<model_name>``.

    Args:
        ws: the workspace.
        model_name: model folder name under ``model/``.
        settings: blending settings (saved to ``data_dst/.facelab/merge.json``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` for the model.
        force: render frames that are already merged again.
        predictor: use this model instead of loading ``model_name`` (tests, UI).
        workers: threads for decoding, blending and writing (default: CPU count, 2..8).

    Returns:
        A :class:`Summary` with counts ``frames``, ``merged`` (frames with faces
        rendered), ``passthrough`` (frames without faces rendered), ``skipped``
        and ``faces``.
    """
    start = time.perf_counter()
    ws.require_exists()
    frames = ws.require_frames("dst")
    aligned = ws.require_aligned("dst")
    if predictor is None:
        model_dir = ws.model_dir(model_name)
        if not model_dir.is_dir():
            raise WorkspaceError(f"no model {model_name!r} in {ws.model_root}", "run `facelab train` first")
        from facelab.train.checkpoint import load_predictor

        predictor = load_predictor(model_dir, str(resolve_device(device)))
    by_frame, warnings = group_records(aligned)
    frame_names = {p.name for p in frames}
    orphans = sorted(set(by_frame) - frame_names)
    if orphans:
        warnings.append(f"faces of {len(orphans)} frame(s) not in {ws.frames_dir('dst')} were ignored (e.g. {orphans[0]})")

    out_dir, mask_dir, state_dir = ws.merged_dir, ws.merged_mask_dir, ws.state_dir("dst")
    for d in (out_dir, mask_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model_name,
        "resolution": int(predictor.resolution),
        "face_type": str(predictor.face_type),
        "settings": settings.to_dict(),
    }
    state_path = state_dir / STATE_FILE
    saved = None
    if state_path.is_file():
        try:
            saved = json.loads(state_path.read_text("utf-8"))
        except (OSError, ValueError):
            saved = None
    if saved != state:
        # old outputs were made another way: remove them so an interrupted
        # re-render cannot leave a mix that a later run would skip
        if saved is not None:
            warnings.append("merge settings or model changed: every frame is rendered again")
        for p in frames:
            (out_dir / f"{p.stem}.png").unlink(missing_ok=True)
            (mask_dir / f"{p.stem}.png").unlink(missing_ok=True)
        atomic_write_json(state_path, state)

    todo = [
        p for p in frames
        if force or not ((out_dir / f"{p.stem}.png").is_file() and (mask_dir / f"{p.stem}.png").is_file())
    ]
    counts = {"frames": len(frames), "merged": 0, "passthrough": 0, "skipped": len(frames) - len(todo), "faces": 0}
    workers = workers or min(max(os.cpu_count() or 1, 2), 8)
    in_flight = 2 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="merge") as pool:
        pending: deque[Future] = deque()
        for path, frame in track(prefetch(read_image, todo, pool, workers), len(todo), "merge"):
            recs = by_frame.get(path.name, [])
            prepared = faces = masks = None
            if recs:
                prepared = prepare_faces(frame, recs, predictor.resolution, predictor.face_type)
                faces, masks = predictor.predict(prepared.faces)
                counts["merged"] += 1
                counts["faces"] += len(recs)
            else:
                counts["passthrough"] += 1
            pending.append(
                pool.submit(_finish, frame, prepared, faces, masks, settings, out_dir / f"{path.stem}.png", mask_dir / f"{path.stem}.png")
            )
            while len(pending) > in_flight or (pending and pending[0].done()):
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    return Summary(
        step="merge",
        counts=counts,
        seconds=time.perf_counter() - start,
        outputs=[str(out_dir)],
        warnings=warnings,
    )
