"""Fit RMPE's pose-guided proposal generator (PGPG) from ground truth and a detector's boxes, and write it as data.

    python -m jobs.fit_pgpg --gt person_keypoints.json --detections dets.json --out pgpg.json
                            [--gt more.json --detections more_dets.json ...] [--k K] [--max-k 8]
                            [--max-components 4] [--iou 0.5] [--seed 0]

RMPE (Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017, §3.4) models the offset between a
detector's box and the ground-truth box as depending on the pose: ground-truth poses are aligned to equal torso
length and clustered into atomic poses (k-means), and per atom the normalised offsets of matched detector boxes are
fitted with a Gaussian mixture (``models.pgpg.fit_pgpg``, which says how k and the number of components are chosen).
Proposals are then drawn from P(δB | atom) at training time (``models.pgpg``).

Inputs, in pairs (the i-th ``--gt`` with the i-th ``--detections``):

* ``--gt``: a COCO keypoints annotation file (persons with ``keypoints``; crowd and keypoint-less persons are skipped).
* ``--detections``: the detector's boxes on the same images: a COCO detection JSON (``image_id``, ``bbox``, ``score``;
  AlphaPose's ``--detfile`` format), a Parquet detection table (``models.detections_io``), or a raypose output folder
  of ``jobs.label`` (its ``box_xyxy`` and ``pose_score`` per frame, matched to the GT images by file name).

Matching is one-to-one per image, greedily by detection score at IoU ≥ ``--iou`` (``models.pgpg.match_detections``).
The model is written as JSON (``PGPGModel.to_dict``: plain numbers, no pickle), atomically, to a local path or fsspec
URI. Bad inputs exit 2 with the file named, before any fitting.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

__all__ = ["main", "collect_pairs", "MatchedPairs"]


class InputError(ValueError):
    """A bad input file or argument (exit 2)."""


@dataclass(frozen=True)
class MatchedPairs:
    """GT persons matched to detector boxes: keypoints ``[N, J, 2]``, visibility ``[N, J]``, GT boxes and detector
    boxes ``[N, 4]`` (xyxy), plus counts of what was seen."""

    keypoints: np.ndarray
    visible: np.ndarray
    gt_boxes: np.ndarray
    det_boxes: np.ndarray
    persons: int
    images: int


def _load_gt(path: str) -> dict:
    import fsspec

    try:
        with fsspec.open(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"--gt {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--gt {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise InputError(f"--gt {path}: not a COCO annotation file (needs lists 'images' and 'annotations')")
    if not any(isinstance(a, dict) and a.get("keypoints") for a in data["annotations"]):
        raise InputError(f"--gt {path}: no annotation has 'keypoints'")
    return data


_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")


def _raypose_detections(folder: str):
    """A raypose output folder as a detections table: each published person's box and pose score, keyed by the
    frame's file name (images) or ``<frame_index>.jpg`` (videos, as AlphaPose names video frames)."""
    from models.detections_io import DetectionsTable
    from store.tables import load_output, pose_arrays

    try:
        arr = pose_arrays(load_output(folder).poses)
    except Exception as e:  # noqa: BLE001 - whatever makes the folder unreadable, it is this input's problem
        raise InputError(f"--detections {folder}: not a readable raypose output folder ({e})") from None
    keys = [
        f"{int(f)}.jpg" if str(u).lower().endswith(_VIDEO_SUFFIXES) else str(u).rsplit("/", 1)[-1]
        for u, f in zip(arr.source_uri.tolist(), arr.frame_index.tolist())
    ]
    return DetectionsTable.from_records(keys, arr.box_xyxy, arr.pose_score, source=folder)


def _load_detections(path: str):
    import fsspec

    from models.detections_io import DetectionsFileError, load_detections

    fs, root = fsspec.core.url_to_fs(path)
    if fs.isdir(root):
        return _raypose_detections(path)
    try:
        return load_detections(path)
    except FileNotFoundError:
        raise InputError(f"--detections {path}: file not found") from None
    except DetectionsFileError as e:
        raise InputError(f"--detections {e}") from None


def collect_pairs(gt: dict, detections, iou: float = 0.5) -> MatchedPairs:
    """Match every image's GT persons (with keypoints, not crowd) to its detections; the matched pairs."""
    from models.pgpg import match_detections

    persons: dict[object, list[dict]] = {}
    for a in gt["annotations"]:
        if a.get("keypoints") and a.get("num_keypoints", 1) > 0 and not a.get("iscrowd", 0):
            persons.setdefault(a["image_id"], []).append(a)
    kps, vis, gboxes, dboxes = [], [], [], []
    n_persons = 0
    for image in gt["images"]:
        anns = persons.get(image["id"], [])
        if not anns:
            continue
        n_persons += len(anns)
        boxes, scores = detections.lookup(image.get("file_name", image["id"]))
        if len(boxes) == 0:
            boxes, scores = detections.lookup(image["id"])
        g = np.asarray(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        )
        m = match_detections(g, boxes, scores, iou=iou)
        for gi, di in zip(m.gt_index.tolist(), m.det_index.tolist()):
            k = np.asarray(anns[gi]["keypoints"], np.float64).reshape(-1, 3)
            kps.append(k[:, :2])
            vis.append(k[:, 2] > 0)
            gboxes.append(g[gi])
            dboxes.append(np.asarray(boxes[di], np.float64))
    j = kps[0].shape[0] if kps else 0
    return MatchedPairs(
        keypoints=np.asarray(kps, np.float64).reshape(len(kps), j, 2),
        visible=np.asarray(vis, bool).reshape(len(vis), j),
        gt_boxes=np.asarray(gboxes, np.float64).reshape(-1, 4),
        det_boxes=np.asarray(dboxes, np.float64).reshape(-1, 4),
        persons=n_persons,
        images=len(persons),
    )


def _concat(parts: list[MatchedPairs]) -> MatchedPairs:
    parts = [p for p in parts if len(p.keypoints)] or parts[:1]
    joints = {p.keypoints.shape[1] for p in parts if len(p.keypoints)}
    if len(joints) > 1:
        raise InputError(f"--gt files have different keypoint counts {sorted(joints)}: fit one keypoint set at a time")
    return MatchedPairs(
        keypoints=np.concatenate([p.keypoints for p in parts]),
        visible=np.concatenate([p.visible for p in parts]),
        gt_boxes=np.concatenate([p.gt_boxes for p in parts]),
        det_boxes=np.concatenate([p.det_boxes for p in parts]),
        persons=sum(p.persons for p in parts),
        images=sum(p.images for p in parts),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.fit_pgpg", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt", action="append", required=True, help="COCO keypoints annotations (repeatable)")
    p.add_argument("--detections", action="append", required=True, help="detections of the same images, per --gt")
    p.add_argument("--out", required=True, help="where to write the model (JSON; local path or fsspec URI)")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="number of atomic poses (default: chosen by the mean silhouette of the k-means partitions)",
    )
    p.add_argument("--max-k", type=int, default=8)
    p.add_argument("--max-components", type=int, default=4)
    p.add_argument("--iou", type=float, default=0.5, help="IoU for matching a detection to a GT person")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if len(args.gt) != len(args.detections):
            raise InputError(f"{len(args.gt)} --gt but {len(args.detections)} --detections: give them in pairs")
        if not 0.0 < args.iou <= 1.0:
            raise InputError(f"--iou {args.iou}: must be in (0, 1]")
        if args.k is not None and args.k < 1:
            raise InputError(f"--k {args.k}: must be ≥ 1")
        parts = [collect_pairs(_load_gt(g), _load_detections(d), args.iou) for g, d in zip(args.gt, args.detections)]
        pairs = _concat(parts)
        if len(pairs.keypoints) == 0:
            raise InputError("no GT person matched a detection: check that --detections covers the --gt images")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from models.pgpg import fit_pgpg
    from store.writers import put_atomic

    try:
        model = fit_pgpg(
            pairs.keypoints,
            pairs.visible,
            pairs.gt_boxes,
            pairs.det_boxes,
            k=args.k,
            max_k=args.max_k,
            max_components=args.max_components,
            seed=args.seed,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    doc = {"format": "raypose-pgpg/1", "inputs": {"gt": args.gt, "detections": args.detections, "iou": args.iou}}
    doc["model"] = model.to_dict()
    put_atomic(json.dumps(doc, indent=1).encode(), args.out)
    print(
        f"PGPG: {len(pairs.keypoints)} of {pairs.persons} GT persons matched a detection in {pairs.images} images; "
        f"{model.k} atomic poses; written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
