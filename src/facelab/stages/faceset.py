"""Face-set utility steps (``facelab faceset ...``): each ``run``-style function
takes the workspace and a side and returns a :class:`Summary`.

The work is done in :mod:`facelab.faceset` (one module per command: ``debug``, ``names``, ``resize``,
``meta``, ``tojpg``), :mod:`facelab.faceset.pack`,
:mod:`facelab.faceset.dfl` and :mod:`facelab.faceset.coverage`.

Each command's options are declared once in :data:`OPTIONS` (command name ->
options): the CLI's flags, the checks made here before any file is touched and
the tables in ``docs/faceset.md`` come from there.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from facelab import jobs
from facelab.errors import FaceFileError, FacelabError, WorkspaceError
from facelab.faceset import coverage as cov
from facelab.faceset import debug, dfl, meta, names, resize as fresize, tojpg
from facelab.faceset import pack as fpack
from facelab.fileio import write_image
from facelab.options import Option
from facelab.progress import track
from facelab.stages import Summary
from facelab.types import SIDES, FaceType
from facelab.workspace import Workspace, check_side

QUALITY = Option("quality", int, 95, "JPEG quality 1..100 (default 95).", flags=("--quality",), lo=1, hi=100,
                 hint="use 1..100 (default 95)", doc="JPEG quality (1..100) of the faces written as JPEG")
"""The JPEG quality of `resize`, `to-jpg` and `export-dfl`."""

OPTIONS: dict[str, tuple[Option, ...]] = {
    "debug-landmarks": (Option("remove", bool, False, "Delete the *_debug.jpg images instead.", flags=("--remove",),
                               doc="delete the `*_debug.jpg` images instead of writing them"),),
    "recover-names": (Option("include_trash", bool, False, "Also bring faces back from aligned_trash.",
                             flags=("--include-trash",), doc="also move faces back from `aligned_trash/`"),),
    "pack": (Option("keep", bool, False, "Keep the loose face files.", flags=("--keep",),
                    doc="keep the loose faces beside the pack"),),
    "unpack": (Option("keep", bool, False, "Keep the pack file.", flags=("--keep",), doc="keep `aligned.faceset`"),
               Option("overwrite", bool, False, "Replace faces of the same name.", flags=("--overwrite",),
                      doc="replace faces of the same name (else the command stops before writing anything)")),
    "resize": (Option("size", int, None, "New face size in pixels.", flags=("--size",), lo=8, hi=2048, required=True,
                      hint="use 8..2048 (e.g. 256 or 512)", doc="new face side in pixels, 8..2048"),
               Option("face_type", str, None, "New face type (default: keep).", flags=("--face-type",),
                      choices=tuple(t.value for t in FaceType), shown_default="keep", metavar="TYPE",
                      doc="new face type: `half`, `mid`, `full`, `whole` or `head`"),
               QUALITY),
    "save-meta": (),
    "restore-meta": (),
    "to-jpg": (QUALITY,),
    "coverage": (),
    "import-dfl": (Option("to", str, "src", "Side to import into (default src).", flags=("--to",), choices=SIDES,
                          doc="the side whose `aligned/` the faces go into"),),
    "export-dfl": (replace(QUALITY, help="JPEG quality for PNG faces, 1..100 (default 95).",
                           doc="JPEG quality (1..100) of PNG faces; JPEG faces keep their image data"),),
}
"""Every option of each `facelab faceset` command, declared once (see :mod:`facelab.options`)."""


def _check(command: str, **values: Any) -> None:
    """Refuse a value that ``command``'s declaration does not allow (naming the key), before any file is touched."""
    for option in OPTIONS[command]:
        option.check(values[option.name])


def _faces(ws: Workspace, side: str) -> list[Path]:
    """The side's faces (a packed set is unpacked first, with a notice)."""
    return ws.require_aligned(check_side(side))


def debug_landmarks(ws: Workspace, side: str, remove: bool = False) -> Summary:
    _check("debug-landmarks", remove=remove)
    t = time.time()
    folder = ws.aligned_dir(check_side(side))
    if remove:
        n = debug.remove_debug(folder)
        return Summary(f"debug-landmarks {side}", {"removed": n}, time.time() - t)
    _faces(ws, side)
    n, warnings = debug.write_debug(folder)
    return Summary(f"debug-landmarks {side}", {"written": n}, time.time() - t, [str(folder / "*_debug.jpg")], warnings)


def recover_names(ws: Workspace, side: str, include_trash: bool = False) -> Summary:
    _check("recover-names", include_trash=include_trash)
    t = time.time()
    check_side(side)
    res = names.recover_names(ws.aligned_dir(side), ws.state_dir(side), ws.trash_dir(side) if include_trash else None,
                              also_finish=(ws.trash_dir(side),))
    counts = {"renamed": res.renamed, "unchanged": res.unchanged}
    if include_trash:
        counts["back from trash"] = res.from_trash
    return Summary(f"recover-names {side}", counts, time.time() - t, [str(ws.aligned_dir(side))], res.warnings)


def pack(ws: Workspace, side: str, keep: bool = False) -> Summary:
    _check("pack", keep=keep)
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
    _check("unpack", keep=keep, overwrite=overwrite)
    t = time.time()
    source = ws.pack_path(check_side(side))
    if not source.is_file():
        raise WorkspaceError(f"{source} does not exist", f"run `facelab faceset pack {side}` first")
    written = fpack.unpack(source, ws.aligned_dir(side), overwrite=overwrite)
    if not keep:
        source.unlink()
    return Summary(f"unpack {side}", {"faces": len(written)}, time.time() - t, [str(ws.aligned_dir(side))])


@jobs.step
def resize(ws: Workspace, side: str, size: int, face_type: str | None = None, jpeg_quality: int = QUALITY.default) -> Summary:
    _check("resize", size=size, face_type=face_type, quality=jpeg_quality)
    t = time.time()
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


def to_jpg(folder: Path, quality: int = QUALITY.default) -> Summary:
    _check("to-jpg", quality=quality)
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
    t = time.time()  # the side (--to) is checked by check_side, which names it as a side
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


def export_dfl(ws: Workspace, side: str, folder: Path, jpeg_quality: int = QUALITY.default) -> Summary:
    _check("export-dfl", quality=jpeg_quality)
    t = time.time()
    written, skipped = dfl.export_dfl(_faces(ws, side), Path(folder), jpeg_quality)
    return Summary(f"export-dfl {side}", {"exported": len(written), "skipped": len(skipped)}, time.time() - t, [str(folder)],
                   [f"skipped: {m}" for m in skipped])
