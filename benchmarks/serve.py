"""The online endpoint under a bounded local load: throughput, latency, Serve's overhead and what batching buys.

    python -m benchmarks.serve [--config configs/demo.yaml] [--requests 32] [--concurrency 1 4 16]
        [--time-limit-s 60] [--out benchmarks/results/serve.json]

Starts a local Ray (all CPUs), deploys ``jobs.serve``'s application (real weights of ``make weights`` by default:
YOLO11n boxes → BlazePose → pose NMS) on 127.0.0.1 only, and for each batching mode — ``batched`` (the config's
``serve`` batch sizes) and ``unbatched`` (``serve.detect_max_batch=1``, ``serve.sppe_max_batch=1``) — sends
``--requests`` POSTs (JPEG bytes, cycling over the COCO images of ``../shared/data/coco`` and the shipped sample) at
each concurrency, stopping a cell at ``--time-limit-s``. Reported per cell: requests/s, persons/s, p50/p95/p99
latency (ms), HTTP errors, and the largest batch each stage replica ran.

Next to it, **in-process**: the same stage classes (``actors.detect.Detector``, ``actors.sppe.SPPE``,
``actors.pose_nms.apply_pose_nms``) called one image at a time in this process with the replicas' thread counts and
no Serve, HTTP or Ray — the floor the endpoint's concurrency-1 latency is compared with (Serve's overhead as a ratio).
Written to ``benchmarks/results/serve.json`` (ignored by git, as every benchmark result).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import write_result

REPO = Path(__file__).resolve().parents[1]


def _images() -> list[bytes]:
    paths = [REPO / "samples" / "images" / "000000000785.jpg"]
    coco = REPO.parent / "shared" / "data" / "coco"
    paths += sorted(coco.glob("*.jpg")) if coco.exists() else []
    return [p.read_bytes() for p in paths]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _load(url: str, images: list[bytes], requests_n: int, concurrency: int, limit_s: float) -> dict:
    import requests

    session_per_thread: dict[int, requests.Session] = {}

    def one(i: int):
        import threading

        s = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        if time.perf_counter() > deadline:
            return None
        t0 = time.perf_counter()
        r = s.post(f"{url}/v1/poses", data=images[i % len(images)], timeout=300)
        dt = time.perf_counter() - t0
        return dt, r.status_code, len(r.json().get("persons", [])) if r.status_code == 200 else 0

    deadline = time.perf_counter() + limit_s
    t_start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(one, range(requests_n)) if r is not None]
    wall = time.perf_counter() - t_start
    ok = [r for r in results if r[1] == 200]
    lat = [1000 * r[0] for r in ok]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(ok) / wall, 3),
        "persons_per_s": round(sum(r[2] for r in ok) / wall, 3),
        "p50_ms": round(_percentile(lat, 50), 1),
        "p95_ms": round(_percentile(lat, 95), 1),
        "p99_ms": round(_percentile(lat, 99), 1),
    }


def _in_process(cfg, images: list[bytes], rounds: int) -> dict:
    """The stages without Serve: decode → Detector → SPPE → pose NMS, one image at a time, in this process."""
    import torch

    from actors.common import ragged
    from actors.detect import Detector
    from actors.pose_nms import apply_pose_nms
    from actors.serve import replica_threads, split_rows, stack_rows
    from actors.sppe import SPPE
    from models.images import decode_image

    s = cfg.serve
    det = Detector(cfg.detector, crop=cfg.sppe.crop, threads=replica_threads(s.detect_num_cpus, s.threads))
    sppe = SPPE(cfg.sppe, threads=replica_threads(s.sppe_num_cpus, s.threads))

    def run(data: bytes) -> None:
        frame = decode_image(data)
        torch.set_num_threads(replica_threads(s.detect_num_cpus, s.threads))
        (row,) = split_rows(det({"frame": ragged([frame]), "frame_key": np.array([""])}))
        torch.set_num_threads(replica_threads(s.sppe_num_cpus, s.threads))
        apply_pose_nms(sppe(stack_rows([row])), cfg.pose_nms, cfg.crowd)

    for data in images:  # warm-up
        run(data)
    times = []
    for _ in range(rounds):
        for data in images:
            t0 = time.perf_counter()
            run(data)
            times.append(1000 * (time.perf_counter() - t0))
    return {"images": len(times), "p50_ms": round(statistics.median(times), 1), "mean_ms": round(np.mean(times), 1)}


def _max_batches(url: str) -> dict:
    import requests

    stats = requests.get(f"{url}/v1/stats", timeout=60).json()
    return {k: max(v["batch_sizes"] or [0]) for k, v in stats.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    p.add_argument("--requests", type=int, default=32, help="requests per cell")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--time-limit-s", type=float, default=60.0, help="stop sending in a cell after this long")
    p.add_argument("--in-process-rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/serve.json")
    args = p.parse_args(argv)

    import ray
    from ray import serve

    from jobs.serve import prepare
    from pipelines.serve import APP_NAME

    os.environ.pop("RAYPOSE_SERVE_TOKEN", None)
    images = _images()
    port = 18000 + os.getpid() % 1000
    url = f"http://127.0.0.1:{port}"
    modes = {"batched": [], "unbatched": ["serve.detect_max_batch=1", "serve.sppe_max_batch=1"]}
    limits = [f"serve.max_ongoing_requests={max(args.concurrency)}", "serve.max_queued_requests=-1"]
    cfg, _ = prepare(args.config, limits)
    in_process = _in_process(cfg, images, args.in_process_rounds)
    print(f"in-process (no Serve): p50 {in_process['p50_ms']} ms per image over {in_process['images']} images")

    ray.init(include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    cells = []
    try:
        for mode, extra in modes.items():
            _, app = prepare(args.config, limits + extra)
            serve.run(app, name=APP_NAME, route_prefix="/")
            _load(url, images, len(images), 1, args.time_limit_s)  # warm-up
            for c in args.concurrency:
                cell = {"mode": mode, **_load(url, images, args.requests, c, args.time_limit_s)}
                cell["max_batch"] = _max_batches(url)
                cells.append(cell)
                print(
                    f"{mode:9s} c={c:2d}: {cell['requests_per_s']:6.2f} req/s {cell['persons_per_s']:7.2f} persons/s "
                    f"p50 {cell['p50_ms']:7.1f} p95 {cell['p95_ms']:7.1f} p99 {cell['p99_ms']:7.1f} ms "
                    f"errors {cell['errors']} max batch {cell['max_batch']}"
                )
            serve.delete(APP_NAME)
    finally:
        serve.shutdown()
        ray.shutdown()
    c1 = next(c for c in cells if c["mode"] == "batched" and c["concurrency"] == 1)
    by = {(c["mode"], c["concurrency"]): c for c in cells}
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "config": args.config,
        "images": len(images),
        "in_process": in_process,
        "cells": cells,
        "serve_overhead_p50_ratio": round(c1["p50_ms"] / in_process["p50_ms"], 3),
        "batching_speedup": {
            c: round(by[("batched", c)]["requests_per_s"] / max(by[("unbatched", c)]["requests_per_s"], 1e-9), 3)
            for c in args.concurrency
        },
    }
    print(
        f"Serve + HTTP overhead at concurrency 1: p50 {c1['p50_ms']} ms vs {in_process['p50_ms']} ms in-process "
        f"(×{result['serve_overhead_p50_ratio']}); batched ÷ unbatched requests/s: {result['batching_speedup']}"
    )
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
