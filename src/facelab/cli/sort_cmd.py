"""CLI command: sort (face-set sorting)."""

from __future__ import annotations
