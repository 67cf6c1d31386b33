"""The workspace folder: the only module that knows its layout (SPEC section 1).

::

    workspace/
      data_src.<ext>  data_dst.<ext>        input videos
      data_src/  data_dst/                   frames 00001.png ...
      data_<side>/aligned/                   aligned faces <frame>_<i>.jpg
      data_<side>/aligned_debug/             frames with landmarks drawn
      data_<side>/aligned_trash/             faces a sort or faceset step rejected
      data_<side>/aligned_confirmed/         faces the mask editor saved and moved on (E)
      data_<side>/aligned_skipped/           faces the mask editor skipped and moved on (W)
      data_<side>/aligned_xseg/              copies of the labelled faces (`seg fetch`)
      data_<side>/aligned.faceset            the face set packed into one file
      data_dst/merged/  data_dst/merged_mask/
      data_dst/merged_raw/  data_dst/merged_preview/
      model/<name>/                          one folder per model (the segmenter: model/segmenter)
      result.mp4  coverage.png
      data_<side>/.facelab/                  step records: <step>.record.json + <step>.journal.jsonl
      data_<side>/.facelab/thumbs/           face thumbnails for the UI's grid (a cache)
      .facelab_demo.json                     marks a workspace the demo made (and its training)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from facelab.errors import SettingsError, WorkspaceError
from facelab.steprecord import Legacy, StepRecord
from facelab.types import SIDES

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v", ".wmv", ".flv", ".ts")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # a plate may come as any of these
DEMO_MARKER = ".facelab_demo.json"


def is_folder_name(name: object) -> bool:
    """Whether ``name`` is a plain folder name (not empty, no path separator, not hidden, not ``.`` / ``..``), so
    that ``model/<name>`` stays inside ``model/``."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def check_folder_name(name: object, what: str = "name") -> str:
    """``name`` if :func:`is_folder_name`, else :class:`SettingsError` starting with ``what``."""
    if not is_folder_name(name):
        raise SettingsError(f"{what}: {name!r} is not a valid folder name", "use letters, digits, '-' or '_'")
    return name


def check_side(side: str) -> str:
    if side not in SIDES:
        raise SettingsError(f"unknown side {side!r}", "use 'src' or 'dst'")
    return side


@dataclass(frozen=True)
class Workspace:
    """A workspace folder. ``notices`` collects what the workspace itself changed on the way (e.g. a packed
    face set unpacked to be read); the CLI and the UI show them with the step's summary."""

    root: Path
    notices: list[str] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # --- layout -----------------------------------------------------------
    def frames_dir(self, side: str) -> Path:
        return self.root / f"data_{check_side(side)}"

    def aligned_dir(self, side: str) -> Path:
        return self.frames_dir(side) / "aligned"

    def pack_path(self, side: str) -> Path:
        """The face set packed into one file (``facelab faceset pack``)."""
        return self.frames_dir(side) / "aligned.faceset"

    def aligned_debug_dir(self, side: str) -> Path:
        return self.frames_dir(side) / "aligned_debug"

    def trash_dir(self, side: str) -> Path:
        """Faces a sort or faceset step moved out of the set."""
        return self.frames_dir(side) / "aligned_trash"

    def confirmed_dir(self, side: str) -> Path:
        """Faces the mask editor saved and moved out of the set (DeepFaceLab's ``aligned_confirmed``)."""
        return self.frames_dir(side) / "aligned_confirmed"

    def skipped_dir(self, side: str) -> Path:
        """Faces the mask editor skipped and moved out of the set (DeepFaceLab's ``aligned_skipped``)."""
        return self.frames_dir(side) / "aligned_skipped"

    def xseg_dir(self, side: str) -> Path:
        """Copies of the side's labelled faces (``facelab seg fetch``; DeepFaceLab's ``aligned_xseg``)."""
        return self.frames_dir(side) / "aligned_xseg"

    def state_dir(self, side: str) -> Path:
        """Hidden folder for step records (frame timing, extraction progress)."""
        return self.frames_dir(side) / ".facelab"

    def state_file(self, side: str, name: str) -> Path:
        """A file of the side's state folder that is not a step record (``no_face.txt``, a sort journal ...)."""
        return self.state_dir(side) / name

    def no_face_list(self, side: str) -> Path:
        """Frames where ``extract`` found no face, one name a line (for the user and ``--manual-fix``)."""
        return self.state_dir(side) / "no_face.txt"

    def thumbs_dir(self, side: str) -> Path:
        """Thumbnails of the side's faces (:mod:`facelab.faceset.thumbs`); a cache, safe to delete."""
        return self.state_dir(side) / "thumbs"

    def face_list_cache(self, side: str) -> Path:
        """Per-face values the face list shows (blur score, pose ...), kept between runs
        (:mod:`facelab.faceset.browse`); a cache, safe to delete."""
        return self.state_dir(side) / "face_list.json"

    def trash_journal(self, side: str) -> Path:
        """Append-only log of faces moved to the trash and back, for undo and redo (:mod:`facelab.faceset.trash`)."""
        return self.state_dir(side) / "trash_journal.jsonl"

    def manual_todo_path(self, side: str) -> Path:
        """Frames awaiting manual extraction, with the reason for each."""
        return self.state_dir(side) / "manual_todo.json"

    def manual_session_path(self, side: str) -> Path:
        """The manual extraction session of the side: its frames and how far it got (resumed from here)."""
        return self.state_dir(side) / "manual_session.json"

    def step_record(self, step: str, side: str = "dst", *, step_version: int | None = None,
                    legacy: Legacy | None = None) -> StepRecord:
        """The record of ``step`` on ``side`` (see :mod:`facelab.steprecord`); ``legacy`` reads the step's
        files of older facelab versions, migrated on first use."""
        return StepRecord(self.state_dir(side), step, step_version=step_version, legacy=legacy)

    @property
    def merged_dir(self) -> Path:
        return self.root / "data_dst" / "merged"

    @property
    def merged_mask_dir(self) -> Path:
        return self.root / "data_dst" / "merged_mask"

    @property
    def merged_raw_dir(self) -> Path:
        """``merge --mode raw-predict``: ``<frame>_<i>.png`` aligned faces and ``<frame>_<i>_mask.png``."""
        return self.root / "data_dst" / "merged_raw"

    @property
    def merged_preview_dir(self) -> Path:
        """``merge --preview FRAME``: the one merged frame and its side-by-side."""
        return self.root / "data_dst" / "merged_preview"

    @property
    def demo_marker(self) -> Path:
        """Marks a workspace the demo made (and records its training)."""
        return self.root / DEMO_MARKER

    @property
    def jobs_dir(self) -> Path:
        """Status files of running jobs (:class:`facelab.jobs.StatusFile`): how the browser UI sees a step started
        from the command line in the same workspace."""
        return self.root / ".facelab" / "jobs"

    @property
    def model_root(self) -> Path:
        return self.root / "model"

    def model_dir(self, name: str) -> Path:
        """``model/<name>``: a plain folder name only (:func:`check_folder_name`), never a way out of ``model/``."""
        return self.model_root / check_folder_name(name, "model name")

    def result_path(self, ext: str = "mp4") -> Path:
        return self.root / f"result.{ext}"

    @property
    def coverage_path(self) -> Path:
        """``facelab faceset coverage``'s plot of src against dst."""
        return self.root / "coverage.png"

    def input_entries(self, side: str) -> list[Path]:
        """Everything named ``data_<side>.*`` in the workspace root (the input video's name), sorted."""
        return sorted(self.root.glob(f"data_{check_side(side)}.*"))

    def input_video_path(self, side: str, suffix: str) -> Path:
        """Where the side's input video goes: ``data_<side><suffix>`` (``suffix`` such as ``.mp4``)."""
        return self.root / f"data_{check_side(side)}{suffix}"

    def all_dirs(self) -> list[Path]:
        dirs = [self.root, self.model_root]
        for side in SIDES:
            dirs += [self.frames_dir(side), self.aligned_dir(side), self.aligned_debug_dir(side)]
        dirs += [self.merged_dir, self.merged_mask_dir]
        return dirs

    # --- lookups ----------------------------------------------------------
    def find_video(self, side: str) -> Path:
        """Return ``data_<side>.<ext>``; raise with a hint if none or several."""
        check_side(side)
        found = [p for p in self.input_entries(side) if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
        if not found:
            raise WorkspaceError(
                f"no video data_{side}.<ext> in {self.root}",
                f"copy your {side} video there as data_{side}.mp4 (or .mkv/.avi/.mov/...)",
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise WorkspaceError(f"several {side} videos in {self.root}: {names}", f"keep only one data_{side}.*")
        return found[0]

    def frame_paths(self, side: str) -> list[Path]:
        """Extracted frames of a side, sorted by name."""
        folder = self.frames_dir(side)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file())

    def require_frames(self, side: str) -> list[Path]:
        frames = self.frame_paths(side)
        if not frames:
            raise WorkspaceError(
                f"{self.frames_dir(side)} has no frames", f"run `facelab frames {side}` first"
            )
        return frames

    def aligned_paths(self, side: str) -> list[Path]:
        """The side's face files (no hidden or temporary files, no ``*_debug`` images)."""
        folder = self.aligned_dir(side)
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.stem.endswith("_debug")
            and not p.name.startswith(".") and p.is_file()
        )

    def require_aligned(self, side: str) -> list[Path]:
        """The side's face files; a face set that was packed (and has no loose faces) is unpacked first,
        with a notice, so every step reads packed sets as DeepFaceLab 2 did."""
        faces = self.aligned_paths(side)
        packed = self.pack_path(side)
        if not faces and packed.is_file():
            from facelab.faceset.pack import unpack

            written = unpack(packed, self.aligned_dir(side))
            packed.unlink()
            self.notices.append(f"unpacked {packed.name} ({len(written)} faces) into {self.aligned_dir(side)} to read it;"
                                f" `facelab faceset pack {side}` packs it again")
            faces = self.aligned_paths(side)
        elif faces and packed.is_file():
            self.notices.append(f"{packed} is not read: {self.aligned_dir(side)} has loose faces, which are used")
        if not faces:
            raise WorkspaceError(
                f"{self.aligned_dir(side)} has no faces", f"run `facelab extract {side}` first"
            )
        return faces

    def require_exists(self) -> None:
        if not self.root.is_dir():
            raise WorkspaceError(f"workspace {self.root} does not exist", "run `facelab workspace` to create it")

    # --- changes ----------------------------------------------------------
    def create(self) -> list[Path]:
        """Create every folder of the layout; return the ones that were new."""
        made = [d for d in self.all_dirs() if not d.exists()]
        for d in self.all_dirs():
            d.mkdir(parents=True, exist_ok=True)
        return made

    def clear(self) -> int:
        """Delete everything inside the workspace but the input videos; recreate the layout.

        Returns the number of top-level entries removed.
        """
        self.require_exists()
        keep = {p for side in SIDES for p in self.input_entries(side) if p.is_file()}
        removed = 0
        for entry in self.root.iterdir():
            if entry in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        self.create()
        return removed
