"""The marking every output of facelab carries, as one object the caller builds and passes in.

A :class:`Marker` holds the C2PA signing identity and does the three marks a stage
needs: an image gets the invisible watermark, the IPTC/XMP labels and a signed C2PA
manifest (:meth:`Marker.png`, :meth:`Marker.jpeg`); a video gets the watermark on every
frame (:meth:`Marker.watermark`), the container tags (:attr:`Marker.video_tags`) and,
once finished, a signed manifest (:meth:`Marker.sign_file`).

Stages and library functions that write media take a marker from their caller and
refuse to run without one (:func:`require_marker`): marking is never optional, and the
signing key is the caller's side effect, not the library's. The CLI builds the marker
with :func:`default_marker`, which scripts and the UI call the same way:

    >>> from facelab.provenance import default_marker
    >>> merge.run(ws, "quick", marker=default_marker())

:func:`default_marker` touches nothing when called: the local key in
``$FACELAB_HOME/keys`` (default ``~/.facelab/keys``) is loaded, or made, on the first
signature, as it always was, so a command that fails before writing any output leaves
no key behind. A script with a key of its own passes ``Marker(SigningIdentity(key, chain))``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import final

import numpy as np

from facelab.errors import FacelabError
from facelab.provenance.manifest import SigningIdentity, load_signing_identity, sign_bytes, sign_file

__all__ = ["Marker", "default_marker", "require_marker"]


@final
class Marker:
    """Marks images and videos as synthetic with one signing identity.

    Args:
        identity: the C2PA signing key and chain, or a function of no arguments that returns
            them, called once on the first signature (so building a marker costs nothing and
            writes nothing).

    Thread-safe: the merge signs frames on several worker threads with one marker. The signing
    identity is the caller's choice; the marks are not: stages accept this class only, not a
    subclass (:func:`require_marker`), so no replacement can leave a mark out.
    """

    def __init__(self, identity: SigningIdentity | Callable[[], SigningIdentity]) -> None:
        if not (isinstance(identity, SigningIdentity) or callable(identity)):
            raise FacelabError(f"Marker: expected a SigningIdentity or a function returning one, got {type(identity).__name__}",
                               "use facelab.provenance.default_marker(), or Marker(SigningIdentity(key_pem, chain_pem))")
        self._identity = identity if isinstance(identity, SigningIdentity) else None
        self._load = None if isinstance(identity, SigningIdentity) else identity
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Marker({self._identity!r})" if self._identity is not None else "Marker(<identity loaded on first use>)"

    @property
    def identity(self) -> SigningIdentity:
        """The signing identity (loaded on first use when the marker was given a function)."""
        if self._identity is None:
            with self._lock:
                if self._identity is None:
                    identity = self._load()
                    if not isinstance(identity, SigningIdentity):
                        raise FacelabError(f"Marker: the identity function returned {type(identity).__name__}, not a SigningIdentity",
                                           "return facelab.provenance.manifest.SigningIdentity(key_pem, chain_pem)")
                    self._identity = identity
        return self._identity

    @property
    def video_tags(self) -> dict[str, str]:
        """Container tags that label a video as synthetic (:data:`facelab.provenance.labels.VIDEO_TAGS`)."""
        from facelab.provenance.labels import VIDEO_TAGS

        return VIDEO_TAGS

    def watermark(self, image: np.ndarray) -> np.ndarray:
        """A watermarked copy of ``image`` (see :func:`facelab.provenance.watermark.embed`): for video frames."""
        from facelab.provenance.watermark import embed

        return embed(image)

    def png(self, image: np.ndarray, title: str) -> bytes:
        """PNG bytes of ``image`` ``(H, W, 3|4) uint8`` BGR(A): watermarked, labelled and with a signed
        C2PA manifest titled ``title``. ``min(H, W)`` must be at least the watermark's ``MIN_SIZE``."""
        from facelab.fileio import encode_image
        from facelab.provenance.labels import label_png

        return self.sign_bytes(label_png(encode_image(self.watermark(image), ".png")), "image/png", title)

    def jpeg(self, image: np.ndarray, title: str, quality: int) -> bytes:
        """JPEG bytes (``quality`` 0..100) of ``image`` ``(H, W, 3) uint8`` BGR, marked like :meth:`png`."""
        from facelab.fileio import encode_image
        from facelab.provenance.labels import label_jpeg

        return self.sign_bytes(label_jpeg(encode_image(self.watermark(image), ".jpg", quality)), "image/jpeg", title)

    def sign_bytes(self, data: bytes, mime: str, title: str) -> bytes:
        """``data`` (a whole PNG, JPEG, MP4 or MOV file) with a signed C2PA manifest (:func:`sign_bytes`)."""
        return sign_bytes(data, mime, title, identity=self.identity)

    def sign_file(self, path: Path, title: str | None = None) -> None:
        """Embed a signed C2PA manifest in a finished file, in place (:func:`sign_file`): the last change to it."""
        sign_file(path, title, identity=self.identity)


def default_marker(home: Path | None = None) -> Marker:
    """The marker the CLI uses: signs with the local key in ``<home>/keys``.

    Args:
        home: facelab's home folder; default ``$FACELAB_HOME`` or ``~/.facelab`` (read when the
            key is first needed).

    Nothing is read or made here: the key is loaded, or made on first use, at the first
    signature (:func:`facelab.provenance.manifest.load_signing_identity`).
    """
    return Marker(lambda: load_signing_identity(home))


def require_marker(marker: Marker | None, step: str) -> Marker:
    """``marker``, or a FacelabError when it is missing or not a :class:`Marker` itself (a subclass
    could drop a mark): ``step`` writes no unmarked output."""
    if type(marker) is Marker:
        return marker
    got = "none" if marker is None else type(marker).__name__
    raise FacelabError(
        f"{step}: no Marker given ({got}); facelab writes no output that is not marked as synthetic",
        "pass marker=facelab.provenance.default_marker() (what the CLI does), or a Marker of your own signing identity",
    )
