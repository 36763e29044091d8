"""The output lease (``store.lease``) on a local disk and on S3 (moto): one live run per output, stale leases taken
over, and staging clean-up that never touches a live run's rows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from store.lease import Lease, LeaseHeld, LeaseRecord, live_run_ids, read_leases
from store.staging import remove_staging, write_staged
from store.writers import put_atomic

pytestmark = pytest.mark.faults

FAST = {"settle_s": 0.05, "ttl_s": 30.0}


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def output(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    request.getfixturevalue("s3_server")
    import s3fs

    s3fs.S3FileSystem().mkdir("bucket")
    return "s3://bucket/out"


def _fake_lease(output: str, run_id: str, **fields) -> LeaseRecord:
    now = time.time()
    rec = LeaseRecord(
        **{
            "run_id": run_id,
            "host": "other-host",
            "pid": 1,
            "start_time": now - 5,
            "heartbeat": now,
            "ttl_s": 30.0,
            "state": "held",
            **fields,
        }
    )
    put_atomic(json.dumps(rec.__dict__).encode(), f"{output}/_lease/{run_id}.json")
    return rec


def test_a_second_acquire_is_refused_while_the_first_is_live(output):
    first = Lease(output, "run-a", **FAST)
    assert first.acquire() == []
    with pytest.raises(LeaseHeld) as refused:
        Lease(output, "run-b", **FAST).acquire()
    message = str(refused.value)
    assert "run run-a on host" in message and "last seen" in message and "--break-lease" in message
    assert "\n" not in message
    assert set(read_leases(output)) == {"run-a"}  # the loser deleted its own file
    first.release()
    assert read_leases(output) == {}
    second = Lease(output, "run-b", **FAST)
    second.acquire()  # free again
    assert live_run_ids(output) == {"run-b"}
    second.release()


def test_a_live_lease_on_another_host_is_respected_until_it_expires_or_is_broken(output):
    _fake_lease(output, "remote")
    with pytest.raises(LeaseHeld, match="run remote on host other-host"):
        Lease(output, "mine", **FAST).acquire()
    broken = Lease(output, "mine", **FAST)
    assert [r.run_id for r in broken.acquire(break_lease=True)] == ["remote"]
    assert set(read_leases(output)) == {"mine"}
    broken.release()


def test_stale_leases_are_taken_over(output):
    _fake_lease(output, "expired", heartbeat=time.time() - 100, ttl_s=10.0)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    # written on this host by a process that no longer exists (a killed run): stale at once, whatever its TTL
    _fake_lease(output, "killed", host=socket.gethostname(), pid=int(gone.stdout), ttl_s=3600.0)
    lease = Lease(output, "new", **FAST)
    assert sorted(r.run_id for r in lease.acquire()) == ["expired", "killed"]
    assert set(read_leases(output)) == {"new"}
    lease.release()


def test_concurrent_acquires_admit_exactly_one(tmp_path):
    output = str(tmp_path / "out")
    results: dict[str, object] = {}
    start = threading.Barrier(4)

    def go(name):
        start.wait()
        try:
            results[name] = Lease(output, name, settle_s=1.0).acquire()
        except LeaseHeld as e:
            results[name] = e

    threads = [threading.Thread(target=go, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if not isinstance(r, LeaseHeld)]
    assert len(winners) == 1, results
    assert set(read_leases(output)) == set(winners)


def test_work_between_begin_and_confirm_counts_toward_the_settle_time(tmp_path, monkeypatch):
    """jobs.label starts Ray between ``begin`` and ``confirm``: the settle wait overlaps that work, and a run that
    wrote its candidate in the meantime is still seen by the second check."""
    import store.lease

    output = str(tmp_path / "out")
    first = Lease(output, "first", settle_s=0.5, ttl_s=30.0)
    first.begin()
    assert read_leases(output)["first"].state == "candidate"
    time.sleep(0.6)  # the caller's work, longer than the settle time
    waits: list[float] = []
    monkeypatch.setattr(store.lease.time, "sleep", waits.append)  # what confirm still waits, not wall time
    assert first.confirm() == []
    monkeypatch.undo()
    assert waits == [0.0]  # nothing left to wait
    assert read_leases(output)["first"].state == "held"
    first.release()

    # A competitor that writes its candidate after our first check but sorts before us (an earlier start time, as
    # a skewed clock on another host gives) wins at our second check.
    ours = Lease(output, "ours", settle_s=0.2, ttl_s=30.0)
    ours.begin()
    _fake_lease(output, "early", state="candidate", host="other-host", start_time=time.time() - 100)
    with pytest.raises(LeaseHeld):
        ours.confirm()
    assert "ours" not in read_leases(output)  # refused: our file is gone


def test_a_candidate_left_longer_than_half_its_ttl_checks_again(tmp_path):
    """After a long gap others may have judged our candidate dead and taken the output: confirm must see that."""
    output = str(tmp_path / "out")
    ours = Lease(output, "ours", settle_s=0.0, ttl_s=1.0)
    ours.begin()
    time.sleep(0.6)  # > ttl/2: our candidate may look dead to others
    _fake_lease(output, "other", state="held")
    with pytest.raises(LeaseHeld):
        ours.confirm()
    with pytest.raises(ValueError, match="confirm before begin"):
        Lease(output, "x").confirm()


def test_heartbeat_keeps_the_lease_live_and_notices_a_takeover(tmp_path):
    output = str(tmp_path / "out")
    lease = Lease(output, "slow", ttl_s=2.0, settle_s=0.0)
    lease.acquire()
    with lease:  # heartbeat every 0.5 s
        time.sleep(3.0)  # longer than the TTL: only the heartbeat keeps it live
        assert read_leases(output)["slow"].is_live()
        with pytest.raises(LeaseHeld):
            Lease(output, "other", ttl_s=2.0, settle_s=0.0).acquire()
        Lease(output, "other", ttl_s=30.0, settle_s=0.0).acquire(break_lease=True)
        deadline = time.time() + 10
        while not lease.lost and time.time() < deadline:
            time.sleep(0.05)
        assert lease.lost
    assert set(read_leases(output)) == {"other"}  # releasing a lost lease leaves the new holder's file alone


def _rows(video: str) -> dict[str, np.ndarray]:
    return {
        "video_id": np.array([video], dtype=object),
        "unit_uri": np.array([f"/in/{video}.mp4"], dtype=object),
        "shard_index": np.array([0], np.int64),
        "frame_index": np.array([0], np.int64),
    }


def _staged_runs(output: str, video: str) -> set[str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(f"{output}/_staging/{video}")
    fs.invalidate_cache()
    try:
        return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
    except FileNotFoundError:
        return set()


def test_clean_up_leaves_a_live_runs_staging_alone(output):
    for run in ("me", "live", "crashed", "finished"):
        write_staged(_rows("v"), output, run)
    write_staged(_rows("w"), output, "live")
    live = Lease(output, "live", **FAST)
    live.acquire()
    _fake_lease(output, "crashed", heartbeat=time.time() - 100, ttl_s=10.0)  # stale; "finished" has no lease
    assert sorted(remove_staging(output, "v", run_id="me")) == ["crashed", "finished", "me"]
    assert _staged_runs(output, "v") == {"live"}
    assert remove_staging(output, "w", run_id="me") == []  # another video of the live run: untouched
    assert _staged_runs(output, "w") == {"live"}
    live.release()
    assert remove_staging(output, "v", run_id="me") == ["live"]  # its lease is gone: an orphan now
    assert _staged_runs(output, "v") == set()
