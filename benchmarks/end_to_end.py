"""The whole ``jobs.label`` process on the issue-13 workload, against a bare forward and an AlphaPose ``--sp`` model.

    python -m benchmarks.end_to_end [--repeat 10] [--rounds 3] [--modes default exact old_default int8]
                                    [--bare-persons 400] [--out benchmarks/results/end_to_end.json]
    python -m benchmarks.end_to_end --ci        # CI size: 2 repeats, 1 round, fastpose_res18 (it cannot rot)

Workload (built from ``../shared/data/bonn_posetrack``, never copied into the repo): the 41-frame Bonn clip repeated
``--repeat`` times into one H.264 video (410 frames at 10), and precomputed detections: every ground-truth box
jittered (seeded, σ = 5 % of its size), plus a jittered duplicate of 71 of the clip's 164 boxes, so each clip has
235 persons as in the issue's AlphaPose run (2,350 at ×10). The SPPE is FastPose-res50 with random (seeded)
weights: a throughput measurement, not an accuracy result.

Each round runs, interleaved, each mode as its own ``python -m jobs.label`` process on a local Ray it starts (the
user's experience: whole process, start-up and shutdown included), then the bare forwards:

* ``default``: no settings beyond the workload's; resources, threads, batch and precision are what ``plan_resources``
  and ``precision: auto`` choose on this machine (on a CPU with native bf16: FastPose's trunk in bf16, its heatmap
  layer in fp32; ``models.precision``).
* ``exact``: ``--exact`` (fp32 networks), the mode whose outputs equal AlphaPose's given the same weights and boxes
  (issue 13's side-by-side run: 235 of 235 persons, keypoints within 1.2e-4 px). On a CPU without native bf16 it runs
  the same configuration as ``default``.
* ``old_default``: the configuration before issue 13 (SPPE actor 0.5 CPU → 1 thread, 64 persons per forward).
* ``int8``: ``sppe.precision=int8`` (``models.quantize``: static int8 on CPU; outputs differ from fp32). Its ÷bare
  ratio is against the int8 network's bare forward.
* ``one_stream``: the default with ``resources.sppe.streams=1``: one forward at a time on all the actor's threads,
  as before ``models.streams``.
* ``bare``: ``model(x)`` on normalised crops in one process with the default's threads and batch, over
  ``--bare-persons`` crops (persons/s does not depend on how many), once per precision and stream count the modes
  ran (the actor's form of the network: folded, channels-last, cast as ``models.sppe.cast_for_inference`` casts
  it; with 2 streams, two chunks at once on ``models.streams.ChunkStreams``, each on half the threads); each
  mode's ÷bare ratio is against the bare forward of its own precision and streams.
* ``alphapose_sp``: AlphaPose ``--sp``'s SPPE loop as measured in issue 13 (one process, 2 torch threads, fp32, one
  frame's persons per forward, ≈ 6), forward only: an upper bound for AlphaPose's whole process, whose persons/s on
  the issue's machine (7.82) equalled its forward (0.129 s per crop). AlphaPose itself cannot be installed here; its
  measured figures are quoted next to ours.

Reported per mode: persons/s of the whole process, its ratio to ``bare`` and to ``alphapose_sp``, peak PSS of the
process tree (Ray's raylet, GCS and workers are the driver's descendants; ``/proc/<pid>/smaps_rollup``, every
``PSS_INTERVAL_S``), per-stage seconds from the run summary, the seconds before the labelling Dataset starts and
after it ends (``start s``, ``tail s``: from Ray Data's log lines), and the fixed cost per job (a 4-frame job of the
same config, whole process). Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import write_result

__all__ = ["main", "build_workload"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CLIP = "060470979"
#: AlphaPose's figures from issue 13 (2-core machine, FastPose-res50 random weights, same workload design).
ALPHAPOSE_QUOTED = {
    "default": {"persons_per_s": 7.33, "peak_pss_gib": 2.8},
    "sp": {"persons_per_s": 7.82, "peak_pss_gib": 1.9},
}
MODES = {
    "default": [],
    "exact": ["--exact"],
    "old_default": [
        "--set",
        "resources.sppe.num_cpus=0.5",
        "--set",
        "resources.detect.num_cpus=0.5",
        "--set",
        "resources.sppe.threads=1",  # what Ray's OMP_NUM_THREADS gave the 0.5-CPU actor
        "--set",
        "sppe.batch_size=64",
    ],
    # opt-in int8 (models.quantize): outputs differ from fp32; its bare forward is the int8 network's
    "int8": ["--set", "sppe.precision=int8"],
    # the default with one forward at a time on both threads (before models.streams)
    "one_stream": ["--set", "resources.sppe.streams=1"],
}


def build_workload(
    root: Path, data: Path, repeat: int, seed: int = 0, first: int | None = None
) -> tuple[Path, Path, int]:
    """Write ``bonn_x<repeat>.mp4`` and its detections JSON under ``root``; returns (video, detections, persons).

    ``first``: use only the clip's first frames (the fixed-cost job)."""
    import av

    gt = json.loads((data / "bonn_posetrack" / f"{CLIP}.json").read_text())
    images = sorted(gt["images"], key=lambda im: im["frame_id"])
    frame_of = {im["id"]: im["frame_id"] for im in images}
    with av.open(str(data / "bonn_posetrack" / f"{CLIP}.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    if len(frames) != len(images):
        raise ValueError(f"{CLIP}.mp4 has {len(frames)} frames, its annotation {len(images)}")
    frames = frames[:first]
    boxes_of: dict[int, list[list[float]]] = {}
    for a in gt["annotations"]:
        boxes_of.setdefault(frame_of[a["image_id"]], []).append(a["bbox"])
    rng = np.random.default_rng(seed)
    n_boxes = sum(len(b) for b in boxes_of.values())
    duplicated = set(rng.choice(n_boxes, size=min(71, n_boxes), replace=False).tolist())
    root.mkdir(parents=True, exist_ok=True)
    video = root / f"bonn_x{repeat}{'' if first is None else f'_first{first}'}.mp4"
    h, w = frames[0].shape[:2]
    with av.open(str(video), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18"}
        for _ in range(repeat):
            for f in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    dets = []
    for r in range(repeat):
        k = 0
        for t in range(len(frames)):
            for x, y, bw, bh in boxes_of.get(t, []):
                copies = 2 if k in duplicated else 1
                k += 1
                for _ in range(copies):
                    jx, jy, jw, jh = rng.normal(0, 0.05, 4) * [bw, bh, bw, bh]
                    box = [x + jx, y + jy, max(bw + jw, 8.0), max(bh + jh, 8.0)]
                    dets.append(
                        {
                            "image_id": f"{video.name}/{r * len(frames) + t}.jpg",
                            "category_id": 1,
                            "score": round(float(rng.uniform(0.6, 1.0)), 3),
                            "bbox": [round(float(v), 2) for v in box],
                        }
                    )
    det_path = root / f"bonn_x{repeat}_dets.json"
    det_path.write_text(json.dumps(dets))
    return video, det_path, len(dets)


#: One sample of a running job's tree took 74 ms of CPU (listing /proc, reading ~15 smaps_rollup files): at 0.2 s
#: the sampler took ~27% of a core from the job it measured, but nothing from the bare forward it is compared with.
#: At 2 s it takes ~4%; PSS peaks (models loaded, the object store filled) last far longer than that.
PSS_INTERVAL_S = 2.0


def _pss_tree(root_pid: int) -> int:
    """Sum of PSS over ``root_pid`` and its descendants (``/proc``; shared pages are split fairly)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    total, stack = 0, [root_pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        stack += children.get(p, [])
    return total


#: Ray Data's log lines (``streaming_executor``) that bound a Dataset's execution.
DATASET_START = "Starting execution of Dataset"
DATASET_END = "execution finished in"


def _run_job(args: list[str], out: Path) -> dict:
    """One ``python -m jobs.label`` process: wall seconds, peak PSS of its tree, its run summary, and its phases:
    ``start_s`` from launch to the labelling Dataset's start (imports, validation, Ray's start-up, planning) and
    ``tail_s`` from the Dataset's end to the process's end (publishing, summary, shutdown)."""
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.label", "--output", str(out), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _pss_tree(proc.pid))
            time.sleep(PSS_INTERVAL_S)

    err: list[str] = []
    marks: dict[str, float] = {}

    def read_stderr() -> None:
        # Ray Data logs when the Dataset starts and ends (INFO, stderr): the job's start-up and its tail, per run
        for line in proc.stderr:
            err.append(line)
            if DATASET_START in line:
                marks.setdefault("dataset_start", time.perf_counter() - t0)
            elif DATASET_END in line:
                marks["dataset_end"] = time.perf_counter() - t0

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    proc.stdout.read()
    proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"jobs.label exited {proc.returncode}:\n{''.join(err)[-3000:]}")
    summary = json.loads(next((out / "runs").iterdir()).joinpath("summary.json").read_text())
    phases = {
        "start_s": marks.get("dataset_start", float("nan")),
        "tail_s": wall - marks.get("dataset_end", float("nan")),
    }
    return {"wall_s": wall, "peak_pss_bytes": peak, "summary": summary, "phases": phases}


def _bare_forward(
    arch: str, threads: int, batch: int, persons: int, precision: str, as_actor: bool, streams: int = 1
) -> float:
    """Persons/s of ``model(x)`` alone, in a fresh process (same threads, batch and precision as the job). With
    ``as_actor`` the network takes the SPPE actor's inference form (batch norm folded, channels-last; for int8 the
    actor's quantized network); without, it runs as AlphaPose runs it (NCHW, batch norm as its own op)."""
    fmt = "torch.channels_last" if as_actor else "torch.contiguous_format"
    if precision == "int8":
        build = (
            f"quantize_int8(build_sppe({arch!r}, 17).eval(), "
            "calibration_inputs(ALPHAPOSE_CROP).contiguous(memory_format=torch.channels_last))"
        )
    elif as_actor:
        build = f"cast_for_inference(fold_batchnorm(build_sppe({arch!r}, 17).eval()).to(memory_format={fmt}), dt)"
    else:
        build = f"build_sppe({arch!r}, 17).eval().to(dt).to(memory_format={fmt})"
    code = f"""
import time, torch
from models.sppe import build_sppe, cast_for_inference, fold_batchnorm
from models.quantize import calibration_inputs, quantize_int8
from models.streams import ChunkStreams
from models.transforms import ALPHAPOSE_CROP
from actors.sppe import PRECISION_DTYPES
torch.set_num_threads({threads} // {streams})
torch.manual_seed(0)
dt = getattr(torch, PRECISION_DTYPES[{precision!r}])
m = {build}
x = torch.rand({batch * streams}, 3, 256, 192).to(dt).contiguous(memory_format={fmt})
streams = ChunkStreams({streams}, {threads} // {streams})
def forward(s, e):
    with torch.inference_mode():
        return m(x[s:e])
streams.map(forward, len(x), {batch})
n, t0 = 0, time.perf_counter()
while n < {persons}:
    streams.map(forward, len(x), {batch}); n += len(x)
print(n / (time.perf_counter() - t0))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def _bare_key(summary: dict) -> tuple[str, int]:
    """Which bare forward a job's summary is compared with: (precision, streams)."""
    cfg = summary["config"]
    return cfg["sppe"]["precision"], cfg["resources"]["sppe"].get("streams") or 1


def _label(key: tuple[str, int]) -> str:
    """A bare forward's name in the table and the JSON, e.g. ``fp32/2s``."""
    return f"{key[0]}/{key[1]}s"


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.end_to_end", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--repeat", type=int, default=10, help="clip repeats (41 frames each)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--arch", default="fastpose_res50")
    p.add_argument("--bare-persons", type=int, default=400)
    p.add_argument("--ci", action="store_true", help="CI size: --repeat 2 --rounds 1 --arch fastpose_res18")
    p.add_argument("--out", default="benchmarks/results/end_to_end.json")
    args = p.parse_args(argv)
    if args.ci:
        args.repeat, args.rounds, args.arch, args.bare_persons = 2, 1, "fastpose_res18", 64
    tmp = Path(tempfile.mkdtemp(prefix="rp-e2e-"))
    video, dets, persons = build_workload(tmp, Path(args.data), args.repeat)
    tiny, tiny_dets, tiny_persons = build_workload(tmp, Path(args.data), 1, first=4)
    common = [
        "--input",
        str(video),
        "--set",
        "detector.arch=precomputed",
        "--set",
        f"detector.weights={dets}",
        "--set",
        f"sppe.arch={args.arch}",
        "--set",
        "sppe.random_weights=true",
        "--set",
        "pose_nms.score_threshold=0",  # random weights: keep every estimated person in the tables
    ]
    print(f"workload: {video.name}, {41 * args.repeat} frames, {persons} persons; {os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in args.modes}
    fixed: list[float] = []
    bare: dict[
        tuple[str, int], list[float]
    ] = {}  # per precision × streams the modes ran (the actor's form of the network)
    anchor: list[float] = []
    for r in range(args.rounds):
        for mode in args.modes:
            res = _run_job([*common, *MODES[mode]], tmp / f"out-{mode}-{r}")
            runs[mode].append(res)
            print(
                f"round {r + 1} {mode}: {persons / res['wall_s']:.2f} persons/s whole process "
                f"({res['wall_s']:.1f} s, peak PSS {res['peak_pss_bytes'] / 2**30:.2f} GiB)",
                flush=True,
            )
        # fixed cost: the same job on the first 4 frames' worth of input is dominated by start-up and shutdown
        tiny_args = [*common[2:], "--input", str(tiny), "--set", f"detector.weights={tiny_dets}"]
        res = _run_job(tiny_args, tmp / f"fixed-{r}")
        planned = runs[args.modes[0]][-1]["summary"]["config"]["resources"]["sppe"]
        batch = runs[args.modes[0]][-1]["summary"]["config"]["sppe"]["batch_size"] or 8
        for precision, streams in sorted({_bare_key(runs[m][-1]["summary"]) for m in args.modes}):
            bare.setdefault((precision, streams), []).append(
                _bare_forward(args.arch, planned["threads"], batch, args.bare_persons, precision, True, streams)
            )
        anchor.append(_bare_forward(args.arch, 2, 6, args.bare_persons, "fp32", as_actor=False))
        # the fixed-cost job runs the default
        fixed.append(res["wall_s"] - tiny_persons / bare[_bare_key(res["summary"])][-1])
        bares = ", ".join(f"{_label(k)} {v[-1]:.2f}" for k, v in bare.items())
        print(f"round {r + 1}: bare {bares} persons/s, alphapose_sp model {anchor[-1]:.2f}", flush=True)

    rows = {}
    for mode, rs in runs.items():
        pps = [persons / x["wall_s"] for x in rs]  # persons = boxes through the SPPE, as AlphaPose's figures count
        stages: dict[str, list[float]] = {}
        for x in rs:
            for k, v in x["summary"]["stage_seconds"].items():
                stages.setdefault(k, []).append(v)
        rows[mode] = {
            "persons_per_s": _med(pps),
            "wall_s": _med([x["wall_s"] for x in rs]),
            "peak_pss_gib": _med([x["peak_pss_bytes"] / 2**30 for x in rs]),
            "vs_bare": _med([a / b for a, b in zip(pps, bare[_bare_key(rs[-1]["summary"])])]),
            "vs_alphapose_sp_model": _med([a / b for a, b in zip(pps, anchor)]),
            "stage_seconds": {k: _med(v) for k, v in stages.items()},
            "start_s": _med([x["phases"]["start_s"] for x in rs]),
            "tail_s": _med([x["phases"]["tail_s"] for x in rs]),
            "resources": rs[-1]["summary"]["config"]["resources"],
            "precision": rs[-1]["summary"]["config"]["sppe"]["precision"],
            "bare": _label(_bare_key(rs[-1]["summary"])),
        }
    result = {
        "benchmark": "end_to_end",
        "random_weights": True,
        "cpus": os.cpu_count(),
        "arch": args.arch,
        "frames": 41 * args.repeat,
        "persons": persons,
        "rounds": args.rounds,
        "modes": rows,
        "bare_forward_persons_per_s": {_label(k): _med(v) for k, v in bare.items()},
        "alphapose_sp_model_persons_per_s": _med(anchor),
        "fixed_cost_s": _med(fixed),
        "alphapose_quoted_issue_13": ALPHAPOSE_QUOTED,
    }
    print(
        f"\n{'mode':14}{'bare':>10}{'persons/s':>10}{'÷bare':>8}{'÷AP --sp model':>16}{'peak PSS GiB':>14}"
        f"  SPPE s  start s  tail s"
    )
    for mode, row in rows.items():
        print(
            f"{mode:14}{row['bare']:>10}{row['persons_per_s']:>10.2f}{row['vs_bare']:>8.2f}"
            f"{row['vs_alphapose_sp_model']:>16.2f}{row['peak_pss_gib']:>14.2f}  "
            f"{row['stage_seconds'].get('sppe', float('nan')):>6.0f}{row['start_s']:>9.1f}{row['tail_s']:>8.1f}"
        )
    bares = ", ".join(f"{_label(k)} {_med(v):.2f}" for k, v in bare.items())
    print(f"bare forward {bares} persons/s; AlphaPose --sp model {_med(anchor):.2f}; fixed cost {_med(fixed):.1f} s")
    print("AlphaPose quoted (issue 13, its machine): default 7.33 persons/s, 2.8 GiB; --sp 7.82 persons/s, 1.9 GiB")
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
