"""C2PA manifests: local signing key, signing PNG/JPEG/MP4 in place, reading, tamper detection."""

from __future__ import annotations

import shutil
import stat
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.errors import FacelabError
from facelab.provenance.manifest import load_signing_identity, read_manifest, sign_file, signing_identity
from tests.conftest import ASTRONAUT, SAMPLE_DST, SAMPLE_SRC


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """1 s of the sample source clip, re-encoded to H.264 MP4 with PyAV."""
    from facelab.media.video import iter_frames_between, write_video

    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video((img for _, img in iter_frames_between(SAMPLE_SRC, 0.0, 1.0)), out, 25)
    return out


def _public_key(chain: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _chunk_offset(data: bytes, kind: bytes) -> tuple[int, int]:
    """(payload offset, length) of the first PNG chunk of ``kind``."""
    i = 8
    while i < len(data):
        length, ctype = struct.unpack(">I4s", data[i : i + 8])
        if ctype == kind:
            return i + 8, length
        i += 12 + length
    raise AssertionError(f"no {kind!r} chunk")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_signing_identity_made_once_and_reused(home):
    key, chain = signing_identity()
    assert key.parent == home / "keys" and chain.parent == home / "keys"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    assert len(certs) == 2  # end-entity, then the local root
    assert certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certs[1].extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert "facelab local signer" in certs[0].subject.rfc4514_string()
    years = (certs[0].not_valid_after_utc - certs[0].not_valid_before_utc).days / 365
    assert years > 9
    first = _public_key(chain)
    key_bytes = key.read_bytes()
    key2, chain2 = signing_identity()
    assert (key2, chain2) == (key, chain)
    assert _public_key(chain2) == first and key2.read_bytes() == key_bytes
    # an explicit home wins over the environment
    other_key, other_chain = signing_identity(home.parent / "other")
    assert other_key.parent == home.parent / "other" / "keys"
    assert _public_key(other_chain) != first


def test_signing_identity_mismatch_is_a_user_error(home, tmp_path):
    key, _ = signing_identity()
    other_key, _ = signing_identity(tmp_path / "other")
    shutil.copyfile(other_key, key)
    with pytest.raises(FacelabError, match="do not belong together"):
        signing_identity()


def test_sign_png_in_place(home, tmp_path):
    png = tmp_path / "face.png"
    shutil.copyfile(ASTRONAUT, png)
    before = cv2.imread(str(png))
    assert read_manifest(png).found is False
    sign_file(png, title="test face", identity=load_signing_identity())
    after = cv2.imread(str(png))
    assert np.array_equal(before, after)
    report = read_manifest(png)
    assert report.found and report.valid and report.synthetic, report
    assert report.generator == "facelab/0.1.0"
    assert report.signer and report.signer.startswith("facelab local signer")
    assert report.problems == ()
    assert any("trust list" in n for n in report.notes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "home"]  # no temp file left
    # signing again replaces the manifest and stays valid
    sign_file(png, identity=load_signing_identity())
    assert read_manifest(png).valid


def test_sign_jpeg_and_mp4(home, tmp_path, clip):
    jpg = tmp_path / "face.jpg"
    cv2.imwrite(str(jpg), cv2.imread(str(ASTRONAUT)))
    mp4 = tmp_path / "clip.mp4"
    shutil.copyfile(clip, mp4)
    for path in (jpg, mp4):
        sign_file(path, identity=load_signing_identity())
        report = read_manifest(path)
        assert report.found and report.valid and report.synthetic, (path, report)
    from facelab.media.video import probe

    assert probe(mp4).frame_count == 25  # still a playable video


def test_tampered_png_is_invalid(home, tmp_path):
    png = tmp_path / "face.png"
    shutil.copyfile(ASTRONAUT, png)
    sign_file(png, identity=load_signing_identity())
    start, length = _chunk_offset(png.read_bytes(), b"IDAT")
    _flip(png, start + length // 2)
    report = read_manifest(png)
    assert report.found and not report.valid and report.synthetic
    assert any("mismatch" in p for p in report.problems), report.problems


def test_tampered_mp4_is_invalid(home, tmp_path, clip):
    mp4 = tmp_path / "clip.mp4"
    shutil.copyfile(clip, mp4)
    sign_file(mp4, identity=load_signing_identity())
    data = mp4.read_bytes()
    _flip(mp4, data.index(b"mdat") + 2000)
    report = read_manifest(mp4)
    assert report.found and not report.valid
    assert any("mismatch" in p for p in report.problems), report.problems


def test_unmarked_and_foreign_files(tmp_path):
    for path in (ASTRONAUT, SAMPLE_SRC, SAMPLE_DST):
        report = read_manifest(path)
        assert not report.found and not report.valid and not report.synthetic
    text = tmp_path / "notes.txt"
    text.write_text("not media")
    assert read_manifest(text).found is False
    broken = tmp_path / "broken.png"
    broken.write_bytes(ASTRONAUT.read_bytes()[:3000])
    assert read_manifest(broken).found is False
    with pytest.raises(FacelabError, match="does not exist"):
        read_manifest(tmp_path / "missing.png")


def test_sign_rejects_unsupported_files(home, tmp_path):
    gif = tmp_path / "a.gif"
    gif.write_bytes(b"GIF89a")
    with pytest.raises(FacelabError, match="unsupported") as e:
        sign_file(gif, identity=load_signing_identity())
    assert ".png" in e.value.hint and ".mp4" in e.value.hint
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(FacelabError, match="not a PNG"):
        sign_file(fake, identity=load_signing_identity())
    with pytest.raises(FacelabError, match="does not exist"):
        sign_file(tmp_path / "missing.mp4", identity=load_signing_identity())
