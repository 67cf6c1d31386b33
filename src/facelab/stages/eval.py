"""``facelab eval``: measure a finished merge against its dst frames (definitions in ``docs/eval.md``).

Reads ``data_dst/<frame>`` with ``data_dst/merged/<frame>.png`` (or the frames of
``result.mp4`` when the merged frames are gone), the swapped faces' records in
``data_dst/aligned`` and the src face set; writes nothing into the workspace but
a cache of identity embeddings of unchanged dst frames and src faces
(``data_dst/.facelab/eval_embeddings.json``), and the JSON and HTML reports where
asked. ``--reconstruction`` also measures the model on its held-out faces.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path

from facelab import __version__
from facelab import jobs
from facelab.errors import FacelabError, SettingsError, WorkspaceError
from facelab.eval.frames import SOURCES, pair_frames, swapped_faces
from facelab.eval.report import EvalResult, fmt, sharpness_pattern, write_json
from facelab.options import Option
from facelab.provenance.marker import Marker, require_marker
from facelab.stages import Summary
from facelab.workspace import Workspace, check_folder_name

CACHE_FILE = "eval_embeddings.json"
# the figures shown in the one-line summary (all are in the JSON)
LINE_KEYS = ("frames", "face_found_share", "sharpness_ratio", "sharpness_src_line", "sharpness_src_line_model",
             "expression_error", "pose_error_deg", "pose_floor_deg", "pose_tracking_deg", "pose_offset_pitch_deg",
             "expression_tracking", "identity_distance", "identity_closer_share", "identity_src_line", "mouth_corr",
             "mouth_gain", "eye_corr", "jitter_ratio", "background_change", "seam_ratio", "color_flicker",
             "color_diff_mean", "color_diff_p95",
             "recon_src_ssim", "recon_src_psnr", "recon_dst_ssim", "recon_dst_psnr")


@dataclass(frozen=True)
class EvalSettings:
    """Settings of ``facelab eval`` (each but ``progress`` declared in :data:`OPTIONS`).

    Attributes:
        source: output frames from ``auto`` (merged frames, else the result video), ``merged`` or ``result``.
        name: model folder under ``model/`` (for ``reconstruction``).
        reconstruction: also measure the model's reconstructions of its held-out faces (SSIM, PSNR).
        gpu: with ``reconstruction``, the model trained with ``--gpu N`` (files ``gpuN_*``).
        device: where the model runs for ``reconstruction``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        workers: CPU threads computing identity embeddings beside the measuring; None: one per CPU core, at most 4;
            0: each in turn with the measuring.
        cache: reuse identity embeddings of unchanged dst frames and src faces from earlier runs.
        frames: measure only the dst frames ``A:B`` (1-based, inclusive, as the frame files count; ``A:`` to
            the end, ``:B`` from the first); None: every frame.
        json: write the result here (None: not written).
        html: write the report here (None: not written).
        progress: draw a progress bar on a terminal (from Python only: the CLI always draws it on a terminal).
    """

    source: str = "auto"
    name: str = "quick"
    reconstruction: bool = False
    gpu: int | None = None
    device: str = "auto"
    workers: int | None = None
    cache: bool = True
    frames: str | None = None
    json: Path | None = None
    html: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for option in OPTIONS:
            option.check(getattr(self, option.name), "eval.")
        check_folder_name(self.name, "eval.name")
        if self.frames is not None:
            frame_range(self.frames)


def frame_range(text: str) -> tuple[int, int | None]:
    """``"A:B"`` -> 0-based ``(first, last)`` (inclusive; last None: to the end)."""
    a, sep, b = text.partition(":")
    try:
        first = int(a) if a.strip() else 1
        last = int(b) if b.strip() else None
    except ValueError:
        first = last = 0
    if not sep or first < 1 or (last is not None and last < first):
        raise SettingsError(f"eval.frames: {text!r} is not a range of frames",
                            "give FIRST:LAST, counted from 1 as the frame files are (e.g. 1:750; 3001: to the end)")
    return first - 1, None if last is None else last - 1


OPTIONS = (
    Option("name", str, "quick", "Model folder name under model/ (for --reconstruction; default quick).",
           shown_default="`quick`", doc="the model folder under `model/` that `--reconstruction` loads"),
    Option("json", Path, None, "Write the summary, targets and per-frame figures to this JSON file.", flags=("--json",),
           metavar="FILE", shown_default="not written", doc="summary, targets and every per-frame figure (format below)"),
    Option("html", Path, None, "Write a one-file HTML report (table, curves, worst frames).", flags=("--html",),
           metavar="FILE", shown_default="not written",
           doc="one self-contained page: the summary table, per-frame curves, the six worst frames"),
    Option("source", str, "auto", "Output frames: auto (data_dst/merged, else result.mp4), merged or result (default auto).",
           choices=SOURCES, shown_default="`auto`",
           doc="`merged` reads `data_dst/merged/<frame>.png`; `result` decodes `result.<ext>` (mp4, mov, mkv, avi, webm) "
               "and pairs its k-th frame with the k-th dst frame; `auto` uses the merged frames when there are any, else "
               "the video"),
    Option("reconstruction", bool, False, "Also measure SSIM/PSNR of the model's reconstructions of its held-out faces "
                                          "(train --holdout N).", flags=("--reconstruction",),
           doc="measure the model's reconstructions of the faces `facelab train --holdout N` kept out of training (below); "
               "works without merged frames too"),
    Option("gpu", int, None, "With --reconstruction: the model trained with `facelab train --gpu INDEX`.", lo=0,
           metavar="INDEX", doc="`--reconstruction` loads the model trained with `facelab train --gpu INDEX` (files `gpuINDEX_*`)"),
    Option("device", str, "auto", "With --reconstruction: auto, cpu, cuda, cuda:N or mps (default auto).", metavar="D",
           shown_default="`auto`", doc="where the `--reconstruction` model runs: `auto`, `cpu`, `cuda`, `cuda:N` or `mps`"),
    Option("workers", int, None, "CPU threads for identity embeddings, computed in batches beside the measuring "
                                 "(default: one per core, at most 4; 0: one at a time, in turn with it).", lo=0,
           hi=32, hint="use 0 (in turn) to 32", shown_default="one per core, at most 4",
           doc="CPU threads computing identity embeddings in batches beside the measuring; 0 computes each in turn "
               "with the measuring"),
    Option("frames", str, None, "Measure only dst frames FIRST:LAST (counted from 1, as the frame files; 3001: to the "
                                "end). Default: every frame.", metavar="A:B", shown_default="every frame",
           doc="measure a stretch of a long clip (eval takes about 0.13 s a frame on 2 cores): the dst frames FIRST to "
               "LAST, counted from 1 as the frame files are; `A:` runs to the end. Jitter and flicker are read within "
               "the stretch"),
    Option("cache", bool, True, "Reuse the identity embeddings of unchanged frames and faces "
                                "(data_dst/.facelab/eval_embeddings.json); --no-cache computes every one again.",
           flags=("--cache/--no-cache",), doc="`--no-cache` computes every embedding again"),
)
"""Every setting of :class:`EvalSettings` but ``progress`` (not a flag), declared once (see :mod:`facelab.options`)."""


def _workers(settings: EvalSettings) -> int:
    if settings.workers is not None:
        return settings.workers
    from facelab.device import cpu_threads

    return min(4, cpu_threads())


def _reconstruction(ws: Workspace, settings: EvalSettings) -> tuple[dict[str, float], list[str]]:
    from facelab.device import resolve_device
    from facelab.eval.reconstruct import held_out_faces, measure_reconstruction
    from facelab.stages.merge import resolve_model
    from facelab.inference import load_predictor

    model_dir, prefix, warnings = resolve_model(ws, settings.name, settings.gpu)
    held = held_out_faces(ws, model_dir, prefix)
    predictor = load_predictor(model_dir, str(resolve_device(settings.device)), prefix=prefix)
    summary, more = measure_reconstruction(predictor, held)
    return summary, warnings + more


def _model_size(ws: Workspace, settings: EvalSettings) -> tuple[str, int] | None:
    """The model's ``(face_type, resolution)`` from its config (``--gpu`` picks the variant), or None where
    there is no readable one: then ``sharpness_src_line_model`` is not measured."""
    from facelab.train.checkpoint import read_config, variant_prefix

    try:
        config = read_config(ws.model_dir(settings.name), variant_prefix(settings.gpu))["config"]
        face_type, resolution = str(config["face_type"]), int(config["resolution"])
    except (FacelabError, KeyError, TypeError, ValueError):
        return None
    return (face_type, resolution) if resolution > 0 else None


def _identity_trained(ws: Workspace, model: str) -> list[str]:
    """A warning when the model was trained with the identity loss: it optimised the very descriptor that
    measures identity here, so those figures flatter it (docs/eval.md)."""
    import json

    warned = []
    for state in sorted(ws.model_dir(model).glob("*state.json")):
        try:
            power = json.loads(state.read_text()).get("options", {}).get("identity_power", 0)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(power, (int, float)) and power > 0:
            warned.append(f"{state.parent.name} was trained with --identity-power {power:g}: it learned to please the dlib"
                          " descriptor that measures identity here, so identity_distance and identity_closer_share"
                          " overstate the likeness; judge it by the other figures and by eye")
    return warned


@jobs.step
def run(ws: Workspace, settings: EvalSettings = EvalSettings(), *, marker: Marker | None = None) -> tuple[Summary, EvalResult]:
    """Measure the workspace's merge (and with ``settings.reconstruction`` the model); write the JSON and
    HTML reports where ``settings`` says. The HTML report shows swapped faces: with ``settings.html``,
    ``marker`` (e.g. :func:`facelab.provenance.default_marker`) is required and marks them, and without
    one the step refuses before measuring anything (the JSON report alone needs none).

    Raises:
        WorkspaceError: no dst frames, no merged frames or result video (unless only the reconstruction
            is asked for), no dst faces.
        HoldoutError: ``reconstruction`` and the model kept no faces out of training.
    """
    from facelab.detect import create_detector
    from facelab.eval.embed import EmbeddingCache
    from facelab.eval.measure import FaceFinder, measure
    from facelab.landmarks import create_landmarker

    if settings.html is not None:
        marker = require_marker(marker, "eval (HTML report)")
    start = time.perf_counter()
    ws.require_exists()
    warnings: list[str] = []
    summary: dict[str, float] = {}
    rows: list[dict] = []
    pairs, boxes = None, None
    try:
        pairs = pair_frames(ws, settings.source)
        if settings.frames is not None:
            pairs = pairs.window(*frame_range(settings.frames))
    except WorkspaceError:
        if not settings.reconstruction:
            raise
        warnings.append("no merged frames or result video: only the model's reconstruction is measured")
    if pairs is not None:
        warnings += pairs.warnings
        records, more = swapped_faces(ws)
        warnings += more
        if not any(name in records for name in pairs.names):
            raise WorkspaceError(f"none of the measured frames has a face in {ws.aligned_dir('dst')}",
                                 "run `facelab extract dst` (and `facelab merge`) first")
        src_faces = ws.aligned_paths("src")
        if not src_faces:
            warnings.append(f"{ws.aligned_dir('src')} has no faces: identity is not measured")
        # one detector thread: ONNX Runtime's spinning pool would fight the embedding workers for the cores
        finder = FaceFinder(create_detector("retinaface", threads=1, device="cpu"), create_landmarker("dlib68"))
        cache = EmbeddingCache(ws.state_dir("dst") / CACHE_FILE if settings.cache else None)
        measured = measure(pairs, records, finder, src_faces, workers=_workers(settings), mask_dir=ws.merged_mask_dir,
                           progress=settings.progress, cache=cache, model_size=_model_size(ws, settings))
        summary.update(measured.summary)
        rows, boxes = measured.rows, measured.boxes
        warnings += measured.warnings
        warnings += _identity_trained(ws, settings.name)
    if settings.reconstruction:
        recon, more = _reconstruction(ws, settings)
        summary.update(recon)
        warnings += more
    summary["eval_seconds"] = round(time.perf_counter() - start, 2)
    meta = {"facelab": f"facelab {__version__}", "workspace": str(ws.root), "source": pairs.source if pairs else None,
            "model": settings.name if settings.reconstruction else None,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    result = EvalResult(summary, rows, meta, pairs=pairs, boxes=boxes, warnings=list(warnings))
    missed = result.missed()
    if missed:
        warnings.append("targets missed: " + "; ".join(missed))
    notes = [note for note in (_steady_pose_note(result), _src_line_note(result), _sharpness_excess_note(result),
                               _identity_line_note(result)) if note]
    warnings += notes
    result.warnings += notes  # the HTML report shows them too
    outputs = []
    if settings.json is not None:
        write_json(result, Path(settings.json))
        outputs.append(str(settings.json))
    if settings.html is not None:
        from facelab.eval.html import write_html

        write_html(result, Path(settings.html), marker)
        outputs.append(str(settings.html))
    counts = {k: _shown(summary[k]) for k in LINE_KEYS if k in summary}
    seconds = time.perf_counter() - start
    return Summary(step=f"eval ({meta['source'] or 'model only'})", counts=counts, seconds=seconds, outputs=outputs,
                   warnings=warnings), result


def _steady_pose_note(result: EvalResult) -> str | None:
    """Where the pose target is missed but the head follows dst once the clip's steady offset is taken out, say so:
    the offset is mostly the two faces' shapes read as pose by the generic-face estimator (docs/eval.md)."""
    s, target = result.summary, result.targets.get("pose_error_deg", {})
    tracking, limit = s.get("pose_tracking_deg"), target.get("value")
    if target.get("met") is not False or tracking is None or limit is None or not tracking <= limit:
        return None
    offsets = ", ".join(f"{axis} {s.get(f'pose_offset_{axis}_deg', float('nan')):+.1f}" for axis in ("yaw", "pitch", "roll"))
    return (f"pose_error_deg is a steady offset ({offsets} deg over the clip); with it taken out the head follows "
            f"dst to {tracking:.2f} deg. A steady pitch offset between two people is mostly their face shapes "
            f"(see 'Pose between two people' in docs/eval.md)")


def _src_line_note(result: EvalResult) -> str | None:
    """Where the sharpness target is missed, say how much of it the src footage itself allows: a src line under
    the target means no model of this src reaches it (docs/eval.md, "What the footage allows")."""
    s, target = result.summary, result.targets.get("sharpness_ratio", {})
    ratio, line, limit = s.get("sharpness_ratio"), s.get("sharpness_src_line"), target.get("value")
    at_model = s.get("sharpness_src_line_model")
    at_model = at_model if at_model is not None and at_model > 0 else None  # NaN: no model to size it by
    if target.get("met") is not False or ratio is None or line is None or limit is None or not line > 0:
        return None
    text = (f"the src footage itself scores {line:.3g} (the nearest-pose src face, colour-matched and blended in)"
            + (f", {at_model:.3g} through the model's resolution" if at_model is not None else ""))
    if line < limit:
        verdict = f"under the {limit:g} target: no model of this src footage reaches it"
    elif at_model is not None and at_model < limit:
        verdict = (f"so the model's size caps it under the {limit:g} target; the swap paints {ratio / at_model:.0%} "
                   "of what that size allows")
    else:
        verdict = f"so the training, not the footage, holds the swap back ({ratio / (at_model or line):.0%} of it)"
    return f"sharpness_ratio {ratio:.3g}: {text}, {verdict} (see 'What the footage allows' in docs/eval.md)"


def _sharpness_excess_note(result: EvalResult) -> str | None:
    """Where the swap is far sharper than dst and than the src footage allows, say that the excess is not detail
    (:func:`~facelab.eval.report.sharpness_pattern`), so a met target then means nothing."""
    found = sharpness_pattern(result.summary)
    if found is None:
        return None
    ratio, ref = found
    allows = f", and the src footage allows {ref:.3g}" if ref is not None else ""
    return (f"sharpness_ratio {ratio:.3g}: the swapped face has more fine contrast than the dst face{allows}: that "
            "is a pattern or noise the model paints (not trained enough, or diverging), not detail; look at the "
            "worst frames or the merged frames before trusting the met target")


def _identity_line_note(result: EvalResult) -> str | None:
    """Where the identity target is missed, say what a src face itself scores in the same place: the embedding
    sees the dst head around the blended region (forehead, hair, outline), so a line over the target means no
    swap of that region reaches it, and the wider line says what replacing the forehead too would allow."""
    s, target = result.summary, result.targets.get("identity_distance", {})
    dist, line, whole = (s.get(k) for k in ("identity_distance", "identity_src_line", "identity_src_line_whole"))
    limit = target.get("value")
    if target.get("met") is not False or dist is None or line is None or limit is None or not line > 0:
        return None
    text = (f"identity_distance {dist:.3g}: a src face itself (the nearest-pose one, colour-matched and blended in "
            f"the model's region) scores {line:.3g}")
    if line <= limit:
        return f"{text}, under the {limit:g} target: the training, not the region, holds the swap back"
    verdict = f"{text}: the dst head around that region holds the figure over the {limit:g} target"
    if whole is not None and whole < line - 0.01:
        verdict += (f"; with the forehead too (a whole-face model: `extract --face-type whole`, `train --face-type "
                    f"whole`, best with a segmentation mask that leaves hair out) a src face scores {whole:.3g}")
    return verdict + " (see 'What the footage allows' in docs/eval.md)"


def _shown(v) -> float | int | str:
    """A figure for the summary line: 3 significant digits, ``-`` when not measured."""
    text = fmt(v)
    if text == "-":
        return text
    return int(text) if text.lstrip("-").isdigit() else float(text)
