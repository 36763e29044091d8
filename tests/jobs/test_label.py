"""``jobs.label`` end to end on local Ray: real media and corrupt inputs, the schema, resume, and crash recovery."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FAST_LABEL

from jobs.label import main as label_main
from jobs.make_sample import main as make_sample
from store.schema import FRAMES_SCHEMA, KEYPOINT_SCHEMA

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]

FAST = FAST_LABEL


@pytest.fixture(scope="module")
def ray_session():
    import ray

    os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=1 << 30, logging_level="ERROR")
    yield
    ray.shutdown()


def _write_zero_frame_video(path: Path) -> None:
    import av

    out = av.open(str(path), "w")  # a header-only mp4: a video track that never got a frame
    s = out.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    assert path.stat().st_size > 0


@pytest.fixture(scope="module")
def media(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("media")
    bonn = shared_data / "bonn_posetrack" / "060470979.mp4"
    data = bonn.read_bytes()
    (root / "bad").mkdir()
    (root / "bad" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "bad" / "text.mp4").write_text("not a video at all\n")
    _write_zero_frame_video(root / "bad" / "empty.mp4")
    imgs = root / "images"
    imgs.mkdir()
    shutil.copy(shared_data / "coco" / "000000196141.jpg", imgs / "000000196141.jpg")
    (imgs / "000000000001.jpg").write_bytes(b"\xff\xd8\xff broken")
    return root


def _read(out: Path, table: str):
    return pq.read_table(str(out / table), partitioning="hive")


def test_label_real_media_schema_errors_and_resume(ray_session, shared_data, media, tmp_path, monkeypatch):
    out = tmp_path / "out"
    inputs = [
        str(shared_data / "videos"),
        str(shared_data / "bonn_posetrack" / "060470979.mp4"),
        str(shared_data / "coco"),
        str(media / "bad"),
        str(media / "images"),
    ]
    dets = str(shared_data / "coco" / "test_coco_det_AP_H_56.json")
    args = [
        "--input",
        *inputs,
        "--output",
        str(out),
        "--set",
        "detector.arch=precomputed",
        "--set",
        f"detector.weights={dets}",
        *FAST,
    ]
    assert label_main(args) == 0

    summary = json.loads(next((out / "runs").glob("*/summary.json")).read_text())
    assert summary["random_weights"] is True and summary["weights"]["sppe_sha256"] == "random"
    assert summary["sppe_inference"] == {
        "precision": "fp32",
        "batchnorm_folded": True,
        "memory_format": "channels_last",
    }
    # published: 3 real videos, coco, the image folder (one bad image), and the truncated video (what it holds)
    assert summary["inputs"] == 8 and summary["published"] == 6, summary
    errors = pq.read_table(next((out / "runs").glob("*/errors.parquet"))).to_pylist()
    by_uri = {}
    for e in errors:
        by_uri.setdefault(Path(e["source_uri"]).name, []).append(e)
    assert {"text.mp4", "empty.mp4", "000000000001.jpg"} <= set(by_uri)
    assert by_uri["text.mp4"][0]["stage"] == "probe" and by_uri["empty.mp4"][0]["stage"] == "probe"
    assert by_uri["000000000001.jpg"][0]["stage"] == "decode"
    # the truncated video is either rejected by the probe or published with its missing frames reported
    assert "truncated.mp4" in by_uri or any("truncated" in str(p) for p in (out / "poses").iterdir())

    poses, frames = _read(out, "poses"), _read(out, "frames")
    assert poses.schema.remove_metadata().equals(
        KEYPOINT_SCHEMA.append(poses.schema.field("video_id")).remove_metadata()
    )
    assert frames.schema.remove_metadata().equals(
        FRAMES_SCHEMA.append(frames.schema.field("video_id")).remove_metadata()
    )
    md = pq.read_schema(next((out / "poses").glob("*/part-0.parquet"))).metadata
    assert md[b"raypose.random_weights"] == b"true" and md[b"raypose.schema_version"] == b"1"

    fr = frames.to_pandas()
    ps = poses.to_pandas()
    for vid, g in fr.groupby("video_id", observed=True):
        assert sorted(g["frame_index"]) == list(range(len(g)))  # every frame, persons or not
        kept = ps[ps["video_id"] == vid]
        assert len(kept) == g["n_persons"].sum()  # one row per kept person
    bonn = fr[fr["video_id"].astype(str).str.startswith("060470979")]
    assert len(bonn) == 41 and set(bonn["status"]) == {"ok"}
    coco = ps[ps["video_id"].astype(str).str.startswith("coco")]
    assert set(coco["frame_index"]) == {0, 1, 2, 3} and len(coco) > 10  # persons from the precomputed boxes
    assert (coco["keypoint_set"] == "coco17").all() and (coco["sppe_sha256"] == "random").all()
    imgs = fr[fr["video_id"].astype(str).str.startswith("images")]
    assert sorted(imgs["status"]) == ["decode_error", "ok"]

    import duckdb

    q = (
        f"select count(*), count(distinct video_id) "
        f"from read_parquet('{out}/poses/*/*.parquet', hive_partitioning=true)"
    )
    assert duckdb.sql(q).fetchall()[0] == (len(ps), ps["video_id"].nunique())

    # A rerun with the same inputs and config skips every committed video and reprocesses only failures.
    assert label_main(args) == 0
    runs = sorted((out / "runs").glob("*/summary.json"), key=lambda p: json.loads(p.read_text())["run_id"])
    second = [json.loads(p.read_text()) for p in runs if json.loads(p.read_text())["run_id"] != summary["run_id"]][0]
    assert second["skipped_committed"] == 6 and second["published"] == 0 and second["processed"] == 2
    # Only committed inputs: the job decides before starting Ray that there is nothing to run.
    import jobs.label

    def no_ray(*_args, **_kwargs):
        raise AssertionError("Ray was started for a run with nothing to do")

    monkeypatch.setattr(jobs.label, "init_ray", no_ray)
    # (an explicit run id that sorts first: the checks below pick runs by the newest time-stamped id)
    only_done = ["--input", str(shared_data / "coco"), *args[args.index("--output") :], "--run-id", "0-nothing"]
    assert label_main(only_done) == 0
    nothing = json.loads((out / "runs" / "0-nothing" / "summary.json").read_text())
    assert (nothing["inputs"], nothing["skipped_committed"], nothing["processed"]) == (1, 1, 0)
    monkeypatch.undo()
    # A changed config reprocesses.
    assert label_main(args + ["--set", "pose_nms.score_threshold=0.01"]) == 0
    third = max((json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")), key=lambda s: s["run_id"])
    assert third["skipped_committed"] == 0


def test_auto_precision_runs_bf16_where_native_and_exact_reruns_in_fp32(
    ray_session, shared_data, tmp_path, monkeypatch
):
    """The default precision (``auto``) as a job runs it on a CPU with native bf16 (``RAYPOSE_CPU_BF16=1`` stands in
    for the flags): resolved on the driver, recorded in the summary and the effective config, and hashed, so
    ``--exact`` on the same output is a different configuration and reruns the input in fp32 instead of skipping it."""
    monkeypatch.setenv("RAYPOSE_CPU_BF16", "1")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    shutil.copy(shared_data / "coco" / "000000196141.jpg", imgs / "000000196141.jpg")
    out = tmp_path / "out"
    dets = str(shared_data / "coco" / "test_coco_det_AP_H_56.json")
    common = ["--input", str(imgs), "--output", str(out), "--set", "detector.arch=precomputed"]
    common += ["--set", f"detector.weights={dets}", *FAST]
    assert label_main([*common, "--run-id", "auto"]) == 0
    summary = json.loads((out / "runs" / "auto" / "summary.json").read_text())
    assert summary["sppe_inference"] == {
        "precision": "bf16",
        "batchnorm_folded": True,
        "memory_format": "channels_last",
        "heatmap_layer": "fp32",
    }
    assert summary["config"]["sppe"]["precision"] == "bf16" and summary["config"]["detector"]["precision"] == "fp32"
    assert summary["processed"] == 1 and summary["persons"] > 0
    assert label_main([*common, "--run-id", "exact", "--exact"]) == 0
    summary = json.loads((out / "runs" / "exact" / "summary.json").read_text())
    assert summary["processed"] == 1, "--exact must not count as the committed bf16 configuration"
    assert summary["sppe_inference"]["precision"] == "fp32" and summary["config"]["sppe"]["precision"] == "fp32"


def test_bad_configuration_fails_before_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        label_main(
            [
                "--input",
                str(tmp_path / "missing.mp4"),
                "--output",
                str(out),
                *FAST,
                "--set",
                "detector.random_weights=true",
            ]
        )
        == 2
    )
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "a.mp4").write_bytes(b"x")
    assert (
        label_main(
            [
                "--input",
                str(tmp_path / "a.mp4"),
                "--output",
                str(out),
                "--set",
                "sppe.arch=nope",
                "--set",
                "detector.random_weights=true",
            ]
        )
        == 2
    )
    assert "unknown 'nope'" in capsys.readouterr().err
    assert (
        label_main(["--input", str(tmp_path / "a.mp4"), "--output", str(out), "--set", "detector.colour=red", *FAST])
        == 2
    )
    assert "unknown config key detector.colour" in capsys.readouterr().err
    assert label_main(["--input", str(tmp_path / "a.mp4"), "--output", str(out), *FAST]) == 2
    assert "has no weights" in capsys.readouterr().err
    for bad, message in (
        (["tracking.correspondences=sift"], "must be 'none' or 'orb'"),
        (["tracking.orb.matcher=fast"], "choose one of bruteforce, flann, windowed"),
        (["sppe.precision=int4"], "sppe.precision must be one of auto, fp32, bf16, fp16, int8"),
        (["sppe.precision=int8", "resources.sppe.num_gpus=1"], "sppe.precision=int8 runs on the CPU"),
    ):
        assert (
            label_main(
                [
                    "--input",
                    str(tmp_path / "a.mp4"),
                    "--output",
                    str(out),
                    *FAST,
                    "--set",
                    "detector.random_weights=true",
                    *(a for setting in bad for a in ("--set", setting)),
                ]
            )
            == 2
        )
        assert message in capsys.readouterr().err
    assert not out.exists() or not list((out).rglob("*.parquet"))


def test_missing_or_unsafe_real_weights_fail_before_work(tmp_path, capsys, monkeypatch):
    """BlazePose without ``make weights`` names the command; a YOLO ``.pt`` that is not a checkpoint is refused by
    the restricted unpickler before Ray starts."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    monkeypatch.setenv("RAYPOSE_WEIGHTS_DIR", str(tmp_path / "empty"))
    assert (
        label_main(
            [
                "--input",
                str(tmp_path / "a.mp4"),
                "--output",
                str(out),
                "--set",
                "sppe.arch=blazepose_full",
                "--set",
                "detector.random_weights=true",
            ]
        )
        == 2
    )
    assert "make weights" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    assert (
        label_main(
            [
                "--input",
                str(tmp_path / "a.mp4"),
                "--output",
                str(out),
                "--set",
                "detector.arch=yolo",
                "--set",
                f"detector.weights={tmp_path / 'bad.pt'}",
                "--set",
                "sppe.random_weights=true",
            ]
        )
        == 2
    )
    assert "bad.pt" in capsys.readouterr().err
    assert not out.exists() or not list((out).rglob("*.parquet"))


def _walkers(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        d = root / f"w{i}"
        assert (
            make_sample(["--out", str(d), "--frames", "16", "--persons", "1", "--size", "256x160", "--seed", str(i)])
            == 0
        )
        p = root / f"walkers{i}.mp4"
        shutil.move(d / "walkers.mp4", p)
        paths.append(str(p))
    # one detections file for all clips: keys "<frame>.jpg" match every video's frames by basename
    shutil.copy(root / "w0" / "walkers_dets.json", root / "dets.json")
    return paths


def _run_cli(args: list[str], env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.label", *args, "--num-cpus", "2"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **kw},
    )


def _tables(out: Path) -> dict:
    """Every published table, sorted, without run-specific metadata: what must not depend on crashes."""
    res = {}
    for name, keys in (("poses", ["video_id", "frame_index", "person_index"]), ("frames", ["video_id", "frame_index"])):
        df = _read(out, name).to_pandas()
        df["video_id"] = df["video_id"].astype(str)
        res[name] = df.sort_values(keys).reset_index(drop=True)
    return res


def _assert_same(a: dict, b: dict) -> None:
    import pandas as pd

    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
        key = ["video_id", "frame_index"] + (["person_index"] if name == "poses" else [])
        assert not a[name].duplicated(key).any()


def _manifests(out: Path) -> list[Path]:
    return list((out / "_manifest").glob("*.json")) if (out / "_manifest").exists() else []


def _cli_args(paths, dets, out):
    return [
        "--input",
        *paths,
        "--output",
        str(out),
        "--set",
        "detector.arch=precomputed",
        "--set",
        f"detector.weights={dets}",
        "--set",
        "run.chunk_units=1",
        *FAST,
    ]


@pytest.mark.faults
@pytest.mark.extended  # ~60 s; the default suite keeps the killed-actor case below (budget 15 min): -m faults
def test_sigkill_driver_then_rerun_equals_clean_run(crash_media, clean_run, tmp_path):
    root, paths = crash_media
    out = tmp_path / "out"
    proc = _run_cli(_cli_args(paths, root / "dets.json", out))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _manifests(out):
        time.sleep(0.1)
    committed_before_kill = len(_manifests(out))
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    assert 1 <= committed_before_kill < 3, "the kill must land mid-run"
    assert _run_cli(_cli_args(paths, root / "dets.json", out)).wait(timeout=600) == 0
    summaries = [json.loads(p.read_text()) for p in (out / "runs").glob("*/summary.json")]
    assert [s["skipped_committed"] for s in summaries] == [committed_before_kill]  # only the rerun wrote one
    _assert_same(_tables(out), clean_run)


def test_killed_actor_is_restarted_and_output_is_exact(crash_media, clean_run, tmp_path):
    root, paths = crash_media
    out = tmp_path / "out"
    proc = _run_cli(_cli_args(paths, root / "dets.json", out))
    killed = False
    deadline = time.time() + 300
    while not killed and time.time() < deadline and proc.poll() is None:
        # this run's SPPE actor only (its session): an actor of an earlier in-process Ray may still be exiting
        found = subprocess.run(
            ["pgrep", "-s", str(proc.pid), "-f", r"MapBatches\(SPPE\)"], capture_output=True, text=True
        ).stdout.split()
        if found:
            time.sleep(1.0)  # let it take work first
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile (the run ended): look again
                os.kill(int(found[0]), signal.SIGKILL)
                killed = True
        time.sleep(0.1)
    assert killed, "no SPPE actor process was seen"
    assert proc.wait(timeout=600) == 0
    _assert_same(_tables(out), clean_run)
