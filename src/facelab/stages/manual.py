"""Manual extraction and fix: the library behind the manual extraction page of ``facelab ui``.

A :class:`ManualSession` works through a list of frames of one side. By
default those are the frames waiting for a person: listed in
``manual_todo.json`` (``extract --manual-fix``, failed redos), in
``no_face.txt`` (automatic extraction found nothing) and frames whose
``aligned_debug`` image the user deleted; a caller may give any frames instead
(the user's pick, or every frame for a side extracted by hand only). Per frame
the page places faces with :func:`facelab.manual_faces.landmarks_in_box`
(:meth:`ManualSession.landmarks_in_box` uses the side's landmark model), lets
the user drag points, then:

- :meth:`~ManualSession.accept` writes the frame's faces exactly as ``facelab
  extract`` does (the same :func:`facelab.find_faces.make_face` and file
  writer, with the face type, size, JPEG quality and accurate flag the side
  was extracted with), named ``<frame stem>_<i>.jpg``. The new faces are
  written first, then the frame's earlier faces that were not overwritten are
  removed (found by name and by their ``source_filename``, so faces renamed by
  ``sort`` go too), then its debug image is drawn again (when the side has
  debug images). The frame is journaled as extracted in the step record
  ``extract`` (so a later ``facelab extract`` leaves it alone) and leaves
  ``manual_todo.json`` and ``no_face.txt``. Accepting no face at all says
  "this frame has none": its earlier faces are removed.
- :meth:`~ManualSession.skip` leaves the frame as it is (it stays listed, for
  a later session).

Progress (the list, which frames were accepted or skipped, the current frame)
is saved atomically after every change in ``data_<side>/.facelab/
manual_session.json``; a new session on the same side resumes an unfinished
one where it stopped (with frames that became pending since added in frame
order). Not done by hand: rotation retries, the plausibility and identity
checks (the user decides) and ``--smooth`` (a placed face keeps the landmarks
it was given).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facelab.detect import Detection
from facelab.errors import FaceFileError, FacelabError, SettingsError
from facelab.face_checks import check_landmarks
from facelab.faceimage import read_record
from facelab.fileio import atomic_write_bytes, atomic_write_json, read_image, write_image
from facelab.find_faces import FoundFace, draw_debug
from facelab.manual_faces import Box, box_of_landmarks, default_landmarker
from facelab.manual_faces import landmarks_in_box as _landmarks_in_box
# manual extraction is part of the extract step: its record, lists and face writer are the stage's own
from facelab.stages.extract import (
    ExtractSettings,
    _debug_record,
    _debug_written,
    _deleted_debug,
    _faces_of,
    _open_debug_log,
    _read_json,
    _read_lines,
    _record,
    _update_todo,
    _write_face,
    done_frames,
    recorded_settings,
)
from facelab.workspace import Workspace, check_side

SESSION_FORMAT = 1
SHAPING = ("face_type", "size", "jpeg_quality", "landmarks", "accurate")
"""The extract settings a face placed by hand is cut with (taken from the side's recorded extraction)."""

ACCEPTED, SKIPPED, PENDING = "accepted", "skipped", "pending"


def pending_frames(ws: Workspace, side: str) -> list[str]:
    """Frames of ``side`` waiting for manual extraction, in frame order: listed in ``manual_todo.json`` or
    ``no_face.txt``, or extracted with a debug image that has since been deleted. Names no longer among the
    side's frames are left out."""
    check_side(side)
    wanted = set(_todo_frames(ws, side)) | set(_read_lines(ws.no_face_list(side)))
    done = done_frames(ws, side)
    if done and _debug_written(ws, side, done):
        wanted |= set(_deleted_debug(ws, side, done))
    return [p.name for p in ws.frame_paths(side) if p.name in wanted]


def _todo_frames(ws: Workspace, side: str) -> list[str]:
    todo = _read_json(ws.manual_todo_path(side)) or {}
    frames = todo.get("frames") if isinstance(todo, dict) else None
    return [f for f in frames if isinstance(f, str)] if isinstance(frames, list) else []


def side_settings(ws: Workspace, side: str, settings: ExtractSettings | None = None) -> ExtractSettings:
    """The settings faces of ``side`` are cut with: those it was extracted with; for a side never extracted,
    ``settings`` (default :class:`ExtractSettings`'s). Raises :class:`SettingsError` when ``settings``
    asks for other faces than the side already holds."""
    recorded = {k: v for k, v in recorded_settings(ws, side).items() if k in SHAPING}
    if not recorded:
        return settings or ExtractSettings()
    try:
        resolved = ExtractSettings(**recorded)
    except (SettingsError, TypeError) as e:
        raise SettingsError(f"the extraction settings recorded for data_{side} cannot be used ({e})",
                            f"run `facelab extract {side} --force` to extract again") from None
    if settings is not None:
        clash = {k: (getattr(settings, k), v) for k, v in recorded.items() if k != "accurate" and getattr(settings, k) != v}
        if clash:
            said = ", ".join(f"{k}: {new!r} (the set has {old!r})" for k, (new, old) in clash.items())
            raise SettingsError(f"data_{side}/aligned holds faces cut with other settings: {said}",
                                f"leave these options out to cut faces like the rest of the set, or run `facelab extract {side} --force`")
    return resolved


class ManualSession:
    """Manual extraction of a list of frames of one side; see the module docstring.

    Args:
        ws: the workspace.
        side: ``"src"`` or ``"dst"``.
        frames: frame names to work through (in any order; kept in frame order), or None for
            :func:`pending_frames` (resuming an unfinished session, with frames pending since added).
            A list that differs from the unfinished session's starts a new session.
        settings: for a side never extracted, the settings to cut faces with (default extract's
            defaults); for an extracted side they must match its recorded ones (or be left out).

    Attributes:
        frames: the frame names, in frame order.
        missing: given or listed frames that are not among the side's frames (left out).
        settings: the :class:`ExtractSettings` faces are cut with.
    """

    def __init__(self, ws: Workspace, side: str, frames: Sequence[str] | None = None,
                 settings: ExtractSettings | None = None) -> None:
        self.ws, self.side = ws, check_side(side)
        self._paths = {p.name: p for p in ws.require_frames(side)}
        self.settings = side_settings(ws, side, settings)
        saved = self._load()
        wanted = list(frames) if frames is not None else pending_frames(ws, side)
        self.missing = [n for n in dict.fromkeys(wanted) if n not in self._paths]
        listed = [n for n in self._paths if n in set(wanted)]
        self._status: dict[str, str] = {}
        self._current: str | None = None
        if saved is not None and (frames is None or listed == saved["frames"]):
            keep = set(saved["frames"]) | set(listed)
            listed = [n for n in self._paths if n in keep]
            self._status = {n: s for n, s in saved["status"].items() if n in keep}
            self._current = saved["current"] if saved["current"] in keep else None
        self.frames = listed
        if self._current is None:
            self._current = self._next_pending(-1)
        self._by_frame: dict[str, list[Path]] | None = None  # frame name -> its face files (built on first use)
        self._save()

    # --- state ------------------------------------------------------------------------------------
    @property
    def current(self) -> str | None:
        """The frame being worked on, or None when every frame is accepted or skipped."""
        return self._current

    @property
    def position(self) -> int:
        """Index of :attr:`current` in :attr:`frames` (``len(frames)`` when finished)."""
        return self.frames.index(self._current) if self._current is not None else len(self.frames)

    def status(self, frame_name: str) -> str:
        """``"accepted"``, ``"skipped"`` or ``"pending"``."""
        return self._status.get(frame_name, PENDING)

    @property
    def accepted(self) -> list[str]:
        return [n for n in self.frames if self.status(n) == ACCEPTED]

    @property
    def skipped(self) -> list[str]:
        return [n for n in self.frames if self.status(n) == SKIPPED]

    @property
    def pending(self) -> list[str]:
        return [n for n in self.frames if self.status(n) == PENDING]

    @property
    def finished(self) -> bool:
        return not self.pending

    # --- navigation (`,` `.` in the page; accept and skip move on by themselves) -------------------------
    def next(self) -> str | None:
        """Move to the next frame of the list (any status); stays on the last. Returns the current frame."""
        if self.frames:
            self._current = self.frames[min(self.position + 1, len(self.frames) - 1)]
            self._save()
        return self._current

    def previous(self) -> str | None:
        """Move to the previous frame of the list (any status); stays on the first. Returns the current frame."""
        if self.frames:
            self._current = self.frames[max(self.position - 1, 0)]
            self._save()
        return self._current

    def goto(self, frame_name: str) -> str:
        """Make ``frame_name`` (a frame of the list) the current frame."""
        if frame_name not in self.frames:
            raise FacelabError(f"{frame_name} is not in this manual extraction session of data_{self.side}",
                               "pick one of the session's frames, or start a session with it in the frame list")
        self._current = frame_name
        self._save()
        return frame_name

    # --- reading ----------------------------------------------------------------------------------
    def image(self, frame_name: str | None = None) -> np.ndarray:
        """The frame (default the current one) as ``(H, W, 3) uint8`` BGR."""
        return read_image(self._frame_path(frame_name or self._require_current()))

    def faces(self, frame_name: str | None = None) -> list[FoundFace]:
        """The faces stored for a frame (default the current one), in face-index order: their box and
        frame-pixel landmarks, to show and edit (unreadable face files are left out)."""
        name = frame_name or self._require_current()
        found = []
        for p in self._faces_index().get(name, []):
            try:
                rec = read_record(p)
            except FaceFileError:
                continue
            found.append((rec.face_index, FoundFace(Detection(tuple(rec.source_rect), float(rec.extra.get("detector_score", 1.0))),
                                                    np.asarray(rec.source_landmarks, np.float32))))
        return [f for _, f in sorted(found, key=lambda t: t[0])]

    def landmarks_in_box(self, image: np.ndarray, box: Box, accurate: bool = False) -> FoundFace:
        """:func:`facelab.manual_faces.landmarks_in_box` with the side's landmark model."""
        return _landmarks_in_box(image, box, accurate, default_landmarker(self.settings.landmarks))

    # --- decisions --------------------------------------------------------------------------------
    def accept(self, frame_name: str, faces: Sequence[FoundFace | np.ndarray], accurate: bool | None = None) -> list[Path]:
        """Write the faces of ``frame_name`` as automatic extraction would, replacing its earlier faces.

        Args:
            frame_name: a frame of the side (in the list or not).
            faces: per face, a :class:`~facelab.find_faces.FoundFace` (from :meth:`landmarks_in_box` or
                automatic extraction, landmarks possibly edited: ``dataclasses.replace(face, landmarks=...)``)
                or bare ``(68, 2)`` frame-pixel landmarks (their bounding box becomes the face's box).
                Empty: the frame has no face.
            accurate: whether the landmarks came from the accurate pass (each face's ``extra["accurate"]``);
                None: the side's setting, as automatic extraction records it.

        Returns the face files written, ``<frame stem>_<i>.jpg`` in ``faces`` order. Moves on to the next
        pending frame when ``frame_name`` is the current one.
        """
        path = self._frame_path(frame_name)
        image = read_image(path)
        found = [self._as_found(f, i, frame_name, image.shape) for i, f in enumerate(faces)]
        settings = self.settings if accurate is None or accurate == self.settings.accurate else dataclasses.replace(self.settings, accurate=bool(accurate))
        aligned = self.ws.aligned_dir(self.side)
        aligned.mkdir(parents=True, exist_ok=True)
        old = set(_faces_of(aligned, path.stem)) | set(self._faces_index().get(frame_name, []))
        for i, f in enumerate(found):  # replacements first, then the old faces they did not overwrite
            _write_face(image, f, i, path, aligned, settings)
        written = [aligned / f"{path.stem}_{i}.jpg" for i in range(len(found))]
        for p in old - set(written):
            p.unlink(missing_ok=True)
        self._faces_index()[frame_name] = written
        self._redraw_debug(path, image, found)
        self._journal_extracted(frame_name)
        self._unlist(frame_name)
        self._decide(frame_name, ACCEPTED)
        return written

    def skip(self, frame_name: str) -> str | None:
        """Leave ``frame_name`` as it is (files and lists untouched) and move on when it is the current
        frame. Returns the current frame."""
        self._frame_path(frame_name)
        self._decide(frame_name, SKIPPED)
        return self._current

    # --- internals --------------------------------------------------------------------------------
    def _require_current(self) -> str:
        if self._current is None:
            raise FacelabError(f"the manual extraction session of data_{self.side} is finished", "give a frame name")
        return self._current

    def _frame_path(self, frame_name: str) -> Path:
        path = self._paths.get(frame_name)
        if path is None or not path.is_file():
            raise FacelabError(f"no frame {frame_name!r} in {self.ws.frames_dir(self.side)}", "give the name of one of the side's frames (00001.png)")
        return path

    def _as_found(self, face: FoundFace | np.ndarray, i: int, frame_name: str, shape: tuple[int, ...]) -> FoundFace:
        """A checked :class:`FoundFace` for face ``i``: landmarks as extraction checks stored ones."""
        lm, detection = (face.landmarks, face.detection) if isinstance(face, FoundFace) else (face, None)
        try:
            pts = check_landmarks(np.asarray(lm, np.float64).tolist(), "landmarks", shape[1], shape[0])
        except (ValueError, TypeError) as e:
            raise FacelabError(f"face {i} of {frame_name}: {e}", "place the face again: 68 points on the face, inside the frame") from None
        pts32 = np.array(pts, np.float32)  # float32 landmarks (a found face's) come through unchanged
        if detection is None:
            detection = Detection(box_of_landmarks(pts32), 1.0)
        return FoundFace(detection, pts32)

    def _faces_index(self) -> dict[str, list[Path]]:
        """Frame name -> face files cut from it, by each file's ``source_filename`` (read once)."""
        if self._by_frame is None:
            self._by_frame = {}
            for p in self.ws.aligned_paths(self.side):
                try:
                    self._by_frame.setdefault(read_record(p).source_filename, []).append(p)
                except FaceFileError:
                    continue  # not a face: never removed by a manual accept
        return self._by_frame

    def _redraw_debug(self, path: Path, image: np.ndarray, found: list[FoundFace]) -> None:
        """Draw the frame's debug image again when the side keeps debug images (a deleted one is fixed)."""
        done = done_frames(self.ws, self.side)
        debug_dir = self.ws.aligned_debug_dir(self.side)
        if _debug_record(self.ws, self.side).load() is None and not _debug_written(self.ws, self.side, done):
            return
        debug_dir.mkdir(parents=True, exist_ok=True)
        write_image(debug_dir / f"{path.stem}.jpg", draw_debug(image, found, self.settings), 90)
        with _open_debug_log(self.ws, self.side, done) as log:
            log.done(path.name)

    def _journal_extracted(self, frame_name: str) -> None:
        """The frame counts as extracted in the step record (a later ``facelab extract`` skips it); whether
        the extraction had completed stays as it was."""
        record = _record(self.ws, self.side)
        saved = record.load()
        settings = saved.settings if saved is not None and saved.settings else self.settings.output_key()
        record.begin(settings, saved.done if saved is not None else {})
        with record:
            record.done(frame_name)
        if saved is not None and saved.completed:
            record.save(completed=True, summary=saved.summary)

    def _unlist(self, frame_name: str) -> None:
        """The frame leaves ``manual_todo.json`` and ``no_face.txt`` (a person has decided it)."""
        _update_todo(self.ws, self.side, remove={frame_name})
        no_face = self.ws.no_face_list(self.side)
        names = _read_lines(no_face)
        if frame_name in names:
            atomic_write_bytes(no_face, "".join(n + "\n" for n in names if n != frame_name).encode())

    def _decide(self, frame_name: str, status: str) -> None:
        if frame_name in self.frames:
            self._status[frame_name] = status
            if frame_name == self._current:
                self._current = self._next_pending(self.frames.index(frame_name))
        self._save()

    def _next_pending(self, after: int) -> str | None:
        """The first pending frame after index ``after``, else the first pending one from the start."""
        order = self.frames[after + 1:] + self.frames[:after + 1]
        return next((n for n in order if self.status(n) == PENDING), None)

    def _load(self) -> dict[str, Any] | None:
        """The saved session if it is readable and unfinished, else None (a new one starts)."""
        d = _read_json(self.ws.manual_session_path(self.side))
        if not isinstance(d, dict) or d.get("format") != SESSION_FORMAT or d.get("side") != self.side:
            return None
        frames, status, current = d.get("frames"), d.get("status"), d.get("current")
        if not isinstance(frames, list) or not isinstance(status, dict):
            return None
        frames = [n for n in frames if isinstance(n, str) and n in self._paths]
        status = {n: s for n, s in status.items() if n in frames and s in (ACCEPTED, SKIPPED)}
        if all(n in status for n in frames):
            return None
        return {"frames": frames, "status": status, "current": current if isinstance(current, str) else None}

    def _save(self) -> None:
        path = self.ws.manual_session_path(self.side)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"format": SESSION_FORMAT, "side": self.side, "frames": self.frames,
                                 "status": {n: s for n, s in self._status.items() if n in self.frames},
                                 "current": self._current})

__all__ = ["ManualSession", "pending_frames", "side_settings"]
