"""Evaluate a labelled output folder against ground truth: COCO keypoint AP/AR, CrowdPose AP, tracking metrics.

    python -m jobs.evaluate --output OUT --gt GT.json [--kind coco|crowdpose|track|pckh] [--video-id ID ...]
                            [--match auto|file_name|id|frame] [--out JSON] [--all-gt-images]
                            [--similarity oks|pck|box_iou] [--threshold 0.5]

Reads the keypoint table that ``jobs.label`` published (``store.tables``), matches its frames to the ground
truth's images, and prints a table; the JSON goes to ``--out`` (default ``OUT/eval/<kind>.json``). Exit codes: 0
done, 2 bad input (paths, unknown video id, a GT with no images our frames match, keypoint sets that cannot be
compared), 1 the evaluation itself failed.

**Matching frames to GT images** (``--match``, default ``auto``: ``file_name`` for image folders, ``frame`` for
videos):

* ``file_name``: an image unit's frame is the GT image whose ``file_name`` shares the longest run of trailing path
  components with the row's ``source_uri`` (at least the base name: ``000000000785.jpg`` matches COCO's
  ``000000000785.jpg``, ``.../images/val/012834_mpii_test/000000.jpg`` matches PoseTrack's
  ``images/val/012834_mpii_test/000000.jpg`` and not another sequence's ``000000.jpg``); a tie is an error. A
  video's frame ``i`` is named ``"<i>.jpg"`` as AlphaPose names video frames (``alphapose/utils/detector.py``).
* ``frame``: a video's (or image folder's) frame ``i`` is the GT image of the same sequence whose frame number is
  ``i``: its ``frame_index`` field, else ``frame_id`` when it is a 0-based index (``< nframes``; Bonn), else the
  number in its file name (PoseTrack's ``000000.jpg``). The sequence is the GT's ``vid_id`` / ``video_id`` /
  ``videos[].name`` / the file name's folder equal to the unit's name (video file stem or folder name); a GT with
  a single sequence pairs with any video.
* ``id``: the GT image ``id`` equals AlphaPose's ``--eval`` id of the file name,
  ``int(basename.split('.')[0].split('_')[-1])`` (``write_json`` in AlphaPose's ``alphapose/utils/pPose_nms.py``); a
  video frame's id is its index.

Only GT images that some frame of the run matched are evaluated (frames without persons included: image folders
are listed again to name them), so evaluating one video of a multi-video GT does not count the others as misses;
``--all-gt-images`` evaluates every GT image instead. One GT image matched by two frames (e.g. the same sequence
labelled twice) is an error: select one with ``--video-id``.

**Kinds.**

* ``coco``: pycocotools ``COCOeval(gt, dt, 'keypoints')`` with its defaults (OKS thresholds .50:.05:.95, maxDets
  20, areas all/medium/large) and the GT keypoint set's sigmas; a GT without ``area`` uses bbox w·h. Predictions:
  every row of a matched frame, ``score = pose_score``, keypoints converted to the GT's keypoint set with
  ``models.keypoints.convert_keypoints`` (identity when equal; no well-defined conversion → exit 2). Reports the 10
  standard stats (AP, AP50, AP75, AP_M, AP_L, AR, AR50, AR75, AR_M, AR_L).
* ``crowdpose``: CrowdPose's evaluation (``crowdposetools/cocoeval.py`` of Jeff-sjtu/CrowdPose's ``crowdpose-api``) run
  through pycocotools' ``COCOeval``. crowdposetools is COCOeval with four changes, reproduced here: (1) the 14
  CrowdPose sigmas (``params.kpt_oks_sigmas``); (2) object scale 0.53·w·h of the GT bbox in the OKS denominator
  and (3) in the area-range test — both read ``gt['area']``, which is set to 0.53·w·h on an in-memory copy of the
  GT; (4) the summary: AP, AP50, AP75, AR, AR50, AR75 (pycocotools' stats 0–2 and 5–7 with the same parameters:
  maxDets 20, areas all/medium/large, which crowdposetools also uses) plus AP_easy / AP_medium / AP_hard, each the
  plain mean of ``precision[:, :, :, 0, :]`` (area "all") after evaluate + accumulate on the images with
  ``crowdIndex < 0.2``, ``0.2 ≤ crowdIndex < 0.8``, ``≥ 0.8`` (``get_type_result(first=0.2, second=0.8)``), rounded
  to 4 decimals as crowdposetools does; −1 when a band has no GT person (also as there). Differences: a band holds
  the *evaluated* images in it (crowdposetools takes every image of the GT file), and the ignore rule
  (``iscrowd`` or ``num_keypoints == 0``) and matching are pycocotools' own, identical to crowdposetools'.
* ``track``: CLEAR-MOT (MOTA, MOTP, ID switches, FP, FN) and IDF1/IDP/IDR from ``models.tracking_metrics``
  (definitions there). One sequence per video of the run, its matched frames in frame order; GT objects are the
  annotations with a ``track_id`` (not ``iscrowd``; for keypoint similarities at least one labelled joint), the
  predictions are the rows with their ``track_id`` (an untracked row counts as an identity of its own).
  ``--similarity``: ``oks`` (default: COCO OKS with the GT's sigmas and ``area`` or bbox w·h), ``pck`` (fraction
  of GT joints within 0.5 × head size, head size = 0.6 × the head box diagonal, PoseTrack's PCKh; needs
  ``bbox_head`` or ``head_rect``) or ``box_iou`` (GT bbox vs detector box); a pair may match at
  ``similarity ≥ --threshold``. MOTP is the mean similarity of matched pairs. Keypoints are compared on the joints
  both sets have (all GT joints when a conversion is defined, else the joints with the same name, e.g. COCO-17 vs
  CrowdPose-14: the 12 limb joints). This is a per-person evaluation, not the per-joint one of PoseTrack's
  ``poseval`` (``evaluateTracking.py``): its numbers are comparable across raypose runs, not to published PoseTrack
  MOTA.
* ``pckh``: keypoint accuracy where the GT has head boxes (MPII, PoseTrack, the Bonn clip): multi-person PCKh at
  ``--threshold`` × head size on the shared joints (``pckh_eval``), e.g. COCO-17 predictions on a CrowdPose-14 GT.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "main",
    "EvaluationError",
    "GroundTruth",
    "load_ground_truth",
    "FrameMatch",
    "match_frames",
    "alphapose_eval_id",
    "prediction_results",
    "coco_keypoint_eval",
    "crowdpose_eval",
    "tracking_eval",
    "COCO_STAT_NAMES",
    "CROWDPOSE_STAT_NAMES",
    "CROWD_INDEX_BANDS",
]

logger = logging.getLogger("raypose.evaluate")

KINDS = ("coco", "crowdpose", "track", "pckh")
MATCH_MODES = ("auto", "file_name", "id", "frame")
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")
CROWDPOSE_STAT_NAMES = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")
#: crowdposetools ``get_type_result(first=0.2, second=0.8)``: easy < 0.2 ≤ medium < 0.8 ≤ hard.
CROWD_INDEX_BANDS = (0.2, 0.8)
#: CrowdPose object scale: 0.53 × GT bbox w·h (crowdposetools ``computeOks`` and ``evaluateImg``).
CROWDPOSE_AREA_FACTOR = 0.53
# Names some GT files use for CrowdPose-14's head and neck (Bonn: MPII's head_top / upper_neck).
_GT_NAME_ALIASES = {"head_top": "head", "upper_neck": "neck"}


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (bad GT, nothing matched, incomparable keypoint sets): exit code 2."""


# ---------------------------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """A COCO-style keypoint ground truth (COCO, CrowdPose, PoseTrack 2018, Bonn, jobs.make_sample).

    Attributes:
        path: where it was read from.
        data: the parsed JSON (never modified; evaluation works on copies).
        keypoint_set: the GT's keypoint set (``models.keypoints``), from the category's keypoint names.
        category_id: the person category's id.
        images: image id → image record.
        annotations: image id → the person annotations of that image.
    """

    path: str
    data: dict
    keypoint_set: object
    category_id: int
    images: dict
    annotations: dict = field(default_factory=dict)


def _gt_keypoint_set(category: dict, annotations: list[dict]):
    from models.keypoints import KEYPOINT_SETS, keypoint_set_for_num_joints

    names = category.get("keypoints")
    if names:
        for candidate in (tuple(names), tuple(_GT_NAME_ALIASES.get(n, n) for n in names)):
            for ks in KEYPOINT_SETS.values():
                if candidate == ks.names:
                    return ks
        raise EvaluationError(
            f"GT keypoint names {list(names)} match no known keypoint set ({', '.join(KEYPOINT_SETS)})"
        )
    lengths = {len(a["keypoints"]) // 3 for a in annotations if a.get("keypoints")}
    if len(lengths) != 1:
        raise EvaluationError(f"GT category has no keypoint names and annotations have {sorted(lengths)} keypoints")
    try:
        return keypoint_set_for_num_joints(lengths.pop())
    except ValueError as e:
        raise EvaluationError(str(e)) from None


def load_ground_truth(path: str, storage_options: dict | None = None) -> GroundTruth:
    """Read and check a COCO-style keypoint GT file (local path or fsspec URI).

    Raises:
        EvaluationError: missing file, invalid JSON, no images, no person category, unknown keypoint set.
    """
    import fsspec

    try:
        with fsspec.open(path, "rt", **(storage_options or {})) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise EvaluationError(f"ground truth not found: {path}") from None
    except (OSError, ValueError) as e:
        raise EvaluationError(f"cannot read ground truth {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data["images"]:
        raise EvaluationError(
            f"{path} is not a COCO-style ground truth: expected an object with a non-empty "
            "'images' list (and 'annotations', 'categories')"
        )
    cats = data.get("categories") or []
    person = [c for c in cats if c.get("name") == "person"] or cats[:1]
    if not person:
        raise EvaluationError(f"{path} has no categories; expected a 'person' category with keypoint names")
    cat_id = int(person[0].get("id", 1))
    anns = [a for a in data.get("annotations", []) if int(a.get("category_id", cat_id)) == cat_id]
    images = {}
    for img in data["images"]:
        if "id" not in img:
            raise EvaluationError(f"{path}: image without 'id': {img}")
        images[img["id"]] = img
    by_image: dict = {i: [] for i in images}
    for a in anns:
        if a.get("image_id") in by_image:
            by_image[a["image_id"]].append(a)
    return GroundTruth(
        path=path,
        data=data,
        keypoint_set=_gt_keypoint_set(person[0], anns),
        category_id=cat_id,
        images=images,
        annotations=by_image,
    )


# ---------------------------------------------------------------------------------------------------------------
# Matching our frames to GT images
# ---------------------------------------------------------------------------------------------------------------


def _components(uri: str) -> tuple[str, ...]:
    path = uri.split("://", 1)[-1].replace("\\", "/")
    return tuple(p for p in path.split("/") if p and p != ".")


def alphapose_eval_id(name: str) -> int | None:
    """AlphaPose's ``--eval`` image id of a file name, ``int(basename.split('.')[0].split('_')[-1])``
    (``000000000139.jpg`` → 139, ``img_000123.jpg`` → 123); None when that is not a number."""
    stem = _components(name)[-1].split(".")[0].split("_")[-1] if name else ""
    return int(stem) if stem.isdigit() else None


def _gt_frame_number(img: dict) -> int | None:
    if "frame_index" in img:
        return int(img["frame_index"])
    fid, n = img.get("frame_id"), img.get("nframes")
    if isinstance(fid, int) and fid >= 0 and (n is None or fid < int(n)):
        return fid
    stem = _components(str(img.get("file_name", "")))[-1:] or ("",)
    stem = stem[0].split(".")[0]
    return int(stem) if stem.isdigit() else None


def _as_int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _gt_sequences(gt: GroundTruth) -> tuple[dict, dict]:
    """GT image id → sequence key, and sequence key → names it answers to."""
    videos = {}
    for v in gt.data.get("videos") or []:
        if "id" in v:
            videos[_as_int(v["id"]) if _as_int(v["id"]) is not None else v["id"]] = v
    seq_of, names = {}, {}
    for iid, img in gt.images.items():
        comps = _components(str(img.get("file_name", "")))
        cand = [str(img[k]) for k in ("vid_id", "video_id") if k in img]
        for k in ("vid_id", "video_id"):
            if k in img:
                key = _as_int(img[k]) if _as_int(img[k]) is not None else img[k]
                if key in videos and videos[key].get("name"):
                    cand.append(str(videos[key]["name"]))
        if len(comps) >= 2:
            cand.append(comps[-2])
        key = cand[0] if cand else ""
        seq_of[iid] = key
        names.setdefault(key, set()).update(cand)
    return seq_of, names


@dataclass(frozen=True)
class FrameMatch:
    """Which GT image each frame of the run is.

    Attributes:
        image_of: (video_id, frame_index) → GT image id.
        modes: video_id → the match mode used for it.
        sequences: video_id → the GT sequence key it was paired with (frame mode / video file names), or None.
        unnamed_frames: video_id → frames whose image file is unknown (no persons, folder not listable).
        unmatched_frames: video_id → named frames that matched no GT image.
    """

    image_of: dict
    modes: dict
    sequences: dict
    unnamed_frames: dict
    unmatched_frames: dict

    @property
    def image_ids(self) -> set:
        return set(self.image_of.values())


def match_frames(videos: dict, gt: GroundTruth, mode: str = "auto") -> FrameMatch:
    """Match every frame of the run to a GT image (rules in the module docstring).

    Args:
        videos: video_id → ``store.tables.VideoFrames``.
        gt: the ground truth.
        mode: ``auto``, ``file_name``, ``id`` or ``frame``.
    Raises:
        EvaluationError: ambiguous file names, or one GT image matched by two frames.
    """
    if mode not in MATCH_MODES:
        raise EvaluationError(f"--match {mode!r}; choose one of {', '.join(MATCH_MODES)}")
    by_base: dict[str, list] = {}
    for iid, img in gt.images.items():
        comps = _components(str(img.get("file_name", "")))
        if comps:
            by_base.setdefault(comps[-1], []).append((comps, iid))
    seq_of, seq_names = _gt_sequences(gt)
    by_seq_frame: dict = {}
    for iid, img in gt.images.items():
        n = _gt_frame_number(img)
        if n is not None:
            by_seq_frame.setdefault((seq_of[iid], n), iid)

    def pair_sequence(vf) -> str | None:
        mine = {vf.name, vf.video_id} - {""}
        hits = [k for k, ns in seq_names.items() if ns & mine]
        if len(hits) == 1:
            return hits[0]
        return next(iter(seq_names)) if len(seq_names) == 1 else None

    image_of, claimed, modes, seqs, unnamed, unmatched = {}, {}, {}, {}, {}, {}
    for vid, vf in sorted(videos.items()):
        m = mode if mode != "auto" else ("frame" if vf.kind == "video" else "file_name")
        modes[vid] = m
        seq = pair_sequence(vf) if (m == "frame" or vf.kind == "video") else None
        seqs[vid] = seq
        n_unnamed = n_unmatched = 0
        for f in vf.frame_indices.tolist():
            uri = vf.frame_uris.get(f)
            iid = None
            if m == "frame":
                iid = by_seq_frame.get((seq, f)) if seq is not None else None
            elif m == "id":
                if vf.kind == "video":
                    iid = f if f in gt.images else None
                elif uri is None:
                    n_unnamed += 1
                    continue
                else:
                    key = alphapose_eval_id(uri)
                    iid = key if key in gt.images else None
            else:  # file_name
                if vf.kind == "video":
                    cands = by_base.get(f"{f}.jpg", [])
                    if len(cands) > 1 and seq is not None:
                        cands = [c for c in cands if seq_of[c[1]] == seq]
                    if len(cands) > 1:
                        raise EvaluationError(
                            f"video {vid} frame {f}: {len(cands)} GT images are named '{f}.jpg'; "
                            "use --match frame or select the GT sequence"
                        )
                    iid = cands[0][1] if cands else None
                elif uri is None:
                    n_unnamed += 1
                    continue
                else:
                    comps = _components(uri)
                    cands = by_base.get(comps[-1], []) if comps else []
                    scored = []
                    for gc, giid in cands:
                        k = 0
                        while k < min(len(gc), len(comps)) and gc[-1 - k] == comps[-1 - k]:
                            k += 1
                        scored.append((k, giid))
                    if scored:
                        best = max(k for k, _ in scored)
                        top = [giid for k, giid in scored if k == best]
                        if len(top) > 1:
                            raise EvaluationError(
                                f"{uri} matches {len(top)} GT images equally well by file name "
                                f"({', '.join(str(gt.images[t].get('file_name')) for t in top[:3])}); "
                                "select videos with --video-id or use --match id"
                            )
                        iid = top[0]
            if iid is None:
                n_unmatched += 1
                continue
            if iid in claimed:
                ov, of = claimed[iid]
                raise EvaluationError(
                    f"GT image {iid} ({gt.images[iid].get('file_name')}) is matched by video {ov} frame {of} and by "
                    f"video {vid} frame {f}; evaluate one of them (--video-id)"
                )
            claimed[iid] = (vid, f)
            image_of[(vid, f)] = iid
        if n_unnamed:
            unnamed[vid] = n_unnamed
        if n_unmatched:
            unmatched[vid] = n_unmatched
    return FrameMatch(image_of, modes, seqs, unnamed, unmatched)


# ---------------------------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------------------------


def _check_conversion(src: str, dst) -> np.ndarray:
    from models.keypoints import conversion_indices

    try:
        return conversion_indices(src, dst.name)
    except ValueError as e:
        raise EvaluationError(f"predictions are {src}, the ground truth is {dst.name}: {e}") from None


def prediction_results(arrays_by_video: dict, match: FrameMatch, gt: GroundTruth) -> list[dict]:
    """COCO keypoint results for the rows of matched frames: ``{image_id, category_id, keypoints [x, y, c]·K_gt,
    score = pose_score}``, keypoints converted to the GT's keypoint set.

    Args:
        arrays_by_video: video_id → ``store.tables.PoseArrays`` of that video.
    Raises:
        EvaluationError: no well-defined conversion from a video's keypoint set to the GT's.
    """
    results = []
    for vid, arr in sorted(arrays_by_video.items()):
        if len(arr) == 0:
            continue
        idx = _check_conversion(str(arr.keypoint_set[0]), gt.keypoint_set)
        flat = np.concatenate(
            [arr.keypoints[:, idx].astype(np.float64), arr.keypoint_scores[:, idx, None].astype(np.float64)], axis=-1
        ).reshape(len(arr), -1)
        for r in range(len(arr)):
            iid = match.image_of.get((vid, int(arr.frame_index[r])))
            if iid is None:
                continue
            results.append(
                {
                    "image_id": iid,
                    "category_id": gt.category_id,
                    "keypoints": flat[r].tolist(),
                    "score": float(arr.pose_score[r]),
                }
            )
    return results


# ---------------------------------------------------------------------------------------------------------------
# COCO / CrowdPose AP through pycocotools
# ---------------------------------------------------------------------------------------------------------------


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def _coco_apis(gt: GroundTruth, results: list[dict], area_factor: float | None):
    """pycocotools GT and result objects on copies; GT area = area or w·h (COCO), or factor·w·h (CrowdPose)."""
    from pycocotools.coco import COCO

    anns = []
    for i, a in enumerate(a for lst in gt.annotations.values() for a in lst):
        a = copy.deepcopy(a)
        a["id"] = i + 1  # pycocotools reads id 0 as "unmatched": renumber 1..N on the copy
        a["category_id"] = gt.category_id
        a["iscrowd"] = int(bool(a.get("iscrowd", 0)))
        kp = a.get("keypoints") or [0.0] * (3 * gt.keypoint_set.num_keypoints)
        a["keypoints"] = kp
        a.setdefault("num_keypoints", int(np.count_nonzero(np.asarray(kp[2::3], np.float64) > 0)))
        bbox = a.get("bbox") or [0.0, 0.0, 0.0, 0.0]
        a["bbox"] = bbox
        if area_factor is not None:
            a["area"] = area_factor * float(bbox[2]) * float(bbox[3])
        elif "area" not in a:
            a["area"] = float(bbox[2]) * float(bbox[3])
        anns.append(a)
    cat = {"id": gt.category_id, "name": "person", "keypoints": list(gt.keypoint_set.names)}
    coco_gt = COCO()
    coco_gt.dataset = {"images": list(gt.images.values()), "annotations": anns, "categories": [cat]}
    with _quiet():
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:  # loadRes cannot take an empty list; an empty result set is AP 0, not an error
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt.images.values()), "annotations": [], "categories": [cat]}
            coco_dt.createIndex()
    return coco_gt, coco_dt


def _cocoeval(coco_gt, coco_dt, img_ids, sigmas):
    from pycocotools.cocoeval import COCOeval

    e = COCOeval(coco_gt, coco_dt, "keypoints")
    e.params.imgIds = sorted(img_ids)
    e.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    with _quiet():
        e.evaluate()
        e.accumulate()
    return e


def coco_keypoint_eval(gt: GroundTruth, results: list[dict], img_ids) -> dict[str, float]:
    """pycocotools keypoint AP/AR (the 10 standard stats, named ``COCO_STAT_NAMES``) over ``img_ids``."""
    coco_gt, coco_dt = _coco_apis(gt, results, None)
    e = _cocoeval(coco_gt, coco_dt, img_ids, gt.keypoint_set.sigmas_array())
    with _quiet():
        e.summarize()
    return {n: float(v) for n, v in zip(COCO_STAT_NAMES, e.stats[:10])}


def crowdpose_eval(gt: GroundTruth, results: list[dict], img_ids) -> dict:
    """CrowdPose AP (``CROWDPOSE_STAT_NAMES``), as crowdposetools computes it (module docstring).

    Returns:
        ``{"stats": {name: value}, "band_images": {"easy": n, "medium": n, "hard": n}}``.
    Raises:
        EvaluationError: the GT is not CrowdPose-14 or its images have no ``crowdIndex``.
    """
    from models.keypoints import CROWDPOSE_14

    if gt.keypoint_set.name != CROWDPOSE_14.name:
        raise EvaluationError(
            f"--kind crowdpose needs a CrowdPose-14 ground truth; {gt.path} is {gt.keypoint_set.name} (use --kind coco)"
        )
    missing = [i for i in img_ids if "crowdIndex" not in gt.images[i]]
    if missing:
        raise EvaluationError(
            f"{len(missing)} GT images have no 'crowdIndex' (e.g. image {missing[0]}); "
            "the easy/medium/hard split needs it"
        )
    coco_gt, coco_dt = _coco_apis(gt, results, CROWDPOSE_AREA_FACTOR)
    sigmas = CROWDPOSE_14.sigmas_array()
    e = _cocoeval(coco_gt, coco_dt, img_ids, sigmas)
    with _quiet():
        e.summarize()
    stats = {n: float(e.stats[i]) for n, i in zip(CROWDPOSE_STAT_NAMES[:6], (0, 1, 2, 5, 6, 7))}
    lo, hi = CROWD_INDEX_BANDS
    bands = {"easy": [], "medium": [], "hard": []}
    for i in img_ids:
        ci = float(gt.images[i]["crowdIndex"])
        bands["easy" if ci < lo else "medium" if ci < hi else "hard"].append(i)
    for name, ids in bands.items():
        if not ids:
            stats[f"AP_{name}"] = -1.0
            continue
        eb = _cocoeval(coco_gt, coco_dt, ids, sigmas)
        stats[f"AP_{name}"] = round(float(np.mean(eb.eval["precision"][:, :, :, 0, :])), 4)
    return {"stats": stats, "band_images": {k: len(v) for k, v in bands.items()}}


# ---------------------------------------------------------------------------------------------------------------
# Tracking
# ---------------------------------------------------------------------------------------------------------------


def _shared_joints(src: str, gt_set) -> tuple[np.ndarray, np.ndarray]:
    """(prediction indices, GT indices) of the joints compared: all GT joints when a conversion is defined,
    else the joints with the same name in both sets."""
    from models.keypoints import conversion_indices, get_keypoint_set

    try:
        return conversion_indices(src, gt_set.name), np.arange(gt_set.num_keypoints)
    except ValueError:
        pass
    names = get_keypoint_set(src).names
    shared = [(names.index(n), j) for j, n in enumerate(gt_set.names) if n in names]
    if not shared:
        raise EvaluationError(f"keypoint sets {src} and {gt_set.name} share no joint")
    p, g = zip(*shared)
    return np.asarray(p, np.int64), np.asarray(g, np.int64)


def _run_joints(arrays_by_video: dict, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """``_shared_joints`` of the run's one keypoint set (every GT joint for a run without poses)."""
    sets = sorted({str(a.keypoint_set[0]) for a in arrays_by_video.values() if a is not None and len(a)})
    if len(sets) > 1:
        raise EvaluationError(
            f"videos were labelled with different keypoint sets ({', '.join(sets)}); evaluate "
            "them separately (--video-id)"
        )
    if sets:
        return _shared_joints(sets[0], gt.keypoint_set)
    return np.arange(gt.keypoint_set.num_keypoints), np.arange(gt.keypoint_set.num_keypoints)


def _head_size(a: dict) -> float | None:
    if a.get("bbox_head") and len(a["bbox_head"]) == 4:
        w, h = float(a["bbox_head"][2]), float(a["bbox_head"][3])
    elif a.get("head_rect") and len(a["head_rect"]) == 4:
        x1, y1, x2, y2 = map(float, a["head_rect"])
        w, h = x2 - x1, y2 - y1
    else:
        return None
    return 0.6 * math.hypot(w, h)


def tracking_eval(
    arrays_by_video: dict,
    videos: dict,
    match: FrameMatch,
    gt: GroundTruth,
    *,
    similarity: str = "oks",
    threshold: float = 0.5,
) -> dict:
    """MOTA, MOTP, ID switches and IDF1 over every video of the run, and per video (module docstring).

    Args:
        arrays_by_video: video_id → ``PoseArrays``; videos: video_id → ``VideoFrames``; match: the frame match.
        similarity: ``oks``, ``pck`` or ``box_iou``; threshold: a pair may match at similarity ≥ threshold.
    Returns:
        ``{"overall": {...}, "per_video": {video_id: {...}}, "joints": [...], ...}``.
    Raises:
        EvaluationError: a GT without track ids, incomparable keypoint sets, missing head boxes for ``pck``.
    """
    from models.tracking_metrics import SIMILARITIES, evaluate_tracking

    if similarity not in SIMILARITIES:
        raise EvaluationError(f"--similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    matched_anns = [a for iid in match.image_ids for a in gt.annotations.get(iid, [])]
    if not any("track_id" in a for a in matched_anns):
        raise EvaluationError(
            f"{gt.path} has no 'track_id' on the matched images; --kind track needs a "
            "PoseTrack/COCO-video ground truth with track ids"
        )
    p_idx, g_idx = _run_joints(arrays_by_video, gt)
    k = len(g_idx)
    seq_of, _ = _gt_sequences(gt)
    gt_key: dict = {}
    pred_key: dict = {}

    def gid(key):
        return gt_key.setdefault(key, len(gt_key) + 1)

    def pid(key):
        return pred_key.setdefault(key, len(pred_key) + 1)

    sequences = {}
    for vid in sorted(videos):
        frames = sorted(f for (v, f) in match.image_of if v == vid)
        if not frames:
            continue
        arr = arrays_by_video.get(vid)
        rows_of: dict = {}
        if arr is not None:
            for r, f in enumerate(arr.frame_index.tolist()):
                rows_of.setdefault(f, []).append(r)
        seq = {"gt_ids": [], "gt_pos": [], "pred_ids": [], "pred_pos": [], "gt_visible": [], "gt_scale": []}
        for f in frames:
            iid = match.image_of[(vid, f)]
            anns = [a for a in gt.annotations.get(iid, []) if "track_id" in a and not a.get("iscrowd")]
            kps = [
                np.asarray(a.get("keypoints") or [0.0] * 3 * gt.keypoint_set.num_keypoints, np.float64).reshape(-1, 3)[
                    g_idx
                ]
                for a in anns
            ]
            if similarity != "box_iou":  # a person without labelled joints cannot be matched by keypoints
                keep = [bool((kp[:, 2] > 0).any()) for kp in kps]
                anns = [a for a, ok in zip(anns, keep) if ok]
                kps = [kp for kp, ok in zip(kps, keep) if ok]
            rows = rows_of.get(f, [])
            ids = []
            for r in rows:  # an untracked row is an identity of its own
                t = int(arr.track_id[r])
                ids.append(pid((vid, t)) if t > 0 else pid((vid, "untracked", f, r)))
            seq["gt_ids"].append(np.asarray([gid((seq_of[iid], a["track_id"])) for a in anns], np.int64))
            seq["pred_ids"].append(np.asarray(ids, np.int64))
            if similarity == "box_iou":
                b = np.asarray([a.get("bbox") or [0, 0, 0, 0] for a in anns], np.float64).reshape(-1, 4)
                seq["gt_pos"].append(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1))
                seq["pred_pos"].append(arr.box_xyxy[rows].astype(np.float64) if rows else np.zeros((0, 4)))
                continue
            seq["gt_pos"].append(np.stack([kp[:, :2] for kp in kps]) if kps else np.zeros((0, k, 2)))
            seq["gt_visible"].append(np.stack([kp[:, 2] > 0 for kp in kps]) if kps else np.zeros((0, k), bool))
            seq["pred_pos"].append(arr.keypoints[rows][:, p_idx].astype(np.float64) if rows else np.zeros((0, k, 2)))
            if similarity == "oks":
                scale = [float(a["area"]) if "area" in a else float(a["bbox"][2]) * float(a["bbox"][3]) for a in anns]
            else:
                scale = [_head_size(a) for a in anns]
                if any(s is None for s in scale):
                    raise EvaluationError(
                        "--similarity pck needs head boxes ('bbox_head' or 'head_rect') on every "
                        f"GT person; image {iid} has a person without one"
                    )
            seq["gt_scale"].append(np.asarray(scale, np.float64))
        sequences[vid] = seq

    def run(seqs: list[dict]) -> dict:
        cat = {key: [x for s in seqs for x in s[key]] for key in seqs[0]}
        kwargs = {}
        if similarity != "box_iou":
            kwargs = {"gt_visible": cat["gt_visible"], "gt_scale": cat["gt_scale"]}
            if similarity == "oks":
                kwargs["sigmas"] = gt.keypoint_set.sigmas_array()[g_idx]
        m = evaluate_tracking(
            cat["gt_ids"],
            cat["gt_pos"],
            cat["pred_ids"],
            cat["pred_pos"],
            similarity=similarity,
            threshold=threshold,
            **kwargs,
        )
        c, i = m.clear_mot, m.identity
        return {
            "MOTA": c.mota,
            "MOTP": c.motp,
            "IDSW": c.id_switches,
            "IDF1": i.idf1,
            "IDP": i.idp,
            "IDR": i.idr,
            "FP": c.false_positives,
            "FN": c.false_negatives,
            "matches": c.matches,
            "gt_objects": c.num_gt,
            "predictions": c.num_predictions,
            "frames": len(cat["gt_ids"]),
        }

    if not sequences:
        raise EvaluationError("no frame of the run matched a GT image")
    return {
        "overall": run(list(sequences.values())),
        "per_video": {v: run([s]) for v, s in sequences.items()},
        "similarity": similarity,
        "threshold": threshold,
        "joints": [gt.keypoint_set.names[j] for j in g_idx],
    }


# ---------------------------------------------------------------------------------------------------------------
# Keypoint accuracy (PCKh)
# ---------------------------------------------------------------------------------------------------------------


def pckh_eval(
    arrays_by_video: dict, videos: dict, match: FrameMatch, gt: GroundTruth, *, threshold: float = 0.5
) -> dict:
    """Multi-person PCKh: per matched frame, GT persons and predictions are paired one-to-one (Hungarian, on the
    fraction of shared joints within ``threshold`` × head size, head size = 0.6 × the head box diagonal as in
    PoseTrack/MPII), then a labelled GT joint is correct when its paired prediction's joint lies within
    ``threshold`` × head size. Unpaired GT persons count every labelled joint as missed, so missing detections lower
    the score; ``predictions_unpaired`` counts the false positives.

    Compared joints: all GT joints when a conversion from the prediction set exists, else the joints of the same
    name (COCO-17 vs CrowdPose-14: the 12 limb joints). Returns ``{"PCKh": mean over labelled joints, "per_joint":
    {name: PCKh}, "gt_persons", "paired", "predictions", "predictions_unpaired", "joints", "threshold"}``.
    """
    from scipy.optimize import linear_sum_assignment

    p_idx, g_idx = _run_joints(arrays_by_video, gt)
    k = len(g_idx)
    correct = np.zeros(k)
    labelled = np.zeros(k)
    n_gt = n_paired = n_pred = 0
    for vid in sorted(videos):
        arr = arrays_by_video.get(vid)
        rows_of: dict = {}
        if arr is not None:
            for r, f in enumerate(arr.frame_index.tolist()):
                rows_of.setdefault(f, []).append(r)
        for f in sorted(f for (v, f) in match.image_of if v == vid):
            iid = match.image_of[(vid, f)]
            anns = [a for a in gt.annotations.get(iid, []) if not a.get("iscrowd") and a.get("keypoints")]
            g = [np.asarray(a["keypoints"], np.float64).reshape(-1, 3)[g_idx] for a in anns]
            keep = [bool((kp[:, 2] > 0).any()) for kp in g]
            anns = [a for a, ok in zip(anns, keep) if ok]
            g = [kp for kp, ok in zip(g, keep) if ok]
            heads = [_head_size(a) for a in anns]
            if any(h is None for h in heads):
                raise EvaluationError(
                    f"--kind pckh needs head boxes ('bbox_head' or 'head_rect') on every GT person; "
                    f"image {iid} has a person without one"
                )
            rows = rows_of.get(f, [])
            pred = arr.keypoints[rows][:, p_idx].astype(np.float64) if rows else np.zeros((0, k, 2))
            n_gt += len(g)
            n_pred += len(pred)
            if not g:
                continue
            gt_xy = np.stack([kp[:, :2] for kp in g])  # [G, k, 2]
            vis = np.stack([kp[:, 2] > 0 for kp in g])  # [G, k]
            labelled += vis.sum(0)
            if not len(pred):
                continue
            dist = np.linalg.norm(gt_xy[:, None] - pred[None], axis=-1)  # [G, P, k]
            hit = (dist <= threshold * np.asarray(heads)[:, None, None]) & vis[:, None]
            frac = hit.sum(-1) / np.maximum(vis.sum(-1), 1)[:, None]
            gi, pi = linear_sum_assignment(-frac)
            for a, b in zip(gi, pi):
                if frac[a, b] > 0:
                    correct += hit[a, b]
                    n_paired += 1
    names = [gt.keypoint_set.names[j] for j in g_idx]
    per_joint = {n: (float(c / t) if t else float("nan")) for n, c, t in zip(names, correct, labelled)}
    return {
        "PCKh": float(correct.sum() / max(labelled.sum(), 1)),
        "per_joint": per_joint,
        "gt_persons": n_gt,
        "paired": n_paired,
        "predictions": n_pred,
        "predictions_unpaired": n_pred - n_paired,
        "joints": names,
        "threshold": threshold,
    }


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="output folder of jobs.label (local or s3://)")
    parser.add_argument("--gt", required=True, help="ground-truth JSON (COCO-style keypoints; track_id for track)")
    parser.add_argument("--kind", choices=KINDS, default="coco", help="what to evaluate (default: coco)")
    parser.add_argument(
        "--video-id",
        action="append",
        dest="video_ids",
        metavar="ID",
        help="evaluate only this video (repeatable; default: all)",
    )
    parser.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="auto",
        help="how frames find their GT image (default: auto = file_name for images, frame for videos)",
    )
    parser.add_argument("--out", help="JSON result path (default: OUTPUT/eval/<kind>.json)")
    parser.add_argument(
        "--all-gt-images",
        action="store_true",
        help="evaluate every GT image, not only those some frame of the run matched",
    )
    parser.add_argument(
        "--similarity",
        choices=("oks", "pck", "box_iou"),
        default="oks",
        help="track: how a GT person and a prediction may match (default: oks)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="track: match threshold; pckh: fraction of the head size (default: 0.5)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from store.tables import (
        OutputNotFoundError,
        default_storage_options,
        load_output,
        pose_arrays,
        split_by_video,
        video_frames,
    )
    from store.writers import join_uri, put_atomic

    so = default_storage_options()
    # ---- validate and match before any metric runs ------------------------------------------------------------------
    try:
        if args.kind in ("track", "pckh") and not 0.0 < args.threshold <= 1.0:
            raise EvaluationError(f"--threshold {args.threshold}: must be in (0, 1]")
        gt = load_ground_truth(args.gt, so)
        tables = load_output(args.output, args.video_ids, storage_options=so)
        if not tables.video_ids:
            raise EvaluationError(f"no videos under {args.output}")
        poses_by_video = split_by_video(tables.poses)
        frames_by_video = split_by_video(tables.frames)
        videos = {
            v: video_frames(
                args.output,
                v,
                poses=poses_by_video.get(v, tables.poses.slice(0, 0)),
                frames=frames_by_video.get(v, tables.frames.slice(0, 0)),
                manifest=tables.manifests.get(v),
                storage_options=so,
            )
            for v in tables.video_ids
        }
        match = match_frames(videos, gt, args.match)
        if not match.image_of:
            unpaired = [v for v, m in match.modes.items() if m == "frame" and match.sequences[v] is None]
            hint = (
                f"; video(s) {', '.join(unpaired)} could not be paired with a GT sequence by name (GT sequences: "
                f"{', '.join(sorted(map(str, _gt_sequences(gt)[1])))[:200]})"
                if unpaired
                else ""
            )
            raise EvaluationError(
                f"no frame of {len(videos)} video(s) under {args.output} matched an image of {args.gt} "
                f"(--match {args.match}){hint}; check that the run labelled the GT's images, or try another --match"
            )
        arrays = {v: pose_arrays(t) for v, t in poses_by_video.items()}
        for _v, arr in arrays.items():
            if len(arr) and args.kind not in ("track", "pckh"):
                _check_conversion(str(arr.keypoint_set[0]), gt.keypoint_set)
    except (EvaluationError, OutputNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for v, n in match.unnamed_frames.items():
        logger.warning(
            "video %s: %d frame(s) without persons could not be named (image folder not listable); "
            "their GT images are not evaluated (--all-gt-images counts every GT image)",
            v,
            n,
        )
    img_ids = sorted(gt.images) if args.all_gt_images else sorted(match.image_ids)

    # ---- evaluate ----------------------------------------------------------------------------------------------
    try:
        report = {
            "kind": args.kind,
            "gt": args.gt,
            "output": args.output,
            "video_ids": list(tables.video_ids),
            "random_weights": tables.random_weights,
            "gt_keypoint_set": gt.keypoint_set.name,
            "prediction_keypoint_sets": sorted({str(a.keypoint_set[0]) for a in arrays.values() if len(a)}),
            "match": {v: m for v, m in match.modes.items()},
            "images": {
                "gt": len(gt.images),
                "matched": len(match.image_ids),
                "evaluated": len(img_ids),
                "unmatched_frames": sum(match.unmatched_frames.values()),
                "unnamed_frames": sum(match.unnamed_frames.values()),
            },
        }
        if args.kind == "track":
            report["tracking"] = tracking_eval(
                arrays, videos, match, gt, similarity=args.similarity, threshold=args.threshold
            )
            rows = [
                (k, report["tracking"]["overall"][k])
                for k in ("MOTA", "MOTP", "IDSW", "IDF1", "IDP", "IDR", "FP", "FN", "gt_objects", "frames")
            ]
            title = (
                f"tracking ({args.similarity} ≥ {args.threshold}) on {report['tracking']['overall']['frames']} frames"
            )
        elif args.kind == "pckh":
            report["pckh"] = pckh_eval(arrays, videos, match, gt, threshold=args.threshold)
            rows = (
                [("PCKh", report["pckh"]["PCKh"])]
                + list(report["pckh"]["per_joint"].items())
                + [(k, report["pckh"][k]) for k in ("gt_persons", "paired", "predictions_unpaired")]
            )
            title = f"PCKh@{args.threshold} on the shared joints"
        else:
            results = prediction_results(arrays, match, gt)
            report["predictions"] = len(results)
            if args.kind == "coco":
                report["stats"] = coco_keypoint_eval(gt, results, img_ids)
                title = "COCO keypoint AP (pycocotools)"
            else:
                cp = crowdpose_eval(gt, results, img_ids)
                report["stats"], report["crowd_index_bands"] = cp["stats"], cp["band_images"]
                title = "CrowdPose AP (crowdposetools rules)"
            rows = list(report["stats"].items())
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception:
        logger.exception("evaluation failed")
        return 1

    out = args.out or join_uri(args.output, "eval", f"{args.kind}.json")
    try:
        put_atomic(json.dumps(_json_safe(report), indent=1, sort_keys=True).encode(), out, so)
    except OSError as e:
        print(f"error: cannot write {out}: {e}", file=sys.stderr)
        return 2
    if report["random_weights"]:
        print(
            "RANDOM WEIGHTS: these labels came from random-weight models; the numbers below measure the pipeline, "
            "not a pose estimator."
        )
    print(f"{title}: {len(img_ids)} of {len(gt.images)} GT images, {len(tables.video_ids)} video(s)")
    for name, value in rows:
        print(f"  {name:<10} {_fmt(value)}")
    if args.kind == "track" and len(report["tracking"]["per_video"]) > 1:
        for vid, r in report["tracking"]["per_video"].items():
            print(f"  {vid}: MOTA {_fmt(r['MOTA'])}  IDF1 {_fmt(r['IDF1'])}  IDSW {r['IDSW']}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
