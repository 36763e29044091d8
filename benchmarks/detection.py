"""Person-detector throughput on this machine: frames/s of each detector, ours vs the model's own forward.

    python -m benchmarks.detection [--archs yolov3_spp ssdlite320_mobilenet_v3_large] [--sizes 640x360 1280x720]
                                   [--batches 1 4] [--repeats 5] [--max-seconds 10]
                                   [--out benchmarks/results/detection.json]

"ours" is the whole detector interface the detection actor calls (``models.detectors``): uint8 RGB frames →
preprocessing (torchvision: to float tensors; YOLOv3-SPP: AlphaPose's 608 letterbox) → network → person filter,
NMS (YOLO), mapping back, clamping and thresholds. "model" is the network's own forward on inputs prepared once
outside the timing: for torchvision detectors ``model(list_of_float_tensors)``, which includes torchvision's own
resize/normalise and box post-processing; for YOLOv3-SPP ``Darknet.forward`` on the letterboxed tensor (decoded
rows, before filtering and NMS). The ratio ours/model in frames/s is the cost of our pre/post-processing.

Each configuration runs ours and model alternately (so load from other processes hits both alike) for up to
``--repeats`` rounds, stopping early once ``--max-seconds`` have passed (at least one round); the median time is
reported. One warm-up call per detector precedes its first configuration. Networks use each arch's default
settings (torchvision input sizes and proposal counts, YOLO 608) with random weights (seeded): no pretrained weights
are available here, so nothing is an accuracy result, and post-processing sees random-network box counts.
Frames are the first four frames of ``../shared/data/videos/mmtracking_demo.mp4`` (1920×1080) resized to each size
(random noise if the data is absent).

``yolo`` (Ultralytics YOLO11n-pose) runs with its real weights from ``make weights`` (AGPL-3.0) when present, once
per ``--yolo-dtypes`` entry (fp32 and bf16 by default); its "model" column is the network's forward on the
letterboxed 640×640 tensor, before decoding and NMS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from models.detectors import DETECTOR_ARCHS, PersonDetector, build_detector

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "videos" / "mmtracking_demo.mp4"
NETWORK_ARCHS = [a for a in DETECTOR_ARCHS if a != "precomputed"]


def _source_frames(n: int) -> tuple[list[np.ndarray], str]:
    if VIDEO.is_file():
        import av

        with av.open(str(VIDEO)) as container:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0))]
        if len(frames) == n:
            return frames, str(VIDEO.relative_to(REPO.parent))
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(n)], "random noise"


def _resized(frames: list[np.ndarray], wh: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    return [cv2.resize(f, wh, interpolation=cv2.INTER_AREA) for f in frames]


def _time(fns: dict, repeats: int, max_seconds: float) -> tuple[dict[str, float], int]:
    """Median seconds per call of each fn, called round-robin; at least one round, then until time runs out."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats and (rounds == 0 or time.perf_counter() - start < max_seconds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {k: statistics.median(v) for k, v in times.items()}, rounds


def bench_arch(
    arch: str,
    sizes: list[tuple[int, int]],
    batches: list[int],
    frames: list[np.ndarray],
    repeats: int,
    max_seconds: float,
    weights: str | None = None,
    dtype: str = "float32",
) -> list[dict]:
    det: PersonDetector = (
        build_detector(arch, weights=weights, dtype=dtype)
        if weights
        else build_detector(arch, random_weights=True, dtype=dtype)
    )
    label = arch + ("" if dtype == "float32" else f" {dtype}") + (" (real)" if weights else "")
    rows = []
    warmed = False
    for wh in sizes:
        sized = _resized(frames, wh)
        for batch in batches:
            clip = sized[:batch]
            prepared = det.prepare(clip)
            model_input = prepared[0] if isinstance(prepared, tuple) else prepared  # YOLO: (tensor, letterboxes)
            persons: list[int] = []

            def ours():
                persons.extend(len(d) for d in det(clip))

            def model():
                with torch.inference_mode():
                    det.forward_model(model_input)

            if not warmed:
                ours()
                model()
                warmed = True
            persons.clear()
            med, rounds = _time({"ours": ours, "model": model}, repeats, max_seconds)
            row = {
                "arch": label,
                "weights": "real" if weights else "random",
                "dtype": dtype,
                "width": wh[0],
                "height": wh[1],
                "batch": batch,
                "rounds": rounds,
                "ours_s_per_batch": med["ours"],
                "model_s_per_batch": med["model"],
                "ours_fps": batch / med["ours"],
                "model_fps": batch / med["model"],
                "ours_over_model": med["model"] / med["ours"],
                "persons_per_frame": float(np.mean(persons)) if persons else 0.0,
            }
            rows.append(row)
            print(_format_row(row), flush=True)
    return rows


_HEADER = f"{'detector':<40} {'size':>9} {'batch':>5} {'ours fps':>9} {'model fps':>10} {'ours/model':>10}"


def _format_row(r: dict) -> str:
    size = f"{r['width']}x{r['height']}"
    return (
        f"{r['arch']:<40} {size:>9} {r['batch']:>5} {r['ours_fps']:>9.3f} {r['model_fps']:>10.3f} "
        f"{r['ours_over_model']:>10.3f}"
    )


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=NETWORK_ARCHS, choices=NETWORK_ARCHS)
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(640, 360), (1280, 720)])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration (at most)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="stop adding rounds to a configuration after this long (one round always runs)",
    )
    parser.add_argument(
        "--yolo-weights",
        default="auto",
        help="Ultralytics .pt for the yolo rows ('auto': the weights folder's yolo11n-pose.pt, 'none': random weights)",
    )
    parser.add_argument(
        "--yolo-dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16", "float16"],
        help="dtypes of the yolo rows",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "detection.json"))
    args = parser.parse_args(argv)

    frames, source = _source_frames(max(args.batches))
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cpu",
    }
    print(
        f"# {machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
        f"({machine['torch_threads']} threads); frames: {source}; random weights",
        flush=True,
    )
    print(_HEADER, flush=True)
    t0 = time.perf_counter()
    results = []
    yolo_weights = None
    if args.yolo_weights != "none":
        from models.zoo import WeightsMissingError, weights_file

        try:
            yolo_weights = weights_file("yolo11n_pose") if args.yolo_weights == "auto" else args.yolo_weights
        except WeightsMissingError as e:
            print(f"# yolo rows use random weights: {e}", flush=True)
    for arch in args.archs:
        if arch == "yolo":
            for dtype in args.yolo_dtypes:
                results += bench_arch(
                    arch,
                    args.sizes,
                    args.batches,
                    frames,
                    args.repeats,
                    args.max_seconds,
                    weights=yolo_weights,
                    dtype=dtype,
                )
            continue
        results += bench_arch(arch, args.sizes, args.batches, frames, args.repeats, args.max_seconds)
    total = time.perf_counter() - t0
    print(f"# total {total:.0f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "detection",
                "machine": machine,
                "frames": source,
                "weights": "random (seeded)",
                "settings": {"repeats": args.repeats, "max_seconds": args.max_seconds, "statistic": "median"},
                "total_seconds": total,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"# wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
