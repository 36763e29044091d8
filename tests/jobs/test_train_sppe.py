"""jobs.train_sppe: Ray Train on proposal shards: resume after a killed driver, strict export, validation (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from store.training import encode_crop, sample_table

REPO = Path(__file__).resolve().parents[2]
CROP_HW = (64, 32)  # smallest FastPose-compatible crop: keeps a CPU epoch at a few seconds


def write_proposals(root: Path, *, shards: int = 2, per_shard: int = 4, k: int = 17, seed: int = 0) -> Path:
    """A tiny ``jobs.proposals`` output: synthetic crops (a bright dot per joint), half "gt" and half "jitter" rows,
    ``shards`` committed shards."""
    rng = np.random.default_rng(seed)
    h, w = CROP_HW
    for s in range(shards):
        rows = []
        for i in range(per_shard):
            kps = np.stack([rng.uniform(3, w - 3, k), rng.uniform(3, h - 3, k)], axis=-1).astype(np.float32)
            tw = (rng.uniform(size=k) > 0.2).astype(np.float32)
            kps[tw == 0] = np.nan
            crop = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
            for j in np.flatnonzero(tw):
                x, y = int(kps[j, 0]), int(kps[j, 1])
                crop[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2, j % 3] = 255
            rows.append(
                {
                    "sample_id": f"s{s}_{i}",
                    "source": "synthetic",
                    "image_id": str(i),
                    "image_uri": f"mem://{s}/{i}.jpg",
                    "person_index": 0,
                    "epoch": 0,
                    "proposal_index": 0,
                    "seed": seed,
                    "label_kind": "gt",
                    "label_score": None,
                    "gt_box_xyxy": [4.0, 6.0, 28.0, 58.0],
                    "proposal_box_xyxy": [4.0, 6.0, 28.0, 58.0],
                    "branch": "gt" if i % 2 == 0 else "jitter",
                    "truncation": "none",
                    "atom": None,
                    "empty": False,
                    "crop": encode_crop(crop),
                    "crop_format": "raw",
                    "crop_height": h,
                    "crop_width": w,
                    "image_to_crop": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    "flipped": False,
                    "keypoints": kps,
                    "target_weight": tw,
                    "num_joints": k,
                    "interference_keypoints": [],
                    "interference_types": [],
                }
            )
        d = root / "samples" / f"shard={s:04d}"
        d.mkdir(parents=True)
        pq.write_table(sample_table(rows), d / "part-0.parquet")
        (root / "_manifest").mkdir(exist_ok=True)
        (root / "_manifest" / f"{s:04d}.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def proposals(tmp_path_factory) -> Path:
    return write_proposals(tmp_path_factory.mktemp("proposals"))


def _args(proposals: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        "--proposals", str(proposals), "--out", str(out), "--name", name, "--arch", "fastpose_res18",
        "--epochs", "3", "--batch-size", "4", "--seed", "0", "--threads", "1", *extra,
    ]  # fmt: skip


def _popen(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.train_sppe", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test kills the driver and the local Ray it started
    )


# ---- validation before Ray -------------------------------------------------------------------------------------


def test_bad_inputs_exit_2_before_ray(tmp_path, proposals):
    from jobs.train_sppe import main

    assert main(_args(tmp_path / "nothing", tmp_path / "o", "r")) == 2
    assert main(_args(proposals, tmp_path / "o", "r", "--arch", "nope")) == 2
    assert main(_args(proposals, tmp_path / "o", "r", "--parallel-sppe", str(tmp_path / "x.pth"))) == 2
    assert main(_args(proposals, tmp_path / "o", "r", "--dpg-from-epoch", "5")) == 2
    assert main(_args(proposals, tmp_path / "o", "../escape")) == 2  # the name becomes a folder under --storage


def test_plain_loop_trains_on_the_shards(tmp_path, proposals):
    from jobs.train_sppe import TrainConfig, train_plain, validate_config

    cfg = validate_config(
        TrainConfig(proposals=str(proposals), out=str(tmp_path), name="p", epochs=2, batch_size=4, dpg_from_epoch=1)
    )
    assert cfg.crop_hw == CROP_HW and cfg.num_joints == 17 and len(cfg.files) == 2
    stats = train_plain(cfg, threads=1)
    assert [s["samples"] for s in stats] == [4, 4]  # gt rows in epoch 0, DPG rows in epoch 1
    assert all(np.isfinite(s["loss"]) for s in stats)


def test_jc_targets_option_reads_interference_joints_and_refuses_shards_without_them(tmp_path, proposals):
    """--jc-targets: shards of training schema 1 (no interference columns) are refused before Ray; with them, the
    plain loop trains on targets that carry the 0.5 peaks."""
    import pyarrow.parquet as pq

    from jobs.train_sppe import TrainConfig, main, train_plain, validate_config
    from pipelines.train import iter_local_batches

    old = tmp_path / "v1"
    for f in proposals.glob("samples/*/part-0.parquet"):
        dest = old / f.relative_to(proposals)
        dest.parent.mkdir(parents=True)
        t = pq.read_table(f)
        pq.write_table(t.drop(["interference_keypoints", "interference_types"]), dest)
    assert main(_args(old, tmp_path / "o", "r", "--jc-targets")) == 2
    from store.training import sample_table

    jc = tmp_path / "jc"
    for f in proposals.glob("samples/*/part-0.parquet"):
        dest = jc / f.relative_to(proposals)
        dest.parent.mkdir(parents=True)
        rows = pq.read_table(f).to_pylist()
        for r in rows:  # another person's left shoulder at crop pixel (12, 20): heatmap pixel (3, 5)
            r["interference_keypoints"], r["interference_types"] = [12.0, 20.0], [5]
        pq.write_table(sample_table(rows), dest)
    cfg = validate_config(
        TrainConfig(proposals=str(jc), out=str(tmp_path), name="j", epochs=1, batch_size=4, jc_targets=True)
    )
    (batch, *_) = iter_local_batches(list(cfg.files), 4, jc_targets=True)
    (plain, *_) = iter_local_batches(list(cfg.files), 4)
    labelled = batch["target_weight"][:, 5] > 0
    assert labelled.any() and (batch["targets"][labelled, 5, 5, 3] >= 0.5).all()
    assert (batch["targets"] >= plain["targets"]).all() and (batch["targets"] != plain["targets"]).any()
    assert all(np.isfinite(s["loss"]) for s in train_plain(cfg, threads=1))


# ---- Ray Train: kill the driver after a checkpoint, rerun, same weights as the plain loop ----------------------


def _snapshot_has_checkpoint(storage: Path, name: str) -> bool:
    p = storage / name / "checkpoint_manager_snapshot.json"
    try:
        return "checkpoint_" in p.read_text()
    except OSError:
        return False


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.extended  # ~150 s (two Ray Train start-ups): run with `pytest -m extended`, keeps CI's suite < 15 min
def test_killed_run_resumes_to_the_same_weights_and_exports_strictly(tmp_path, proposals, shared_data):
    """One Ray run with every option on (SSTN + frozen parallel SPPE, bf16 autocast, DPG phase from epoch 1,
    validation AP), killed with its driver after a registered checkpoint and rerun: it resumes, and its exported
    weights equal those of the plain loop (same seed, data order and threads) bit for bit."""
    from jobs.train_sppe import TrainConfig, train_plain_model, validate_config
    from models.checkpoints import load_checkpoint
    from models.sppe import build_sppe

    torch.manual_seed(1)
    parallel = tmp_path / "parallel.pth"
    torch.save(build_sppe("fastpose_res18").state_dict(), parallel)
    coco = shared_data / "coco"
    options = ["--sstn", "--parallel-sppe", str(parallel), "--bf16", "--dpg-from-epoch", "1"]
    out = tmp_path / "out"
    args = _args(proposals, out, "kill1", *options, "--val-gt", str(coco / "test_coco.json"), "--val-images", str(coco))
    proc = _popen(args)
    deadline = time.time() + 240
    while not _snapshot_has_checkpoint(out / "ray_train", "kill1"):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint registered in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "final.pth").exists(), "the run finished before the kill: nothing to resume"

    proc = _popen(args)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["start_epoch"] < 3, summary["start_epoch"]  # resumed, not restarted
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2, 3]
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["phase"] for m in metrics] == ["plain", "dpg", "dpg"] and all("val_AP" in m for m in metrics)

    # The exported checkpoint is a plain AlphaPose-layout state dict that loads strictly into build_sppe(arch).
    model = build_sppe("fastpose_res18")
    load_checkpoint(model, str(out / "final.pth"))
    final = torch.load(out / "final.pth", weights_only=True)

    # The same seed, data and step without Ray and without a kill: the same weights.
    cfg = TrainConfig(
        proposals=str(proposals),
        out=str(tmp_path / "plain"),
        name="p",
        batch_size=4,
        sstn=True,
        parallel_sppe=str(parallel),
        bf16=True,
        dpg_from_epoch=1,
    )
    ref, _ = train_plain_model(validate_config(cfg), threads=1)
    ref_state = ref.sppe.state_dict()
    diff = max(float((final[k].double() - ref_state[k].double()).abs().max()) for k in final)
    assert diff <= 1e-6, f"resumed Ray run and plain loop differ by {diff}"


def test_validation_ap_runs_the_inference_crop_decode_and_coco_eval(shared_data):
    from jobs.train_sppe import load_validation_set, validation_ap
    from models.sppe import build_sppe

    val = load_validation_set(str(shared_data / "coco" / "test_coco.json"), str(shared_data / "coco"), CROP_HW)
    n = len(val["image_ids"])
    assert n > 0 and val["crops"].shape == (n, *CROP_HW, 3) and val["crop_boxes"].shape == (n, 4)
    torch.manual_seed(0)
    stats = validation_ap(build_sppe("fastpose_res18"), val)
    assert set(stats) >= {"val_AP", "val_AR"} and -1.0 <= stats["val_AP"] <= 1.0


def test_gt_and_dpg_runs_in_two_folders_feed_the_dpg_schedule(tmp_path, proposals):
    """AlphaPose's schedule (plain boxes, then DPG) from two jobs.proposals runs: --proposals is repeatable."""
    from jobs.train_sppe import ConfigError, TrainConfig, validate_config

    src = sorted(proposals.glob("samples/shard=*/part-0.parquet"))
    for name, keep in (("gt", lambda b: b == "gt"), ("dpg", lambda b: b != "gt")):
        for f in src:
            t = pq.read_table(f)
            mask = [keep(b) for b in t.column("branch").to_pylist()]
            d = tmp_path / name / f.parent.relative_to(proposals)
            d.mkdir(parents=True)
            pq.write_table(t.filter(mask), d / "part-0.parquet")
            (tmp_path / name / "_manifest").mkdir(exist_ok=True)
            (tmp_path / name / "_manifest" / (f.parent.name.split("=", 1)[1] + ".json")).write_text("{}")
    both = (str(tmp_path / "gt"), str(tmp_path / "dpg"))
    cfg = validate_config(TrainConfig(proposals=both, out=str(tmp_path / "o"), name="r", epochs=2, dpg_from_epoch=1))
    assert len(cfg.files) == 2 * len(src)
    with pytest.raises(ConfigError, match="needs both"):
        validate_config(TrainConfig(proposals=both[:1], out=str(tmp_path / "o"), name="r", epochs=2, dpg_from_epoch=1))


@pytest.mark.s3
def test_out_on_s3_checkpoints_metrics_and_summary(s3_server, tmp_path, proposals):
    """--out may be an s3:// prefix (a cluster's workers share no disk): the write probe, the epoch exports, the
    metrics and the summary go there; a missing bucket is refused before Ray."""
    import fsspec

    from jobs.train_sppe import ConfigError, TrainConfig, _export, _write_epoch_metrics, validate_config, write_summary
    from models.checkpoints import read_state_dict
    from models.sppe import build_sppe

    fs = fsspec.filesystem("s3")
    fs.mkdir("train-bucket")
    with pytest.raises(ConfigError, match="not writable"):
        validate_config(TrainConfig(proposals=str(proposals), out="s3://no-such-bucket/run", name="s", epochs=1))
    cfg = validate_config(TrainConfig(proposals=str(proposals), out="s3://train-bucket/run", name="s", epochs=1))
    assert cfg.storage_path == "s3://train-bucket/run/ray_train"
    model = build_sppe("fastpose_res18", 17)
    _export(cfg, model, 1, last=True)
    _write_epoch_metrics(cfg, {"epoch": 1, "loss": 0.5})
    summary = write_summary(cfg, {}, None, 1.0)
    assert summary["final_checkpoint"] == "s3://train-bucket/run/final.pth" and summary["epochs"][0]["loss"] == 0.5
    assert sorted(fs.ls("train-bucket/run", detail=False)) == [
        f"train-bucket/run/{n}" for n in ("final.pth", "metrics", "metrics.parquet", "sppe_epoch_1.pth", "summary.json")
    ]
    local = tmp_path / "final.pth"
    fs.get("train-bucket/run/final.pth", str(local))
    state, _ = read_state_dict(str(local))
    assert set(state) == set(model.state_dict())


def test_each_training_epoch_reads_the_proposals_drawn_for_it(tmp_path, proposals):
    """Samples made for 2 proposal epochs (jobs.proposals --epochs 2): training epoch e reads epoch e mod 2 only,
    in the plain loop and as Ray Train datasets (one per proposal epoch)."""
    import pyarrow.parquet as pq

    from jobs.train_sppe import ConfigError, TrainConfig, validate_config
    from pipelines.train import dataset_name, iter_local_batches
    from store.training import sample_table

    two = tmp_path / "two"
    for f in proposals.glob("samples/*/part-0.parquet"):
        dest = two / f.relative_to(proposals)
        dest.parent.mkdir(parents=True)
        rows = pq.read_table(f).to_pylist()
        for i, r in enumerate(rows):
            r["epoch"] = i % 2
        pq.write_table(sample_table(rows), dest)
    cfg = validate_config(TrainConfig(proposals=str(two), out=str(tmp_path / "o"), name="e", epochs=4, batch_size=64))
    assert cfg.proposal_epochs == 2
    sizes = [len(next(iter_local_batches(list(cfg.files), 64, proposal_epoch=e))["crops"]) for e in (0, 1)]
    total = len(next(iter_local_batches(list(cfg.files), 64))["crops"])
    assert sizes[0] + sizes[1] == total and min(sizes) > 0
    assert [dataset_name(False, e, 2) for e in range(4)] == ["train_e0", "train_e1", "train_e0", "train_e1"]
    assert dataset_name(True, 3, 1) == "train_dpg"
    gap = tmp_path / "gap"  # epochs 0 and 2 only: not one run's output
    for f in two.glob("samples/*/part-0.parquet"):
        dest = gap / f.relative_to(two)
        dest.parent.mkdir(parents=True)
        rows = pq.read_table(f).to_pylist()
        for r in rows:
            r["epoch"] *= 2
        pq.write_table(sample_table(rows), dest)
    with pytest.raises(ConfigError, match="not 0 … N−1"):
        validate_config(TrainConfig(proposals=str(gap), out=str(tmp_path / "o"), name="g", epochs=1))
