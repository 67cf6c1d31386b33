"""`facelab verify` and verify_file: watermark, C2PA manifest and metadata labels together."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from facelab.errors import FacelabError
from facelab.provenance import watermark
from facelab.provenance.labels import (
    DIGITAL_SOURCE_TYPE,
    VIDEO_TAGS,
    label_jpeg,
    label_png,
)
from facelab.provenance.manifest import load_signing_identity, sign_file
from facelab.provenance.verify import read_tags, verify_file
from tests.conftest import ASTRONAUT, ROOT, SAMPLE_DST, SAMPLE_SRC


@pytest.fixture(scope="module")
def tagged_clip(tmp_path_factory) -> Path:
    """1 s of the sample clip re-encoded with facelab's container tags."""
    from facelab.media.video import iter_frames_between, write_video

    out = tmp_path_factory.mktemp("clip") / "tagged.mp4"
    write_video((img for _, img in iter_frames_between(SAMPLE_SRC, 0.0, 1.0)), out, 25, tags=VIDEO_TAGS)
    return out


def _signed_png(tmp_path: Path) -> Path:
    png = tmp_path / "signed.png"
    shutil.copyfile(ASTRONAUT, png)
    sign_file(png, identity=load_signing_identity())
    return png


def test_signed_png_is_marked_by_its_manifest(home, tmp_path):
    report = verify_file(_signed_png(tmp_path))
    assert report.marked
    assert report.manifest.found and report.manifest.valid and report.manifest.synthetic
    assert report.watermark is not None and not report.watermark.found  # the sample photo carries no watermark
    assert report.tags == {}  # the photo's own (Photoshop) comment is not one of facelab's labels


def test_unmarked_samples_are_not_marked():
    for path in (ASTRONAUT, SAMPLE_SRC, SAMPLE_DST):
        report = verify_file(path)
        assert not report.marked, (path, report)
        assert not report.manifest.found and report.tags == {}
        assert report.watermark is not None and report.watermark.frames >= 1


def test_labels_alone_mark_png_and_jpeg(tmp_path):
    png = tmp_path / "labelled.png"
    png.write_bytes(label_png(ASTRONAUT.read_bytes()))
    report = verify_file(png)
    assert report.marked and not report.manifest.found
    assert report.tags["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and report.tags["facelab:synthetic"] == "true"

    _, jpeg = cv2.imencode(".jpg", cv2.imread(str(ASTRONAUT)))
    jpg = tmp_path / "labelled.jpg"
    jpg.write_bytes(label_jpeg(jpeg.tobytes()))
    tags = read_tags(jpg)
    assert tags["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and "facelab" in tags["Comment"]
    assert verify_file(jpg).marked


def test_labels_survive_signing(home, tmp_path, tagged_clip):
    _, jpeg = cv2.imencode(".jpg", cv2.imread(str(ASTRONAUT)))
    jpg = tmp_path / "labelled.jpg"
    jpg.write_bytes(label_jpeg(jpeg.tobytes()))
    mp4 = tmp_path / "tagged.mp4"
    shutil.copyfile(tagged_clip, mp4)
    for path in (jpg, mp4):
        sign_file(path, identity=load_signing_identity())
        report = verify_file(path)
        assert report.marked and report.manifest.valid and report.synthetic_tags, (path, report)
    assert verify_file(mp4).tags["digital_source_type"] == DIGITAL_SOURCE_TYPE


def test_watermark_alone_marks_a_file(tmp_path, monkeypatch):
    # the detector is another module's business: stub it to test how its answer is used
    found = watermark.Detection(found=True, score=9.0, frames=1, threshold=6.0)
    monkeypatch.setattr(watermark, "detect_image", lambda path: found)
    report = verify_file(ASTRONAUT)
    assert report.watermark == found and report.marked
    assert not report.manifest.found and report.tags == {}


def test_real_watermark_is_found(tmp_path):
    png = tmp_path / "wm.png"
    cv2.imwrite(str(png), watermark.embed(cv2.imread(str(ASTRONAUT))))
    report = verify_file(png)
    assert report.watermark.found and report.marked


def test_tampered_file_still_reported(home, tmp_path):
    png = _signed_png(tmp_path)
    data = bytearray(png.read_bytes())
    i = 8
    while data[i + 4 : i + 8] != b"IDAT":
        i += 12 + struct.unpack(">I", data[i : i + 4])[0]
    data[i + 8 + 100] ^= 0xFF  # the pixels may no longer decode; the manifest check must still say so
    png.write_bytes(bytes(data))
    report = verify_file(png)
    assert report.manifest.found and not report.manifest.valid and report.manifest.problems
    assert report.marked  # the manifest still declares the file synthetic


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(FacelabError, match="does not exist"):
        verify_file(tmp_path / "missing.png")
    with pytest.raises(FacelabError, match="not a file"):
        verify_file(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FacelabError, match="neither an image nor a video"):
        verify_file(text)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(FacelabError):
        verify_file(broken)


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FACELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "facelab", "verify", *args], check=False, capture_output=True, text=True, env=env, timeout=60)


def test_cli_exit_codes(home, tmp_path):
    signed = _signed_png(tmp_path)
    ok = _cli(str(signed), home=home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MARKED" in ok.stdout and "valid, synthetic" in ok.stdout and "trust list" in ok.stdout

    mixed = _cli(str(signed), str(ASTRONAUT), home=home)
    assert mixed.returncode == 1, mixed.stdout + mixed.stderr
    assert "NOT MARKED" in mixed.stdout and "1 of 2 files carry no mark" in mixed.stdout

    bad = _cli(str(signed), str(tmp_path / "missing.mp4"), home=home)
    assert bad.returncode == 2
    assert "missing.mp4 does not exist" in bad.stderr and "Traceback" not in bad.stderr
