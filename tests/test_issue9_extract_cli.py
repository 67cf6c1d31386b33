"""Issue 9, extraction and frames side: every documented option does what it says, bad input never crashes.

Real frames only: the shipped GRID clip (one speaker), a frame without a face
(a corner of the astronaut photo) and a group photo from the shared test data.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from facelab.errors import FacelabError, SettingsError
from facelab.faceimage import read_face, read_record
from facelab.stages import extract
from facelab.steprecord import read_journal
from facelab.workspace import Workspace
from tests.conftest import SAMPLE_DST, shared

ROOT = Path(__file__).resolve().parents[1]


def cli(ws: Workspace | Path, *args: str):
    from facelab.cli import app

    root = ws.root if isinstance(ws, Workspace) else ws
    return CliRunner().invoke(app, ["-w", str(root), *args])


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run facelab's real entry point (``cli.main``, which prints user errors) in-process."""
    from facelab.cli import main

    monkeypatch.setattr(sys, "argv", ["facelab", *args])
    with pytest.raises(SystemExit) as e:
        main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["FACELAB_QUIET"] = "1"
    return env


# --- point 7: --redo-deleted-debug re-extracts, never deletes a face before its replacement exists ----------


def test_redo_deleted_debug_reextracts_with_the_options_given(ws8):
    r = cli(ws8, "extract", "dst", "--size", "128", "--debug")
    assert r.exit_code == 0, r.output
    debug = ws8.aligned_debug_dir("dst")
    (debug / "00003.jpg").unlink()  # a bad face: extract it again as a whole face
    (debug / "00008.jpg").unlink()  # no face was found there
    before_other = (ws8.aligned_dir("dst") / "00005_0.jpg").read_bytes()

    r = cli(ws8, "extract", "dst", "--redo-deleted-debug", "--face-type", "whole")
    assert r.exit_code == 0, r.output
    assert "re-extracted: 1" in r.output and "not found (old faces kept): 1" in r.output
    img, rec = read_face(ws8.aligned_dir("dst") / "00003_0.jpg")
    # the option given is used; the size left out keeps the existing faces' 128 px
    assert rec.face_type == "whole" and img.shape == (128, 128, 3) and rec.source_filename == "00003.png"
    assert (debug / "00003.jpg").exists()  # ready to be reviewed again
    assert (ws8.aligned_dir("dst") / "00005_0.jpg").read_bytes() == before_other  # other frames untouched
    assert len(ws8.aligned_paths("dst")) == 7
    # the frame where nothing was found stays listed (and without debug image, so it can be retried)
    todo = json.loads((ws8.state_dir("dst") / "manual_todo.json").read_text())
    assert todo["frames"] == ["00008.png"] and "found no face" in todo["reasons"]["00008.png"]
    assert not (debug / "00008.jpg").exists()
    # the recorded settings of the set are not changed by the redo
    assert extract.recorded_settings(ws8, "dst")["face_type"] == "full"
    # nothing left to redo: a second run changes nothing
    again = extract.redo_deleted_debug(ws8, "dst", extract.ExtractSettings(size=128))
    assert again.counts["re-extracted"] == 0 and again.counts["not found (old faces kept)"] == 1


def test_redo_keeps_old_faces_when_nothing_is_found_or_a_write_fails(ws8, monkeypatch):
    extract.run(ws8, "dst", extract.ExtractSettings(size=128, debug=True))
    for stem in ("00002", "00004"):
        (ws8.aligned_debug_dir("dst") / f"{stem}.jpg").unlink()
    old = {p.name: p.read_bytes() for p in ws8.aligned_paths("dst")}
    # a detector threshold of 1.0 finds nothing on real faces: the old faces must stay
    s = extract.redo_deleted_debug(ws8, "dst", extract.ExtractSettings(size=128, min_score=1.0))
    assert s.counts["not found (old faces kept)"] == 2 and s.warnings
    assert {p.name: p.read_bytes() for p in ws8.aligned_paths("dst")} == old
    assert extract.deleted_debug_frames(ws8, "dst") == ["00002.png", "00004.png"]  # still to do

    # the replacement write fails (disk full ...): the old face is still there
    def failing_write(*a, **k):
        raise FacelabError("disk full while writing (simulated)", "free some space")

    monkeypatch.setattr(extract, "_write_face", failing_write)
    with pytest.raises(FacelabError, match="disk full"):
        extract.redo_deleted_debug(ws8, "dst", extract.ExtractSettings(size=128))
    assert {p.name: p.read_bytes() for p in ws8.aligned_paths("dst")} == old
    assert extract.deleted_debug_frames(ws8, "dst") == ["00002.png", "00004.png"]  # still to do


def test_redo_removes_old_faces_only_after_their_replacement(tmp_path):
    """A group photo where the user wants one face: --max-faces 1 replaces face 0 and then drops faces 1.."""
    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(shared("group/multi_face.jpg"), ws.frames_dir("dst") / "00001.jpg")
    extract.run(ws, "dst", extract.ExtractSettings(size=128, debug=True))
    before = ws.aligned_paths("dst")
    assert len(before) >= 3
    (ws.aligned_debug_dir("dst") / "00001.jpg").unlink()
    order: list[str] = []
    real_unlink = Path.unlink

    def watch_unlink(self, *a, **k):
        if self.parent == ws.aligned_dir("dst"):
            order.append(f"delete {self.name}")
        return real_unlink(self, *a, **k)

    real_write = extract._write_face

    def watch_write(image, found, index, frame, aligned, settings):
        order.append(f"write {frame.stem}_{index}.jpg")
        return real_write(image, found, index, frame, aligned, settings)

    mp = pytest.MonkeyPatch()
    mp.setattr(Path, "unlink", watch_unlink)
    mp.setattr(extract, "_write_face", watch_write)
    try:
        s = extract.redo_deleted_debug(ws, "dst", extract.ExtractSettings(size=128, max_faces=1))
    finally:
        mp.undo()
    assert [p.name for p in ws.aligned_paths("dst")] == ["00001_0.jpg"]
    assert s.counts["old faces removed"] == len(before) - 1
    assert order[0] == "write 00001_0.jpg" and all(o.startswith("delete") for o in order[1:])


# --- point 16: --debug on a finished extraction draws the missing debug images without re-extracting --------


def test_debug_on_finished_extraction_draws_from_the_faces(ws8, monkeypatch):
    r = cli(ws8, "extract", "dst", "--size", "128")
    assert r.exit_code == 0, r.output
    assert not list(ws8.aligned_debug_dir("dst").glob("*.jpg"))

    def no_detection(*a, **k):
        raise AssertionError("--debug on a finished extraction must not detect again")

    monkeypatch.setattr(extract, "find_faces", no_detection)
    r = cli(ws8, "extract", "dst", "--debug")  # --size left out: the existing faces' 128 is kept
    assert r.exit_code == 0, r.output
    assert "debug images drawn from the faces: 8" in r.output
    debug = ws8.aligned_debug_dir("dst")
    assert sorted(p.name for p in debug.glob("*.jpg")) == [f"{i:05d}.jpg" for i in range(1, 9)]
    # the drawing sits on the stored landmarks: green dots there, the frame elsewhere
    rec = read_record(ws8.aligned_dir("dst") / "00001_0.jpg")
    drawn = cv2.imread(str(debug / "00001.jpg"))
    frame = cv2.imread(str(ws8.frames_dir("dst") / "00001.png"))
    x, y = np.round(rec.source_landmarks[30]).astype(int)  # nose tip
    b, g, rr = drawn[y, x].astype(int)
    assert g > 150 and g > b + 60 and g > rr + 60
    assert np.abs(drawn[:20, :20].astype(int) - frame[:20, :20]).mean() < 6  # a corner far from the face
    no_face = cv2.imread(str(debug / "00008.jpg"))
    assert np.abs(no_face.astype(int) - cv2.imread(str(ws8.frames_dir("dst") / "00008.png"))).mean() < 6

    # a debug image the user deletes is a frame marked for --redo-deleted-debug: not drawn again
    (debug / "00004.jpg").unlink()
    s = extract.run(ws8, "dst", extract.ExtractSettings(size=128, debug=True))
    assert not (debug / "00004.jpg").exists()
    assert any("--redo-deleted-debug" in w for w in s.warnings)
    assert extract.deleted_debug_frames(ws8, "dst") == ["00004.png"]


# --- point 21: facelab frames --video FILE ----------------------------------------------------------------


def test_frames_accepts_any_video_file(tmp_path, monkeypatch, capsys):
    clip = tmp_path / "elsewhere" / "my speaker clip.mpg"
    clip.parent.mkdir()
    shutil.copy(SAMPLE_DST, clip)
    ws = Workspace(tmp_path / "ws")
    ws.create()
    r = cli(ws, "frames", "dst", "--video", str(clip))
    assert r.exit_code == 0, r.output
    assert len(ws.frame_paths("dst")) == 75
    from facelab.stages import frames as frames_stage

    record = frames_stage.read_record(ws, "dst")
    assert record["video"] == clip.name and record["video_path"] == str(clip.resolve()) and record["completed"]
    assert "skipped" in cli(ws, "frames", "dst", "--video", str(clip)).output  # finished: not decoded again
    # a missing file is one line, exit 2
    code, _, err = run_main(monkeypatch, capsys, "-w", str(ws.root), "frames", "src", "--video", str(tmp_path / "nope.mp4"))
    assert code == 2 and "nope.mp4" in err and "Traceback" not in err


# --- point 22: --device -----------------------------------------------------------------------------------


def _has_cuda_provider() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_device_cpu_and_auto(dst_frames):
    from facelab.detect import create_detector

    frame = cv2.imread(str(dst_frames[0]))
    cpu = create_detector("retinaface", threads=2, device="cpu")
    assert cpu.device == "cpu" and cpu.session.get_providers() == ["CPUExecutionProvider"]
    found = cpu(frame)
    assert len(found) == 1
    if _has_cuda_provider():
        pytest.skip("ONNX Runtime has CUDA here: auto picks the GPU")
    auto = create_detector("retinaface", threads=2, device="auto")
    assert auto.device == "cpu"  # no GPU here: auto falls back to the CPU
    assert np.allclose(auto(frame)[0].box, found[0].box, atol=1e-3)


def test_extract_runs_on_the_device_asked(ws8):
    s = extract.run(ws8, "dst", extract.ExtractSettings(size=128, device="cpu"))
    assert s.step == "extract dst (cpu)" and s.counts["faces"] == 7
    # the device does not change the faces: another device resumes without --force
    assert extract.run(ws8, "dst", extract.ExtractSettings(size=128, device="auto")).counts["skipped (already done)"] == 8


def test_device_cuda_without_a_gpu_is_a_clear_error(ws8, monkeypatch, capsys):
    if _has_cuda_provider():
        pytest.skip("this machine has ONNX Runtime with CUDA")
    code, _, err = run_main(monkeypatch, capsys, "-w", str(ws8.root), "extract", "dst", "--size", "128", "--device", "cuda")
    assert code == 2 and "Traceback" not in err
    assert "device='cuda'" in err and "no CUDA GPU" in err and "onnxruntime-gpu" in err
    assert len(err.strip().splitlines()) == 1
    assert not ws8.aligned_paths("dst")
    code, _, err = run_main(monkeypatch, capsys, "-w", str(ws8.root), "extract", "dst", "--device", "gpu0")
    assert code == 2 and "is not a device" in err and "cuda:N" in err


def test_device_names_map_to_onnx_providers():
    from facelab.detect import onnx_providers, parse_device

    cuda_here = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu", cuda_here) == ["CPUExecutionProvider"]
    assert onnx_providers("cuda:1", cuda_here)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert onnx_providers("auto", cuda_here)[0][0] == "CUDAExecutionProvider"
    assert onnx_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(SettingsError, match="no CUDA GPU"):
        onnx_providers("cuda", ["CPUExecutionProvider"])
    assert parse_device(" CUDA ") == "cuda:0"
    for bad in ("gpu", "cuda:", "cuda:-1", "all", ""):
        with pytest.raises(SettingsError, match="not a device"):
            extract.ExtractSettings(device=bad)


# --- point 9: read-only workspace and Ctrl+C ---------------------------------------------------------------


def test_write_errors_map_to_one_line_hints(tmp_path):
    from facelab.fileio import write_error

    for code, words in ((errno.EROFS, "read-only"), (errno.EACCES, "permission denied"), (errno.ENOSPC, "disk full"),
                        (errno.EDQUOT, "quota")):
        e = write_error(OSError(code, os.strerror(code), str(tmp_path / "x.png")))
        assert isinstance(e, FacelabError) and words in e.message and "x.png" in e.message and e.hint
    assert write_error(OSError(errno.ENOENT, "No such file")) is None  # not the user's to fix: a bug keeps its traceback


@pytest.fixture()
def read_only(monkeypatch):
    """Make writes under a folder fail as on a read-only file system, at the real call sites:
    ``Path.mkdir`` and the ``open`` of :mod:`facelab.fileio` (every atomic write)."""
    import facelab.fileio as fileio

    roots: list[Path] = []

    def under(p) -> bool:
        p = Path(p).resolve()
        return any(p == r or r in p.parents for r in roots)

    real_mkdir = Path.mkdir

    def mkdir(self, mode=0o777, parents=False, exist_ok=False):
        if under(self) and not (exist_ok and self.is_dir()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, mode, parents, exist_ok)

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and under(file):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return open(file, mode, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(fileio, "open", open_, raising=False)
    return roots.append


def _one_line_read_only(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "read-only file system" in err and "writable" in err
    assert len(err.strip().splitlines()) == 1, err


def test_read_only_workspace_is_one_line(tmp_path, ws8, sample_faces_ws, read_only, monkeypatch, capsys):
    empty = tmp_path / "ro_empty"
    empty.mkdir()
    read_only(empty)
    _one_line_read_only(*run_main(monkeypatch, capsys, "-w", str(empty), "workspace")[::2])

    with_video = Workspace(tmp_path / "ro_video")
    with_video.create()
    shutil.copy(SAMPLE_DST, with_video.root / "data_dst.mpg")
    read_only(with_video.root)
    _one_line_read_only(*run_main(monkeypatch, capsys, "-w", str(with_video.root), "frames", "dst")[::2])

    read_only(ws8.root)
    _one_line_read_only(*run_main(monkeypatch, capsys, "-w", str(ws8.root), "extract", "dst", "--size", "128")[::2])

    from facelab.faceset import dfl

    dfl_dir = tmp_path / "dfl_set"
    dfl.export_dfl(sample_faces_ws.aligned_paths("src")[:2], dfl_dir)
    target = Workspace(tmp_path / "ro_import")
    target.create()
    read_only(target.root)
    _one_line_read_only(*run_main(monkeypatch, capsys, "-w", str(target.root), "faceset", "import-dfl", str(dfl_dir))[::2])


def _can_mount_read_only(tmp_path: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    d = tmp_path / "probe"
    d.mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount --bind "{d}" "{d}" && mount -o remount,bind,ro "{d}" && ! touch "{d}/x"'],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def test_read_only_mount_is_one_line(tmp_path, dst_frames, sample_faces_ws):
    """The same on a real read-only bind mount (a user namespace; skipped where that is not allowed)."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("cannot make a read-only bind mount here (unshare -rm)")
    from facelab.faceset import dfl

    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(SAMPLE_DST, ws.root / "data_dst.mpg")
    for p in dst_frames[:2]:
        shutil.copy(p, ws.frames_dir("src") / p.name)
    dfl_dir = tmp_path / "dfl_set"
    dfl.export_dfl(sample_faces_ws.aligned_paths("src")[:2], dfl_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    for root, args in ((empty, ["workspace"]), (ws.root, ["frames", "dst"]), (ws.root, ["extract", "src", "--size", "128"]),
                       (ws.root, ["faceset", "import-dfl", str(dfl_dir), "--to", "dst"])):
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        r = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(root), sys.executable, "-m", "facelab", "-w", str(root), *args],
                           capture_output=True, text=True, timeout=120, env=child_env())
        _one_line_read_only(r.returncode, r.stderr)
    assert not ws.aligned_paths("src") and not ws.frame_paths("dst")


def test_unknown_os_error_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    """Only errors the user can fix become one line; anything else is a bug."""
    import facelab.workspace as workspace

    def broken(self):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(workspace.Workspace, "create", broken)
    monkeypatch.setattr(sys, "argv", ["facelab", "-w", str(tmp_path / "w"), "workspace"])
    from facelab.cli import main

    with pytest.raises(OSError, match="Input/output"):
        main()


def _interrupt(cmd_script: str, ready, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``cmd_script`` (python) in a child with the default SIGINT handler, send SIGINT once ``ready()``."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(cmd_script))
    # a test run started in the background inherits SIGINT ignored: give the child the default handler, as a terminal would
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before it could be interrupted: " + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_during_extract_says_what_was_kept(tmp_path, dst_frames):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    for p in dst_frames[:16]:
        shutil.copy(p, ws.frames_dir("dst") / p.name)
    journal = extract._record(ws, "dst").journal_path
    # each frame is slowed down so that the interrupt lands in the middle of the run
    child = f"""
        import sys, time
        from facelab.stages import extract
        real = extract.find_faces
        def slow(*a, **k):
            time.sleep(0.3)
            return real(*a, **k)
        extract.find_faces = slow
        sys.argv = ["facelab", "-w", {str(ws.root)!r}, "extract", "dst", "--size", "128"]
        from facelab.cli import main
        main()
    """
    r = _interrupt(child, lambda: len(read_journal(journal)) >= 2, tmp_path)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and "interrupted:" in r.stderr
    done = len(extract.done_frames(ws, "dst"))
    assert f"{done} of 16 frames" in r.stderr and "facelab extract dst" in r.stderr and "again" in r.stderr
    assert 2 <= done < 16
    s = extract.run(ws, "dst", extract.ExtractSettings(size=128))
    assert s.counts["skipped (already done)"] == done and len(ws.aligned_paths("dst")) == 16


def test_ctrl_c_during_frames_says_what_was_kept(tmp_path):
    from facelab.stages import frames

    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(SAMPLE_DST, ws.root / "data_dst.mpg")
    child = f"""
        import sys, time
        from facelab.stages import frames
        real = frames.write_image
        def slow(*a, **k):
            time.sleep(0.1)
            return real(*a, **k)
        frames.write_image = slow
        sys.argv = ["facelab", "-w", {str(ws.root)!r}, "frames", "dst"]
        from facelab.cli import main
        main()
    """
    r = _interrupt(child, lambda: len(ws.frame_paths("dst")) >= 3, tmp_path)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and "interrupted:" in r.stderr
    kept = len(ws.frame_paths("dst"))
    assert f"{kept} frames are kept" in r.stderr and "facelab frames dst" in r.stderr
    assert 3 <= kept < 75
    s = frames.run(ws, "dst")
    assert s.counts["resumed"] == kept and s.counts["frames"] == 75


# --- point 23: docs and hints -------------------------------------------------------------------------------


def test_several_videos_hint_names_the_side(tmp_path):
    ws = Workspace(tmp_path)
    for name in ("data_src.mp4", "data_src.mkv"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(FacelabError) as e:
        ws.find_video("src")
    assert e.value.hint == "keep only one data_src.*"


def test_extraction_doc_names_the_real_frames_folder(tmp_path):
    doc = (ROOT / "docs" / "extraction.md").read_text()
    ws = Workspace(tmp_path)
    frames_rel = ws.frames_dir("src").relative_to(ws.root).as_posix().replace("src", "<side>")
    assert "data_<side>/frames" not in doc
    assert f"`{frames_rel}/`" in doc
    for option in ("--device", "--redo-deleted-debug", "--debug"):
        assert option in doc
