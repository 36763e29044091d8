"""SPPE throughput on this machine: our crop-to-keypoints path vs a bare forward of the same network.

    python -m benchmarks.sppe [--archs fastpose_res50 fastpose_res18] [--batches 1 8 32] [--repeats 5]
                              [--no-compile] [--out benchmarks/results/sppe.json]

"ours" is what the SPPE actor runs per batch: uint8 crops → ``normalize_crops`` → ``build_sppe`` network →
``heatmaps_to_keypoints`` (AlphaPose decoding, image coordinates). "bare" is ``model(x)`` on an already-normalised
float tensor. Both use the same module instance and inputs; runs are interleaved (ours, bare, ours, bare …) so load
from other processes hits both alike, and the reported time is the median. The ratio ours/bare in persons/s is the
cost of our wrapping (target ≥ 0.95).

Variants (bare forward only, each against the fp32 baseline measured in the same loop): channels_last memory
format, bf16 autocast, int8 (``models.quantize``, static PTQ on the x86 engine; its relative heatmap error against
fp32 is reported) and ``torch.compile`` (inductor; compile time is reported separately and excluded).

    python -m benchmarks.sppe --archs simplepose_res50 fastpose_duc_res50_shuffle fastpose_dcn_res50 hrnet_w32 \
        hardnet68 hardnet85 --batches 8 --repeats 3 --no-compile      # the AlphaPose model-zoo rows
Weights are random (seeded): throughput does not depend on their values, and nothing here is an accuracy result.

BlazePose rows (``blazepose_full``, real weights from ``make weights``, real COCO person crops) report the same
columns: "bf16_autocast" there is the model cast to bfloat16 (``sppe.precision=bf16``) and "flip_test" the
two-pass flip test; "bf16_max_keypoint_shift_px" says how far bf16 moves keypoints.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from benchmarks import write_result
from models.heatmaps import heatmaps_to_keypoints
from models.sppe import build_sppe
from models.transforms import (
    boxes_to_center_scale,
    center_scale_to_boxes,
    normalize_crops,
)

__all__ = ["main"]


def _inputs(batch: int, seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(batch, 256, 192, 3), dtype=np.uint8)
    x1 = rng.uniform(0, 500, batch)
    y1 = rng.uniform(0, 300, batch)
    boxes = np.stack([x1, y1, x1 + rng.uniform(40, 200, batch), y1 + rng.uniform(80, 400, batch)], 1)
    return crops, torch.as_tensor(center_scale_to_boxes(*boxes_to_center_scale(boxes)))


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn, calling them round-robin after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_arch(arch: str, batches: list[int], repeats: int, compile_batches: set[int], int8: bool = True) -> list[dict]:
    torch.manual_seed(0)
    model = build_sppe(arch).eval()
    rows = []
    for batch in batches:
        crops, crop_boxes = _inputs(batch)
        x = normalize_crops(crops)

        def ours():
            with torch.inference_mode():
                hm = model(normalize_crops(crops))
                return heatmaps_to_keypoints(hm, crop_boxes)

        def bare():
            with torch.inference_mode():
                return model(x)

        fns = {"ours": ours, "bare": bare}
        model_cl = build_sppe(arch).eval().to(memory_format=torch.channels_last)
        model_cl.load_state_dict(model.state_dict())
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def channels_last():
            with torch.inference_mode():
                return model_cl(x_cl)

        def bf16():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x)

        fns["channels_last"] = channels_last
        fns["bf16_autocast"] = bf16
        quantized = None
        if int8:
            from models.quantize import calibration_inputs, quantize_int8
            from models.transforms import ALPHAPOSE_CROP

            quantized = quantize_int8(model, calibration_inputs(ALPHAPOSE_CROP))

            def int8_fwd():
                with torch.inference_mode():
                    return quantized(x_cl)

            fns["int8"] = int8_fwd
        compile_s = None
        if batch in compile_batches:
            compiled = torch.compile(model)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
            compile_s = time.perf_counter() - t0

            def compiled_fwd():
                with torch.inference_mode():
                    return compiled(x)

            fns["torch_compile"] = compiled_fwd
        med = _interleaved(fns, repeats)
        row = {
            "arch": arch,
            "batch": batch,
            "persons_per_s": {k: batch / v for k, v in med.items()},
            "ratio_ours_vs_bare": med["bare"] / med["ours"],
            "speedup_vs_bare": {k: med["bare"] / v for k, v in med.items() if k not in ("ours", "bare")},
            "compile_seconds": compile_s,
        }
        # bf16 changes numerics: report how far its heatmaps move (max |Δ| relative to the fp32 heatmap range).
        with torch.inference_mode():
            ref = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x).float()
        row["bf16_max_rel_err"] = float((low - ref).abs().max() / (ref.max() - ref.min()).clamp_min(1e-12))
        if quantized is not None:
            with torch.inference_mode():
                q = quantized(x)
            row["int8_relative_heatmap_error"] = float((q - ref).norm() / ref.norm().clamp_min(1e-12))
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def bench_blazepose(batches: list[int], repeats: int, weights: str) -> list[dict]:
    """BlazePose (real weights, ``make weights``): "ours" is the pose actor's path (uint8 square crops →
    ``BlazePoseSPPE``: /255, graph, landmarks → COCO-17, back to frame pixels); "bare" the graph's forward on a
    prepared float NHWC tensor; ``bf16`` the whole model cast to bfloat16 (``sppe.precision=bf16``), and
    ``flip_test`` the two-pass variant. Crops are real COCO person crops when the data is beside the project."""
    from actors.sppe import load_blazepose
    from models.blazepose import BlazePoseSPPE

    graph, _ = load_blazepose(weights)
    graph_bf16, _ = load_blazepose(weights)
    model = BlazePoseSPPE(graph).eval()
    model_bf16 = BlazePoseSPPE(graph_bf16.to(torch.bfloat16)).eval()
    model_flip = BlazePoseSPPE(graph, flip_test=True).eval()
    rows = []
    for batch in batches:
        crops_np, boxes = _blazepose_inputs(batch)
        crops = torch.as_tensor(crops_np)
        x = crops.float().div(255.0)

        def run(m):
            def fn():
                with torch.inference_mode():
                    return m(crops, boxes)

            return fn

        def bare():
            with torch.inference_mode():
                return graph(x)

        fns = {"ours": run(model), "bare": bare, "bf16_autocast": run(model_bf16), "flip_test": run(model_flip)}
        med = _interleaved(fns, repeats)
        with torch.inference_mode():
            ref = model(crops, boxes)[0]
            low = model_bf16(crops, boxes)[0]
        row = {
            "arch": "blazepose_full",
            "batch": batch,
            "persons_per_s": {k: batch / v for k, v in med.items()},
            "ratio_ours_vs_bare": med["bare"] / med["ours"],
            "speedup_vs_bare": {k: med["bare"] / v for k, v in med.items() if k not in ("ours", "bare")},
            "compile_seconds": None,
            "bf16_max_keypoint_shift_px": float((low - ref).abs().max()),
            "weights": "real (MediaPipe pose_landmark_full, Apache-2.0)",
        }
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def _blazepose_inputs(batch: int) -> tuple[np.ndarray, torch.Tensor]:
    """Square 256×256 crops of the COCO persons (repeated to ``batch``), or noise without the data."""
    import json
    from pathlib import Path

    from models.blazepose import BLAZEPOSE_CROP
    from models.transforms import crop_images

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco"
    if not (data / "test_coco.json").is_file():
        rng = np.random.default_rng(0)
        boxes = np.tile([[100.0, 50.0, 200.0, 300.0]], (batch, 1))
        return (
            rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8),
            torch.as_tensor(BLAZEPOSE_CROP.crop_boxes(boxes)),
        )
    import cv2

    gt = json.loads((data / "test_coco.json").read_text())
    files = {im["id"]: im["file_name"] for im in gt["images"]}
    crops, boxes = [], []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        img = cv2.cvtColor(cv2.imread(str(data / files[a["image_id"]])), cv2.COLOR_BGR2RGB)
        cb = BLAZEPOSE_CROP.crop_boxes(np.array([[x, y, x + w, y + h]]))
        crops.append(crop_images([img], np.zeros(1, int), cb, (256, 256))[0])
        boxes.append(cb[0])
    idx = np.arange(batch) % len(crops)
    return np.stack(crops)[idx], torch.as_tensor(np.stack(boxes)[idx])


_COLS = ("ours", "bare", "channels_last", "bf16_autocast", "int8", "flip_test", "torch_compile")


def _fmt_header() -> str:
    return f"{'arch':<28}{'batch':>6}" + "".join(f"{c:>15}" for c in _COLS) + f"{'ours/bare':>11}"


def _fmt_row(r: dict) -> str:
    cells = "".join(f"{r['persons_per_s'][c]:>15.2f}" if c in r["persons_per_s"] else f"{'-':>15}" for c in _COLS)
    return f"{r['arch']:<28}{r['batch']:>6}{cells}{r['ratio_ours_vs_bare']:>11.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sppe", description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=["fastpose_res50", "fastpose_res18"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--compile-batches",
        nargs="*",
        type=int,
        default=[8],
        help="batch sizes at which to also time torch.compile (compiling costs minutes on 2 cores)",
    )
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 column (models.quantize)")
    p.add_argument(
        "--blazepose",
        default="auto",
        help="BlazePose weights file for its rows ('auto': the weights folder's; 'none': skip)",
    )
    p.add_argument("--out", default="benchmarks/results/sppe.json")
    args = p.parse_args(argv)
    compile_batches = set() if args.no_compile else set(args.compile_batches)

    print("persons/s (higher is better); FastPose weights are random (a speed measurement), BlazePose's are real")
    print(_fmt_header())
    rows = []
    for arch in args.archs:
        rows += bench_arch(arch, args.batches, args.repeats, compile_batches, int8=not args.no_int8)
    if args.blazepose != "none":
        from models.zoo import WeightsMissingError, weights_file

        try:
            path = weights_file("blazepose_full") if args.blazepose == "auto" else args.blazepose
            rows += bench_blazepose(args.batches, args.repeats, path)
        except WeightsMissingError as e:
            print(f"BlazePose rows skipped: {e}")
    result = {
        "benchmark": "sppe",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "random_weights": "FastPose rows only",
        "rows": rows,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
