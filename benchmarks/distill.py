"""Distillation: a real pose model labels videos, its pseudo-labels train a FastPose from scratch, both are scored.

    python -m benchmarks.distill [--work /tmp/raypose-distill] [--epochs 12] [--proposals-per-person 8]
        [--num-cpus 2] [--out benchmarks/results/distill.json]

The loop of the README's "Training an SPPE", run on real data with the commands a user types (each step is a
``python -m jobs.…`` subprocess, printed before it runs):

1. teacher = ``configs/demo.yaml`` (YOLO11n boxes → BlazePose, real weights of ``make weights``) labels the training
   media of ``../shared/data``: the two street clips (``videos/``), the PoseTrack'18 clip
   (``posetrack18/videos/000001_mpiinew_test/…_10frames.mp4``), three PoseTrack'18 val frames and AlphaPose's three
   demo photos (29 frames);
2. ``jobs.proposals --labels`` turns its keypoints into pseudo-labelled samples (persons with pose score ≥ 0.5,
   joints ≥ 0.5; DPG proposals, AlphaPose's augmentations), decoding exactly the labelled video frames;
3. ``jobs.train_sppe`` trains FastPose-res18 from scratch on them (validation AP each epoch on the 4 COCO images of
   ``../shared/data/coco``, which it never trains on);
4. teacher and student label the held-out Bonn clip (``bonn_posetrack/060470979.mp4``, 41 frames, never seen) with
   the same YOLO11n boxes, and ``jobs.evaluate --kind pckh`` scores both against its ground truth (CrowdPose-14
   joints; PCKh@0.5 on the 12 joints COCO-17 shares with it), and ``--kind coco`` on the COCO images.

Written to ``benchmarks/results/distill.json`` (ignored by git, as every benchmark result).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import write_result

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TRAIN_INPUTS = [
    DATA / "videos" / "mmpose_demo.mp4",
    DATA / "videos" / "mmtracking_demo.mp4",
    DATA / "posetrack18" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test_10frames.mp4",
    *sorted((DATA / "posetrack18" / "images" / "val").glob("*_mpii_test")),  # one image each
    DATA / "alphapose",  # AlphaPose's three demo photos
]
BONN_VIDEO, BONN_GT = DATA / "bonn_posetrack" / "060470979.mp4", DATA / "bonn_posetrack" / "060470979.json"
COCO_GT, COCO_IMAGES = DATA / "coco" / "test_coco.json", DATA / "coco"
CONFIG = REPO / "configs" / "demo.yaml"


def _run(args: list[str], log: Path) -> float:
    """Run ``python -m …`` in the repo, its output to ``log``; raise with the log's tail on failure."""
    cmd = [sys.executable, "-m", *args]
    print("$ python -m " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise SystemExit(f"step failed (exit {rc}): {' '.join(args)}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def _label(inputs: list[Path], out: Path, extra: list[str], num_cpus: int, log: Path) -> float:
    args = ["jobs.label", "--input", *map(str, inputs), "--output", str(out), "--config", str(CONFIG)]
    return _run([*args, *extra, "--num-cpus", str(num_cpus)], log)


def _evaluate(out: Path, gt: Path, kind: str, log: Path) -> dict:
    dest = out / "eval" / f"{kind}.json"
    _run(["jobs.evaluate", "--output", str(out), "--gt", str(gt), "--kind", kind, "--out", str(dest)], log)
    return json.loads(dest.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/raypose-distill", help="folder for every intermediate output")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--proposals-per-person", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/distill.json")
    args = p.parse_args(argv)
    missing = [str(f) for f in [*TRAIN_INPUTS, BONN_VIDEO, BONN_GT, COCO_GT] if not f.exists()]
    if missing:
        raise SystemExit(f"missing data (../shared/data beside the clone): {', '.join(missing)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    seconds = {}

    seconds["teacher_label"] = _label(TRAIN_INPUTS, work / "teacher_train", [], args.num_cpus, logs / "1_label.log")
    seconds["proposals"] = _run(
        [
            "jobs.proposals",
            "--labels",
            str(work / "teacher_train"),
            "--out",
            str(work / "proposals"),
            "--mode",
            "dpg",
            "--proposals-per-person",
            str(args.proposals_per_person),
            "--augment",
            "alphapose_1x",
            "--num-cpus",
            str(args.num_cpus),
        ],
        logs / "2_proposals.log",
    )
    proposals = json.loads((work / "proposals" / "summary.json").read_text())
    seconds["train"] = _run(
        [
            "jobs.train_sppe",
            "--proposals",
            str(work / "proposals"),
            "--out",
            str(work / "train"),
            "--name",
            "distill-res18",
            "--arch",
            "fastpose_res18",
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--workers",
            "1",
            "--cpus-per-worker",
            "1",
            "--threads",
            str(args.num_cpus),
            "--shuffle-buffer",
            "512",
            "--val-gt",
            str(COCO_GT),
            "--val-images",
            str(COCO_IMAGES),
        ],
        logs / "3_train.log",
    )
    ckpt = work / "train" / "final.pth"  # the last epoch's export (sppe_epoch_<N>.pth counts epochs from 1)
    student = ["--set", "sppe.arch=fastpose_res18", "--set", f"sppe.checkpoint={ckpt}"]
    results = {}
    for who, extra in (("teacher", []), ("student", student)):
        bonn, coco = work / f"{who}_bonn", work / f"{who}_coco"
        seconds[f"{who}_bonn"] = _label([BONN_VIDEO], bonn, extra, args.num_cpus, logs / f"4_{who}_bonn.log")
        _label([COCO_IMAGES], coco, extra, args.num_cpus, logs / f"4_{who}_coco.log")
        pckh = _evaluate(bonn, BONN_GT, "pckh", logs / f"5_{who}_pckh.log")
        ap = _evaluate(coco, COCO_GT, "coco", logs / f"5_{who}_coco.log")
        results[who] = {"bonn_pckh": pckh, "coco": ap}
    metric_files = sorted((work / "train" / "metrics").glob("epoch_*.json"), key=lambda f: int(f.stem.split("_")[1]))
    metrics = [json.loads(f.read_text()) for f in metric_files]
    report = {
        "train_videos": [str(v.relative_to(DATA)) for v in TRAIN_INPUTS],
        "proposals": proposals,
        "epochs": args.epochs,
        "checkpoint": str(ckpt),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "results": results,
        "train_metrics": metrics,
    }
    write_result(report, args.out)
    print(json.dumps({w: {k: _headline(v) for k, v in r.items()} for w, r in results.items()}, indent=1))
    return 0


def _headline(res: dict) -> dict:
    """The summary numbers of a jobs.evaluate result (PCKh total, or AP/AP50/AR)."""
    stats = res.get("stats") or {}
    keep = {k: stats[k] for k in ("AP", "AP50", "AR", "PCKh", "total", "mean") if k in stats}
    return keep or {k: v for k, v in res.items() if isinstance(v, (int, float))}


if __name__ == "__main__":
    raise SystemExit(main())
