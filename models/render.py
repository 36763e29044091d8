"""Drawing poses on frames: skeletons coloured per track, with ids, boxes optional. Pure NumPy + OpenCV.

A colour belongs to a track id (a fixed golden-ratio hue walk, so id 7 has the same colour in every frame and every
video); untracked persons are coloured by their index within the frame. Keypoints whose score is below
``min_score`` are not drawn, and neither are limbs touching them. Face and hand points of whole-body sets (the
``face``/``left_hand``/``right_hand`` parts of Halpe-136, COCO-WholeBody-133, Halpe-68) are drawn small and thin, as
AlphaPose's ``vis_frame`` does, so a face's 68 points do not merge into a blob.
"""

from __future__ import annotations

import colorsys

import numpy as np

from models.keypoints import KeypointSet

__all__ = ["track_colour", "draw_poses"]


def track_colour(track_id: int) -> tuple[int, int, int]:
    """RGB colour of a track id (stable across frames and runs)."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_poses(
    image: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    kset: KeypointSet,
    *,
    track_ids: np.ndarray | None = None,
    boxes_xyxy: np.ndarray | None = None,
    min_score: float = 0.0,
    label: str | None = None,
) -> np.ndarray:
    """Return a copy of ``image`` (uint8 RGB ``[H, W, 3]``) with poses drawn.

    Args:
        keypoints: float ``[P, K, 2]`` image pixels; keypoint_scores ``[P, K]``.
        track_ids: int ``[P]`` (≤ 0 or None: untracked); boxes_xyxy: optional ``[P, 4]`` to outline.
        min_score: keypoints with a lower score are skipped.
        label: a line of text for the top-left corner (e.g. "RANDOM WEIGHTS").
    """
    import cv2

    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    fine = np.zeros(kset.num_keypoints, bool)  # face and hands: small dots, 1-px lines
    for part, start, stop in kset.parts:
        if part in ("face", "left_hand", "right_hand"):
            fine[start:stop] = True
    kps = np.asarray(keypoints, np.float64).reshape(-1, kset.num_keypoints, 2)
    scores = np.asarray(keypoint_scores, np.float64).reshape(len(kps), kset.num_keypoints)
    for p in range(len(kps)):
        tid = int(track_ids[p]) if track_ids is not None and track_ids[p] is not None and track_ids[p] > 0 else 0
        colour = track_colour(tid if tid else 1000 + p)
        ok = scores[p] >= min_score
        pts = np.round(kps[p]).astype(np.int64)
        for a, b in kset.skeleton:
            if ok[a] and ok[b]:
                width = 1 if fine[a] and fine[b] else thick + 1
                cv2.line(out, tuple(pts[a].tolist()), tuple(pts[b].tolist()), colour, width, cv2.LINE_AA)
        for j in np.nonzero(ok)[0]:
            cv2.circle(out, tuple(pts[j].tolist()), 1 if fine[j] else thick + 2, colour, -1, cv2.LINE_AA)
        if boxes_xyxy is not None:
            x1, y1, x2, y2 = np.round(np.asarray(boxes_xyxy[p], np.float64)).astype(int).tolist()
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        if tid:
            anchor = pts[ok].min(axis=0) if ok.any() else pts.min(axis=0)
            org = (int(anchor[0]), int(max(12, anchor[1] - 6)))
            cv2.putText(
                out, f"id {tid}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, (0, 0, 0), thick + 2, cv2.LINE_AA
            )
            cv2.putText(out, f"id {tid}", org, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, colour, thick, cv2.LINE_AA)
    if label:
        cv2.putText(out, label, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, label, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (255, 255, 255), thick, cv2.LINE_AA)
    return out
