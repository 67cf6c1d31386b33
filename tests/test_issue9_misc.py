"""Issue 9: signing-key folder permissions, one bitrate unit for `video` and `cut`, the demo's
workspace guard, and the README's count of sort methods."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from facelab.errors import FacelabError, SettingsError
from facelab.provenance import permissions
from facelab.provenance.manifest import KEY_NAME, signing_identity
from facelab.provenance.permissions import KeyPermissionWarning

ROOT = Path(__file__).resolve().parents[1]


# --- 8: the signing-key folder ------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _owned_by_someone_else(path: Path, monkeypatch) -> None:
    """Make ``path`` belong to another user: chown as root, else pretend to be another user."""
    if os.getuid() == 0:
        os.chown(path, 4242, 4242, follow_symlinks=False)
    else:
        monkeypatch.setattr(permissions, "_my_uid", lambda: os.getuid() + 1000)


def test_wide_keys_folder_is_tightened_and_said(home):
    (home / "keys").mkdir(parents=True)
    os.chmod(home / "keys", 0o777)
    os.chmod(home, 0o777)
    with pytest.warns(KeyPermissionWarning) as caught:
        key, chain = signing_identity()
    assert _mode(home / "keys") == 0o700
    assert _mode(home) == 0o755  # group/other write removed, nothing else changed
    said = sorted(str(w.message) for w in caught)
    assert said == [f"{home} was writable by other users (mode 0777): facelab changed it to 0755",
                    f"{home / 'keys'} was writable by other users (mode 0777): facelab changed it to 0700"]
    assert _mode(key) == 0o600 and key.is_file() and chain.is_file()


def test_wide_key_file_is_tightened(home):
    key, _ = signing_identity()
    os.chmod(key, 0o666)
    with pytest.warns(KeyPermissionWarning, match=r"writable by other users \(mode 0666\).*0600"):
        signing_identity()
    assert _mode(key) == 0o600


def test_good_modes_give_no_warning(home, recwarn):
    signing_identity()
    signing_identity()
    assert not [w for w in recwarn if issubclass(w.category, KeyPermissionWarning)]


def test_keys_folder_of_another_user_is_refused(home, monkeypatch):
    (home / "keys").mkdir(parents=True, mode=0o700)
    _owned_by_someone_else(home / "keys", monkeypatch)
    with pytest.raises(FacelabError, match="belongs to another user") as e:
        signing_identity()
    assert "FACELAB_HOME" in e.value.hint
    assert not (home / "keys" / KEY_NAME).exists()  # no key made in a folder someone else controls


def test_wide_keys_folder_of_another_user_is_refused_not_tightened(home, monkeypatch):
    if os.getuid() != 0:
        pytest.skip("needs root to give the folder to another uid")
    home.mkdir()
    os.chmod(home, 0o777)
    os.chown(home, 4242, 4242)
    with pytest.raises(FacelabError, match="another user"):
        signing_identity()
    assert _mode(home) == 0o777


def test_key_file_of_another_user_is_refused(home, monkeypatch):
    key, _ = signing_identity()
    if os.getuid() != 0:
        pytest.skip("needs root to give the file to another uid")
    os.chown(key, 4242, 4242)
    with pytest.raises(FacelabError, match="private signing key.*belongs to another user"):
        signing_identity()


def test_key_file_symlink_is_refused(home, tmp_path):
    key, _ = signing_identity()
    elsewhere = tmp_path / "elsewhere.pem"
    key.rename(elsewhere)
    key.symlink_to(elsewhere)
    with pytest.raises(FacelabError, match="symbolic link") as e:
        signing_identity()
    assert "delete" in e.value.hint


def test_world_writable_folder_above_home_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("FACELAB_HOME", str(shared / "home"))
    with pytest.raises(FacelabError, match="written by every user") as e:
        signing_identity()
    assert "FACELAB_HOME" in e.value.hint
    # with the sticky bit (like /tmp) nobody can rename another user's folder away: accepted
    os.chmod(shared, 0o1777)
    key, _ = signing_identity()
    assert key.is_file()


# --- 15: one bitrate unit for `video` and `cut` ---------------------------------------------


@pytest.mark.parametrize(("given", "bps"), [
    ("8", 8_000_000), (8, 8_000_000), (2.5, 2_500_000), (" 2.5 ", 2_500_000), ("8M", 8_000_000), ("8m", 8_000_000),
    ("800k", 800_000), ("800K", 800_000), ("8 Mbit/s", 8_000_000), ("800kbps", 800_000), ("800000bps", 800_000),
    ("0.01", 10_000), ("1000", 1_000_000_000),
])
def test_parse_bitrate_bare_numbers_are_megabits(given, bps):
    from facelab.media import parse_bitrate

    assert parse_bitrate(given) == bps


@pytest.mark.parametrize("given", ["fast", "8x", "", "-1", "0", "8MB", "2000", "5k", True, float("nan")])
def test_parse_bitrate_bad_values_name_the_option(given):
    from facelab.media import parse_bitrate

    with pytest.raises(SettingsError, match=r"^cut --bitrate ") as e:
        parse_bitrate(given, "cut --bitrate")
    assert "megabits" in e.value.hint


def _video_bits_per_second(path: Path) -> float:
    """Bits of the video stream's packets per second of video."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [p for p in c.demux(s) if p.size]
        n_frames = len(packets)
        return sum(p.size for p in packets) * 8 / (n_frames / float(s.average_rate))


@pytest.fixture(scope="module")
def short_dst(tmp_path_factory) -> Path:
    """The first 1.2 s (30 frames) of the shipped GRID clip (360x288, 25 fps) as H.264 MP4."""
    from facelab.media import iter_frames_between, write_video
    from tests.conftest import SAMPLE_DST

    clip = tmp_path_factory.mktemp("short_dst") / "grid.mp4"
    write_video((img for _, img in iter_frames_between(SAMPLE_DST, 0.0, 1.2)), clip, 25, crf=0)
    return clip


def test_cut_bitrate_8_is_8_megabits(short_dst, tmp_path):
    from typer.testing import CliRunner

    from facelab.cli import app

    rates = {}
    for rate in ("8", "0.2"):
        video = tmp_path / f"r{rate}.mp4"
        video.write_bytes(short_dst.read_bytes())
        res = CliRunner().invoke(app, ["cut", str(video), "--from", "0", "--to", "1", "--bitrate", rate])
        assert res.exit_code == 0, (res.output, res.exception)
        rates[rate] = _video_bits_per_second(tmp_path / f"r{rate}_cut.mp4")
    assert rates["8"] > 2_000_000 > 400_000 > rates["0.2"], rates
    res = CliRunner().invoke(app, ["cut", str(video), "--from", "0", "--to", "1", "--bitrate", "8 parsecs"])
    assert isinstance(res.exception, SettingsError) and "cut --bitrate" in res.exception.message


def test_video_bitrate_8_is_8_megabits(short_dst, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.stages import frames as frames_stage
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.create()
    shutil.copy(short_dst, ws.root / "data_dst.mp4")
    frames_stage.run(ws, "dst")
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for p in ws.frame_paths("dst"):
        shutil.copy(p, ws.merged_dir / p.name)
    sizes = {}
    for rate in ("8", "0.2"):
        res = CliRunner().invoke(app, ["-w", str(ws.root), "video", "--bitrate", rate, "--force"])
        assert res.exit_code == 0, (res.output, res.exception)
        sizes[rate] = _video_bits_per_second(ws.result_path("mp4"))
    assert sizes["8"] > 2_000_000 > 400_000 > sizes["0.2"], sizes
    res = CliRunner().invoke(app, ["-w", str(ws.root), "video", "--bitrate", "8x"])
    assert isinstance(res.exception, SettingsError) and "video --bitrate" in res.exception.message


# --- 20: the demo's workspace guard -----------------------------------------------------------


class _Reached(Exception):
    """Raised by a stubbed step: the demo got past its workspace check."""


@pytest.fixture()
def no_steps(monkeypatch):
    """The demo's first step fails loudly, so a test runs only the workspace handling."""
    from facelab.stages import frames

    def reached(*args, **kwargs):
        raise _Reached()

    monkeypatch.setattr(frames, "run", reached)


def _demo_ws(tmp_path: Path):
    from facelab.stages import demo
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "workspace")
    demo.prepare(ws)
    return ws


def test_demo_refuses_a_workspace_with_the_users_videos(tmp_path, short_dst, no_steps, marker):
    from facelab.errors import WorkspaceError
    from facelab.stages import demo
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "workspace")
    ws.create()
    mine = ws.root / "data_dst.mp4"
    mine.write_bytes(short_dst.read_bytes())
    for force in (False, True):
        with pytest.raises(WorkspaceError, match="not the demo's sample clip") as e:
            demo.run(ws, force=force, marker=marker)
        assert "-w demo_workspace" in e.value.hint
    assert mine.read_bytes() == short_dst.read_bytes()
    assert sorted(p.name for p in ws.root.iterdir()) == ["data_dst", "data_dst.mp4", "data_src", "model"]
    # a demo workspace whose input the user replaced is refused too
    ws2 = _demo_ws(tmp_path / "two")
    (ws2.root / "data_src.mp4").write_bytes(short_dst.read_bytes())
    with pytest.raises(WorkspaceError, match="data_src.mp4 is not the demo's sample clip"):
        demo.run(ws2, marker=marker)


def test_demo_refuses_a_workspace_with_other_files_even_with_force(tmp_path, no_steps, marker):
    from facelab.errors import WorkspaceError
    from facelab.stages import demo
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "workspace")
    ws.create()
    face = ws.aligned_dir("src") / "00001_0.jpg"
    face.write_bytes(b"a face of the user's")
    model = ws.model_dir("mine")
    model.mkdir()
    (model / "weights.safetensors").write_bytes(b"weeks of training")
    for force in (False, True):
        with pytest.raises(WorkspaceError, match="not the demo's") as e:
            demo.run(ws, force=force, marker=marker)
        assert "demo_workspace" in e.value.hint
    assert face.is_file() and (model / "weights.safetensors").is_file()
    assert not (ws.root / demo.MARKER).exists() and not list(ws.root.glob("data_*.*"))


def test_demo_workspace_new_resumed_and_started_over(tmp_path, no_steps, marker):
    from facelab.stages import demo
    from facelab.workspace import Workspace

    # a fresh folder (the README's `facelab demo` on a fresh clone) and an empty layout are the demo's to take
    for ws in (Workspace(tmp_path / "fresh"), Workspace(tmp_path / "layout")):
        if ws.root.name == "layout":
            ws.create()
        assert demo.check_workspace(ws) is False
        with pytest.raises(_Reached):
            demo.run(ws, marker=marker)
        assert (ws.root / "data_src.mp4").read_bytes() == demo.sample_path(demo.SAMPLE_SRC).read_bytes()
        assert (ws.root / "data_dst.mpg").read_bytes() == demo.sample_path(demo.SAMPLE_DST).read_bytes()
        assert json.loads((ws.root / demo.MARKER).read_text())["trained_minutes"] == 0
    # run again: the demo's own work is kept (resume)
    frame = ws.frames_dir("dst") / "00001.png"
    frame.write_bytes(b"frame")
    assert demo.check_workspace(ws) is True
    with pytest.raises(_Reached):
        demo.run(ws, marker=marker)
    assert frame.is_file()
    # force: the demo's work goes, its inputs and marker stay
    with pytest.raises(_Reached):
        demo.run(ws, force=True, marker=marker)
    assert not frame.exists() and (ws.root / "data_src.mp4").is_file() and (ws.root / demo.MARKER).is_file()
    assert demo.check_workspace(ws) is False


def test_demo_accepts_an_earlier_versions_demo_workspace(tmp_path, no_steps, marker):
    """Earlier versions wrote the marker only after training, with the training done: kept."""
    import shutil

    from facelab.stages import demo
    from facelab.workspace import Workspace

    ws = Workspace(tmp_path / "workspace")
    ws.create()
    shutil.copyfile(demo.sample_path(demo.SAMPLE_SRC), ws.root / "data_src.mp4")
    shutil.copyfile(demo.sample_path(demo.SAMPLE_DST), ws.root / "data_dst.mpg")
    assert demo.check_workspace(ws) is False  # only the samples: nothing to lose
    (ws.root / demo.MARKER).write_text('{"trained_minutes": 5}')
    (ws.model_dir("quick")).mkdir()
    (ws.model_dir("quick") / "weights.safetensors").write_bytes(b"w")
    assert demo.check_workspace(ws) is True
    with pytest.raises(_Reached):
        demo.run(ws, marker=marker)
    assert json.loads((ws.root / demo.MARKER).read_text())["trained_minutes"] == 5


@pytest.mark.parametrize("done, min_iterations, more", [
    (2500, 2000, None),  # a fast CPU: the budget alone
    (1500, 2000, 500 * 300 / 1500 / 60),  # a slow one: on at the measured rate (1.67 min)
    (900, 2000, 5.0),  # so slow that the estimate passes the cap: at most --minutes more
    (900, 0, None),  # 0: strictly --minutes
])
def test_demo_trains_on_towards_min_iterations_on_a_slow_cpu(tmp_path, monkeypatch, marker, done, min_iterations, more):
    from facelab.stages import Summary, demo, extract, frames, merge, train, video

    calls, lines, reported = [], [], []
    monkeypatch.setattr(frames, "run", lambda *a, **k: Summary(step="frames"))
    monkeypatch.setattr(extract, "run", lambda *a, **k: Summary(step="extract"))
    monkeypatch.setattr(merge, "run", lambda *a, **k: Summary(step="merge"))
    monkeypatch.setattr(video, "run", lambda *a, **k: Summary(step="video"))

    def fake_train(ws, settings, log, marker):
        calls.append(settings.minutes)
        total = done if len(calls) == 1 else min_iterations
        unsettled = [f"quick at iteration {total}: {train.UNSETTLED} 1800 ...; `facelab train` again continues this model"]
        return Summary(step="train", counts={"iteration": total}, seconds=300.0, warnings=unsettled if total < 1800 else [])

    monkeypatch.setattr(train, "run", fake_train)
    ws = _demo_ws(tmp_path)
    demo.run(ws, minutes=5.0, min_iterations=min_iterations, report=reported.append, log=lines.append, marker=marker)
    assert calls[0] == 5.0 and calls[1:] == ([] if more is None else [pytest.approx(more)])
    assert any("slow CPU" in line for line in lines) == (more is not None)
    # the advice to train again is left out where the demo trains on itself, and kept where it stops there
    first = next(s for s in reported if s.step == "train")
    assert any(train.UNSETTLED in w for w in first.warnings) == (done < 1800 and more is None)
    assert json.loads((ws.root / demo.MARKER).read_text())["trained_minutes"] == 5.0


def _demo_cli(monkeypatch, ws_root: Path, *args, input=None, tty=False):
    import typer.testing
    from typer.testing import CliRunner

    from facelab.cli import app
    from facelab.stages import demo

    calls = []
    monkeypatch.setattr(demo, "run", lambda ws, **kw: calls.append(kw) or ws.result_path("mp4"))
    if tty:  # the runner's stdin stands in for a terminal
        monkeypatch.setattr(typer.testing._NamedTextIOWrapper, "isatty", lambda self: True)
    res = CliRunner().invoke(app, ["-w", str(ws_root), "demo", *args], input=input)
    return res, calls


def test_demo_force_asks_before_deleting(tmp_path, monkeypatch):
    ws = _demo_ws(tmp_path)
    frame = ws.frames_dir("dst") / "00001.png"
    frame.write_bytes(b"frame")
    # no terminal, no --yes: refused before anything runs
    res, calls = _demo_cli(monkeypatch, ws.root, "--force")
    assert isinstance(res.exception, FacelabError) and "without confirmation" in res.exception.message
    assert "--yes" in res.exception.hint and calls == [] and frame.is_file()
    # a terminal: asked; "n" aborts, "y" goes on
    res, calls = _demo_cli(monkeypatch, ws.root, "--force", input="n\n", tty=True)
    assert res.exit_code != 0 and "start over?" in res.output and calls == []
    res, calls = _demo_cli(monkeypatch, ws.root, "--force", input="y\n", tty=True)
    assert res.exit_code == 0 and calls and calls[0]["force"] is True
    # --yes: not asked
    res, calls = _demo_cli(monkeypatch, ws.root, "--force", "--yes")
    assert res.exit_code == 0 and "start over?" not in res.output and calls[0]["force"] is True
    # without --force nothing is asked (the demo continues)
    res, calls = _demo_cli(monkeypatch, ws.root)
    assert res.exit_code == 0 and calls[0]["force"] is False


def test_demo_force_on_a_foreign_workspace_is_refused_not_asked(tmp_path, monkeypatch):
    from facelab.errors import WorkspaceError

    root = tmp_path / "workspace"
    (root / "model" / "mine").mkdir(parents=True)
    (root / "model" / "mine" / "weights.safetensors").write_bytes(b"w")
    res, calls = _demo_cli(monkeypatch, root, "--force", "--yes")
    assert isinstance(res.exception, WorkspaceError) and calls == []
    assert (root / "model" / "mine" / "weights.safetensors").is_file()


# --- 23: the README counts the sort methods there are ----------------------------------------


def test_readme_counts_the_sort_methods():
    from facelab.faceset.sort import METHODS

    said = re.findall(r"\((\d+) methods\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert said and all(int(n) == len(METHODS) for n in said), (said, len(METHODS))
