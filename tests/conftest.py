"""Fixtures shared by the whole suite: the real data beside the project, and deterministic seeds."""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# precision "auto" (the default) means bf16 on CPUs with native bf16 and fp32 elsewhere (models.precision): pinned to
# fp32 here, in this process and in every process it starts (jobs, Ray workers), so outputs do not depend on the
# machine running the suite. Tests of the bf16 path and of "auto" itself set precisions or this variable explicitly.
os.environ["RAYPOSE_CPU_BF16"] = "0"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only, never copied into the project); skips with the reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (clone the project beside shared/)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def coco_gt(shared_data: Path) -> dict:
    with open(shared_data / "coco" / "test_coco.json") as f:
        return json.load(f)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3 API (moto's server) on 127.0.0.1; dummy credentials and the endpoint live in the environment
    only (``AWS_ENDPOINT_URL``), exactly as the jobs read them in production."""
    import s3fs
    from moto.server import ThreadedMotoServer

    # fsspec caches filesystem instances by their arguments, not by the environment: an instance made for an
    # earlier test's server would keep talking to that (stopped) server.
    s3fs.S3FileSystem.clear_instance_cache()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import urllib.request

    # moto's backends are process-wide: start every test with empty buckets.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(k, v)
    yield endpoint
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()


#: ``jobs.label`` overrides for quick end-to-end runs: a small random-weight SPPE, every pose kept, short shards.
FAST_LABEL = [
    "--set",
    "sppe.arch=fastpose_res18",
    "--set",
    "sppe.random_weights=true",
    "--set",
    "pose_nms.score_threshold=0",
    "--set",
    "run.shard_frames=16",
]


# ---- the job tests' shared clean run (tests/jobs: test_label.py's crash tests and test_faults.py) ------------------


@pytest.fixture(scope="session")
def crash_media(tmp_path_factory):
    """Three 16-frame clips and their detections (``test_label._walkers``)."""
    from test_label import _walkers

    root = tmp_path_factory.mktemp("crash")
    return root, _walkers(root, 3)


@pytest.fixture(scope="session")
def clean_run(crash_media, tmp_path_factory):
    """The published tables of an uninterrupted ``jobs.label`` run over ``crash_media``: what every crash, kill or
    fault followed by a rerun must reproduce exactly. Session-scoped: ``test_label.py`` and ``test_faults.py``
    compare against the same run (each clean run costs ~40 s)."""
    from test_label import _cli_args, _run_cli, _tables

    root, paths = crash_media
    out = tmp_path_factory.mktemp("clean")
    assert _run_cli(_cli_args(paths, root / "dets.json", out)).wait(timeout=600) == 0
    return _tables(out)


# ---- leaving the test process ------------------------------------------------------------------------------------
# The suite starts and stops local Ray several times in this one process (module fixtures, and jobs.label's main()
# called in-process). Ray does not support that fully: threads of an earlier session can touch core-worker state
# that ray.shutdown() freed (ray-project/ray#31145), and CI once saw the interpreter die with SIGSEGV *after*
# "480 passed" was printed, during finalisation, so `make test` failed on a green suite. Once pytest has finished
# (every result reported, every fixture torn down, Ray's own atexit shutdown run), the process therefore ends with
# pytest's exit status through os._exit, skipping only the native destructors. A run that does not reach
# pytest_sessionfinish exits the normal way; PYTHONFAULTHANDLER=1 (Makefile) prints every thread's stack on a crash.
_SESSION_STATUS: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    # Registered before any test imports Ray, so it runs after Ray's atexit handler (atexit is last-in, first-out).
    atexit.register(_exit_with_session_status)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_STATUS[:] = [int(exitstatus)]


def _exit_with_session_status() -> None:
    if not _SESSION_STATUS:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION_STATUS[0])
