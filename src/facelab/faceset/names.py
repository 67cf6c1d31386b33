"""``facelab faceset recover-names``: give sorted faces back their original file names (journaled, so a kill loses none)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facelab.errors import FaceFileError
from facelab.face_checks import safe_name
from facelab.faceimage import FaceRecord, read_record
from facelab.faceset import renames
from facelab.faceset.files import face_files


JOURNAL = "recover_names.json"


def original_name(record: FaceRecord, suffix: str) -> str:
    """The face's first file name: ``extra["original_filename"]``, else ``<frame stem>_<face index><suffix>``;
    always a plain file name (never a path), whatever the metadata says."""
    suffix = suffix.lower()
    stored = record.extra.get("original_filename")
    for name in (stored, f"{Path(record.source_filename).stem}_{record.face_index}{suffix}"):
        if not isinstance(name, str):
            continue
        if Path(name).suffix.lower() != suffix:  # keep the file's real type: a face named "x" would be hidden
            name = Path(name).stem + suffix
        try:
            return safe_name(name)
        except ValueError:
            continue
    return f"face_{record.face_index}{suffix}"


@dataclass
class RecoverResult:
    renamed: int = 0
    unchanged: int = 0
    from_trash: int = 0
    warnings: list[str] = field(default_factory=list)


def recover_names(aligned: Path, state_dir: Path, trash: Path | None = None, also_finish: tuple[Path, ...] = ()) -> RecoverResult:
    """Give every face its original file name back (and bring back ``trash`` faces).

    Two phases: every file that moves first gets a unique temporary name in
    ``aligned``, the plan is written to ``state_dir/recover_names.json``, then
    each gets its final name. A run interrupted in phase 2 is finished by the
    next run (also in the folders ``also_finish``: a trash an earlier run may have
    included); no file is ever overwritten.
    """
    aligned, state_dir = Path(aligned), Path(state_dir)
    res = RecoverResult()
    state_dir.mkdir(parents=True, exist_ok=True)
    journal = state_dir / JOURNAL
    folders = [aligned] + ([trash] if trash is not None else [])
    # an earlier run may have included the trash
    renames.finish(journal, folders + list(also_finish), ".recover-", res.warnings)
    sources = [(p, False) for p in face_files(aligned)]
    if trash is not None:
        sources += [(p, True) for p in face_files(trash)]
    plan: list[tuple[Path, str, bool]] = []
    keep: set[str] = set()
    for p, in_trash in sources:
        try:
            rec = read_record(p)
        except FaceFileError as e:
            res.warnings.append(f"{p.name} kept as it is: {e.message}")
            if not in_trash:
                keep.add(p.name)
            continue
        plan.append((p, original_name(rec, p.suffix), in_trash))
    # faces that already have their name keep it
    plan.sort(key=lambda t: not (t[0].parent == aligned and t[0].name == t[1]))
    taken = set(keep)
    final: list[tuple[Path, str]] = []
    for p, want, in_trash in plan:
        name, k = want, 1
        while name in taken:
            name = f"{Path(want).stem}_{k}{Path(want).suffix}"
            k += 1
        if name != want:
            res.warnings.append(f"{p.name}: {want} is taken, named {name}")
        taken.add(name)
        if p.parent == aligned and p.name == name:
            res.unchanged += 1
            continue
        final.append((p, name))
        res.from_trash += in_trash
    res.renamed = renames.rename_all([(p, aligned / name) for p, name in final], journal, ".recover-",
                                     folders=folders, warnings=res.warnings)
    return res
