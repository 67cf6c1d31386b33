"""Errors a user can act on.

Anything raised as :class:`FacelabError` is printed by the CLI as one line
(plus a hint) without a traceback; every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations


class FacelabError(Exception):
    """An error caused by input, settings or the workspace, with a hint on what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class WorkspaceError(FacelabError):
    """The workspace is missing a file or folder a step needs."""


class MediaError(FacelabError):
    """A video or image cannot be read or written."""


class FaceFileError(FacelabError):
    """A face image has no, or corrupt, facelab metadata."""


class SettingsError(FacelabError):
    """A setting is out of range or unknown."""


class ModelError(FacelabError):
    """A model folder cannot be loaded or does not match the request."""
