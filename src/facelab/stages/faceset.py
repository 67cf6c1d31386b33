"""Face-set utility steps (``facelab faceset ...``): each ``run``-style function
takes the workspace and a side and returns a :class:`Summary`.

The work is done in :mod:`facelab.faceset` (one module per command: ``debug``, ``names``, ``resize``,
``meta``, ``tojpg``), :mod:`facelab.faceset.pack`,
:mod:`facelab.faceset.dfl` and :mod:`facelab.faceset.coverage`.
"""

from __future__ import annotations

import time
from pathlib import Path

from facelab import jobs
from facelab.errors import FaceFileError, FacelabError, SettingsError, WorkspaceError
from facelab.faceset import coverage as cov
from facelab.faceset import debug, dfl, meta, names, resize as fresize, tojpg
from facelab.faceset import pack as fpack
from facelab.fileio import write_image
from facelab.progress import track
from facelab.stages import Summary
from facelab.workspace import Workspace, check_side


def _faces(ws: Workspace, side: str) -> list[Path]:
    """The side's faces (a packed set is unpacked first, with a notice)."""
    return ws.require_aligned(check_side(side))


def debug_landmarks(ws: Workspace, side: str, remove: bool = False) -> Summary:
    t = time.time()
    folder = ws.aligned_dir(check_side(side))
    if remove:
        n = debug.remove_debug(folder)
        return Summary(f"debug-landmarks {side}", {"removed": n}, time.time() - t)
    _faces(ws, side)
    n, warnings = debug.write_debug(folder)
    return Summary(f"debug-landmarks {side}", {"written": n}, time.time() - t, [str(folder / "*_debug.jpg")], warnings)


def recover_names(ws: Workspace, side: str, include_trash: bool = False) -> Summary:
    t = time.time()
    check_side(side)
    res = names.recover_names(ws.aligned_dir(side), ws.state_dir(side), ws.trash_dir(side) if include_trash else None,
                              also_finish=(ws.trash_dir(side),))
    counts = {"renamed": res.renamed, "unchanged": res.unchanged}
    if include_trash:
        counts["back from trash"] = res.from_trash
    return Summary(f"recover-names {side}", counts, time.time() - t, [str(ws.aligned_dir(side))], res.warnings)


def pack(ws: Workspace, side: str, keep: bool = False) -> Summary:
    t = time.time()
    target = ws.pack_path(check_side(side))
    if target.exists():
        raise WorkspaceError(f"{target} exists already", f"run `facelab faceset unpack {side}` first, or delete it")
    faces = ws.require_aligned(side)
    nbytes = fpack.pack(faces, target)
    if not keep:
        for p in faces:
            p.unlink()
    return Summary(f"pack {side}", {"faces": len(faces), "MB": round(nbytes / 1e6, 2)}, time.time() - t, [str(target)])


def unpack(ws: Workspace, side: str, keep: bool = False, overwrite: bool = False) -> Summary:
    t = time.time()
    source = ws.pack_path(check_side(side))
    if not source.is_file():
        raise WorkspaceError(f"{source} does not exist", f"run `facelab faceset pack {side}` first")
    written = fpack.unpack(source, ws.aligned_dir(side), overwrite=overwrite)
    if not keep:
        source.unlink()
    return Summary(f"unpack {side}", {"faces": len(written)}, time.time() - t, [str(ws.aligned_dir(side))])


@jobs.step
def resize(ws: Workspace, side: str, size: int, face_type: str | None = None, jpeg_quality: int = 95) -> Summary:
    t = time.time()
    if not 8 <= size <= 2048:
        raise SettingsError(f"size {size} is out of range", "use 8..2048 (e.g. 256 or 512)")
    faces = _faces(ws, side)
    counts = {"from frame": 0, "resampled": 0, "skipped": 0}
    warnings = []
    for p in track(faces, len(faces), f"resize {side}"):
        try:
            how = fresize.resize_face(p, ws.frames_dir(side), size, face_type, jpeg_quality)
        except FaceFileError as e:  # one unreadable face is named and left as it is
            warnings.append(f"skipped: {e.message}")
            counts["skipped"] += 1
            continue
        counts["from frame" if how == "frame" else "resampled"] += 1
    return Summary(f"resize {side}", {"faces": len(faces), **counts}, time.time() - t, [str(ws.aligned_dir(side))], warnings)


def save_meta(ws: Workspace, side: str) -> Summary:
    t = time.time()
    _faces(ws, side)
    n, target, warnings = meta.save_meta(ws.aligned_dir(side))
    return Summary(f"save-meta {side}", {"faces": n}, time.time() - t, [str(target)], warnings)


def restore_meta(ws: Workspace, side: str) -> Summary:
    t = time.time()
    n, warnings = meta.restore_meta(ws.aligned_dir(check_side(side)))
    return Summary(f"restore-meta {side}", {"faces": n}, time.time() - t, [str(ws.aligned_dir(side))], warnings)


def to_jpg(folder: Path, quality: int = 95) -> Summary:
    t = time.time()
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkspaceError(f"{folder} is not a folder", "give an aligned folder, e.g. workspace/data_src/aligned")
    n, warnings = tojpg.to_jpg(folder, quality)
    return Summary("to-jpg", {"converted": n}, time.time() - t, [str(folder)], warnings)


def coverage(ws: Workspace) -> tuple[Summary, str]:
    """Returns the summary and the printable table."""
    t = time.time()
    report, warnings = cov.compute(_faces(ws, "src"), _faces(ws, "dst"))
    target = ws.coverage_path
    write_image(target, cov.plot(report))
    counts = {"src faces": len(report.src), "dst faces": len(report.dst), "uncovered dst faces": report.uncovered_dst_faces}
    return Summary("coverage", counts, time.time() - t, [str(target)], warnings), cov.table(report)


def import_dfl(ws: Workspace, folder: Path, side: str = "src") -> Summary:
    t = time.time()
    res = dfl.import_dfl(Path(folder), ws.aligned_dir(check_side(side)))
    warnings = [f"skipped {name}: {why}" for name, why in res.skipped]
    warnings += [f"{name} imported as {new}: {Path(name).stem}.jpg is taken (nothing is overwritten)" for name, new in res.renamed]
    if res.unchanged:
        warnings.append(f"{len(res.unchanged)} face(s) were imported before and are there already, e.g. {res.unchanged[0]}")
    if not res.imported and not res.unchanged and res.skipped:
        raise FacelabError(
            f"no face of {folder} could be imported ({len(res.skipped)} skipped, e.g. {res.skipped[0][0]}: {res.skipped[0][1]})",
            "is it a DeepFaceLab aligned folder?",
        )
    counts = {"imported": len(res.imported), "renamed": len(res.renamed), "already there": len(res.unchanged),
              "skipped": len(res.skipped)}
    return Summary(f"import-dfl {side}", counts, time.time() - t,
                   [str(ws.aligned_dir(side))], warnings)


def export_dfl(ws: Workspace, side: str, folder: Path, jpeg_quality: int = 95) -> Summary:
    t = time.time()
    written, skipped = dfl.export_dfl(_faces(ws, side), Path(folder), jpeg_quality)
    return Summary(f"export-dfl {side}", {"exported": len(written), "skipped": len(skipped)}, time.time() - t, [str(folder)],
                   [f"skipped: {m}" for m in skipped])
