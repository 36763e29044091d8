"""Crowded scenes: pose NMS against CrowdPose's joint association (as released, and as in the paper).

    python -m benchmarks.crowd [--sets crowdpose14 coco17] [--scenes-per-bin 12] [--noise 0.0 0.2 0.3] [--seed 0]
        [--box-nms 0.6] [--dedup-oks 0.8] [--out PATH.json]

Scenes are built from real annotations: CrowdPose-14 from ``../shared/data/crowdpose/test_crowdpose.json`` (its four
annotated persons) and the Bonn clip ``bonn_posetrack/060470979.json`` (its four tracked persons on every 5th of 41
frames, annotated in CrowdPose-14 order), and COCO-17 from ``../shared/data/coco/test_coco.json`` (its twelve), each
with its mirror image, keeping their own visibility flags. Each scene pastes 2–6 of them, rescaled, side by side with
a random spacing; its crowd index (``models.crowdpose.crowd_index``, the CrowdPose definition) sorts it into a bin
of [0, 0.2), [0.2, 0.4), …, [1.2, 1.5]; scenes are drawn until every bin has ``--scenes-per-bin`` of them. The
COCO-17 set runs the released association exactly as AlphaPose ships it (COCO sigmas); CrowdPose-14 runs it with
CrowdPose's sigmas.

Detector: every GT person gets one box drawn with AlphaPose's DPG jitter (``models.pgpg.dpg_proposal``, no
pre-enlargement, no truncation: the 85 % Gaussian-offset / 15 % sub-patch draws) with score U(0.85, 1), and with
probability 0.5 a duplicate DPG box with score U(0.4, 0.85), as a detector's second hit on one person.

Oracle JC-SPPE: for every box, the crop of ``models.transforms.ALPHAPOSE_CROP`` and heatmaps rendered through that
crop's transform (``models.transforms.image_to_heatmap_coords``; σ = 2 heatmap px, as the existing oracle in
``tests/jobs/test_oracle.py``): the owner's (highest-IoU GT person's) labelled joints at amplitude ~1 and every other
person's labelled joints at μ ≈ 0.5 (the JC-SPPE target of Li et al., CVPR 2019), max-combined, plus a
uniform noise floor in [0, 0.03). ``--noise s`` perturbs every peak: amplitude ×(1 + N(0, s)) (clipped to [0, 1.2])
and position +N(0, 2s) heatmap px: s = 0 is a perfect JC-SPPE; with s > 0 an interference peak sometimes outgrows the
target peak, which is the confusion CrowdPose's association is meant to undo. The owner's *unlabelled* joints get no
peak (their positions are unknown), so the argmax decoder lands on another person's peak there: the oracle's model of
an occluded joint, and the main way pose NMS loses persons here (a pose sharing >= 5 joints with a neighbour is
merged into it).

Compared on the same heatmaps, per frame:

* ``nms``: AlphaPose's decoder (``models.heatmaps.heatmaps_to_keypoints``, argmax) then parametric pose NMS
  (``models.pose_nms.pose_nms``);
* ``released``: ``models.crowdpose.joint_candidates`` then ``released_association`` (AlphaPose's ``--matching``);
* ``paper``: ``joint_candidates`` then ``paper_association`` (its default: each joint type's matching in two rounds,
  every person's own top candidate first);
* ``paper-single``: the same with ``top_candidate_first=False``: the paper's single maximum-weight matching per joint
  type, in which a duplicate box can take a person's joint while the person takes a weaker node;
* ``released+dedup`` / ``paper+dedup``: the same association output, then ``models.crowdpose.suppress_duplicates`` at
  OKS ``--dedup-oks`` (raypose's optional duplicate filter, ``crowd.duplicate_oks``; not AlphaPose's); its time is
  the association's plus the filter's.

Reported: CrowdPose AP (``jobs.evaluate.crowdpose_eval``: 14 CrowdPose sigmas, scale 0.53·w·h, maxDets 20; for
COCO-17, ``jobs.evaluate.coco_keypoint_eval`` with COCO sigmas and GT area 0.53·w·h, as there is no segmentation) over
all scenes and per crowd-index bin, AP easy/medium/hard (bands 0.2 / 0.8, CrowdPose's), persons recovered (GT persons
matched one to one, predictions in score order, at OKS >= 0.5), surplus poses (predictions left unmatched) and
milliseconds per frame of decode + NMS or candidates + association (1 thread).
Written to ``benchmarks/results/crowd.json`` (ignored by git, as every benchmark result).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse
import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jobs.evaluate import GroundTruth, coco_keypoint_eval, crowdpose_eval
from models.crowdpose import (
    PAPER_PARAMS,
    RELEASED_PARAMS,
    candidate_params_for,
    crowd_index,
    joint_candidates,
    paper_association,
    released_association,
    suppress_duplicates,
)
from models.darknet import nms_plus_one
from models.heatmaps import heatmaps_to_keypoints
from models.keypoints import COCO_17, CROWDPOSE_14, KeypointSet
from models.pgpg import box_iou_matrix, dpg_proposal
from models.pose_nms import pose_nms
from models.transforms import ALPHAPOSE_CROP, image_to_heatmap_coords

__all__ = ["main", "load_templates", "make_scene", "oracle_heatmaps", "run_methods", "METHODS", "CI_BINS"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_DATA = {
    "crowdpose14": SHARED / "crowdpose" / "test_crowdpose.json",
    "coco17": SHARED / "coco" / "test_coco.json",
}
#: More templates of a set: the Bonn clip's tracked persons (already in CrowdPose-14 joint order), every
#: ``VIDEO_FRAME_STRIDE``-th frame (neighbouring frames are near duplicates).
EXTRA_DATA = {"crowdpose14": (SHARED / "bonn_posetrack" / "060470979.json",)}
VIDEO_FRAME_STRIDE = 5
SETS = {"crowdpose14": CROWDPOSE_14, "coco17": COCO_17}
AREA_FACTOR = 0.53
DEFAULT_OUT = REPO / "benchmarks" / "results" / "crowd.json"
HM_HW = (64, 48)
CI_BINS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0), (1.0, 1.2), (1.2, 1.5))
METHODS = ("nms", "released", "released+dedup", "paper", "paper+dedup", "paper-single")
#: OKS threshold of the ``+dedup`` rows (``--dedup-oks``).
DEDUP_OKS = 0.8
#: The ``paper-single`` row: the paper's single matching per joint type.
PAPER_SINGLE = dataclasses.replace(PAPER_PARAMS, top_candidate_first=False)


@dataclass(frozen=True)
class Template:
    """A CrowdPose person, keypoints relative to its box: (x − x1)/w, (y − y1)/h; visibility as annotated."""

    rel: np.ndarray  # [K, 2]
    vis: np.ndarray  # [K] int
    aspect: float  # w / h


@dataclass
class Scene:
    image_id: int
    width: int
    height: int
    keypoints: np.ndarray  # [P, K, 2]
    visible: np.ndarray  # [P, K] int (0, 1, 2)
    boxes: np.ndarray  # [P, 4] xyxy GT boxes
    crowd_index: float


def load_templates(path: Path = DEFAULT_DATA["crowdpose14"], kset: KeypointSet = CROWDPOSE_14) -> list[Template]:
    """The annotated persons (``num_keypoints > 0``, not crowd) and their mirror images; of a video's annotations
    (images with ``frame_id``, as the Bonn clip's), those of every ``VIDEO_FRAME_STRIDE``-th frame."""
    data = json.loads(Path(path).read_text())
    skip = {im["id"] for im in data.get("images", []) if int(im.get("frame_id", 0)) % VIDEO_FRAME_STRIDE}
    perm = kset.flip_permutation()
    K = kset.num_keypoints  # noqa: N806
    out = []
    for a in data["annotations"]:
        if a.get("iscrowd") or not a.get("num_keypoints") or a.get("image_id") in skip:
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        kp = np.asarray(a["keypoints"], np.float64).reshape(K, 3)
        rel = (kp[:, :2] - [x, y]) / [w, h]
        vis = kp[:, 2].astype(np.int64)
        out.append(Template(rel=rel, vis=vis, aspect=w / h))
        flipped = rel[perm].copy()
        flipped[:, 0] = 1.0 - flipped[:, 0]
        out.append(Template(rel=flipped, vis=vis[perm], aspect=w / h))
    return out


def make_scene(rng: np.random.Generator, templates: list[Template], image_id: int) -> Scene:
    """2–6 persons side by side, heights U(220, 380) px, centre spacing U(0.15, 1.3)·mean width, feet ± 40 px."""
    n = int(rng.integers(2, 7))
    picks = rng.integers(0, len(templates), n)
    heights = rng.uniform(220, 380, n)
    widths = np.array([templates[p].aspect for p in picks]) * heights
    spacing = rng.uniform(0.15, 1.3) * widths.mean()
    x1 = 40 + np.arange(n) * spacing + rng.normal(0, 0.1 * spacing, n)
    x1 -= min(0.0, x1.min() - 40)
    y2 = 420 + rng.uniform(-40, 40, n)
    boxes = np.stack([x1, y2 - heights, x1 + widths, y2], axis=1)
    kps = np.stack([boxes[i, :2] + templates[p].rel * [widths[i], heights[i]] for i, p in enumerate(picks)])
    vis = np.stack([templates[p].vis for p in picks])
    width = int(np.ceil(boxes[:, 2].max() + 40))
    ci = crowd_index(kps, vis, boxes)
    return Scene(image_id, width, 480, kps, vis, boxes, ci)


def detections(rng: np.random.Generator, scene: Scene, box_nms: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """DPG-jittered boxes (one per person, a duplicate with probability 0.5) and detector scores, after the
    detector's box NMS (``models.darknet.nms_plus_one`` at AlphaPose's YOLO ``NMS_THRES`` 0.6; 1 turns it off)."""
    boxes, scores = [], []
    for b in scene.boxes:
        p = dpg_proposal(rng, b, (scene.width, scene.height), pre_enlarge=False, truncate=False)
        boxes.append(p.box_xyxy)
        scores.append(rng.uniform(0.85, 1.0))
        if rng.random() < 0.5:
            p = dpg_proposal(rng, b, (scene.width, scene.height), pre_enlarge=False, truncate=False)
            boxes.append(p.box_xyxy)
            scores.append(rng.uniform(0.4, 0.85))
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    if box_nms < 1:
        keep = np.sort(nms_plus_one(boxes, scores, box_nms))
        boxes, scores = boxes[keep], scores[keep]
    return boxes, scores


def oracle_heatmaps(
    rng: np.random.Generator, scene: Scene, boxes: np.ndarray, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """The oracle JC-SPPE's heatmaps ``float32 [N, K, 64, 48]`` and the crop boxes ``[N, 4]`` they cover."""
    crops = ALPHAPOSE_CROP.crop_boxes(boxes)
    owner = box_iou_matrix(boxes, scene.boxes).argmax(axis=1)
    p = len(scene.boxes)
    ys, xs = np.arange(HM_HW[0], dtype=np.float64), np.arange(HM_HW[1], dtype=np.float64)
    maps = np.empty((len(boxes), scene.keypoints.shape[1], *HM_HW), np.float32)
    for i in range(len(boxes)):
        c = image_to_heatmap_coords(scene.keypoints, np.repeat(crops[i : i + 1], p, 0))  # [P, K, 2]
        c = c + rng.normal(0.0, 2 * noise, c.shape) if noise else c
        amp = np.where(np.arange(p)[:, None] == owner[i], 1.0, 0.5)
        if noise:
            amp = np.clip(amp * (1 + rng.normal(0.0, noise, amp.shape)), 0.0, 1.2)
        amp = amp * (scene.visible > 0)
        gx = np.exp(-((xs - c[..., 0:1]) ** 2) / 8.0)
        gy = np.exp(-((ys - c[..., 1:2]) ** 2) / 8.0)
        maps[i] = (amp[..., None, None] * gy[..., :, None] * gx[..., None, :]).max(axis=0)
    maps += rng.uniform(0.0, 0.03, maps.shape).astype(np.float32)
    return maps, crops


def run_methods(
    boxes: np.ndarray,
    scores: np.ndarray,
    hm: np.ndarray,
    crops: np.ndarray,
    sigmas: np.ndarray,
    dedup_oks: float = DEDUP_OKS,
) -> dict:
    """Each method on one frame: ``{method: (keypoints [M, K, 2], keypoint scores [M, K], pose scores [M], ms)}``."""
    out = {}
    t = time.perf_counter()
    kps, kps_s = heatmaps_to_keypoints(torch.from_numpy(hm), torch.from_numpy(crops))
    r = pose_nms(boxes, scores, kps.numpy().astype(np.float64), kps_s.numpy().astype(np.float64))
    out["nms"] = (r.keypoints, r.keypoint_scores, r.pose_scores, 1e3 * (time.perf_counter() - t))
    for name, fn, params in (
        ("released", released_association, RELEASED_PARAMS),
        ("paper", paper_association, PAPER_PARAMS),
    ):
        t = time.perf_counter()
        cands = joint_candidates(hm, crops, params=candidate_params_for(params.method))
        r = fn(boxes, scores, cands, sigmas=sigmas, params=params)
        ms = 1e3 * (time.perf_counter() - t)
        out[name] = (r.keypoints, r.keypoint_scores, r.pose_scores, ms)
        t = time.perf_counter()
        d = suppress_duplicates(r, dedup_oks, sigmas=sigmas, joint_score=params.duplicate_joint_score)
        out[f"{name}+dedup"] = (d.keypoints, d.keypoint_scores, d.pose_scores, ms + 1e3 * (time.perf_counter() - t))
    t = time.perf_counter()
    cands = joint_candidates(hm, crops, params=candidate_params_for("paper"))
    r = paper_association(boxes, scores, cands, sigmas=sigmas, params=PAPER_SINGLE)
    out["paper-single"] = (r.keypoints, r.keypoint_scores, r.pose_scores, 1e3 * (time.perf_counter() - t))
    return out


def _oks(pred: np.ndarray, scene: Scene, sigmas: np.ndarray) -> np.ndarray:
    """OKS ``[M, P]`` of predictions against the scene's GT (scale 0.53·w·h, labelled joints)."""
    var = (2 * sigmas) ** 2
    wh = scene.boxes[:, 2:] - scene.boxes[:, :2]
    area = AREA_FACTOR * wh[:, 0] * wh[:, 1]
    d2 = ((pred[:, None] - scene.keypoints[None]) ** 2).sum(-1)  # [M, P, K]
    e = np.exp(-d2 / var / (area[None, :, None] + np.spacing(1)) / 2)
    lab = scene.visible > 0
    return (e * lab[None]).sum(-1) / np.maximum(lab.sum(-1), 1)[None]


def recovered(pred: np.ndarray, pose_scores: np.ndarray, scene: Scene, sigmas: np.ndarray) -> tuple[int, int]:
    """(GT persons matched at OKS >= 0.5, predictions left unmatched): greedy, predictions by score descending."""
    if len(pred) == 0:
        return 0, 0
    oks = _oks(pred, scene, sigmas)
    taken = np.zeros(len(scene.boxes), bool)
    hit = 0
    for m in np.argsort(-pose_scores, kind="stable"):
        o = np.where(taken, -1.0, oks[m])
        j = int(o.argmax())
        if o[j] >= 0.5:
            taken[j] = True
            hit += 1
    return hit, len(pred) - hit


def _ground_truth(scenes: list[Scene], kset: KeypointSet) -> GroundTruth:
    images, anns = {}, {}
    aid = 1
    for s in scenes:
        images[s.image_id] = {
            "id": s.image_id,
            "file_name": f"{s.image_id}.jpg",
            "width": s.width,
            "height": s.height,
            "crowdIndex": s.crowd_index,
        }
        anns[s.image_id] = []
        for kp, v, b in zip(s.keypoints, s.visible, s.boxes):
            trip = np.concatenate([np.where(v[:, None] > 0, kp, 0.0), v[:, None]], axis=1)
            anns[s.image_id].append(
                {
                    "id": aid,
                    "image_id": s.image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "num_keypoints": int((v > 0).sum()),
                    "keypoints": trip.reshape(-1).tolist(),
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "area": AREA_FACTOR * float((b[2] - b[0]) * (b[3] - b[1])),
                }
            )
            aid += 1
    cat = {"id": 1, "name": "person", "keypoints": list(kset.names)}
    data = {"images": list(images.values()), "annotations": [a for v in anns.values() for a in v], "categories": [cat]}
    return GroundTruth(
        path="<benchmarks.crowd>",
        data=data,
        keypoint_set=kset,
        category_id=1,
        images=images,
        annotations=anns,
    )


def build_scenes(rng: np.random.Generator, templates: list[Template], per_bin: int) -> list[Scene]:
    """Draw scenes until every crowd-index bin holds ``per_bin`` (the last bin is closed at 1.5)."""
    filled = {b: [] for b in CI_BINS}
    image_id = 1
    tries = 0
    while any(len(v) < per_bin for v in filled.values()):
        tries += 1
        if tries > 200_000:
            raise RuntimeError(f"could not fill the crowd-index bins: { ({b: len(v) for b, v in filled.items()}) }")
        s = make_scene(rng, templates, image_id)
        for lo, hi in CI_BINS:
            if (lo <= s.crowd_index < hi or (hi == 1.5 and s.crowd_index == 1.5)) and len(filled[(lo, hi)]) < per_bin:
                filled[(lo, hi)].append(s)
                image_id += 1
                break
    return [s for b in CI_BINS for s in filled[b]]


def _ap(gt: GroundTruth, results: list[dict], ids: list) -> float:
    """CrowdPose AP (CrowdPose-14) or COCO keypoint AP (other sets) over ``ids``; -1 without images."""
    if not ids:
        return -1.0
    keep = set(ids)
    res = [r for r in results if r["image_id"] in keep]
    if gt.keypoint_set.name == CROWDPOSE_14.name:
        return crowdpose_eval(gt, res, ids)["stats"]["AP"]
    return coco_keypoint_eval(gt, res, ids)["AP"]


def _in(ci: float, lo: float, hi: float) -> bool:
    return lo <= ci < hi or ci == hi == 1.5


def evaluate(
    scenes: list[Scene],
    rng: np.random.Generator,
    noise: float,
    box_nms: float = 0.6,
    kset: KeypointSet = CROWDPOSE_14,
    dedup_oks: float = DEDUP_OKS,
) -> dict:
    """All methods on all scenes at one oracle noise level."""
    gt = _ground_truth(scenes, kset)
    sigmas = kset.sigmas_array()
    results = {m: [] for m in METHODS}
    rec = {m: {b: [0, 0, 0] for b in CI_BINS} for m in METHODS}  # hit, surplus, gt
    ms = {m: [] for m in METHODS}
    for s in scenes:
        boxes, scores = detections(rng, s, box_nms)
        hm, crops = oracle_heatmaps(rng, s, boxes, noise)
        b = next(b for b in CI_BINS if _in(s.crowd_index, *b))
        for m, (kps, ks, ps, t) in run_methods(boxes, scores, hm, crops, sigmas, dedup_oks).items():
            ms[m].append(t)
            hit, surplus = recovered(kps, ps, s, sigmas)
            rec[m][b][0] += hit
            rec[m][b][1] += surplus
            rec[m][b][2] += len(s.boxes)
            for kp, sc, p in zip(kps, ks, ps):
                trip = np.concatenate([kp, sc[:, None]], axis=1)
                results[m].append(
                    {
                        "image_id": s.image_id,
                        "category_id": 1,
                        "keypoints": trip.reshape(-1).tolist(),
                        "score": float(p),
                    }
                )
    out = {}
    bands = {"AP_easy": (0.0, 0.2), "AP_medium": (0.2, 0.8), "AP_hard": (0.8, np.inf)}
    for m in METHODS:
        row = {"AP": _ap(gt, results[m], [s.image_id for s in scenes])}
        for name, (lo, hi) in bands.items():
            row[name] = _ap(gt, results[m], [s.image_id for s in scenes if lo <= s.crowd_index < hi])
        per_bin = []
        for lo, hi in CI_BINS:
            ids = [s.image_id for s in scenes if _in(s.crowd_index, lo, hi)]
            hit, surplus, total = rec[m][(lo, hi)]
            per_bin.append(
                {
                    "ci": [lo, hi],
                    "AP": _ap(gt, results[m], ids),
                    "recovered": hit / total,
                    "surplus_per_image": surplus / len(ids),
                }
            )
        row["recovered"] = sum(v[0] for v in rec[m].values()) / sum(v[2] for v in rec[m].values())
        row["surplus_per_image"] = sum(v[1] for v in rec[m].values()) / len(scenes)
        row["ms_per_frame"] = float(np.mean(ms[m]))
        row["bins"] = per_bin
        out[m] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crowd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["crowdpose14", "coco17"])
    parser.add_argument("--scenes-per-bin", type=int, default=12)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.3], help="oracle peak noise levels")
    parser.add_argument("--box-nms", type=float, default=0.6, help="detector box-NMS IoU (1 = off)")
    parser.add_argument(
        "--dedup-oks", type=float, default=DEDUP_OKS, help="OKS threshold of the +dedup rows' duplicate filter"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="shared data folder (crowdpose/, coco/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.scenes_per_bin < 1:
        parser.error("--scenes-per-bin must be >= 1")
    if not 0 < args.dedup_oks <= 1:
        parser.error("--dedup-oks must be in (0, 1]")
    torch.set_num_threads(1)
    report = {
        "benchmark": "crowd",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "scenes_per_bin": args.scenes_per_bin,
        "seed": args.seed,
        "box_nms": args.box_nms,
        "dedup_oks": args.dedup_oks,
        "sets": {},
    }
    for set_name in args.sets:
        kset = SETS[set_name]
        path = args.data_dir / DEFAULT_DATA[set_name].relative_to(SHARED)
        if not path.is_file():
            parser.error(f"{path} not found (clone the project beside shared/, or pass --data-dir)")
        templates = load_templates(path, kset)
        for extra in EXTRA_DATA.get(set_name, ()):
            extra = args.data_dir / extra.relative_to(SHARED)
            if extra.is_file():
                templates += load_templates(extra, kset)
        rng = np.random.default_rng(args.seed)
        scenes = build_scenes(rng, templates, args.scenes_per_bin)
        entry = {
            "scenes": len(scenes),
            "persons": int(sum(len(s.boxes) for s in scenes)),
            "templates": len(templates),
            "levels": {},
        }
        report["sets"][set_name] = entry
        for noise in args.noise:
            rng = np.random.default_rng([args.seed, int(round(noise * 1000))])
            res = evaluate(scenes, rng, noise, args.box_nms, kset, args.dedup_oks)
            entry["levels"][str(noise)] = res
            print(f"\n{set_name}, oracle noise {noise}: {len(scenes)} scenes, {entry['persons']} persons")
            head = "  ".join(f"{f'CI {lo:.1f}-{hi:.1f}':>11}" for lo, hi in CI_BINS)
            print(
                f"{'method':>14}  {'AP':>5}  {'easy':>5}  {'med':>5}  {'hard':>5}  {'recov':>5}  {'extra':>5}  "
                f"{'ms/fr':>6}  {head}"
            )
            for m in METHODS:
                r = res[m]
                bins = "  ".join(f"{b['AP']:.3f}/{b['recovered']:.2f}".rjust(11) for b in r["bins"])
                print(
                    f"{m:>14}  {r['AP']:.3f}  {r['AP_easy']:.3f}  {r['AP_medium']:.3f}  {r['AP_hard']:.3f}  "
                    f"{r['recovered']:.3f}  {r['surplus_per_image']:5.2f}  {r['ms_per_frame']:6.2f}  {bins}"
                )
        print(
            "(per bin: AP / fraction of GT persons recovered at OKS >= 0.5; extra: unmatched poses per image; "
            f"+dedup: duplicate filter at OKS {args.dedup_oks})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
