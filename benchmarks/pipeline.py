"""Whole-job throughput: ``jobs.label`` on local Ray vs the same models in one plain loop in one process.

    python -m benchmarks.pipeline [--clips 3] [--frames 192] [--persons 2] [--arch fastpose_res18] [--threads 2]
                                  [--out benchmarks/results/pipeline.json]

Both sides do identical work on the same generated clips with precomputed detections (so no detector forward):
probe, decode, per-frame crops, SPPE forward + decode, pose NMS, and writing the per-video tables. "ray" is the
``jobs.label`` pipeline (started on an already-running local Ray, so cluster start-up is excluded, as on a real
cluster); "loop" calls the same ``models``/``actors`` functions sequentially. Reported: frames/s of each, their
ratio (target ≥ 0.8 on this 2-core machine; Ray pays a fixed ~16 s per execution here for actor start-up and
the groupby barrier, so the ratio grows with the job: measure jobs of several hundred frames),
peak RSS of each side's whole process tree (sampled every 0.1 s),
and the bytes per frame that crossed Ray's object store between stages (from Ray Data's own stats).
Weights are random: a throughput measurement, not an accuracy result.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import write_result

__all__ = ["main"]


def _tree_rss_bytes(root_pid: int) -> int:
    """Sum of VmRSS over ``root_pid`` and all its descendants (from /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = int(m.group(1)) * 1024 if m else 0
    total, stack = 0, [root_pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack += children.get(p, [])
    return total


class _PeakRSS:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            time.sleep(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def _make_clips(root: Path, n: int, frames: int, persons: int) -> tuple[list[str], str]:
    import shutil

    from jobs.make_sample import main as make_sample

    paths = []
    for i in range(n):
        d = root / f"s{i}"
        make_sample(["--out", str(d), "--frames", str(frames), "--persons", str(persons), "--seed", str(i)])
        shutil.move(d / "walkers.mp4", root / f"clip{i}.mp4")
        paths.append(str(root / f"clip{i}.mp4"))
    return paths, str(root / "s0" / "walkers_dets.json")  # keys "<frame>.jpg" match every clip


def _plain_loop(paths: list[str], cfg, out: Path) -> int:
    """The same stages, sequentially, in this process; returns the number of frames processed."""
    from actors.detect import Detector
    from actors.pose_nms import apply_pose_nms
    from actors.publish import PublishSpec, TrackAndPublish, stage_rows
    from actors.sppe import SPPE
    from pipelines.decode import decode_shard, plan_shards, probe_video
    from store.sources import list_inputs

    det, sppe = Detector(cfg.detector), SPPE(cfg.sppe)
    units = list_inputs(paths)
    spec = PublishSpec(
        output=str(out),
        run_id="loop",
        config_hash="loop",
        fingerprints={},
        keypoint_set="coco17",
        sppe=cfg.sppe.arch,
        sppe_sha256="random",
        random_weights=True,
    )
    publish = TrackAndPublish(spec)
    frames = 0
    for u in units:
        refs = []
        for shard in plan_shards(u, cfg.run.shard_frames, probe_video(u.source_uri)):
            for batch in decode_shard(shard, chunk=cfg.run.decode_chunk):
                b = apply_pose_nms(sppe(det(batch)), cfg.pose_nms)
                refs.append(stage_rows(b, spec))
                frames += len(b["frame_index"])
        publish({c: np.concatenate([r[c] for r in refs]) for c in refs[0]})
    return frames


def _ray_bytes_per_frame(stats: str, frames: int) -> dict[str, float]:
    """Output bytes per frame of each operator, parsed from ``Dataset.stats()``."""
    out: dict[str, float] = {}
    op = None
    for line in stats.splitlines():
        m = re.match(r"Operator \d+ (.+?): \d+ tasks", line.strip())
        if m:
            op = m.group(1)
        m = re.search(r"Output size bytes per block: .*?([\d.]+) total", line)
        if m and op:
            out[op] = float(m.group(1)) / max(frames, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--frames", type=int, default=192, help="frames per clip (start-up costs ~16 s per execution here)")
    p.add_argument("--persons", type=int, default=2)
    p.add_argument("--arch", default="fastpose_res18")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the SPPE actor")
    p.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

    import ray
    import torch

    from actors.publish import PublishSpec
    from jobs.label import build_config
    from pipelines.label import build_label_dataset, configure_data_context, probe_units, publish_videos, run_label
    from store.sources import list_inputs

    tmp = Path(tempfile.mkdtemp(prefix="rp-bench-"))
    paths, dets = _make_clips(tmp, args.clips, args.frames, args.persons)
    overrides = [
        "detector.arch=precomputed",
        f"detector.weights={dets}",
        f"sppe.arch={args.arch}",
        "sppe.random_weights=true",
        "pose_nms.score_threshold=0",
        "run.shard_frames=16",
        f"resources.sppe.threads={args.threads}",
        "resources.sppe.batch_size=16",
    ]  # = decode_chunk: both sides forward the same batches
    cfg = build_config(None, overrides)

    torch.set_num_threads(args.threads)
    with _PeakRSS() as rss_loop:
        t0 = time.perf_counter()
        frames_loop = _plain_loop(paths, cfg, tmp / "loop")
        t_loop = time.perf_counter() - t0

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    configure_data_context()
    units = list_inputs(paths)
    spec = PublishSpec(
        output=str(tmp / "ray"),
        run_id="bench",
        config_hash="bench",
        fingerprints={u.video_id: u.fingerprint for u in units},
        keypoint_set="coco17",
        sppe=cfg.sppe.arch,
        sppe_sha256="random",
        random_weights=True,
    )
    # warm-up run on one clip: actor start-up is a per-job constant, not per-frame throughput
    run_label(probe_units(units[:1], cfg), cfg, PublishSpec(**{**spec.__dict__, "output": str(tmp / "w")}))
    with _PeakRSS() as rss_ray:
        t0 = time.perf_counter()
        shards = probe_units(units, cfg)
        ds = build_label_dataset(shards, cfg, spec)
        summaries = publish_videos(ds.take_all(), spec, cfg.resources.publish_cpus)
        t_ray = time.perf_counter() - t0
    frames_ray = sum(int(s["num_frames"]) for s in summaries)
    stats_text = ds.stats()
    per_frame = _ray_bytes_per_frame(stats_text, frames_ray)
    if os.environ.get("RAYPOSE_BENCH_STATS"):
        Path(os.environ["RAYPOSE_BENCH_STATS"]).write_text(stats_text)
    ray.shutdown()

    fps_loop, fps_ray = frames_loop / t_loop, frames_ray / t_ray
    result = {
        "benchmark": "pipeline",
        "random_weights": True,
        "clips": args.clips,
        "frames": frames_ray,
        "sppe": args.arch,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "loop": {"seconds": t_loop, "frames_per_s": fps_loop, "peak_rss_bytes": rss_loop.peak},
        "ray": {
            "seconds": t_ray,
            "frames_per_s": fps_ray,
            "peak_rss_bytes": rss_ray.peak,
            "object_store_bytes_per_frame_by_stage": per_frame,
        },
        "ratio_ray_vs_loop": fps_ray / fps_loop,
    }
    print("whole job, random weights (throughput only)")
    print(f"{'':8}{'frames':>8}{'seconds':>10}{'frames/s':>10}{'peak RSS MiB':>14}")
    print(f"{'loop':8}{frames_loop:>8}{t_loop:>10.2f}{fps_loop:>10.2f}{rss_loop.peak / 2**20:>14.0f}")
    print(f"{'ray':8}{frames_ray:>8}{t_ray:>10.2f}{fps_ray:>10.2f}{rss_ray.peak / 2**20:>14.0f}")
    print(f"ratio ray/loop: {fps_ray / fps_loop:.3f} (target >= 0.8)")
    for op, b in per_frame.items():
        print(f"  object store, {op}: {b / 1024:.1f} KiB per frame")
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
