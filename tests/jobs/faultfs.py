"""Test-only fault injection: an fsspec filesystem ``faulty://`` over the local disk whose writes fail on demand.

``faulty:///abs/path`` is ``/abs/path`` on the local disk, reached through the object-store code paths of
``store.writers`` (single ``pipe_file`` / ``put_file``, no renames), so it stands for S3. A write whose path
contains one of the substrings listed in the JSON file named by ``$RAYPOSE_TEST_FAULTS`` (``{"enospc": [...]}``)
raises ``OSError(ENOSPC)``: a disk that is full for that video only. The file is read on every write, so a test
turns the fault on and off while Ray workers run.

Ray workers register the protocol through ``runtime_env={"worker_process_setup_hook": "faultfs.register", ...}``
(``ray_runtime_env``); nothing of this lives in product code.
"""

from __future__ import annotations

import errno
import json
import os

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "faulty"
ENV = "RAYPOSE_TEST_FAULTS"


def _check(path: str) -> None:
    spec = os.environ.get(ENV)
    if not spec or not os.path.exists(spec):
        return
    with open(spec) as f:
        rules = json.load(f)
    for needle in rules.get("enospc", []):
        if needle in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class FaultyFileSystem(DirFileSystem):
    """The local disk under ``faulty://``, as an object store (no directories needed), with injected ENOSPC."""

    protocol = PROTOCOL

    def __init__(self, **kwargs) -> None:
        super().__init__(path="/", fs=LocalFileSystem(auto_mkdir=True), **kwargs)
        self.path = ""  # absolute paths pass through unchanged

    def pipe_file(self, path, *args, **kwargs):
        _check(path)
        return super().pipe_file(path, *args, **kwargs)

    def put_file(self, lpath, rpath, *args, **kwargs):
        _check(rpath)
        return super().put_file(lpath, rpath, *args, **kwargs)

    def open(self, path, mode="rb", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            _check(path)
        return super().open(path, mode, *args, **kwargs)


def register() -> None:
    """Make ``faulty://`` known to fsspec in this process (a Ray worker's setup hook, and the driver)."""
    fsspec.register_implementation(PROTOCOL, FaultyFileSystem, clobber=True)


def set_faults(spec_file: str, enospc: list[str]) -> None:
    """Fail every write whose path contains one of ``enospc`` (an empty list: no faults)."""
    with open(spec_file, "w") as f:
        json.dump({"enospc": enospc}, f)


def ray_runtime_env(spec_file: str) -> dict:
    """The ``runtime_env`` that gives every Ray worker the protocol (this module, imported by name through
    ``PYTHONPATH``) and the fault file."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {"worker_process_setup_hook": f"{__name__}.register", "env_vars": {ENV: spec_file, "PYTHONPATH": path}}
