"""Sort step: reorder (rename) the aligned faces of one side, move rejected faces to aligned_trash.

``run(ws, side, SortSettings(by="blur"))``. See :mod:`facelab.faceset.sort` for
the methods and how renaming is kept safe, and docs/sorting.md for users.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, dataclass
from pathlib import Path

import numpy as np

from facelab import jobs
from facelab.errors import FaceFileError, SettingsError
from facelab.faceimage import read_record
from facelab.faceset import sort as fsort
from facelab.options import Option, rename_field
from facelab.stages import Summary
from facelab.workspace import Workspace, check_side


@dataclass(frozen=True)
class SortSettings:
    """Settings of the sort step (declared in :data:`OPTIONS`; ``facelab sort --help`` lists them)."""

    by: str = "blur"
    target: int = 2000  # final: how many faces to keep
    reference: Path | None = None  # identity: an image of the person, or one of their aligned faces
    workers: int = 0  # worker threads; 0: all cores
    threads: InitVar[int | None] = None  # the old name of ``workers``: still accepted, with a DeprecationWarning

    def __post_init__(self, threads: int | None) -> None:
        rename_field(self, "threads", "workers", threads)
        for option in OPTIONS:
            option.check(getattr(self, option.name), "sort.")
        if self.by == "identity":
            if self.reference is None:
                raise SettingsError("sort --by identity needs a reference face", "add --reference IMAGE_OR_ALIGNED_FACE")
            if not Path(self.reference).is_file():
                raise SettingsError(f"reference {self.reference} does not exist", "give an image file of the person")


OPTIONS = (
    Option("by", str, "blur", "Sort method, one of those above (default blur).", choices=tuple(fsort.METHODS),
           metavar="METHOD", shown_default="`blur`", doc="how to order the faces: one of the methods in the table below"),
    Option("target", int, 2000, "final: number of faces to keep (the rest go to aligned_trash; default 2000).", lo=1,
           hint="use 1 or more (default 2000)", doc="`--by final`: how many faces to keep (the rest go to `aligned_trash`)"),
    Option("reference", Path, None, "identity: an image of the person or one of their aligned faces.", metavar="IMAGE",
           doc="`--by identity`: any picture of the person (its largest face is used) or one of their aligned faces"),
    Option("workers", int, 0, "Worker threads; 0 = all cores (default).", lo=0, hint="use 0 (all cores) or more",
           doc="threads computing the features; 0 uses all cores"),
)
"""Every setting of :class:`SortSettings`, declared once (see :mod:`facelab.options`)."""


def reference_embedding(path: Path) -> np.ndarray:
    """Identity embedding of the reference: an aligned face (its stored landmarks) or any image (largest face found)."""
    from facelab.faceimage import read_face
    from facelab.fileio import read_image
    from facelab.identity import embed_face

    path = Path(path)
    try:
        image, record = read_face(path)
        return embed_face(image, record.landmarks)
    except (FaceFileError, ValueError):
        pass
    from facelab.detect import create_detector
    from facelab.landmarks import create_landmarker
    from facelab.find_faces import FindOptions, find_faces

    image = read_image(path)
    found = find_faces(image, create_detector("retinaface"), create_landmarker("dlib68"), FindOptions())
    if not found:
        raise SettingsError(f"no face found in reference {path}", "give a clearer picture of the person, or one of their aligned faces")
    return embed_face(image, found[0].landmarks)


@jobs.step
def run(ws: Workspace, side: str, settings: SortSettings = SortSettings()) -> Summary:
    """Sort ``data_<side>/aligned`` by ``settings.by``; see the module docstring."""
    check_side(side)
    start = time.perf_counter()
    folder = ws.aligned_dir(side)
    journal = ws.state_dir(side) / fsort.JOURNAL
    warnings: list[str] = []
    recovered = fsort.recover(folder, journal, warnings)
    paths = ws.require_aligned(side)
    reference = reference_embedding(settings.reference) if settings.by == "identity" else None

    # every face keeps its first name (for `faceset recover-names`) before anything moves
    def remember(p: Path) -> str | FaceFileError:
        try:
            return fsort.remember_original_name(p, read_record(p))
        except FaceFileError as e:
            return e

    workers = settings.workers if settings.workers > 0 else None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        remembered = list(pool.map(remember, paths))
    errors = [r for r in remembered if isinstance(r, FaceFileError)]
    good = [(p, r) for p, r in zip(paths, remembered) if isinstance(r, str)]
    paths, names = [p for p, _ in good], [r for _, r in good]

    readable, order, trash = fsort.rank(paths, settings.by, target=settings.target, reference=reference,
                                        workers=settings.workers, description=f"sort {side} by {settings.by}", errors=errors)
    paths, names = [paths[k] for k in readable], [names[k] for k in readable]
    warnings += [f"skipped (left as it is): {e.message}" for e in errors]
    fsort.apply(folder, paths, order, trash, ws.trash_dir(side), journal, names, warnings)

    summary = Summary(
        step=f"sort {side} by {settings.by}",
        counts={"faces": len(paths), "kept": len(order), "to trash": len(trash), "skipped": len(errors)},
        seconds=time.perf_counter() - start,
        outputs=[str(folder)] + ([str(ws.trash_dir(side))] if trash else []),
        warnings=warnings,
    )
    if recovered:
        summary.warnings.append(f"finished an interrupted sort first ({recovered} file(s) renamed)")
    return summary
