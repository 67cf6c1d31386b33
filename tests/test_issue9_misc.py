"""Issue 9: signing-key folder permissions, one bitrate unit for `video` and `cut`, the demo's
workspace guard, and the README's count of sort methods."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from facelab.errors import FacelabError, SettingsError
from facelab.provenance import permissions
from facelab.provenance.manifest import KEY_NAME, CHAIN_NAME, signing_identity
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
