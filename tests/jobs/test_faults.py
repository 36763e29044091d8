"""Fault injection into ``jobs.label`` end to end (``pytest -m faults``): a disk that fills up while one video is
published, killed Ray workers, two runs into one output at once, and a run killed while it publishes.

Each case checks the honest exit code, that nothing is half-published, and that a rerun gives exactly the tables of a
clean run (``clean_run`` in ``tests/conftest.py``, shared with ``test_label.py``'s crash tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import faultfs
import pyarrow.parquet as pq
import pytest
from test_label import _assert_same, _cli_args, _manifests, _run_cli, _tables

from jobs.label import main as label_main

pytestmark = [pytest.mark.faults, pytest.mark.ray, pytest.mark.slow]


def _summaries(out: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")), key=lambda s: s["run_id"])


def _visible_tables(out: Path, video_stem: str) -> list[Path]:
    """Published (non-hidden) table files of the video whose id starts with ``video_stem``."""
    return [
        p
        for table in ("poses", "frames")
        for p in (out / table).glob(f"video_id={video_stem}*/*")
        if not p.name.startswith((".", "_"))
    ]


def _ray_workers(pgid: int) -> list[tuple[int, str]]:
    """(pid, title) of the Ray workers of the local Ray that the CLI run in process group ``pgid`` started: children
    of its raylet (workers get process groups of their own, so they are found by parent)."""
    ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,pgid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in ps.splitlines()]
    rows = [r for r in rows if len(r) == 4]
    group = {r[0] for r in rows if r[2] == str(pgid)}  # the driver, its raylet, GCS, agents
    return [(int(r[0]), r[3]) for r in rows if r[1] in group and r[3].startswith("ray::")]


def test_disk_full_during_publish_exits_3_publishes_nothing_of_that_video_and_rerun_equals_clean(
    crash_media, clean_run, tmp_path
):
    import ray

    root, paths = crash_media
    victim = Path(paths[1]).stem
    spec = str(tmp_path / "faults.json")
    faultfs.set_faults(spec, [f"video_id={victim}"])  # every table write of that one video: ENOSPC
    faultfs.register()
    out = tmp_path / "out"
    args = _cli_args(paths, root / "dets.json", f"faulty://{out}")
    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=1 << 30,
        logging_level="ERROR",
        runtime_env=faultfs.ray_runtime_env(spec),
    )
    try:
        assert label_main(args) == 3  # infrastructure failure: not the inputs' fault, a rerun resumes
        (summary,) = _summaries(out)
        assert (summary["processed"], summary["published"]) == (3, 2)
        assert summary["infrastructure_errors"] == 1 and summary["input_errors"] == 0
        errors = pq.read_table(out / "runs" / summary["run_id"] / "errors.parquet").to_pylist()
        assert [(e["kind"], e["stage"]) for e in errors] == [("infrastructure", "publish")]
        assert errors[0]["video_id"].startswith(victim) and "No space left" in errors[0]["message"]
        committed = {p.stem for p in _manifests(out)}
        assert len(committed) == 2 and not any(v.startswith(victim) for v in committed)
        assert _visible_tables(out, victim) == []  # nothing half-published
        assert not (out / "_lease").exists() or not list((out / "_lease").iterdir())  # released on exit 3 too

        faultfs.set_faults(spec, [])  # the disk has room again
        assert label_main(args) == 0
        rerun = _summaries(out)[-1]
        assert (rerun["skipped_committed"], rerun["published"], rerun["errors"]) == (2, 1, 0)
    finally:
        ray.shutdown()
    _assert_same(_tables(out), clean_run)
    assert not list((out / "_staging").rglob("*.parquet")) if (out / "_staging").exists() else True


@pytest.mark.extended  # recovery guard (tests/jobs/test_label.py has the kill cases): -m faults
def test_killed_ray_workers_then_rerun_equals_clean_run(crash_media, clean_run, tmp_path):
    """SIGKILL every pipeline worker (stage actors and tasks) of a running job once: Ray restarts and retries them;
    the run either finishes (0) or reports an infrastructure failure (3), never a crash (1); a rerun completes it."""
    root, paths = crash_media
    out = tmp_path / "out"
    proc = _run_cli(_cli_args(paths, root / "dets.json", out))
    killed: list[int] = []
    deadline = time.time() + 300
    while not killed and time.time() < deadline and proc.poll() is None:
        # the pipeline's actors and tasks (not Ray Data's own bookkeeping actors)
        workers = [(pid, a) for pid, a in _ray_workers(proc.pid) if "Map" in a]
        if any("SPPE" in a and "submit" in a for _, a in workers):  # mid-run: the pose stage is working
            for pid, _ in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    assert killed, "no Ray worker was seen mid-run"
    code = proc.wait(timeout=600)
    assert code in (0, 3), code
    if code == 3:
        assert _run_cli(_cli_args(paths, root / "dets.json", out)).wait(timeout=600) == 0
    _assert_same(_tables(out), clean_run)


def test_concurrent_runs_into_one_output_second_is_refused_first_equals_clean(crash_media, clean_run, tmp_path):
    root, paths = crash_media
    out = tmp_path / "out"
    first = _run_cli(_cli_args(paths, root / "dets.json", out) + ["--run-id", "first"])
    deadline = time.time() + 120
    lease = out / "_lease" / "first.json"
    while time.time() < deadline and first.poll() is None:
        if lease.exists() and json.loads(lease.read_text() or "{}").get("state") == "held":
            break
        time.sleep(0.1)
    assert first.poll() is None, "the first run must still be running"
    second = _run_cli(
        _cli_args(paths, root / "dets.json", out) + ["--run-id", "second"], stderr=subprocess.PIPE, text=True
    )
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2, err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "in use by run first on host" in line[0] and "last seen" in line[0], err
    assert "--break-lease" in line[0]
    assert first.wait(timeout=600) == 0
    (summary,) = _summaries(out)  # the refused run wrote nothing
    assert summary["run_id"] == "first" and summary["errors"] == 0 and summary["published"] == 3
    assert not (out / "_lease" / "second.json").exists() and not lease.exists()
    _assert_same(_tables(out), clean_run)


@pytest.mark.extended  # recovery guard (tests/jobs/test_label.py has the kill cases): -m faults
def test_run_killed_while_publishing_then_rerun_equals_clean_run(crash_media, clean_run, tmp_path):
    root, paths = crash_media
    out = tmp_path / "out"
    proc = _run_cli(_cli_args(paths, root / "dets.json", out))
    publishing = None
    deadline = time.time() + 300
    while publishing is None and time.time() < deadline and proc.poll() is None:
        # a video's table folder exists from the moment its publishing starts; its marker is written last
        committed = {p.stem for p in _manifests(out)}
        started = (
            [p.name.split("=", 1)[1] for p in (out / "poses").glob("video_id=*")] if (out / "poses").exists() else []
        )
        publishing = next((v for v in started if v not in committed), None)
        if publishing is None:
            time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-publish
    proc.wait()
    assert publishing is not None, "the kill must land while a video is being published"
    assert len(_manifests(out)) < 3
    assert _run_cli(_cli_args(paths, root / "dets.json", out)).wait(timeout=600) == 0  # the stale lease is taken over
    _assert_same(_tables(out), clean_run)
