"""``jobs.label`` against an S3-compatible server (moto on loopback) and through ``ray job submit``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import FAST_LABEL, free_port

from jobs.make_sample import main as make_sample

REPO = Path(__file__).resolve().parents[2]
FAST = [*FAST_LABEL, "--set", "run.shard_frames=8"]  # later --set wins


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    assert make_sample(["--out", str(out), "--frames", "12", "--persons", "2", "--size", "256x160"]) == 0
    return out


@pytest.mark.s3
@pytest.mark.ray
@pytest.mark.slow
def test_label_from_s3_to_s3(s3_server, sample, shared_data, capsys):
    import s3fs

    fs = s3fs.S3FileSystem()  # endpoint from AWS_ENDPOINT_URL, like the job
    fs.mkdir("media")
    fs.mkdir("labels")
    fs.put(str(sample / "walkers.mp4"), "media/clips/walkers.mp4")
    fs.put(str(sample / "walkers_dets.json"), "media/dets.json")
    for name in ("000000000785.jpg", "000000040083.jpg"):
        fs.put(str(shared_data / "coco" / name), f"media/coco/{name}")
    fs.pipe("media/clips/broken.mp4", b"not a video")

    from jobs.label import main

    args = [
        "--input",
        "s3://media/clips",
        "s3://media/coco",
        "--output",
        "s3://labels/run1",
        "--set",
        "detector.arch=precomputed",
        "--set",
        "detector.weights=s3://media/dets.json",
        *FAST,
        "--num-cpus",
        "2",
    ]
    try:
        assert main(args) == 0
    finally:
        import ray

        ray.shutdown()
    printed = capsys.readouterr()
    assert "testing-secret" not in printed.out + printed.err  # credentials never reach logs

    fs.invalidate_cache()
    manifests = fs.ls("labels/run1/_manifest")
    assert len(manifests) == 2  # the clip and the coco folder; the broken clip is not committed
    summary_path = fs.glob("labels/run1/runs/*/summary.json")[0]
    summary = json.loads(fs.cat(summary_path))
    assert summary["published"] == 2 and summary["errors"] == 1 and summary["frames"] == 14
    import pyarrow.parquet as pq

    errors = pq.read_table(fs.open(fs.glob("labels/run1/runs/*/errors.parquet")[0], "rb")).to_pylist()
    assert errors[0]["source_uri"].endswith("broken.mp4") and errors[0]["stage"] == "probe"
    frames = pq.read_table("labels/run1/frames", filesystem=fs, partitioning="hive").to_pandas()
    walkers = frames[frames["video_id"].astype(str).str.startswith("walkers")]
    assert sorted(walkers["frame_index"]) == list(range(12)) and (walkers["status"] == "ok").all()
    poses = pq.read_table("labels/run1/poses", filesystem=fs, partitioning="hive").to_pandas()
    assert len(poses) == frames["n_persons"].sum() > 0
    assert set(poses["source_uri"]) == {"s3://media/clips/walkers.mp4"}  # the boxes file covers the clip only
    coco = frames[frames["video_id"].astype(str).str.startswith("coco")]
    assert sorted(coco["frame_index"]) == [0, 1] and (coco["status"] == "ok").all()


def _kill_ray_under(temp_dir: str) -> None:
    """Stop only the Ray processes this test started (never ``ray stop``: it ends every Ray process here)."""
    subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_submit(sample, tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rp-", dir="/tmp")  # short: Ray's socket paths are length-limited
    # Every port explicit and free: another Ray on the host (a second checkout's tests, a user's cluster) would
    # otherwise hold the default dashboard-agent port 52365, and `ray job submit` answers "No available agent".
    port, dash, agent, agent_grpc, metrics = (free_port() for _ in range(5))
    ray_bin = str(Path(sys.executable).parent / "ray")
    # As on a cluster node where the project is installed: "python" on PATH is the environment's interpreter.
    env = {
        **os.environ,
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        subprocess.run(
            [
                ray_bin,
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=2",
                f"--temp-dir={temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                f"--dashboard-agent-listen-port={agent}",
                f"--dashboard-agent-grpc-port={agent_grpc}",
                f"--metrics-export-port={metrics}",
                "--disable-usage-stats",
            ],
            check=True,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=180,
        )
        out = tmp_path / "labels"
        submit = [
            ray_bin,
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{dash}",
            "--working-dir",
            str(REPO),
            "--",
            "python",
            "-m",
            "jobs.label",
            "--input",
            str(sample / "walkers.mp4"),
            "--output",
            str(out),
            "--set",
            "detector.arch=precomputed",
            "--set",
            f"detector.weights={sample / 'walkers_dets.json'}",
            *FAST,
        ]
        for _ in range(30):  # the head's job agent comes up a few seconds after `ray start` returns
            proc = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
            if "No available agent" not in proc.stderr + proc.stdout:
                break
            time.sleep(2)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "succeeded" in proc.stdout
        summary = json.loads(next((out / "runs").glob("*/summary.json")).read_text())
        assert summary["published"] == 1 and summary["frames"] == 12 and summary["random_weights"] is True
        # A job on a cluster only disconnects: shutdown_ray's kill of the autoscaler monitor is for a local Ray it
        # started, never a cluster's (the monitor is still there).
        monitor = subprocess.run(["pgrep", "-f", f"autoscaler/_private/monitor.py.*{temp_dir}"], capture_output=True)
        assert monitor.returncode == 0, "the cluster's autoscaler monitor is gone"
    finally:
        _kill_ray_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
