"""Step records: what a step ran with and which items it finished, so a re-run resumes.

One record per step (and side) in the side's state folder ``data_<side>/.facelab/``, two files:

``<step>.record.json``
    The header, replaced atomically (temporary file, then rename)::

        {"format": 1, "step": "merge", "step_version": 3,
         "settings": {...}, "fingerprint": "<sha1 of the settings' JSON, 16 hex>",
         "done": {"<item>": "<fingerprint of how it was made>", ...},
         "completed": false, "summary": {...}}

``<step>.journal.jsonl``
    Append-only, one JSON line per item finished since the header was last written
    (``{"item": "00001", "fp": "..."}``), flushed as each item finishes, so a killed run loses
    no finished item. A line torn by a kill (the last one, unreadable) is ignored. The header
    absorbs the journal whenever it is written (:meth:`StepRecord.begin`, :meth:`StepRecord.save`),
    and the journal is emptied then.

:class:`StepRecord` is the only reader and writer of these files. A workspace written before
them (``merge.json`` + ``merge_done.txt`` and so on) is read through the ``legacy`` function
the stage passes, on first use (the first :meth:`StepRecord.load`): what it read is written as
the record and the old files are removed. ``format`` is the layout of these two files (this module's
business); ``step_version`` is what the stage's settings and fingerprints mean (the stage's).
A record from a newer facelab (a higher ``format``) raises :class:`FacelabError` rather than
being overwritten.

A step whose output another step changes in place has that step as a *dependent*
(:data:`DEPENDENTS`): resetting the record (``frames --force`` writes new frames) resets the
dependents' records too (denoised frames are replaced by raw ones, so nothing is denoised).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from facelab.errors import FacelabError
from facelab.fileio import atomic_write_json, write_error

FORMAT = 1
HEADER_SUFFIX = ".record.json"
JOURNAL_SUFFIX = ".journal.jsonl"
# step -> steps whose record describes work done on its output in place
DEPENDENTS: dict[str, tuple[str, ...]] = {"frames": ("denoise",)}
# step -> its record files of facelab before step records, removed with a reset (as a dependent too)
LEGACY_FILES: dict[str, tuple[str, ...]] = {
    "frames": ("frames.json",), "denoise": ("denoise.json",), "merge": ("merge.json", "merge_done.txt"),
    "extract": ("extract.json", "extract_done.txt"), "extract-debug": ("debug_done.txt",), "video": ("video.json",),
}


def fingerprint(obj: Any) -> str:
    """A short stable fingerprint of JSON-able ``obj`` (sorted keys): 16 hex digits of its SHA-1."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()[:16]


@dataclass
class Saved:
    """What a record holds: the settings of the last run, the finished items (``item -> fingerprint``,
    in the order they finished), whether the run completed, its summary, and ``step_version``."""

    settings: dict[str, Any]
    done: dict[str, str] = field(default_factory=dict)
    completed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    step_version: int | None = None
    legacy_files: list[Path] = field(default_factory=list)  # old files this was read from (removed on the next write)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)


Legacy = Callable[[Path], "Saved | None"]


class StepRecord:
    """The record of one step in ``folder`` (a side's state folder). See the module docstring.

    Use::

        record = ws.step_record("merge", side="dst")
        saved = record.load()                   # Saved or None; the last run's settings and finished items
        record.begin(settings, keep)            # a new run: header with these settings and the kept items
        record.done(item, fp)                   # one journal line per finished item
        record.finish(summary)                  # header with everything, completed
    """

    def __init__(self, folder: Path, step: str, *, step_version: int | None = None, legacy: Legacy | None = None) -> None:
        self.folder = Path(folder)
        self.step = step
        self.step_version = step_version
        self.legacy = legacy
        self._settings: dict[str, Any] | None = None
        self._done: dict[str, str] = {}
        self._journal: TextIO | None = None
        self._legacy_files: list[Path] = []

    @property
    def header_path(self) -> Path:
        return self.folder / f"{self.step}{HEADER_SUFFIX}"

    @property
    def journal_path(self) -> Path:
        return self.folder / f"{self.step}{JOURNAL_SUFFIX}"

    # --- reading ----------------------------------------------------------------------------
    def written_at(self) -> float | None:
        """When the record was last written (its header or journal; seconds since the epoch), None if never."""
        return max((p.stat().st_mtime for p in (self.header_path, self.journal_path) if p.exists()), default=None)

    def load(self) -> Saved | None:
        """The record as last written plus its journal; ``None`` if there is none or it cannot be read
        (the step then starts afresh, as with no record). A workspace of older facelab versions is
        read through ``legacy``. Raises :class:`FacelabError` for a record of a newer facelab."""
        header = self._read_header()
        if header is None:
            saved = self.legacy(self.folder) if self.legacy is not None and not self.header_path.exists() else None
            if saved is not None:
                self._migrate(saved)
            return saved
        if self.step_version is not None and header.get("step_version") != self.step_version:
            return None
        kept, settings, summary = header.get("done"), header.get("settings"), header.get("summary")
        done = {str(k): str(v) for k, v in kept.items()} if isinstance(kept, dict) else {}
        done.update(read_journal(self.journal_path))
        return Saved(settings=dict(settings) if isinstance(settings, dict) else {}, done=done, completed=bool(header.get("completed")),
                     summary=summary if isinstance(summary, dict) else {}, step_version=header.get("step_version"))

    def _empty_journal(self) -> None:
        try:
            with open(self.journal_path, "wb"):
                pass
        except OSError as e:
            user_error = write_error(e, self.journal_path)
            if user_error is not None:
                raise user_error from e
            raise

    def _migrate(self, saved: Saved) -> None:
        """Write what the old files said as this record, then remove them. A workspace that cannot be
        written (read-only) keeps its old files, read again next time."""
        self._settings, self._done, self._legacy_files = dict(saved.settings), dict(saved.done), list(saved.legacy_files)
        try:
            self._write_header(completed=saved.completed, summary=saved.summary)
        except (OSError, FacelabError):
            pass  # reading must not fail for want of write access; the next writing run migrates
        finally:
            self._settings, self._done, self._legacy_files = None, {}, []

    def _read_header(self) -> dict[str, Any] | None:
        try:
            header = json.loads(self.header_path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict) or header.get("step") != self.step:
            return None
        version = header.get("format")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT:
            raise FacelabError(
                f"{self.header_path} was written by a newer facelab (record format {version}; this one reads up to {FORMAT})",
                "upgrade facelab to continue this workspace, or delete the file to redo the step from scratch",
            )
        if version != FORMAT:
            return None
        return header

    # --- writing ----------------------------------------------------------------------------
    def begin(self, settings: dict[str, Any], done: dict[str, str] | Iterable[str] | None = None) -> None:
        """Start a run with ``settings``: the header records them and ``done`` (the items kept from
        the last run, ``item -> fingerprint``, or names with the settings' fingerprint), not
        completed; the journal is emptied. Old-format files read by :meth:`load` are removed."""
        self.close()
        self._settings = dict(settings)
        if done is None:
            self._done = {}
        elif isinstance(done, dict):
            self._done = dict(done)
        else:
            fp = fingerprint(self._settings)
            self._done = {str(n): fp for n in done}
        self._write_header(completed=False, summary={})

    def done(self, item: str, fp: str | None = None) -> None:
        """Record ``item`` as finished (``fp``: how it was made; default the settings' fingerprint):
        one journal line, flushed."""
        if self._settings is None:
            raise RuntimeError("StepRecord.done before begin")
        fp = fingerprint(self._settings) if fp is None else fp
        self._done[item] = fp
        if self._journal is None:
            self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._journal.write(json.dumps({"item": item, "fp": fp}, separators=(",", ":")) + "\n")
        self._journal.flush()

    def forget(self, items: Iterable[str]) -> None:
        """Drop ``items`` from the finished ones (kept in memory until the next header write)."""
        for item in items:
            self._done.pop(item, None)

    @property
    def done_items(self) -> dict[str, str]:
        return dict(self._done)

    def save(self, completed: bool = False, summary: dict[str, Any] | None = None) -> None:
        """Write the header with every finished item so far and empty the journal."""
        if self._settings is None:
            raise RuntimeError("StepRecord.save before begin")
        self.close()
        self._write_header(completed=completed, summary=summary or {})

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """The run completed: header with everything, ``completed`` true, ``summary``."""
        self.save(completed=True, summary=summary)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def __enter__(self) -> StepRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving a ``with`` block closes the journal; what it holds is read with the header next time."""
        self.close()

    def reset(self) -> None:
        """Forget the step: remove its record (and any old-format files) so the next run starts afresh,
        and the records of its :data:`DEPENDENTS`."""
        self.close()
        self._settings, self._done, self._legacy_files = None, {}, []
        for step in (self.step, *DEPENDENTS.get(self.step, ())):
            (self.folder / f"{step}{HEADER_SUFFIX}").unlink(missing_ok=True)
            (self.folder / f"{step}{JOURNAL_SUFFIX}").unlink(missing_ok=True)
            for name in LEGACY_FILES.get(step, ()):
                (self.folder / name).unlink(missing_ok=True)

    def _write_header(self, completed: bool, summary: dict[str, Any]) -> None:
        assert self._settings is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "step": self.step, "settings": self._settings, "fingerprint": fingerprint(self._settings),
                  "done": self._done, "completed": completed, "summary": summary}
        if self.step_version is not None:
            header["step_version"] = self.step_version
        atomic_write_json(self.header_path, header)
        # the header now holds everything the journal said. Emptied in place, not replaced: another
        # StepRecord of the same step appending to it keeps writing to the file that is read.
        # (A kill before this leaves lines the header also holds: harmless.)
        self._empty_journal()
        for p in self._legacy_files:
            p.unlink(missing_ok=True)
        self._legacy_files = []


def read_journal(path: Path) -> dict[str, str]:
    """``item -> fingerprint`` from a journal, in order; unreadable lines (a line torn by a kill) are skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            out[str(entry["item"])] = str(entry["fp"])
        except (ValueError, KeyError, TypeError):
            continue  # torn by a kill mid-append: the item was not recorded as finished
    return out


def read_old_json(path: Path) -> dict | None:
    """The JSON object of an old-format record file (``frames.json`` ...): None if there is no such file,
    ``{}`` if it cannot be read or is not an object (it is then migrated as a record that holds nothing)."""
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def read_lines(path: Path) -> list[str]:
    """Whitespace-separated names of an old-format list file (``merge_done.txt`` ...); ``[]`` if missing."""
    try:
        return path.read_text("utf-8").split()
    except OSError:
        return []


__all__ = ["FORMAT", "Saved", "StepRecord", "fingerprint", "read_journal", "read_lines", "read_old_json"]
