"""``jobs.label`` refuses what could never run, before any work: resources that leave no CPU for the CPU tasks (or
ask for GPUs the cluster lacks), and storage locations it cannot use; and a stalled run is never silent."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_LABEL

from jobs.label import main as label_main
from jobs.make_sample import main as make_sample
from pipelines.configs import from_mapping
from pipelines.label import LabelConfig, RunConfig

REPO = Path(__file__).resolve().parents[2]

FAST = FAST_LABEL
RANDOM_DETECTOR = ["--set", "detector.random_weights=true"]


def _cfg(**resources) -> LabelConfig:
    return from_mapping(
        LabelConfig,
        {
            "detector": {"random_weights": True},
            "sppe": {"arch": "fastpose_res18", "random_weights": True},
            "resources": resources,
        },
    )


# ---- resources ---------------------------------------------------------------------------------------------------


def test_check_resources_refuses_actors_that_take_every_cpu():
    from pipelines.label import check_resources

    half = {"detect": {"num_cpus": 0.5}, "sppe": {"num_cpus": 0.5}}  # the defaults before issue 13
    check_resources(_cfg(**half), 2)  # 0.5 + 0.5 of 2 leaves 1.0
    check_resources(_cfg(), 1)  # unset: planned from the CPUs (plan_resources), so it always fits
    check_resources(_cfg(detect={"num_cpus": 0.75}, sppe={"num_cpus": 0.75}), 2, 0)  # leaves 0.5 ≥ 0.25
    with pytest.raises(ValueError) as e:
        check_resources(_cfg(**half), 1)  # 0.5 + 0.5 of 1 leaves 0
    assert str(e.value) == (
        "resources: detect 1 actor × 0.5 CPU + sppe 1 actor × 0.5 CPU = 1 of 1 CPUs leaves 0 < 0.25 "
        "(resources.decode_cpus) for decode tasks, so the pipeline would hang; lower resources.*.num_cpus or "
        "resources.*.actors, or give it more CPUs"
    )
    with pytest.raises(ValueError, match=r"detect 1 actor × 1 CPU \+ sppe 1 actor × 1 CPU = 2 of 2 CPUs leaves 0"):
        check_resources(_cfg(detect={"num_cpus": 1}, sppe={"num_cpus": 1}), 2)
    with pytest.raises(ValueError, match=r"detect 3 actors × 0.5 CPU .* = 2 of 2 CPUs"):
        check_resources(_cfg(detect={"actors": 3, "num_cpus": 0.5}, sppe={"num_cpus": 0.5}), 2)
    # the largest CPU task is what must fit
    with pytest.raises(ValueError, match=r"leaves 1 < 1.5 \(resources.publish_cpus\) for publish tasks"):
        check_resources(_cfg(publish_cpus=1.5, **half), 2)
    assert "\n" not in str(e.value)


def test_check_resources_ignores_the_absent_sppe_pool():
    from pipelines.label import check_resources

    cfg = from_mapping(
        LabelConfig,
        {
            "detector": {"arch": "yolo", "weights": "x.pt"},
            "sppe": {"arch": "detector"},
            "resources": {"detect": {"num_cpus": 0.75}, "sppe": {"num_cpus": 8}},
        },
    )
    check_resources(cfg, 1)  # only the detector pool exists: 0.75 of 1 leaves 0.25


def test_check_resources_refuses_gpus_the_cluster_lacks():
    from pipelines.label import check_resources

    gpu = _cfg(detect={"num_gpus": 0.5, "actors": 2}, sppe={"num_gpus": 0.5})
    check_resources(gpu, 4, None)  # GPUs not known yet: not checked
    check_resources(gpu, 4, 2)
    with pytest.raises(ValueError) as e:
        check_resources(gpu, 4, 0)
    assert str(e.value).startswith(
        "resources: detect 2 actors × 0.5 GPU + sppe 1 actor × 0.5 GPU = 1.5 GPUs but the cluster has 0"
    )
    with pytest.raises(ValueError, match="= 1.5 GPUs but the cluster has 1"):
        check_resources(gpu, 4, 1)


@pytest.fixture(scope="module")
def walkers(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("walkers")
    assert make_sample(["--out", str(root), "--frames", "16", "--persons", "1", "--size", "256x160"]) == 0
    return str(root / "walkers.mp4"), str(root / "walkers_dets.json")


def _cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m jobs.label`` on a local Ray it starts; a hang fails the test at ``timeout``, never blocks it."""
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "jobs.label", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def _sample_args(walkers, out: Path) -> list[str]:
    video, dets = walkers
    return [
        "--input",
        video,
        "--output",
        str(out),
        "--set",
        "detector.arch=precomputed",
        "--set",
        f"detector.weights={dets}",
        *FAST,
    ]


@pytest.mark.slow
def test_one_cpu_is_refused_before_ray_starts(walkers, tmp_path):
    """Half-CPU pools (the old defaults) on ``--num-cpus 1`` hung forever without a word; now exit 2 with the
    arithmetic. (Unset pools are sized to fit: tests/pipelines/test_resources.py.)"""
    t0 = time.monotonic()
    half = ["--set", "resources.detect.num_cpus=0.5", "--set", "resources.sppe.num_cpus=0.5"]
    res = _cli([*_sample_args(walkers, tmp_path / "out"), "--num-cpus", "1", *half])
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: resources: detect 1 actor × 0.5 CPU + sppe 1 actor × 0.5 CPU = 1 of 1 CPUs leaves 0 < 0.25 "
        "(resources.decode_cpus) for decode tasks, so the pipeline would hang; lower resources.*.num_cpus or "
        "resources.*.actors, or give it more CPUs"
    ]
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "out").exists()  # nothing was written, not even the output probe


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_pool_on_a_cluster_without_gpus_is_refused_once_ray_runs(walkers, tmp_path):
    """The local Ray's GPUs are known once it runs: refused there, before any Dataset is built."""
    res = _cli([*_sample_args(walkers, tmp_path / "out"), "--num-cpus", "2", "--set", "resources.detect.num_gpus=1"])
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: resources: detect 1 actor × 1 GPU = 1 GPUs but the cluster has 0, so the pipeline would hang; "
        "lower resources.*.num_gpus or resources.*.actors (0 GPUs runs on CPU), or use a GPU cluster"
    ]
    assert "Traceback" not in res.stderr and not list((tmp_path / "out").rglob("*.parquet"))


# ---- the stall watchdog ------------------------------------------------------------------------------------------


def test_run_stall_warning_s_is_configurable():
    assert RunConfig().stall_warning_s == 300
    assert from_mapping(RunConfig, {"stall_warning_s": "0"}).stall_warning_s == 0
    with pytest.raises(ValueError, match="stall_warning_s"):
        from_mapping(RunConfig, {"stall_warning_s": -1})


def test_stall_watchdog_warns_naming_the_chunk(caplog):
    from jobs.label import StallWatchdog

    log = logging.getLogger("test.watchdog")
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        with StallWatchdog(0.2, log=log, poll_s=0.02) as w:
            w.chunk("1/3 (2 videos from a)")
            w.done()  # progress resets the clock
            w.chunk("2/3 (2 videos from c)")
            deadline = time.monotonic() + 10
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.02)
    assert caplog.records, "no stall warning was logged"
    msg = caplog.records[0].getMessage()
    assert caplog.records[0].levelno == logging.WARNING
    assert "chunk 2/3 (2 videos from c)" in msg and "no chunk finished for 0 s" in msg


def test_stall_watchdog_is_quiet_while_chunks_finish_and_when_disabled(caplog):
    from jobs.label import StallWatchdog

    log = logging.getLogger("test.watchdog")
    with caplog.at_level(logging.WARNING, logger="test.watchdog"):
        w = StallWatchdog(10.0, log=log)
        w.chunk("1/1")
        assert not w.check()  # 0 s of 10
        w._since -= 11  # as if 11 s went by without a finished chunk
        assert w.check() and not w.check()  # warns once per interval, not on every poll
        w._since -= 10
        assert w.check()
        w.done()
        assert not w.check()
        off = StallWatchdog(0, log=log)
        off._since -= 1e6
        with off:
            assert off._thread is None and not off.check()
    assert len(caplog.records) == 2


# ---- storage locations ---------------------------------------------------------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def _gcsfs_missing() -> bool:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(not _gcsfs_missing(), reason="gcsfs is installed")
def test_output_on_a_protocol_without_its_package(walkers, tmp_path, capsys):
    assert (
        label_main(["--input", walkers[0], "--output", "gs://bucket/x", *FAST, *RANDOM_DETECTOR, "--num-cpus", "2"])
        == 2
    )
    assert _one_error_line(capsys) == (
        "error: output gs://bucket/x: fsspec protocol 'gs' needs the package gcsfs (pip install gcsfs)"
    )


@pytest.mark.skipif(not _gcsfs_missing(), reason="gcsfs is installed")
def test_input_on_a_protocol_without_its_package(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        label_main(["--input", "gs://bucket/videos", "--output", str(out), *FAST, *RANDOM_DETECTOR, "--num-cpus", "2"])
        == 2
    )
    assert _one_error_line(capsys) == (
        "error: input gs://bucket/videos: fsspec protocol 'gs' needs the package gcsfs (pip install gcsfs)"
    )
    assert (
        label_main(
            ["--input", "nosuch://bucket/videos", "--output", str(out), *FAST, *RANDOM_DETECTOR, "--num-cpus", "2"]
        )
        == 2
    )
    assert _one_error_line(capsys) == "error: input nosuch://bucket/videos: fsspec does not know the protocol 'nosuch'"
    assert not out.exists()


@pytest.fixture
def unreachable_s3(monkeypatch):
    """S3 at a closed local port with dummy credentials: every request fails fast (one attempt)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    for k, v in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "dummy",
        "AWS_SECRET_ACCESS_KEY": "dummy",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
    }.items():
        monkeypatch.setenv(k, v)
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_s3_output_and_input(walkers, tmp_path, capsys, unreachable_s3):
    assert (
        label_main(["--input", walkers[0], "--output", "s3://bucket/x", *FAST, *RANDOM_DETECTOR, "--num-cpus", "2"])
        == 2
    )
    line = _one_error_line(capsys)
    assert line.startswith("error: output s3://bucket/x: ") and "127.0.0.1:9" in line, line
    out = tmp_path / "out"
    assert (
        label_main(
            ["--input", walkers[0], "s3://bucket/in", "--output", str(out), *FAST, *RANDOM_DETECTOR, "--num-cpus", "2"]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert line.startswith("error: input s3://bucket/in: ") and "127.0.0.1:9" in line, line
    assert not out.exists()


def test_alphapose_config_sets_arch_keypoints_decoder_and_whole_body_pose_nms(tmp_path):
    """``sppe.alphapose_config`` (AlphaPose's Halpe-136 DCN combined YAML, its model keys) fills the SPPE settings
    and, for a 136-keypoint regression-type model, AlphaPose's whole-body pose-NMS constants."""
    import yaml

    from jobs.label import build_config
    from models.pose_nms import WHOLEBODY_REGRESSION_PARAMS
    from pipelines.configs import ConfigError

    path = tmp_path / "halpe136_dcn_combined.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "DATA_PRESET": {"NUM_JOINTS": 136, "LOSS_TYPE": "Combined"},
                "MODEL": {
                    "TYPE": "FastPose",
                    "CONV_DIM": 256,
                    "NUM_LAYERS": 50,
                    "DCN": {"MODULATED": False, "DEFORM_GROUP": 1},
                    "STAGE_WITH_DCN": [False, True, True, True],
                },
                "LOSS": {"TYPE": "Combined", "NORM_TYPE": "sigmoid"},
            }
        )
    )
    cfg = build_config(
        None, [f"sppe.alphapose_config={path}", "sppe.random_weights=true", "detector.random_weights=true"]
    )
    s = cfg.sppe
    assert (s.arch, s.num_joints, s.keypoint_set, s.decode) == ("fastpose_dcn_res50", 136, "halpe136", "combined")
    assert cfg.pose_nms == WHOLEBODY_REGRESSION_PARAMS
    # an explicit pose_nms section wins; a contradicting SPPE setting is refused, naming both
    cfg = build_config(
        None,
        [
            f"sppe.alphapose_config={path}",
            "sppe.random_weights=true",
            "detector.random_weights=true",
            "pose_nms.gamma=22.48",
        ],
    )
    assert cfg.pose_nms.gamma == 22.48 and cfg.pose_nms != WHOLEBODY_REGRESSION_PARAMS
    with pytest.raises(ConfigError, match=r"sppe.num_joints=17 contradicts sppe.alphapose_config .*\(136\)"):
        build_config(
            None,
            [
                f"sppe.alphapose_config={path}",
                "sppe.num_joints=17",
                "sppe.random_weights=true",
                "detector.random_weights=true",
            ],
        )
    with pytest.raises(ConfigError, match="sppe.alphapose_config: .*nope.yaml: AlphaPose config not found"):
        build_config(None, [f"sppe.alphapose_config={tmp_path / 'nope.yaml'}", "detector.random_weights=true"])


# ---- precision ---------------------------------------------------------------------------------------------------


def test_precision_auto_is_resolved_for_this_machine_before_hashing(monkeypatch):
    """``build_config`` (what jobs.label hashes) resolves ``sppe.precision: auto``: bf16 for a heatmap SPPE where the
    CPU computes bf16 natively, fp32 for a GPU pool, on other CPUs and for BlazePose; explicit precisions are kept."""
    from jobs.label import build_config

    fastpose = ["detector.random_weights=true", "sppe.arch=fastpose_res18", "sppe.random_weights=true"]
    demo = str(REPO / "configs" / "demo.yaml")
    monkeypatch.setenv("RAYPOSE_CPU_BF16", "1")
    assert build_config(None, fastpose).sppe.precision == "bf16"
    assert build_config(None, [*fastpose, "resources.sppe.num_gpus=1"]).sppe.precision == "fp32"
    assert build_config(None, [*fastpose, "sppe.device=cuda"]).sppe.precision == "fp32"
    assert build_config(None, [*fastpose, "sppe.precision=int8"]).sppe.precision == "int8"
    cfg = build_config(demo, [])
    assert (cfg.sppe.arch, cfg.sppe.precision, cfg.detector.precision) == ("blazepose_full", "fp32", "fp32")
    monkeypatch.setenv("RAYPOSE_CPU_BF16", "0")
    assert build_config(None, fastpose).sppe.precision == "fp32"
    assert build_config(None, [*fastpose, "sppe.precision=bf16"]).sppe.precision == "bf16"


def test_exact_refuses_a_contradicting_precision_before_ray(tmp_path, capsys):
    img = tmp_path / "in"
    img.mkdir()
    rc = label_main(["--input", str(img), "--output", str(tmp_path / "out"), "--exact", "--set", "sppe.precision=bf16"])
    assert rc == 2
    assert "--exact runs fp32 networks, but --set sppe.precision=bf16" in capsys.readouterr().err
