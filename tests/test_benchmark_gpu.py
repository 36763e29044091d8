"""``benchmarks/gpu.py``: its CI mode runs the whole chain on the CPU (so the GPU benchmark cannot rot), its
nvidia-smi sampler parses what nvidia-smi prints, and on a CUDA machine a tiny run takes the fp16, GPU-crop path."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import STAGES, GpuSampler, main


@pytest.fixture
def real_weights() -> None:
    from models.zoo import WeightsMissingError, weights_file

    try:
        weights_file("yolo11n_pose")
        weights_file("blazepose_full")
    except WeightsMissingError as e:
        pytest.skip(str(e))


def _check_rows(rows: list[dict], device_type: str) -> None:
    assert {r["density"] for r in rows} == {"coco", "bonn"}
    for r in rows:
        assert r["device"].startswith(device_type)
        assert r["frames"] > 0 and r["persons"] > 0, r
        assert r["frames_per_s"] > 0 and r["persons_per_s"] > 0, r
        stages = r["stage_s"]
        assert set(stages) == {*STAGES, "other"}
        assert all(v >= 0 for v in stages.values()), stages
        assert sum(stages[s] for s in STAGES) <= r["total_s"], stages
        assert sum(stages.values()) == pytest.approx(r["total_s"], rel=1e-6, abs=1e-6)
        assert r["frames_per_s"] == pytest.approx(r["frames"] / r["total_s"])


@pytest.mark.slow
def test_ci_mode_runs_the_chain_on_cpu(tmp_path: Path, shared_data: Path, real_weights: None) -> None:
    out = tmp_path / "gpu.json"
    assert main(["--ci", "--data", str(shared_data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gpu"
    assert result["device"] == "cpu"
    assert result["settings"]["ci"] is True
    assert result["settings"]["precision"] in ("fp32", "bf16")
    _check_rows(result["rows"], "cpu")
    for r in result["rows"]:
        assert r["sppe"] == "blazepose_full" and r["sppe_weights"].startswith("real")
        assert r["gpu"] == "n/a" and r["timed_passes"] == 1
    by_density = {r["density"]: r for r in result["rows"]}
    assert by_density["coco"]["frames"] == 4  # the four COCO val images
    assert by_density["bonn"]["frames"] == 4  # the Bonn clip's first four frames
    assert by_density["bonn"]["persons"] >= 4 * 3  # four people on paddle boards in every frame


def test_gpu_sampler_parses_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in nvidia-smi on PATH: the sampler asks for the device's GPU and summarises its answers."""
    fake = tmp_path / "nvidia-smi"
    log = tmp_path / "calls"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "37, 1234"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    sampler = GpuSampler(torch.device("cuda", 1), interval=0.05)
    with sampler:
        deadline = time.monotonic() + 20
        while len(sampler.samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    summary = sampler.summary()
    assert summary["samples"] >= 2
    assert summary["util_mean_pct"] == 37 and summary["util_max_pct"] == 37
    assert summary["mem_used_max_mib"] == 1234
    assert "--id=5" in log.read_text().splitlines()[0]  # CUDA device 1 of "3,5" is nvidia-smi's GPU 5


def test_gpu_sampler_without_samples_says_na() -> None:
    assert GpuSampler(torch.device("cuda", 0)).summary() == "n/a"


@pytest.mark.gpu
@pytest.mark.slow
def test_tiny_cuda_run_uses_fp16_and_gpu_crops(tmp_path: Path, shared_data: Path, real_weights: None) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    out = tmp_path / "gpu.json"
    args = ["--device", "cuda", "--coco-repeat", "1", "--bonn-repeat", "1", "--bonn-frames", "8", "--batch", "4"]
    args += ["--warmup", "1", "--passes", "1", "--cpu-frames", "0", "--sppe", "blazepose_full", "fastpose_res50"]
    assert main([*args, "--data", str(shared_data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cuda"
    _check_rows(result["rows"], "cuda")
    assert {r["sppe"] for r in result["rows"]} == {"blazepose_full", "fastpose_res50"}
    for r in result["rows"]:
        assert r["precision"] == "fp16" and r["crop_backend"] == "torch"
        assert r["cuda_max_allocated_mib"] > 0
        if r["sppe"] == "fastpose_res50":
            assert r["sppe_weights"] == "RANDOM"
        else:
            assert r["sppe_weights"].startswith("real")
