"""Training-sample throughput: the Ray Data job (``pipelines.proposals``) against a plain Python loop, per core.

    python -m benchmarks.proposals [--repeat 48] [--proposals-per-person 4] [--rounds 3] [--num-cpus 1 C ...]
                                   [--images-per-shard 16] [--out benchmarks/results/proposals.json]

Workload (built from ``../shared/data``, never copied): the COCO (4 images, 12 persons) and CrowdPose (2 images, 4
persons) test images with their annotations, each image repeated ``--repeat`` times under a new image id (the same
file, so every repeat is read and decoded again, and draws different proposals), ``--proposals-per-person``
proposals per person: (12 + 4) × 48 × 4 = 3,072 samples in 18 shards by default. Mode ``dpg`` (AlphaPose's
released DPG) with ``alphapose_1x`` augmentation and raw 256×192 crops: what ``jobs.proposals`` does by default.

Both sides run the same function on the same shards, writing the same Parquet files (``generate_shard``):

* ``plain``: a loop over the shards in this process, on one core (OpenCV limited to one thread, as in the tasks);
* ``ray``: ``run_proposals`` on a local Ray with ``--num-cpus`` CPUs, one CPU per task; each CPU count is its own
  cluster (default: 1, then all of the machine's), started and its workers warmed once (one untimed run), as a long
  job amortises them; each timed run is the whole Dataset execution (scheduling, task start, reading the summary
  rows). With one CPU both sides use one core at a time and the ratio is Ray's own overhead; with all CPUs it also
  shows how the tasks scale on this machine.

Rounds are interleaved (plain, ray, plain, ray …) so load from other processes hits both alike; each round writes
to a fresh folder. Reported: samples/s and samples/s per core (ray: divided by its CPUs), medians over rounds, and
the ratio ray/plain per core (goal ≥ 0.8), with the time spent inside ``generate_shard`` on each side and the load
average before each run: on a machine shared with other work the ray side's tasks get less than a core each, which
the per-core ratio then charges to Ray. So each run also records the CPU time it cost: for ``plain`` this process's,
for ``ray`` that of this process and every descendant (GCS, raylet, workers; ``/proc/<pid>/stat`` utime + stime),
whatever other work the machine does. Samples per CPU-second, and their ratio ray/plain, measure Ray's overhead in
cores independently of how busy the machine is; on an idle machine with every core busy they equal the per-core
figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import write_result
from pipelines.proposals import ProposalConfig, ProposalSpec, generate_shard, make_shards, run_proposals
from store.labels import LabelSource, read_coco_labels

__all__ = ["main", "workload"]

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def workload(data: Path, repeat: int) -> list[LabelSource]:
    """The COCO and CrowdPose test labels, each image repeated ``repeat`` times under ids ``<id>#<r>``."""
    out = []
    for gt, folder in (("coco/test_coco.json", "coco"), ("crowdpose/test_crowdpose.json", "crowdpose")):
        src = read_coco_labels(str(data / gt), str(data / folder))
        images = tuple(
            dataclasses.replace(im, image_id=f"{im.image_id}#{r}") for r in range(repeat) for im in src.images
        )
        out.append(dataclasses.replace(src, images=images))
    return out


def _tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and all its living descendants, in seconds (from ``/proc``)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry)
        parent[pid] = int(fields[1])  # after "pid (comm)": state, ppid, …; utime and stime are fields 14 and 15
        ticks[pid] = int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, pp in parent.items() if pp in frontier and pid not in tree]
        tree.update(frontier)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _measure(shards: list[dict], cfg: ProposalConfig, cpus: int, rounds: int, expected: int, root: Path) -> dict:
    """One local Ray of ``cpus`` CPUs: warm-up, then ``rounds`` interleaved plain/ray runs; medians and ratios."""
    import ray

    from pipelines.label import configure_data_context

    def plain(i: int) -> tuple[float, int, float, float]:
        spec = ProposalSpec(cfg, str(root / f"plain{i}"), {}, f"plain{i}")
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(generate_shard(s, spec)["num_samples"] for s in shards)
        seconds = time.perf_counter() - t0
        return seconds, n, seconds, time.process_time() - c0

    def ray_run(i: int) -> tuple[float, int, float, float]:
        spec = ProposalSpec(cfg, str(root / f"ray{i}"), {}, f"ray{i}")
        c0, t0 = _tree_cpu_seconds(os.getpid()), time.perf_counter()
        rows = run_proposals(shards, spec)
        seconds, cpu = time.perf_counter() - t0, _tree_cpu_seconds(os.getpid()) - c0
        return seconds, sum(r["num_samples"] for r in rows), sum(r["seconds"] for r in rows), cpu

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    try:
        configure_data_context()
        t0 = time.perf_counter()
        ray_run(-1)  # start and warm the workers (imports, first tasks): not timed
        warmup_s = time.perf_counter() - t0
        plain(-1)
        runs = []
        for i in range(rounds):
            for name, fn in (("plain", plain), ("ray", ray_run)):
                load = os.getloadavg()[0]
                seconds, n, task_seconds, cpu_seconds = fn(i)
                if n != expected:
                    raise RuntimeError(f"{name} round {i}: {n} samples, expected {expected}")
                runs.append(
                    {
                        "round": i, "side": name, "seconds": seconds, "samples": n, "task_seconds": task_seconds,
                        "cpu_seconds": cpu_seconds, "load_avg_1min": load,
                    }
                )  # fmt: skip
                shutil.rmtree(root / f"{name}{i}", ignore_errors=True)
    finally:
        ray.shutdown()

    sides = {"plain": 1, "ray": cpus}  # cores each side uses at a time

    def median(key: str, side: str) -> float:
        return statistics.median(r[key] for r in runs if r["side"] == side)

    per_core = {side: expected / median("seconds", side) / cores for side, cores in sides.items()}
    per_cpu_s = {side: expected / median("cpu_seconds", side) for side in sides}
    return {
        "ray_cpus": cpus,
        "ray_warmup_s": warmup_s,
        "rounds": runs,
        "median_seconds": {side: median("seconds", side) for side in sides},
        "samples_per_s": {side: expected / median("seconds", side) for side in sides},
        "samples_per_s_per_core": per_core,
        "ratio_ray_to_plain_per_core": per_core["ray"] / per_core["plain"],
        "samples_per_cpu_s": per_cpu_s,
        "ratio_ray_to_plain_per_cpu_s": per_cpu_s["ray"] / per_cpu_s["plain"],
        # time inside generate_shard summed over the shards: ray's exceeds plain's when its tasks share cores with
        # other processes (or each other); the rest of ray's wall time is scheduling and start-up of the execution
        "median_task_seconds": {side: median("task_seconds", side) for side in sides},
        "median_load_avg_1min": statistics.median(r["load_avg_1min"] for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.proposals", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--repeat", type=int, default=48, help="times each test image is used (under a new id)")
    p.add_argument("--proposals-per-person", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--num-cpus", type=int, nargs="+", default=None, help="local Ray's CPUs, one cluster each (default: 1 and all)"
    )
    p.add_argument("--images-per-shard", type=int, default=16)
    p.add_argument("--out", default="benchmarks/results/proposals.json")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    cpu_list = args.num_cpus or sorted({1, os.cpu_count() or 1})
    sources = workload(Path(args.data), args.repeat)
    cfg = ProposalConfig(
        mode="dpg", proposals_per_person=args.proposals_per_person, images_per_shard=args.images_per_shard
    )
    shards = make_shards(sources, cfg.images_per_shard)
    persons = sum(s.num_persons for s in sources)
    expected = persons * cfg.proposals_per_person
    root = Path(tempfile.mkdtemp(prefix="raypose-bench-proposals-"))
    try:
        configs = [_measure(shards, cfg, cpus, args.rounds, expected, root) for cpus in cpu_list]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "workload": {
            "images": sum(len(s.images) for s in sources),
            "persons": persons,
            "samples": expected,
            "shards": len(shards),
            "repeat": args.repeat,
            "config": cfg.result_affecting(),
        },
        "configs": configs,
    }
    print(f"{expected} samples ({persons} persons × {cfg.proposals_per_person}), {len(shards)} shards")
    print(
        f"{'ray CPUs':>8} {'side':<6} {'median s':>9} {'samples/s':>10} {'per core':>9} {'per CPU-s':>10} "
        f"{'load':>5}"
    )  # fmt: skip
    for c in configs:
        for side in ("plain", "ray"):
            print(
                f"{c['ray_cpus']:>8} {side:<6} {c['median_seconds'][side]:>9.2f} {c['samples_per_s'][side]:>10.1f} "
                f"{c['samples_per_s_per_core'][side]:>9.1f} {c['samples_per_cpu_s'][side]:>10.1f} "
                f"{c['median_load_avg_1min']:>5.1f}"
            )
        print(
            f"{c['ray_cpus']:>8} ratio ray/plain: {c['ratio_ray_to_plain_per_core']:.2f} per core (wall clock; goal "
            f"≥ 0.8), {c['ratio_ray_to_plain_per_cpu_s']:.2f} per CPU-second"
        )
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
