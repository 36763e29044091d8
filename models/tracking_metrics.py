"""Multi-object tracking metrics: CLEAR-MOT (MOTA, MOTP, ID switches) and the identity metrics IDF1/IDP/IDR.

Used by the PoseFlow tests and benchmark and by the evaluation of the per-video tracking stage. Ground truth and
predictions are given per frame as track ids plus positions (boxes or keypoints); a per-frame similarity matrix
decides which GT/prediction pairs may match (``similarity >= threshold``). Pure NumPy/SciPy, deterministic.

Definitions (Bernardin & Stiefelhagen 2008, "Evaluating multiple object tracking performance: the CLEAR MOT
metrics"; Ristani et al. 2016, "Performance measures and a data set for multi-target, multi-camera tracking"),
following the conventions of py-motmetrics, which the PoseTrack evaluation (poseval) uses:

* Per frame, a GT object that was matched before keeps its last matched prediction id if that prediction is
  present and still similar enough. The remaining GT objects and predictions are matched by a maximum-similarity
  assignment among the allowed pairs (``scipy.optimize.linear_sum_assignment``).
* An **ID switch** is counted when a GT object is matched to a prediction id different from the one it was last
  matched to (in any earlier frame). A GT object's first match is never a switch.
* **FN** = GT objects left unmatched, **FP** = predictions left unmatched, summed over frames.
* **MOTA** = 1 − (FN + FP + IDSW) / (number of GT objects over all frames); it can be negative.
* **MOTP** = mean similarity of the matched pairs (for box IoU this is MOTChallenge's MOTP; py-motmetrics reports
  the mean *distance* 1 − IoU instead).
* **IDF1**: one global one-to-one matching between GT track ids and predicted track ids maximises IDTP, the number
  of frames in which a paired GT and prediction both exist and are similar enough. IDFN = GT detections − IDTP,
  IDFP = predicted detections − IDTP, IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN), IDP = IDTP / (IDTP + IDFP),
  IDR = IDTP / (IDTP + IDFN). (Pairing a GT id with a prediction id never costs more than leaving both unpaired,
  so this maximum-overlap assignment equals Ristani's min-cost matching with virtual "unpaired" nodes.)

Similarities: ``box_iou_matrix`` (boxes (x1, y1, x2, y2), continuous IoU, threshold 0.5 by default),
``oks_matrix`` (COCO object keypoint similarity) and ``pck_matrix`` (fraction of labelled GT keypoints within
``alpha`` × a per-GT reference length, PCKh-style); ``evaluate_tracking`` wires one of them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "ClearMotResult",
    "IdentityResult",
    "TrackingMetrics",
    "SIMILARITIES",
    "box_iou_matrix",
    "oks_matrix",
    "pck_matrix",
    "keypoint_boxes",
    "clear_mot",
    "identity_metrics",
    "evaluate_tracking",
]

SIMILARITIES = ("box_iou", "oks", "pck")
Similarity = Literal["box_iou", "oks", "pck"]

# A pair that may not match costs this much more than any allowed pair, so the assignment first maximises the
# number of allowed pairs, then their similarity; disallowed pairs it still returns are dropped.
_FORBIDDEN = 1e6


@dataclass(frozen=True)
class ClearMotResult:
    """CLEAR-MOT counts and scores of one sequence (or several, summed)."""

    num_gt: int  # GT objects over all frames
    num_predictions: int
    matches: int
    false_positives: int
    false_negatives: int
    id_switches: int
    mota: float  # 1 − (FN + FP + IDSW) / num_gt (NaN when num_gt = 0)
    motp: float  # mean similarity of matched pairs (NaN when there are none)


@dataclass(frozen=True)
class IdentityResult:
    """Identity metrics (Ristani et al. 2016)."""

    idtp: int
    idfp: int
    idfn: int
    idf1: float
    idp: float
    idr: float


@dataclass(frozen=True)
class TrackingMetrics:
    clear_mot: ClearMotResult
    identity: IdentityResult


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# Similarities between the GT objects and the predictions of one frame.
# ----------------------------------------------------------------------------------------------------------------


def box_iou_matrix(gt_boxes: np.ndarray, pred_boxes: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(x1, y1, x2, y2)`` in continuous coordinates (area = (x2−x1)·(y2−y1)).

    Args:
        gt_boxes: float ``[G, 4]``; pred_boxes: float ``[P, 4]``.

    Returns:
        float64 ``[G, P]`` in [0, 1]; 0 where a union is empty.
    """
    a = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def keypoint_boxes(keypoints: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Tight ``(x1, y1, x2, y2)`` boxes around each pose's (visible) keypoints.

    Args:
        keypoints: float ``[N, K, 2]``; visible: bool ``[N, K]`` or None (all).

    Returns:
        float64 ``[N, 4]``; a pose without visible keypoints gets an empty box at (0, 0).
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(len(keypoints), -1, 2)
    vis = np.ones(kp.shape[:2], bool) if visible is None else np.asarray(visible, bool)
    x = np.where(vis, kp[..., 0], np.nan)
    y = np.where(vis, kp[..., 1], np.nan)
    out = np.zeros((len(kp), 4))
    has = vis.any(axis=1)
    if has.any():
        out[has] = np.stack(
            [np.nanmin(x[has], 1), np.nanmin(y[has], 1), np.nanmax(x[has], 1), np.nanmax(y[has], 1)], axis=1
        )
    return out


def oks_matrix(
    gt_keypoints: np.ndarray,
    gt_visible: np.ndarray,
    gt_areas: np.ndarray,
    pred_keypoints: np.ndarray,
    sigmas: np.ndarray | float = 0.1,
) -> np.ndarray:
    """COCO object keypoint similarity: mean over labelled GT keypoints of exp(−d² / (2·area·(2σ)²)).

    Args:
        gt_keypoints: float ``[G, K, 2]``; gt_visible: bool ``[G, K]`` (labelled); gt_areas: ``[G]`` pixels².
        pred_keypoints: float ``[P, K, 2]``.
        sigmas: per-keypoint COCO sigmas ``[K]`` or one value for all.

    Returns:
        float64 ``[G, P]``; 0 for a GT without labelled keypoints.
    """
    g = np.asarray(gt_keypoints, dtype=np.float64)
    p = np.asarray(pred_keypoints, dtype=np.float64)
    vis = np.asarray(gt_visible, dtype=bool)
    if len(g) == 0 or len(p) == 0:
        return np.zeros((len(g), len(p)))
    var = (2.0 * np.broadcast_to(np.asarray(sigmas, np.float64), (g.shape[1],))) ** 2
    d2 = ((g[:, None] - p[None]) ** 2).sum(-1)  # [G, P, K]
    e = d2 / (2.0 * np.asarray(gt_areas, np.float64)[:, None, None].clip(np.spacing(1)) * var)
    num = (np.exp(-e) * vis[:, None, :]).sum(-1)
    den = vis.sum(-1)[:, None]
    return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def pck_matrix(
    gt_keypoints: np.ndarray,
    gt_visible: np.ndarray,
    gt_reference: np.ndarray,
    pred_keypoints: np.ndarray,
    alpha: float = 0.5,
) -> np.ndarray:
    """PCK: fraction of labelled GT keypoints within ``alpha · reference`` pixels of the prediction's keypoint.

    With the head-segment length as reference and alpha 0.5 this is PCKh@0.5 (the PoseTrack/poseval criterion).

    Args:
        gt_keypoints: float ``[G, K, 2]``; gt_visible: bool ``[G, K]``; gt_reference: ``[G]`` pixels.
        pred_keypoints: float ``[P, K, 2]``.

    Returns:
        float64 ``[G, P]`` in [0, 1].
    """
    g = np.asarray(gt_keypoints, dtype=np.float64)
    p = np.asarray(pred_keypoints, dtype=np.float64)
    vis = np.asarray(gt_visible, dtype=bool)
    if len(g) == 0 or len(p) == 0:
        return np.zeros((len(g), len(p)))
    d = np.sqrt(((g[:, None] - p[None]) ** 2).sum(-1))
    close = d <= alpha * np.asarray(gt_reference, np.float64)[:, None, None]
    den = vis.sum(-1)[:, None]
    return np.where(den > 0, (close & vis[:, None, :]).sum(-1) / np.maximum(den, 1), 0.0)


# ----------------------------------------------------------------------------------------------------------------
# Metrics from per-frame ids and similarity matrices.
# ----------------------------------------------------------------------------------------------------------------


def _check_frames(gt_ids, pred_ids, similarities):
    if not (len(gt_ids) == len(pred_ids) == len(similarities)):
        raise ValueError(
            f"gt_ids, pred_ids and similarities need one entry per frame, got {len(gt_ids)}, "
            f"{len(pred_ids)}, {len(similarities)}"
        )
    frames = []
    for t, (g, p, s) in enumerate(zip(gt_ids, pred_ids, similarities)):
        g = np.asarray(g, dtype=np.int64).reshape(-1)
        p = np.asarray(p, dtype=np.int64).reshape(-1)
        s = np.asarray(s, dtype=np.float64).reshape(len(g), len(p))
        if len(np.unique(g)) != len(g) or len(np.unique(p)) != len(p):
            raise ValueError(f"frame {t}: track ids must be unique within a frame (gt {g.tolist()}, pred {p.tolist()})")
        frames.append((g, p, s))
    return frames


def clear_mot(
    gt_ids: Sequence[np.ndarray],
    pred_ids: Sequence[np.ndarray],
    similarities: Sequence[np.ndarray],
    threshold: float = 0.5,
) -> ClearMotResult:
    """CLEAR-MOT over a sequence (definitions in the module docstring).

    Args:
        gt_ids: per frame, int ``[G_t]`` GT track ids (unique within the frame).
        pred_ids: per frame, int ``[P_t]`` predicted track ids.
        similarities: per frame, float ``[G_t, P_t]``; a pair may match when its similarity is >= ``threshold``.
        threshold: matching threshold.

    Returns:
        ``ClearMotResult``.
    """
    last_match: dict[int, int] = {}  # GT id → prediction id it was last matched to
    num_gt = num_pred = matches = switches = 0
    sim_sum = 0.0
    for g, p, s in _check_frames(gt_ids, pred_ids, similarities):
        num_gt += len(g)
        num_pred += len(p)
        allowed = s >= threshold
        pairs: list[tuple[int, int]] = []
        free_g = np.ones(len(g), bool)
        free_p = np.ones(len(p), bool)
        pred_col = {int(pid): j for j, pid in enumerate(p.tolist())}
        # 1. Keep last correspondences that are still valid.
        for i, gid in enumerate(g.tolist()):
            j = pred_col.get(last_match.get(gid, -1))
            if j is not None and free_p[j] and allowed[i, j]:
                pairs.append((i, j))
                free_g[i] = free_p[j] = False
        # 2. Maximum-similarity assignment of the rest, among allowed pairs.
        gi, pj = np.flatnonzero(free_g), np.flatnonzero(free_p)
        if len(gi) and len(pj):
            sub = s[np.ix_(gi, pj)]
            cost = np.where(allowed[np.ix_(gi, pj)], -sub, _FORBIDDEN)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows.tolist(), cols.tolist()):
                if allowed[gi[r], pj[c]]:
                    i, j = int(gi[r]), int(pj[c])
                    gid, pid = int(g[i]), int(p[j])
                    if gid in last_match and last_match[gid] != pid:
                        switches += 1
                    pairs.append((i, j))
        for i, j in pairs:
            last_match[int(g[i])] = int(p[j])
            sim_sum += float(s[i, j])
        matches += len(pairs)
    fn = num_gt - matches
    fp = num_pred - matches
    return ClearMotResult(
        num_gt=num_gt,
        num_predictions=num_pred,
        matches=matches,
        false_positives=fp,
        false_negatives=fn,
        id_switches=switches,
        mota=1.0 - _ratio(fn + fp + switches, num_gt) if num_gt else float("nan"),
        motp=_ratio(sim_sum, matches),
    )


def identity_metrics(
    gt_ids: Sequence[np.ndarray],
    pred_ids: Sequence[np.ndarray],
    similarities: Sequence[np.ndarray],
    threshold: float = 0.5,
) -> IdentityResult:
    """IDF1, IDP, IDR (definitions in the module docstring).

    Args:
        gt_ids, pred_ids, similarities, threshold: as for ``clear_mot``.

    Returns:
        ``IdentityResult``.
    """
    frames = _check_frames(gt_ids, pred_ids, similarities)
    all_g = np.unique(np.concatenate([g for g, _, _ in frames] + [np.zeros(0, np.int64)]))
    all_p = np.unique(np.concatenate([p for _, p, _ in frames] + [np.zeros(0, np.int64)]))
    overlap = np.zeros((len(all_g), len(all_p)), dtype=np.int64)
    num_gt = num_pred = 0
    for g, p, s in frames:
        num_gt += len(g)
        num_pred += len(p)
        if len(g) and len(p):
            gi = np.searchsorted(all_g, g)
            pj = np.searchsorted(all_p, p)
            ok = s >= threshold
            np.add.at(overlap, (np.repeat(gi, len(pj))[ok.ravel()], np.tile(pj, len(gi))[ok.ravel()]), 1)
    idtp = 0
    if overlap.size:
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        idtp = int(overlap[rows, cols].sum())
    idfn = num_gt - idtp
    idfp = num_pred - idtp
    return IdentityResult(
        idtp=idtp,
        idfp=idfp,
        idfn=idfn,
        idf1=_ratio(2 * idtp, 2 * idtp + idfp + idfn),
        idp=_ratio(idtp, idtp + idfp),
        idr=_ratio(idtp, idtp + idfn),
    )


def evaluate_tracking(
    gt_ids: Sequence[np.ndarray],
    gt_positions: Sequence[np.ndarray],
    pred_ids: Sequence[np.ndarray],
    pred_positions: Sequence[np.ndarray],
    *,
    similarity: Similarity = "box_iou",
    threshold: float = 0.5,
    gt_visible: Sequence[np.ndarray] | None = None,
    gt_scale: Sequence[np.ndarray] | None = None,
    sigmas: np.ndarray | float = 0.1,
) -> TrackingMetrics:
    """CLEAR-MOT and identity metrics from ids and positions.

    Args:
        gt_ids, pred_ids: per frame, int ``[G_t]`` and ``[P_t]`` track ids.
        gt_positions, pred_positions: per frame, boxes ``[N, 4]`` (x1, y1, x2, y2) for ``"box_iou"``, or keypoints
            ``[N, K, 2]`` pixels for ``"oks"`` and ``"pck"``.
        similarity: ``"box_iou"``, ``"oks"`` or ``"pck"``.
        threshold: a pair may match when its similarity is >= threshold.
        gt_visible: per frame bool ``[G_t, K]`` labelled GT keypoints (keypoint similarities; default all).
        gt_scale: per frame ``[G_t]``: the object area in pixels² for ``"oks"`` (default: the area of the tight box
            of the labelled keypoints) or the reference length in pixels for ``"pck"`` (required).
        sigmas: OKS sigmas, ``[K]`` or one value.

    Returns:
        ``TrackingMetrics`` (clear_mot, identity).
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity={similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    if similarity == "pck" and gt_scale is None:
        raise ValueError("similarity='pck' needs gt_scale: a reference length in pixels per GT object")
    sims = []
    for t, (gp, pp) in enumerate(zip(gt_positions, pred_positions)):
        if similarity == "box_iou":
            sims.append(box_iou_matrix(gp, pp))
            continue
        g = np.asarray(gp, np.float64).reshape(len(gp), -1, 2)
        p = np.asarray(pp, np.float64).reshape(len(pp), -1, 2)
        vis = np.ones(g.shape[:2], bool) if gt_visible is None else np.asarray(gt_visible[t], bool)
        if similarity == "oks":
            if gt_scale is None:
                b = keypoint_boxes(g, vis)
                area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            else:
                area = np.asarray(gt_scale[t], np.float64)
            sims.append(oks_matrix(g, vis, area, p, sigmas))
        else:
            sims.append(pck_matrix(g, vis, np.asarray(gt_scale[t], np.float64), p))
    return TrackingMetrics(
        clear_mot=clear_mot(gt_ids, pred_ids, sims, threshold),
        identity=identity_metrics(gt_ids, pred_ids, sims, threshold),
    )
