"""SPPE training throughput: Ray Train (``jobs.train_sppe``, 1 worker) against the plain PyTorch loop on the same data.

    python -m benchmarks.train [--arch fastpose_res18] [--samples 96] [--batch-size 16] [--epochs 3] [--rounds 3]
                               [--threads 1] [--crop 256 192] [--gpu] [--out benchmarks/results/train.json]

Both loops run the same ``models.train`` step on the same synthetic proposal shards (``store.training`` rows, written
once to a temporary folder), with the same seed and the same number of torch threads. "ray" is ``jobs.train_sppe.run``:
TorchTrainer with one worker (``--threads`` CPU threads; on GPU one GPU) streaming the shards through Ray Data (decode
and heatmap targets in Ray Data's own process); "plain" is ``jobs.train_sppe.train_plain``: one process reading the
shards with pyarrow and decoding inline. Rounds are interleaved (ray, plain, ray, plain …) so outside load hits both
alike. Throughput is samples/s of the training loop per epoch (data waits included), the first epoch of every run
left out (Ray Data's pipeline start-up, allocator warm-up); the table gives medians over the remaining epochs of all
rounds, and the ratio ray/plain (goal ≥ 0.9). Ray's fixed cost per run (cluster, controller, worker group start) is
reported separately as ``ray_fit_wall_s``; "steady" samples/s leave out each epoch's wait for its first batch (Ray
Data re-runs its pipeline every epoch under Ray Train, a fixed cost per epoch that real
epochs of 10⁵ samples amortise). Weights are random; nothing here is an accuracy result.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from benchmarks import write_result
from jobs.train_sppe import TrainConfig, run, train_plain, validate_config
from store.training import encode_crop, sample_table

__all__ = ["main", "write_synthetic_proposals"]


def write_synthetic_proposals(
    root: Path, *, samples: int, crop_hw: tuple[int, int], k: int = 17, shards: int = 4, seed: int = 0
) -> Path:
    """``samples`` random proposal rows (raw crops, random keypoints) in ``shards`` committed shards."""
    rng = np.random.default_rng(seed)
    h, w = crop_hw
    per = -(-samples // shards)
    for s in range(shards):
        rows = []
        for i in range(min(per, samples - s * per)):
            kps = np.stack([rng.uniform(0, w, k), rng.uniform(0, h, k)], axis=-1).astype(np.float32)
            tw = (rng.uniform(size=k) > 0.2).astype(np.float32)
            kps[tw == 0] = np.nan
            rows.append(
                {
                    "sample_id": f"{s}_{i}",
                    "source": "synthetic",
                    "image_id": str(i),
                    "image_uri": f"mem://{s}/{i}",
                    "person_index": 0,
                    "epoch": 0,
                    "proposal_index": 0,
                    "seed": seed,
                    "label_kind": "gt",
                    "label_score": None,
                    "gt_box_xyxy": [0.0, 0.0, float(w), float(h)],
                    "proposal_box_xyxy": [0.0, 0.0, float(w), float(h)],
                    "branch": "gt",
                    "truncation": "none",
                    "atom": None,
                    "empty": False,
                    "crop": encode_crop(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
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
        if rows:
            d = root / "samples" / f"shard={s:04d}"
            d.mkdir(parents=True)
            pq.write_table(sample_table(rows), d / "part-0.parquet")
            (root / "_manifest").mkdir(exist_ok=True)
            (root / "_manifest" / f"{s:04d}.json").write_text("{}")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="fastpose_res18")
    p.add_argument("--samples", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--crop", type=int, nargs=2, default=[256, 192])
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--out", default="benchmarks/results/train.json")
    args = p.parse_args(argv)
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    props = write_synthetic_proposals(tmp / "proposals", samples=args.samples, crop_hw=tuple(args.crop))
    base = dict(
        proposals=str(props),
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        threads=args.threads,
        gpu=args.gpu,
        cpus_per_worker=args.cpus_per_worker,
        seed=0,
    )
    torch.set_num_threads(args.threads)
    ray.init(include_dashboard=False, logging_level="ERROR")
    ray_rates, plain_rates, fit_walls = [], [], []
    ray_steady, plain_steady, ray_first, plain_first = [], [], [], []

    def steady(e: dict) -> float:
        return e["samples"] / max(e["seconds"] - e["first_batch_s"], 1e-9)

    try:
        for r in range(args.rounds):
            cfg = validate_config(TrainConfig(out=str(tmp / f"ray{r}"), name=f"bench{r}", **base))
            t0 = time.perf_counter()
            summary = run(cfg)
            fit_walls.append(time.perf_counter() - t0)
            ray_epochs = summary["epochs"][1:]
            ray_rates += [e["samples_per_s"] for e in ray_epochs]
            ray_steady += [steady(e) for e in ray_epochs]
            ray_first += [e["first_batch_s"] for e in ray_epochs]
            pcfg = validate_config(TrainConfig(out=str(tmp / f"plain{r}"), name=f"plain{r}", **base))
            plain_epochs = train_plain(pcfg, threads=args.threads)[1:]
            plain_rates += [e["samples_per_s"] for e in plain_epochs]
            plain_steady += [steady(e) for e in plain_epochs]
            plain_first += [e["first_batch_s"] for e in plain_epochs]
            print(f"round {r}: ray {ray_rates[-(args.epochs - 1) :]} plain {plain_rates[-(args.epochs - 1) :]}")
    finally:
        ray.shutdown()
    ray_med, plain_med = statistics.median(ray_rates), statistics.median(plain_rates)
    result = {
        "benchmark": "train",
        "arch": args.arch,
        "crop_hw": args.crop,
        "samples_per_epoch": args.samples,
        "batch_size": args.batch_size,
        "epochs_per_run": args.epochs,
        "rounds": args.rounds,
        "threads": args.threads,
        "device": "cuda" if args.gpu else "cpu",
        "ray_samples_per_s_median": ray_med,
        "plain_samples_per_s_median": plain_med,
        "ratio_ray_over_plain": ray_med / plain_med,
        "ray_steady_samples_per_s_median": statistics.median(ray_steady),
        "plain_steady_samples_per_s_median": statistics.median(plain_steady),
        "ratio_steady_ray_over_plain": statistics.median(ray_steady) / statistics.median(plain_steady),
        "ray_first_batch_s_median": statistics.median(ray_first),
        "plain_first_batch_s_median": statistics.median(plain_first),
        "ray_samples_per_s": ray_rates,
        "plain_samples_per_s": plain_rates,
        "ray_fit_wall_s": fit_walls,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if args.gpu and torch.cuda.is_available() else None,
            "load_avg_end": os.getloadavg(),
        },
    }
    print(f"\n{'loop':<8}{'samples/s':>12}{'steady samples/s':>18}{'first batch s':>15}")
    for name, a, b, c in (
        ("ray", ray_med, result["ray_steady_samples_per_s_median"], result["ray_first_batch_s_median"]),
        ("plain", plain_med, result["plain_steady_samples_per_s_median"], result["plain_first_batch_s_median"]),
    ):
        print(f"{name:<8}{a:>12.2f}{b:>18.2f}{c:>15.2f}")
    print(
        f"ratio ray/plain {ray_med / plain_med:.3f} (steady, epoch start-up excluded: "
        f"{result['ratio_steady_ray_over_plain']:.3f})"
    )
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
