"""Marking everything facelab writes as synthetic, and finding those marks.

``Marker``, ``default_marker`` and ``require_marker`` (:mod:`facelab.provenance.marker`) are
importable from here; they are loaded on first access, so importing a submodule such as
``facelab.provenance.labels`` stays cheap.
"""

__all__ = ["Marker", "default_marker", "require_marker"]


def __getattr__(name: str):
    if name in __all__:
        from facelab.provenance import marker

        return getattr(marker, name)
    raise AttributeError(f"module 'facelab.provenance' has no attribute {name!r}")
