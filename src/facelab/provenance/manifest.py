"""Signed C2PA manifests ("Content Credentials") that declare a file as AI-generated.

:func:`sign_file` embeds a manifest, signed with a :class:`SigningIdentity` the caller
gives (the CLI loads it with :func:`load_signing_identity`, which makes the local key on
first use; library code never does), into a PNG, JPEG, MP4 or MOV file in place; the manifest
says the file was created with facelab (``c2pa.created`` with the IPTC digital
source type ``trainedAlgorithmicMedia``) and carries a ``facelab.synthetic``
assertion stating that it is a synthetic face replacement. :func:`read_manifest`
reads and validates the manifest of any file.

Offline by design: no time-stamp authority, no OCSP, no remote manifests, and the
c2pa library is told that no network host is allowed.

The local certificate
---------------------
Nobody vouches for the local key, so a verifier reports the signer as untrusted
(``signingCredential.untrusted``). That is expected and is reported as a note, not
as a failure: the manifest still proves the file is unchanged since facelab signed
it, and what it says (synthetic) is a claim against interest. c2pa-rs 0.91
(c2pa-python 0.38.1) checks the certificate profile when signing; what it accepted
and refused, found by trying:

* a single self-signed end-entity certificate is refused ("the certificate is
  invalid"), whatever its extended key usage; so facelab makes a local root CA
  (``CA:TRUE, pathlen 0``, keyCertSign + cRLSign), signs one end-entity certificate
  with it and throws the CA's private key away (it can issue nothing else);
* the end-entity certificate needs ``CA:FALSE``, an extendedKeyUsage, and subject
  and authority key identifiers (without SKI/AKI: refused);
* EKU ``emailProtection`` is accepted; ``timeStamping`` too (not used). The
  document-signing EKU (1.3.6.1.4.1.311.76.59.1.9) and the C2PA claim-signing EKU
  (1.3.6.1.4.1.62558.2.1) sign, but then fail the check after signing with
  "certificate missing required EKU" under the default trust configuration;
* keyUsage ``digitalSignature`` is set (the C2PA profile asks for it);
* ES256 on P-256 with ECDSA-SHA256 certificates; validity 10 years.

The chain file holds the end-entity certificate then the root, as C2PA expects.
"""

from __future__ import annotations

import datetime
import json
import functools
import os
import socket
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facelab import __version__
from facelab.errors import FacelabError, MediaError
from facelab.provenance.labels import DIGITAL_SOURCE_TYPE, STATEMENT
from facelab.provenance.permissions import check_chain_file, check_key_file, check_key_folders

__all__ = ["SUPPORTED_SUFFIXES", "ManifestReport", "SigningIdentity", "load_signing_identity", "read_manifest", "sign_bytes",
           "sign_file", "signing_identity"]

# suffix -> MIME type given to the c2pa library
SUPPORTED_SUFFIXES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
}
ASSERTION_LABEL = "facelab.synthetic"
KEY_NAME = "c2pa-signer-key.pem"
CHAIN_NAME = "c2pa-signer-chain.pem"
VALID_DAYS = 3650
# Digital source types that say "made by a generative model" (the second: AI content composited into a capture).
_SYNTHETIC_TYPES = (DIGITAL_SOURCE_TYPE, "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia")
# Validation codes about trust in the signer, not about the integrity of the file.
_TRUST_CODES = ("signingCredential.untrusted", "timeStamp.untrusted")
_LOCAL_SIGNER = "facelab local signer"

# Never touch the network: no remote manifests, no OCSP, no allowed hosts; no thumbnail copy of the pixels.
_SETTINGS = {
    "version": 1,
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "core": {"allowed_network_hosts": []},
    "builder": {"thumbnail": {"enabled": False}},
}


def _home(home: Path | None) -> Path:
    if home is not None:
        return Path(home)
    env = os.environ.get("FACELAB_HOME")
    return Path(env) if env else Path.home() / ".facelab"


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created with ``mode``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600 already; keep it explicit
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock on ``folder/.lock`` (POSIX; elsewhere no lock), so two processes make one key."""
    try:
        import fcntl
    except ImportError:  # Windows: creation races are left to the consistency check
        yield
        return
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _make_identity() -> tuple[bytes, bytes]:
    """A new ES256 key and a PEM chain (end-entity certificate, then the local root that issued it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host = socket.gethostname() or "localhost"

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facelab"), x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])

    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)  # allow for clock skew
    end = start + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"facelab local root ({host})")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"{_LOCAL_SIGNER} ({host})"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, cert.public_bytes(pem) + ca.public_bytes(pem)


def _check_identity(key_path: Path, chain_path: Path) -> None:
    """Raise FacelabError unless the key file and the first certificate of the chain belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    hint = f"delete {key_path.parent} to make a new local signing key"
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificates(chain_path.read_bytes())[0]
    except (ValueError, TypeError, IndexError, OSError) as e:
        raise FacelabError(f"the signing key or certificate in {key_path.parent} cannot be read ({e})", hint) from e
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != cert.public_key().public_bytes(*raw):
        raise FacelabError(f"{key_path.name} and {chain_path.name} in {key_path.parent} do not belong together", hint)


def signing_identity(home: Path | None = None) -> tuple[Path, Path]:
    """The local C2PA signing key and certificate chain, made on first use and reused after.

    Args:
        home: facelab's home folder; default ``$FACELAB_HOME`` or ``~/.facelab``.

    Returns:
        ``(key_path, chain_path)`` in ``<home>/keys/``: a PKCS#8 PEM EC P-256 private key
        (file mode 0600) and a PEM chain (end-entity certificate, then the local root).

    Home and ``keys`` are made 0700. Folders and files that other users could write are
    tightened when they are the current user's (with a ``KeyPermissionWarning``) and
    refused otherwise: see :mod:`facelab.provenance.permissions`.

    Raises:
        FacelabError: the folder cannot be written, a folder or key file others could change
            (owned by another user, a symbolic link, a world-writable folder above home), or
            existing files are unreadable or do not match.
    """
    root = _home(home)
    folder = root / "keys"
    key_path, chain_path = folder / KEY_NAME, folder / CHAIN_NAME
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        # nobody else may be able to swap the key: refuse or tighten folders and files others can write
        check_key_folders(root, folder)
        with _locked(folder):
            check_key_file(key_path)
            check_chain_file(chain_path)
            if not (key_path.is_file() and chain_path.is_file()):
                key_pem, chain_pem = _make_identity()
                # chain first: a key file without its chain is never left behind as "complete"
                _write_atomic(chain_path, chain_pem, 0o644)
                _write_atomic(key_path, key_pem, 0o600)
    except OSError as e:
        raise FacelabError(f"cannot create the signing key in {folder} ({e.strerror or e})", "set FACELAB_HOME to a writable folder") from e
    _check_identity(key_path, chain_path)
    return key_path, chain_path


@dataclass(frozen=True, repr=False)
class SigningIdentity:
    """A C2PA signing key and its certificate chain, in memory.

    Attributes:
        key_pem: PKCS#8 PEM EC P-256 private key.
        chain_pem: PEM chain: the end-entity certificate, then the root that issued it.

    Holding the bytes (not paths) means signing reads no file: whoever builds the identity
    decides where it comes from. ``repr`` shows no key material.
    """

    key_pem: bytes
    chain_pem: bytes

    def __repr__(self) -> str:
        return f"SigningIdentity(<{len(self.key_pem)} bytes of key>, <{self.chain_pem.count(b'BEGIN CERTIFICATE')} certificates>)"


def load_signing_identity(home: Path | None = None) -> SigningIdentity:
    """The local signing identity in ``<home>/keys``, made there on first use (:func:`signing_identity`).

    For the CLI and scripts, which choose the home folder (default ``$FACELAB_HOME`` or
    ``~/.facelab``); library code takes a :class:`SigningIdentity` (in a
    :class:`facelab.provenance.marker.Marker`) from its caller instead of calling this.
    """
    key_path, chain_path = signing_identity(home)
    return SigningIdentity(key_path.read_bytes(), chain_path.read_bytes())


def _check_signing(identity) -> SigningIdentity:
    if not isinstance(identity, SigningIdentity):
        raise FacelabError(f"signing needs a SigningIdentity, got {type(identity).__name__}",
                           "load one with facelab.provenance.manifest.load_signing_identity(), or pass a Marker's")
    return identity


def _context():
    import c2pa

    return c2pa.Context.from_dict(_SETTINGS)


def _sniff(head: bytes) -> str | None:
    """Container of a file from its first bytes: ``png``, ``jpeg``, ``bmff`` or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[4:8] in (b"ftyp", b"moov", b"wide", b"free", b"skip", b"mdat"):  # ISO BMFF / QuickTime boxes
        return "bmff"
    return None


def _supported(path: Path) -> str:
    """MIME type for ``path`` after checking the suffix and that the content matches it."""
    mime = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if mime is None:
        raise MediaError(
            f"cannot embed a C2PA manifest in {path.name}: unsupported file type",
            f"supported: {', '.join(SUPPORTED_SUFFIXES)} (PNG, JPEG, MP4, MOV)",
        )
    if not path.is_file():
        raise MediaError(f"{path} does not exist", "check the path")
    with open(path, "rb") as f:
        kind = _sniff(f.read(16))
    expected = {"image/png": "png", "image/jpeg": "jpeg"}.get(mime, "bmff")
    if kind != expected:
        raise MediaError(f"{path} is not a {expected.upper()} file (its content does not match its suffix)", "give the file its right extension")
    return mime


def _manifest_definition(title: str, mime: str) -> dict:
    agent = {"name": "facelab", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE,
                            "softwareAgent": agent,
                            "description": STATEMENT,
                        }
                    ]
                },
            },
            {
                "label": ASSERTION_LABEL,
                "data": {
                    "synthetic": True,
                    "statement": "Synthetic face replacement made with facelab: the face in this media was generated by a trained model.",
                    "digitalSourceType": DIGITAL_SOURCE_TYPE,
                    "generator": f"facelab/{__version__}",
                },
            },
        ],
    }


def sign_file(path: Path, title: str | None = None, *, identity: SigningIdentity) -> None:
    """Embed a signed C2PA manifest declaring ``path`` synthetic, in place.

    A manifest already in the file is replaced. The pixels / samples are unchanged
    (PNG: new chunk; JPEG: APP11 segments; MP4/MOV: a ``uuid`` box, offsets updated),
    so this must be the last change made to the file.

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg``, ``.mp4``/``.m4v`` or ``.mov`` file.
        title: the manifest's title (default: the file name).
        identity: the key and certificate chain to sign with (see :func:`load_signing_identity`).

    Raises:
        MediaError: unsupported type, missing file, content not matching the suffix, or
            the c2pa library could not parse/sign the file.
        FacelabError: ``identity`` is not a :class:`SigningIdentity`.
    """
    import c2pa

    path = Path(path)
    identity = _check_signing(identity)
    mime = _supported(path)
    # ta_url None: no time-stamp authority (offline), so signing never waits on the network.
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.key_pem, None)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".c2pa{path.suffix}")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as dst, open(path, "rb") as src:
            with c2pa.Signer.from_info(info) as signer, c2pa.Builder(_manifest_definition(title or path.name, mime), context=_context()) as builder:
                builder.sign(signer, mime, src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except c2pa.C2paError as e:
        raise MediaError(f"could not sign {path} ({e})", "check that the file is complete and not damaged") from e
    finally:
        tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=4)
def _signer_info(identity: SigningIdentity):
    import c2pa

    return c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.key_pem, None)


_local = threading.local()  # one c2pa signer per thread and identity, reused for every frame


def _thread_signer(identity: SigningIdentity):
    import c2pa

    cache = _local.__dict__.setdefault("signers", {})
    if identity not in cache:
        cache[identity] = c2pa.Signer.from_info(_signer_info(identity))
    return cache[identity]


# For the many files a merge writes: the library's re-check of each signature it has just made
# (verify_after_sign) doubled the cost (4.8 -> 3.2 ms per 720p PNG); tests and `facelab verify` check them.
_FAST_SETTINGS = {**_SETTINGS, "verify": {**_SETTINGS["verify"], "verify_after_sign": False}}


def sign_bytes(data: bytes, mime: str, title: str, *, identity: SigningIdentity) -> bytes:
    """Like :func:`sign_file` for a file's bytes in memory (``mime``: ``image/png``, ``image/jpeg``,
    ``video/mp4``, ``video/quicktime``): what the merge uses for every frame it writes, so signing costs
    no extra file write. The c2pa signer is made once per thread and identity."""
    import io

    import c2pa

    identity = _check_signing(identity)
    if mime not in SUPPORTED_SUFFIXES.values():
        raise MediaError(f"cannot sign {title}: {mime} is not supported", f"supported: {', '.join(sorted(set(SUPPORTED_SUFFIXES.values())))}")
    out = io.BytesIO()
    try:
        with c2pa.Builder(_manifest_definition(title, mime), context=c2pa.Context.from_dict(_FAST_SETTINGS)) as builder:
            builder.sign(_thread_signer(identity), mime, io.BytesIO(data), out)
    except c2pa.C2paError as e:
        raise MediaError(f"could not sign {title} ({e})", "report this: the image facelab made could not be signed") from e
    return out.getvalue()


@dataclass(frozen=True)
class ManifestReport:
    """What the C2PA manifest of a file says and whether it holds.

    Attributes:
        found: the file carries a C2PA manifest store the library could parse.
        valid: found, and the signature and the hashes of the content check out
            (an untrusted signer alone does not make it invalid: see ``notes``).
        synthetic: the active manifest has an action with digital source type
            ``trainedAlgorithmicMedia`` (or ``compositeWithTrainedAlgorithmicMedia``).
        generator: claim generator, e.g. ``"facelab/0.1.0"``.
        signer: common name of the signing certificate.
        problems: why it is invalid (validation failure codes with explanations).
        notes: things worth saying that do not make it invalid (untrusted signer, ...).
    """

    found: bool
    valid: bool
    synthetic: bool
    generator: str | None
    signer: str | None
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()


NO_MANIFEST = ManifestReport(found=False, valid=False, synthetic=False, generator=None, signer=None, problems=())
"""What :func:`read_manifest` reports for a file without a C2PA manifest."""


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info") or []
    if info and isinstance(info[0], dict) and info[0].get("name"):
        name, version = info[0]["name"], info[0].get("version")
        return f"{name}/{version}" if version else str(name)
    return manifest.get("claim_generator")


def _is_synthetic(manifest: dict) -> bool:
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if action.get("digitalSourceType") in _SYNTHETIC_TYPES:
                    return True
    return False


def _failures(reader) -> list[dict]:
    results = reader.get_validation_results() or {}
    active = results.get("activeManifest")
    if isinstance(active, dict):
        return list(active.get("failure") or [])
    # older layout: one flat validation_status list of failures
    return list(json.loads(reader.json()).get("validation_status") or [])


def read_manifest(path: Path) -> ManifestReport:
    """Read and validate the C2PA manifest of a file, offline.

    Never raises for a file without a manifest or of a type the c2pa library does not
    know (``found=False``; a note says why when the type is unknown).

    Args:
        path: any file.

    Returns:
        A :class:`ManifestReport`. A file changed after signing (even one byte of the
        image data) comes out ``valid=False`` with e.g. ``assertion.dataHash.mismatch``
        in ``problems``.

    Raises:
        MediaError: the file does not exist.
    """
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist", "check the path")
    mime = SUPPORTED_SUFFIXES.get(path.suffix.lower(), "")
    try:
        with open(path, "rb") as f:
            # The library detects the container from the bytes; the MIME type is only a hint.
            reader = c2pa.Reader.try_create(mime or None, f, context=_context())
            if reader is None:
                return NO_MANIFEST
            with reader:
                manifest = reader.get_active_manifest() or {}
                state = reader.get_validation_state()
                failures = _failures(reader)
    except c2pa.C2paError.NotSupported:
        return ManifestReport(False, False, False, None, None, (), (f"the c2pa library cannot read {path.suffix or 'this type of'} files",))
    except c2pa.C2paError as e:
        # a damaged file or manifest store: nothing usable was found
        return ManifestReport(False, False, False, None, None, (f"the C2PA data could not be read: {e}",))

    signer = (manifest.get("signature_info") or {}).get("common_name")
    problems, notes = [], []
    for failure in failures:
        code = str(failure.get("code", "unknown"))
        if code in _TRUST_CODES:
            if code == "signingCredential.untrusted":
                local = signer is not None and str(signer).startswith(_LOCAL_SIGNER)
                notes.append("signer not on a trust list" + (" (local facelab key)" if local else ""))
            else:
                notes.append("time stamp not from a trusted authority")
        else:
            explanation = failure.get("explanation")
            problems.append(f"{code}: {explanation}" if explanation else code)
    if not manifest:
        problems.append("no active manifest in the C2PA data")
    if state is None:
        problems.append("the manifest was not validated")
    elif state == "Invalid" and not problems:
        problems.append("the c2pa library reports the manifest as invalid")
    return ManifestReport(
        found=True,
        valid=not problems,
        synthetic=_is_synthetic(manifest),
        generator=_generator(manifest),
        signer=signer,
        problems=tuple(problems),
        notes=tuple(notes),
    )
