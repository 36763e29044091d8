"""The pose-NMS stage: per frame, redundant poses are eliminated and merged (``models.pose_nms``), in CPU tasks.

A plain function (no model to load), run with ``map_batches(apply_pose_nms, fn_kwargs={"params": ...})``. Each
frame row's person arrays (``boxes_xyxy``, ``box_scores``, ``keypoints``, ``keypoint_scores``) are replaced by the
surviving poses in pick order, plus ``pose_scores`` (AlphaPose's person score) and ``person_index``. The crop boxes
are dropped: nothing downstream maps heatmaps any more.

With ``params.method == "crowd_association"`` the stage runs CrowdPose's global joint association instead of NMS
(``models.crowdpose.crowd_association``, AlphaPose's ``--matching``; ``crowd`` picks released or paper): it reads
the joint candidates the SPPE stage emitted (``CANDIDATE_COLUMNS``, see ``candidate_columns``), and the surviving
persons come out in input order, in the same columns. The candidate columns are dropped either way, so the output
schema does not depend on the method.
"""

from __future__ import annotations

import time

import numpy as np

from actors.common import is_error, ragged, rows_of
from models.crowdpose import RELEASED_PARAMS, CrowdAssociationParams, JointCandidates, crowd_association
from models.pose_nms import PoseNMSParams, pose_nms

__all__ = ["apply_pose_nms", "candidate_columns", "candidates_of_row", "CANDIDATE_COLUMNS"]

#: Per-frame joint-candidate columns (SPPE stage → this stage): float32 ``[n, K, M, 2]`` image pixels, float32
#: ``[n, K, M]`` scores, int32 ``[n, K]`` AlphaPose's candidate count (slot s is valid iff s < count).
CANDIDATE_COLUMNS = ("candidate_xy", "candidate_scores", "candidate_counts")


def candidate_columns(cands: JointCandidates, counts: list[int]) -> dict[str, np.ndarray]:
    """The pooled candidates of a batch (``models.crowdpose.joint_candidates`` of all its persons) split back into
    frames of ``counts`` persons, as the ragged ``CANDIDATE_COLUMNS`` (small arrays: no heatmap leaves the SPPE)."""
    splits = np.cumsum(counts)[:-1]
    return {
        "candidate_xy": ragged(np.split(cands.xy.astype(np.float32), splits)),
        "candidate_scores": ragged(np.split(cands.scores.astype(np.float32), splits)),
        "candidate_counts": ragged(np.split(cands.count.astype(np.int32), splits)),
    }


def candidates_of_row(xy: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> JointCandidates:
    """One frame's ``CANDIDATE_COLUMNS`` cells back to ``JointCandidates`` (float64; ``valid`` = slot < count)."""
    xy = np.asarray(xy, np.float64)
    scores = np.asarray(scores, np.float64)
    count = np.asarray(counts, np.int64)
    if xy.ndim != 4 or scores.shape != xy.shape[:3] or count.shape != xy.shape[:2]:
        raise ValueError(f"candidate columns disagree: xy {xy.shape}, scores {scores.shape}, counts {count.shape}")
    valid = np.arange(xy.shape[2])[None, None, :] < count[..., None]
    return JointCandidates(xy=xy, scores=scores, valid=valid, count=count)


def apply_pose_nms(
    batch: dict[str, np.ndarray], params: PoseNMSParams, crowd: CrowdAssociationParams = RELEASED_PARAMS
) -> dict[str, np.ndarray]:
    """Map a batch of frame rows through pose NMS (or the crowd association, by ``params.method``); error rows pass
    through with empty person arrays."""
    t0 = time.perf_counter()
    errors = is_error(batch)
    associate = params.method == "crowd_association"
    if associate and not all(c in batch for c in CANDIDATE_COLUMNS):
        raise ValueError(
            "pose_nms.method=crowd_association needs the SPPE stage's joint candidates (columns "
            f"{', '.join(CANDIDATE_COLUMNS)}); this batch has {', '.join(sorted(batch))}"
        )
    boxes, box_scores = rows_of(batch["boxes_xyxy"]), rows_of(batch["box_scores"])
    kps, kp_scores = rows_of(batch["keypoints"]), rows_of(batch["keypoint_scores"])
    cand = [rows_of(batch[c]) for c in CANDIDATE_COLUMNS] if associate else None
    out_b, out_bs, out_k, out_ks, out_ps = [], [], [], [], []
    for i in range(len(errors)):
        k = kps[i].shape[1] if kps[i].ndim == 3 else 0
        if errors[i] or len(kps[i]) == 0:
            out_b.append(np.zeros((0, 4), np.float32))
            out_bs.append(np.zeros(0, np.float32))
            out_k.append(np.zeros((0, k, 2), np.float32))
            out_ks.append(np.zeros((0, k), np.float32))
            out_ps.append(np.zeros(0, np.float32))
            continue
        if associate:
            cands = candidates_of_row(cand[0][i], cand[1][i], cand[2][i])
            r = crowd_association(boxes[i], box_scores[i], cands, params=crowd)
        else:
            r = pose_nms(boxes[i], box_scores[i], kps[i], kp_scores[i], params)
        out_b.append(np.asarray(r.boxes_xyxy, np.float32))
        out_bs.append(np.asarray(r.box_scores, np.float32))
        out_k.append(np.asarray(r.keypoints, np.float32))
        out_ks.append(np.asarray(r.keypoint_scores, np.float32))
        out_ps.append(np.asarray(r.pose_scores, np.float32))
    drop = ("crop_boxes_xyxy",) + CANDIDATE_COLUMNS
    out = {c: v for c, v in batch.items() if c not in drop}
    out.update(
        boxes_xyxy=ragged(out_b),
        box_scores=ragged(out_bs),
        keypoints=ragged(out_k),
        keypoint_scores=ragged(out_ks),
        pose_scores=ragged(out_ps),
        n_persons=np.array([len(b) for b in out_b], np.int32),
    )
    out["t_pose_nms"] = np.full(len(errors), (time.perf_counter() - t0) / max(len(errors), 1))
    return out
