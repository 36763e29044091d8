"""The pose-NMS stage: per frame, redundant poses are eliminated and merged (``models.pose_nms``), in CPU tasks.

A plain function (no model to load), run with ``map_batches(apply_pose_nms, fn_kwargs={"params": ...})``. Each
frame row's person arrays (``boxes_xyxy``, ``box_scores``, ``keypoints``, ``keypoint_scores``) are replaced by the
surviving poses in pick order, plus ``pose_scores`` (AlphaPose's person score) and ``person_index``. The crop boxes
are dropped: nothing downstream maps heatmaps any more.
"""

from __future__ import annotations

import time

import numpy as np

from actors.common import is_error, ragged, rows_of
from models.pose_nms import PoseNMSParams, pose_nms

__all__ = ["apply_pose_nms"]


def apply_pose_nms(batch: dict[str, np.ndarray], params: PoseNMSParams) -> dict[str, np.ndarray]:
    """Map a batch of frame rows through pose NMS; error rows pass through with empty person arrays."""
    t0 = time.perf_counter()
    errors = is_error(batch)
    boxes, box_scores = rows_of(batch["boxes_xyxy"]), rows_of(batch["box_scores"])
    kps, kp_scores = rows_of(batch["keypoints"]), rows_of(batch["keypoint_scores"])
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
        r = pose_nms(boxes[i], box_scores[i], kps[i], kp_scores[i], params)
        out_b.append(np.asarray(r.boxes_xyxy, np.float32))
        out_bs.append(np.asarray(r.box_scores, np.float32))
        out_k.append(np.asarray(r.keypoints, np.float32))
        out_ks.append(np.asarray(r.keypoint_scores, np.float32))
        out_ps.append(np.asarray(r.pose_scores, np.float32))
    out = {c: v for c, v in batch.items() if c != "crop_boxes_xyxy"}
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
