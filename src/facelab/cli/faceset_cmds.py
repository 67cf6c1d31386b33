"""CLI commands: faceset utilities."""

from __future__ import annotations
