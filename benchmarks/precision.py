"""What bf16 costs in keypoints, with REAL weights on real crops: the evidence behind ``precision: auto``.

    python -m benchmarks.precision [--data ../shared/data] [--threads 2] [--limit N]
                                   [--out benchmarks/results/precision.json]

No AlphaPose checkpoint reaches this project, so FastPose's bf16 cost cannot be measured with its own weights. The
real heatmap network available is MediaPipe's BlazePose (``make weights``; Apache-2.0): besides its regressed
landmarks it outputs 39 trained 64×64 heatmaps for its 256×256 crop, i.e. the same heatmap-at-stride-4 head as
AlphaPose's SPPEs. Its trunk is a mobile network (depthwise convolutions), more sensitive to 8-bit mantissas than a
ResNet, so its numbers bound FastPose's from above rather than equal them.

Crops: every ground-truth person box of ``coco/test_coco.json`` (12) and of the Bonn clip (``bonn_posetrack``, 164
boxes in 41 frames), cut as the pipeline cuts them for BlazePose (``BLAZEPOSE_CROP``, OpenCV). For each crop the
network runs in fp32 (the reference) and bf16. Reported, for the 33 body landmarks of each head (regressed
landmarks; heatmaps decoded with AlphaPose's decoder, ``models.heatmaps.decode_heatmaps``), against fp32: the shift in
crop pixels
(median, p95, share > 4 px, i.e. more than one heatmap cell) and the crop-normalised OKS of the variant's pose to
fp32's (κ = 0.1 for every point, scale = the crop's area; 1 = identical). FastPose-res50 (random weights) gets the
relative L2 heatmap error of ``bf16`` (everything) and ``mixed`` (bf16 trunk, fp32 heatmap layer:
``models.sppe.cast_for_inference``, what ``precision: auto`` runs) on the same people's AlphaPose crops.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import write_result

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
KAPPA = 0.1


def gt_people(data: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Every image of the COCO sample and the Bonn clip with its GT person boxes (xyxy), decoded once; and how many
    of the boxes are COCO's."""
    from models.images import decode_image

    people, n_coco = [], 0
    for ann_path in (data / "coco" / "test_coco.json", data / "bonn_posetrack" / "060470979.json"):
        gt = json.loads(ann_path.read_text())
        files = {im["id"]: ann_path.parent / im["file_name"] for im in gt["images"]}
        by_image: dict = {}
        for a in gt["annotations"]:
            if a.get("iscrowd", 0) == 0 and a["bbox"][2] > 4 and a["bbox"][3] > 4:
                by_image.setdefault(a["image_id"], []).append(a["bbox"])
        for image_id, boxes in sorted(by_image.items()):
            xywh = np.asarray(boxes, np.float64)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            people.append((decode_image(files[image_id].read_bytes()), xyxy))
            n_coco += len(xyxy) if ann_path.parent.name == "coco" else 0
    return people, n_coco


def crops_of(people: list[tuple[np.ndarray, np.ndarray]], crop) -> np.ndarray:
    """Crops ``[N, H, W, 3]`` of every person, cut as the pipeline cuts them for ``crop`` (OpenCV)."""
    from models.transforms import crop_images

    return np.concatenate(
        [
            crop_images([image], np.zeros(len(xyxy), np.int64), crop.crop_boxes(xyxy), crop.output_size_hw)
            for image, xyxy in people
        ]
    )


def agreement(points: np.ndarray, ref: np.ndarray, crop_side: float) -> dict:
    """Shift statistics of ``points`` vs ``ref`` (``[N, K, 2]`` crop pixels) and their crop-normalised OKS."""
    d = np.linalg.norm(points - ref, axis=-1)
    oks = np.exp(-(d**2) / (2 * (crop_side**2) * KAPPA**2)).mean(1)
    return {
        "shift_median_px": round(float(np.median(d)), 3),
        "shift_p95_px": round(float(np.quantile(d, 0.95)), 3),
        "share_over_4px": round(float((d > 4).mean()), 4),
        "oks_to_fp32_mean": round(float(oks.mean()), 4),
        "oks_to_fp32_min": round(float(oks.min()), 4),
    }


def blazepose_heads(graph, crops: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Regressed landmarks and AlphaPose-decoded heatmap peaks of the 33 body points, crop pixels ``[N, 33, 2]``."""
    from models.heatmaps import decode_heatmaps

    regs, hms = [], []
    with torch.inference_mode():
        for s in range(0, len(crops), batch):
            x = torch.as_tensor(crops[s : s + batch]).float().div_(255.0)  # the graph casts to its own dtype
            out = graph(x)
            regs.append(out[0].float().reshape(len(x), -1, 5)[:, :33, :2].numpy())
            hm = out[3].float().permute(0, 3, 1, 2)[:, :33]  # NHWC 64×64×39 → [N, 33, 64, 64]
            coords, _ = decode_heatmaps(hm.contiguous(), "alphapose")
            hms.append((coords.double().numpy() + 0.5) * (crops.shape[1] / hm.shape[-1]) - 0.5)
    return np.concatenate(regs), np.concatenate(hms)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=Path, default=REPO / "weights" / "pose_landmark_full.pt")
    p.add_argument("--limit", type=int, default=0, help="use only the first N crops (a smoke run; 0: all)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from models.blazepose import BLAZEPOSE_CROP
    from models.tflite import TFLiteModule

    t0 = time.perf_counter()
    people, n_coco = gt_people(args.data)
    crops = crops_of(people, BLAZEPOSE_CROP)
    if args.limit:
        crops, n_coco = crops[: args.limit], min(n_coco, args.limit)
    fp32 = TFLiteModule.load(str(args.weights)).eval()
    variants = {"bf16": copy.deepcopy(fp32).to(torch.bfloat16)}
    ref_reg, ref_hm = blazepose_heads(fp32, crops)
    side = float(crops.shape[1])
    rows = {}
    for name, graph in variants.items():
        reg, hm = blazepose_heads(graph, crops)
        rows[f"blazepose_regression_{name}"] = agreement(reg, ref_reg, side)
        rows[f"blazepose_heatmaps_{name}"] = agreement(hm, ref_hm, side)

    from models.sppe import build_sppe, cast_for_inference, fold_batchnorm
    from models.transforms import ALPHAPOSE_CROP, normalize_crops

    ap_crops = crops_of(people, ALPHAPOSE_CROP)[: args.limit or 32]
    torch.manual_seed(0)
    net = fold_batchnorm(build_sppe("fastpose_res50", 17).eval())
    x = normalize_crops(ap_crops)
    with torch.inference_mode():
        ref = net(x)
        for name, model in (
            ("bf16", copy.deepcopy(net).to(torch.bfloat16)),
            ("mixed", cast_for_inference(copy.deepcopy(net), torch.bfloat16)),
        ):
            out = model(x.to(torch.bfloat16)).float()
            rows[f"fastpose_res50_random_{name}"] = {
                "relative_heatmap_error": round(float((out - ref).norm() / ref.norm()), 5)
            }

    print(f"{len(crops)} real crops ({n_coco} COCO, {len(crops) - n_coco} Bonn), {args.threads} threads; vs fp32:")
    cols = ["shift_median_px", "shift_p95_px", "share_over_4px", "oks_to_fp32_mean", "oks_to_fp32_min"]
    print(f"{'variant':36s} " + " ".join(f"{c:>16s}" for c in cols))
    for name, r in rows.items():
        print(
            f"{name:36s} "
            + " ".join(f"{r[c]:>16}" if c in r else f"{'':>16}" for c in cols)
            + (f"  heatmap error {r['relative_heatmap_error']:.3%}" if "relative_heatmap_error" in r else "")
        )
    result = {"crops": len(crops), "coco_crops": n_coco, "threads": args.threads, "kappa": KAPPA, "rows": rows}
    write_result({**result, "seconds": round(time.perf_counter() - t0, 1)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
