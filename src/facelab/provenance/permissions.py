"""Who may change the local signing key: facelab's home, its ``keys`` folder and the key files.

The C2PA signing key (see :mod:`facelab.provenance.manifest`) is only worth something if
nobody else can swap it: another local user who can write the ``keys`` folder (or its
parent) could put their own key there, and facelab would sign with it. So before the key
is made or used (POSIX only; Windows has no such mode bits):

* facelab's home and its ``keys`` folder must be directories owned by the current user
  (or root). Owned by the current user but writable by group or others (e.g. an old
  ``chmod 777``): tightened, home to no group/other write, ``keys`` to 0700, with a
  :class:`KeyPermissionWarning` saying so. Owned by anybody else: refused.
* the folders above home must not be writable by everybody unless they have the sticky
  bit (``/tmp`` has it): otherwise anyone could rename home away and put their own in its
  place. Refused, since facelab should not change folders it does not own. Group-writable
  folders above home are accepted (many systems give each user a group of their own).
* the private key file must be a regular file, not a symbolic link, owned by the current
  user (or root), mode 0600: wider modes of a file owned by the current user are tightened
  to 0600 (with a warning: others may have read the key), anything else is refused. The
  certificate chain is public: it must not be a link or writable by others (tightened to 0644).

Root counts as a trusted owner because root can change any file anyway.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from facelab.errors import FacelabError

__all__ = ["KeyPermissionWarning", "check_chain_file", "check_key_file", "check_key_folders"]


class KeyPermissionWarning(UserWarning):
    """facelab tightened the mode of a signing-key folder or file that others could write."""


def _my_uid() -> int | None:
    """The current user's id, or None where there is none (Windows): then nothing is checked."""
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None and os.name == "posix" else None


def _trusted(st: os.stat_result, uid: int) -> bool:
    return st.st_uid in (uid, 0)


def _tighten(path: Path, st: os.stat_result, mode: int, why: str, uid: int, advice: str = "") -> None:
    """chmod ``path`` to ``mode`` if the current user owns it (and say so); refuse otherwise."""
    old = stat.S_IMODE(st.st_mode)
    if st.st_uid != uid:
        raise FacelabError(
            f"{path} is {why} (mode {old:04o}, owner uid {st.st_uid}) and facelab cannot tighten a folder or file it does not own",
            f"let its owner run `chmod {mode:04o} {path}`, or set FACELAB_HOME to a folder of your own",
        )
    os.chmod(path, mode)
    warnings.warn(f"{path} was {why} (mode {old:04o}): facelab changed it to {mode:04o}{advice}", KeyPermissionWarning, stacklevel=4)


def _check_dir(path: Path, uid: int, forbidden: int, role: str) -> None:
    st = os.stat(path)  # a link to a folder is fine: the folder it points to is what is checked
    if not stat.S_ISDIR(st.st_mode):
        raise FacelabError(f"{path} ({role}) is not a folder", "move it away, or set FACELAB_HOME to another folder")
    if not _trusted(st, uid):
        raise FacelabError(
            f"{path} ({role}) belongs to another user (uid {st.st_uid}), who could swap the signing key",
            "set FACELAB_HOME to a folder of your own, e.g. ~/.facelab",
        )
    if st.st_mode & forbidden:
        _tighten(path, st, stat.S_IMODE(st.st_mode) & ~forbidden, "writable by other users" if st.st_mode & 0o022 else "open to other users", uid)


def _check_above(home: Path) -> None:
    """No folder above ``home`` (as written, and with links resolved) may be world-writable without the sticky bit."""
    above = set(Path(os.path.abspath(home)).parents) | set(home.resolve().parents)
    for folder in sorted(above, key=lambda p: len(p.parts)):
        try:
            st = os.stat(folder)
        except OSError:
            continue  # not there (yet): nothing to swap
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise FacelabError(
                f"{folder} can be written by every user (mode {stat.S_IMODE(st.st_mode):04o}, no sticky bit), "
                f"so anyone could replace the signing key in {home}",
                f"set FACELAB_HOME to a folder only you can write, or `chmod o-w {folder}` if it is yours",
            )


def check_key_folders(home: Path, keys: Path) -> None:
    """Refuse or tighten facelab's ``home`` and its ``keys`` folder (both must exist), see the module doc.

    Raises:
        FacelabError: a folder is owned by another user, is not a folder, or a folder above
            home is writable by everybody without the sticky bit.
    """
    uid = _my_uid()
    if uid is None:
        return
    _check_above(home)
    _check_dir(home, uid, 0o022, "facelab's home")
    _check_dir(keys, uid, 0o077, "the signing-key folder")


def _check_file(path: Path, uid: int, forbidden: int, mode: int, role: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    hint = f"delete {path.parent} to make a new local signing key"
    if stat.S_ISLNK(st.st_mode):
        raise FacelabError(f"{path} ({role}) is a symbolic link (to {os.readlink(path)}); facelab uses only a file of its own there", hint)
    if not stat.S_ISREG(st.st_mode):
        raise FacelabError(f"{path} ({role}) is not a regular file", hint)
    if not _trusted(st, uid):
        raise FacelabError(f"{path} ({role}) belongs to another user (uid {st.st_uid}), who could have swapped it", hint)
    if st.st_mode & forbidden:
        why = "writable by other users" if st.st_mode & 0o022 else "readable by other users"
        advice = f"; if you do not trust them, delete {path.parent} to make a new key" if forbidden & 0o044 else ""
        _tighten(path, st, mode, why, uid, advice)


def check_key_file(path: Path) -> None:
    """The private key: a regular file of the current user (or root), not a link, mode 0600
    (a wider mode is tightened if the file is the current user's). Absent: nothing to check.

    Raises:
        FacelabError: a link, not a regular file, or owned by another user.
    """
    uid = _my_uid()
    if uid is not None:
        _check_file(path, uid, 0o077, 0o600, "the private signing key")


def check_chain_file(path: Path) -> None:
    """The certificate chain (public): not a link, not writable by others (tightened to 0644 if it is the user's)."""
    uid = _my_uid()
    if uid is not None:
        _check_file(path, uid, 0o022, 0o644, "the signing certificate chain")
