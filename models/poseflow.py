"""PoseFlow tracking: AlphaPose's released frame-to-frame tracker, exactly, as a streaming NumPy/SciPy tracker.

The per-video tracking stage gives every pose of a video a stable, 1-based ``track_id``. ``PoseFlowTracker``
reproduces the identities of AlphaPose's ``trackers/PoseFlow/tracker-general.py`` at commit c60106d (the released
code of Xiu et al., "Pose Flow: Efficient Online Pose Tracking", BMVC 2018, which implements a frame-to-frame
matcher rather than the paper's PF-Builder and PF-NMS): each detection gets a box around all its keypoints
(``utils.py`` ``get_box``), is compared with the most recent record of every track seen in the last ``link_len``
frames (``stack_all_pids``) by a weighted sum of four IoU-style affinities (``best_matching_hungarian``), and a
Hungarian assignment with a strict ``> match`` threshold hands out identities; unmatched detections get new ids,
never recycled (``tracker-general.py``'s main loop). It is fed one frame at a time
(``update``), keeps only what the look-back window needs (memory bounded by ``link_len``, not by video length), and
takes the image correspondences that two of the affinities need as an argument: a compact ``[M, 4]`` array of
ORB point pairs (``models.correspondences``), or ``None`` for AlphaPose's identity fallback, which is computed
analytically (pixel counts of image-clipped boxes on the integer grid), never as ``W·H`` rows.

All affinities of all candidates × detections of a frame are computed at once: point-in-box tests are boolean
matrices, intersections of correspondence sets are matrix products of them, and the per-keypoint IoUs are one
broadcast over ``[candidates, detections, K]``. Floating-point operations are done in the same order as AlphaPose's
per-pair Python code, so the grades are equal to AlphaPose's, not only close (the tests compare them with ``==``).

``mode="improved"`` (not AlphaPose; design in ``_improved_grades``) keeps the candidate set, Hungarian assignment
and id rules but replaces the four affinities with a keypoint-score-weighted OKS plus box IoU between each track's
*predicted* pose (ORB flow inside its box, else a constant-velocity model) and each detection, with a spread that
grows with the frames a track has been missing. On the seeded perturbation scenarios of ``benchmarks/poseflow.py``
it removes most identity switches (dropped detections, occlusion gaps, skipped frames, false positives) at a lower
tracking cost. The released behaviour stays the default.

Conventions: keypoints are (x, y) in source-image pixels; ``image_size`` is (W, H); AlphaPose's per-detection boxes
are int64 ``[x_min, x_max, y_min, y_max]`` (its unusual order, kept because every box formula of AlphaPose's
``utils.py`` uses it); track ids are int64 and 1-based. Inputs are never modified.

Frames without detections: AlphaPose's general tracker never sees them (its input lists only frames with
detections, so its ``link_len`` window counts frames with detections and correspondences pair consecutive frames
*with detections*). ``update`` skips them the same way, so a person absent for fewer than ``link_len`` frames with
detections gets their id back whatever the number of empty frames in between.

In the pipeline, the per-video stage calls ``update`` in ``frame_index`` order with the frame's poses and the
(filtered) correspondences computed in the decode stage; the tracker's state is all it needs to carry between
frames, so a video of any length tracks in memory bounded by ``link_len``.

Deviations from AlphaPose are marked ``Deviation from AlphaPose:`` in the code: empty frames (``tracker-general.py``),
tie-breaking of the assignment (SciPy instead of ``munkres`` in ``best_matching_hungarian``), and the input checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "PoseFlowParams",
    "PoseFlowTracker",
    "TRACKING_MODES",
    "track_video",
    "pose_boxes",
    "box_iou_matrix",
    "pose_iou_matrix",
    "correspondence_box_iou",
    "correspondence_pose_iou",
    "grid_box_iou",
    "grid_pose_iou",
    "affinity_terms",
    "grade_matrix",
    "assign_ids",
]

TRACKING_MODES = ("released", "improved")
TrackingMode = Literal["released", "improved"]

# AlphaPose adds this to every IoU denominator (utils.py cal_bbox_iou and the correspondence IoUs).
_IOU_EPS = 1e-5


@dataclass(frozen=True, kw_only=True)
class PoseFlowParams:
    """Every constant of the tracker, AlphaPose's released values as defaults (``tracker-general.py`` options).

    The fields after ``mode`` are read only by ``mode="improved"`` (raypose's own design, not AlphaPose).
    """

    link_len: int = 100  # --link (stack_all_pids): candidates come from the last link_len frames with detections
    num: int = 7  # --num (cal_pose_iou, cal_pose_iou_dm): average of the top `num` per-keypoint box IoUs
    mag: float = 30.0  # --mag: half-size in pixels of the square box around each keypoint
    match: float = 0.2  # --match: a Hungarian pair is accepted only if its grade is > match (strict)
    # tracker-general.py's weights / weights_fff: weights of (dm_iou, box_iou, pose_iou_dm, pose_iou, candidate
    # score, detection score) when the candidate's record is from the previous frame with detections ("fff"), and
    # when it is older.
    weights: tuple[float, ...] = (1.0, 2.0, 1.0, 2.0, 0.0, 0.0)
    weights_old: tuple[float, ...] = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0)
    box_expand: float = 0.1  # expand_bbox: each side of the keypoint box grows by this fraction of its width/height
    mode: TrackingMode = "released"  # "released" (AlphaPose) or "improved" (raypose, below)
    # --- mode="improved" only -----------------------------------------------------------------------------------
    oks_kappa: float = 0.1  # OKS falloff: a keypoint error of kappa·sqrt(box area) pixels scores exp(-1/2)
    motion: bool = True  # predict each track's pose at the current frame with a constant-velocity model
    velocity_smoothing: float = 0.5  # weight of the newest velocity measurement in its running average
    max_extrapolation: int = 10  # frames: a track's prediction stops moving this long after it was last seen
    flow_min_points: int = 8  # use the ORB flow inside a box as its displacement when it has this many pairs
    velocity_noise: float = 0.05  # spread of the velocity prediction per frame, fraction of the person's size
    initial_velocity_noise: float = 0.6  # same for a track seen once (its velocity is still unknown)
    improved_match: float = 0.2  # accept a pair when OKS + box IoU − age penalty is > this
    tentative_max_age: int = 20  # frames: a track detected only once stops being a candidate after this long
    age_penalty: float = 0.01  # grade lost per frame since the candidate was last seen (prefers recent tracks)

    def __post_init__(self) -> None:
        if self.mode not in TRACKING_MODES:
            raise ValueError(f"PoseFlowParams.mode={self.mode!r}; choose one of {', '.join(TRACKING_MODES)}")
        for name in ("link_len", "num", "max_extrapolation", "flow_min_points", "tentative_max_age"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"PoseFlowParams.{name} must be an int, got {type(value).__name__} {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("link_len", "num"):
            if getattr(self, name) < 1:
                raise ValueError(f"PoseFlowParams.{name}={getattr(self, name)} must be >= 1")
        for name in ("max_extrapolation", "flow_min_points", "tentative_max_age"):
            if getattr(self, name) < 0:
                raise ValueError(f"PoseFlowParams.{name}={getattr(self, name)} must be >= 0")
        for name in (
            "mag",
            "match",
            "box_expand",
            "oks_kappa",
            "velocity_smoothing",
            "improved_match",
            "age_penalty",
            "velocity_noise",
            "initial_velocity_noise",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"PoseFlowParams.{name} must be a number, got {type(value).__name__} {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"PoseFlowParams.{name}={value!r} must be finite")
            object.__setattr__(self, name, float(value))
        if self.mag < 0 or self.box_expand < 0 or self.age_penalty < 0:
            raise ValueError(
                f"PoseFlowParams.mag={self.mag}, box_expand={self.box_expand} and "
                f"age_penalty={self.age_penalty} must be >= 0"
            )
        if self.oks_kappa <= 0:
            raise ValueError(f"PoseFlowParams.oks_kappa={self.oks_kappa} must be > 0")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError(f"PoseFlowParams.velocity_smoothing={self.velocity_smoothing} must be in (0, 1]")
        if not isinstance(self.motion, bool):
            raise TypeError(f"PoseFlowParams.motion must be a bool, got {self.motion!r}")
        for name in ("weights", "weights_old"):
            value = tuple(getattr(self, name))
            if len(value) != 6 or not all(
                isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool) and math.isfinite(w)
                for w in value
            ):
                raise ValueError(
                    f"PoseFlowParams.{name}={getattr(self, name)!r} must be 6 finite numbers: the "
                    "weights of (dm_iou, box_iou, pose_iou_dm, pose_iou, candidate score, "
                    "detection score), as AlphaPose's cal_grade"
                )
            object.__setattr__(self, name, tuple(float(w) for w in value))


# ----------------------------------------------------------------------------------------------------------------
# Affinity terms (AlphaPose's trackers/PoseFlow/utils.py). Boxes are AlphaPose's [x_min, x_max, y_min, y_max].
# ----------------------------------------------------------------------------------------------------------------


def pose_boxes(keypoints: np.ndarray, image_size: tuple[int, int], expand: float = 0.1) -> np.ndarray:
    """AlphaPose's per-detection box (``get_box``, ``expand_bbox``): around all K keypoints, expanded, clipped,
    int-truncated.

    Args:
        keypoints: float ``[N, K, 2]`` (x, y) in pixels; every keypoint counts, whatever its score.
        image_size: (W, H) in pixels; boxes are clipped to [0, W] × [0, H] (W and H included, as AlphaPose).
        expand: each side moves out by this fraction of the keypoints' width (x) or height (y).

    Returns:
        int64 ``[N, 4]`` = [x_min, x_max, y_min, y_max]; ``[0, 4]`` for N = 0.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[0] == 0:
        return np.zeros((0, 4), dtype=np.int64)
    width, height = image_size
    lo = kp.min(axis=1)  # [N, 2]
    hi = kp.max(axis=1)
    extent = hi - lo
    # Same operation order as AlphaPose (left - ratio * width), then clip and truncate toward zero (int()).
    new_lo = np.clip(lo - expand * extent, 0, [width, height])
    new_hi = np.clip(hi + expand * extent, 0, [width, height])
    out = np.stack([new_lo[:, 0], new_hi[:, 0], new_lo[:, 1], new_hi[:, 1]], axis=1)
    return np.trunc(out).astype(np.int64)


def _plus_one_iou(a_x0, a_x1, a_y0, a_y1, b_x0, b_x1, b_y0, b_y1) -> np.ndarray:
    """``cal_bbox_iou`` (grade term 2) on broadcast arrays, in AlphaPose's operation order."""
    xa = np.maximum(a_x0, b_x0)
    ya = np.maximum(a_y0, b_y0)
    xb = np.minimum(a_x1, b_x1)
    yb = np.minimum(a_y1, b_y1)
    overlap = (xa < xb) & (ya < yb)  # strict: boxes that only touch have IoU 0 even with the +1 convention
    inter = (xb - xa + 1) * (yb - ya + 1)
    area_a = (a_x1 - a_x0 + 1) * (a_y1 - a_y0 + 1)
    area_b = (b_x1 - b_x0 + 1) * (b_y1 - b_y0 + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter + _IOU_EPS)
    return np.where(overlap, iou, 0.0).astype(np.float64)


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise ``box_iou`` (AlphaPose's ``cal_bbox_iou``, grade term 2): "+1" pixel convention, 0 unless the
    boxes overlap strictly.

    Args:
        boxes_a: ``[n, 4]`` [x_min, x_max, y_min, y_max] (ints or floats).
        boxes_b: ``[m, 4]`` same order.

    Returns:
        float64 ``[n, m]``; e.g. ``box_iou_matrix([[0, 10, 0, 10]], [[5, 15, 5, 15]]) ≈ 0.174757`` (as
        ``cal_bbox_iou``).
    """
    a = np.asarray(boxes_a)
    b = np.asarray(boxes_b)
    a = a.reshape(-1, 4).T[:, :, None]  # [4, n, 1]
    b = b.reshape(-1, 4).T[:, None, :]  # [4, 1, m]
    return _plus_one_iou(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3])


def _keypoint_squares(poses: np.ndarray, mag: float) -> tuple[np.ndarray, ...]:
    """[x - mag, x + mag, y - mag, y + mag] around every keypoint, each ``[n, K]`` float64 (grade terms 3/4)."""
    x = poses[..., 0]
    y = poses[..., 1]
    return x - mag, x + mag, y - mag, y + mag


def _top_mean(values: np.ndarray, num: int) -> np.ndarray:
    """Mean of the ``num`` largest values along the last axis (``np.mean(heapq.nlargest(num, row))``).

    The top values are laid out largest first in a contiguous last axis, so NumPy reduces each row exactly as it
    reduces AlphaPose's ``nlargest`` list (same order, same pairwise summation): the result is bit-identical.
    """
    k = values.shape[-1]
    top = -np.sort(-values, axis=-1)[..., : min(num, k)]
    return np.ascontiguousarray(top).mean(axis=-1)


def pose_iou_matrix(poses_a: np.ndarray, poses_b: np.ndarray, *, num: int = 7, mag: float = 30.0) -> np.ndarray:
    """Pairwise ``pose_iou`` (AlphaPose's ``cal_pose_iou``, grade term 4): mean of the top ``num`` keypoint-square
    IoUs (pure geometry).

    Keypoint j of a pose is compared only with keypoint j of the other; squares have half-size ``mag`` pixels
    and are not clipped to the image.

    Args:
        poses_a: float ``[n, K, 2]`` (x, y) pixels.
        poses_b: float ``[m, K, 2]``.

    Returns:
        float64 ``[n, m]``; ``P`` against ``P + (10, 0)`` gives 51·61 / (2·61² − 51·61) ≈ 0.718310 (as
        ``cal_pose_iou``).
    """
    a = _keypoint_squares(np.asarray(poses_a, dtype=np.float64), mag)
    b = _keypoint_squares(np.asarray(poses_b, dtype=np.float64), mag)
    per_keypoint = _plus_one_iou(*(v[:, None, :] for v in a), *(v[None, :, :] for v in b))  # [n, m, K]
    return _top_mean(per_keypoint, num)


def _points_in_boxes(px: np.ndarray, py: np.ndarray, x0, x1, y0, y1) -> np.ndarray:
    """Boolean ``[..., M]``: point r lies in the box (inclusive bounds, as ``find_region_cors_*``)."""
    return (px >= x0[..., None]) & (px <= x1[..., None]) & (py >= y0[..., None]) & (py <= y1[..., None])


def _set_iou(in_a: np.ndarray, in_b: np.ndarray) -> np.ndarray:
    """|A∩B| / (|A∪B| + 1e-5) for all index-set pairs: ``in_a`` ``[..., n, M]``, ``in_b`` ``[..., m, M]`` bool.

    Intersections are matrix products of the membership matrices; float32 counts are exact below 2**24 rows.
    """
    fa = in_a.astype(np.float32)
    fb = in_b.astype(np.float32)
    inter = np.matmul(fa, np.swapaxes(fb, -1, -2)).astype(np.int64)
    size_a = in_a.sum(axis=-1, dtype=np.int64)
    size_b = in_b.sum(axis=-1, dtype=np.int64)
    union = size_a[..., :, None] + size_b[..., None, :] - inter
    return inter / (union + _IOU_EPS)


def _as_correspondences(correspondences: np.ndarray) -> np.ndarray:
    corr = np.asarray(correspondences)
    if corr.ndim != 2 or corr.shape[1] < 4:
        raise ValueError(f"correspondences must be [M, 4] (x_t, y_t, x_t1, y_t1) point pairs, got shape {corr.shape}")
    corr = corr[:, :4].astype(np.float64)
    if not np.isfinite(corr).all():
        raise ValueError("correspondences contain NaN or inf")
    return corr


def correspondence_box_iou(boxes_t: np.ndarray, boxes_t1: np.ndarray, correspondences: np.ndarray) -> np.ndarray:
    """``dm_iou`` (grade term 1, ``find_region_cors_last`` / ``_next``) for all pairs: IoU of the correspondence
    index sets of two boxes.

    S₁ = pairs whose frame-t point lies in a box of ``boxes_t``; S₂ = pairs whose frame-t+1 point lies in a box of
    ``boxes_t1`` (inclusive bounds); value |S₁∩S₂| / (|S₁∪S₂| + 1e-5).

    Args:
        boxes_t: ``[n, 4]`` [x_min, x_max, y_min, y_max] in frame t (the candidates).
        boxes_t1: ``[m, 4]`` in frame t+1 (the detections).
        correspondences: ``[M, 4]`` rows (x_t, y_t, x_t1, y_t1), pixels (extra columns are ignored).

    Returns:
        float64 ``[n, m]``.
    """
    corr = _as_correspondences(correspondences)
    bt = np.asarray(boxes_t, dtype=np.float64).reshape(-1, 4).T
    bt1 = np.asarray(boxes_t1, dtype=np.float64).reshape(-1, 4).T
    in_t = _points_in_boxes(corr[:, 0], corr[:, 1], *bt)
    in_t1 = _points_in_boxes(corr[:, 2], corr[:, 3], *bt1)
    return _set_iou(in_t, in_t1)


def correspondence_pose_iou(
    poses_t: np.ndarray, poses_t1: np.ndarray, correspondences: np.ndarray, *, num: int = 7, mag: float = 30.0
) -> np.ndarray:
    """``pose_iou_dm`` (``cal_pose_iou_dm``, grade term 3): per keypoint, ``dm_iou`` of the two keypoint squares;
    top-``num`` mean.

    Args:
        poses_t: float ``[n, K, 2]`` frame-t poses (candidates).
        poses_t1: float ``[m, K, 2]`` frame-t+1 poses (detections).
        correspondences: ``[M, 4]`` (x_t, y_t, x_t1, y_t1).

    Returns:
        float64 ``[n, m]``.
    """
    corr = _as_correspondences(correspondences)
    sq_t = _keypoint_squares(np.asarray(poses_t, dtype=np.float64), mag)  # each [n, K]
    sq_t1 = _keypoint_squares(np.asarray(poses_t1, dtype=np.float64), mag)
    in_t = _points_in_boxes(corr[:, 0], corr[:, 1], *(v.T for v in sq_t))  # [K, n, M]
    in_t1 = _points_in_boxes(corr[:, 2], corr[:, 3], *(v.T for v in sq_t1))  # [K, m, M]
    per_keypoint = np.moveaxis(_set_iou(in_t, in_t1), 0, -1)  # [n, m, K]
    return _top_mean(per_keypoint, num)


def _grid_count(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    """Number of integers in [lo, hi] ∩ [0, size − 1] (inclusive bounds, like the point-in-box test)."""
    first = np.maximum(np.ceil(lo), 0.0)
    last = np.minimum(np.floor(hi), size - 1.0)
    return np.maximum(last - first + 1.0, 0.0).astype(np.int64)


def _grid_iou(a_x0, a_x1, a_y0, a_y1, b_x0, b_x1, b_y0, b_y1, image_size) -> np.ndarray:
    """``dm_iou`` of two boxes under the identity fallback: pixel counts on the grid [0, W−1] × [0, H−1]."""
    width, height = image_size
    size_a = _grid_count(a_x0, a_x1, width) * _grid_count(a_y0, a_y1, height)
    size_b = _grid_count(b_x0, b_x1, width) * _grid_count(b_y0, b_y1, height)
    inter = _grid_count(np.maximum(a_x0, b_x0), np.minimum(a_x1, b_x1), width) * _grid_count(
        np.maximum(a_y0, b_y0), np.minimum(a_y1, b_y1), height
    )
    union = size_a + size_b - inter
    return inter / (union + _IOU_EPS)


def grid_box_iou(boxes_t: np.ndarray, boxes_t1: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``dm_iou`` with AlphaPose's identity fallback (one pair (x, y, x, y) per pixel of frame t), analytically.

    Equal to ``correspondence_box_iou`` with the ``W·H`` identity rows of AlphaPose's ``matching.py``
    ``generate_fake_cor`` ("fake correspondences"): the
    index sets become the pixels of each box on the grid [0, W−1] × [0, H−1], so only their counts are needed.

    Args:
        boxes_t: ``[n, 4]`` [x_min, x_max, y_min, y_max]; boxes_t1: ``[m, 4]``.
        image_size: (W, H) of frame t (AlphaPose sizes the fallback by the first image of the pair).

    Returns:
        float64 ``[n, m]``.
    """
    a = np.asarray(boxes_t, dtype=np.float64).reshape(-1, 4).T[:, :, None]
    b = np.asarray(boxes_t1, dtype=np.float64).reshape(-1, 4).T[:, None, :]
    return _grid_iou(*a, *b, image_size)


def grid_pose_iou(
    poses_t: np.ndarray, poses_t1: np.ndarray, image_size: tuple[int, int], *, num: int = 7, mag: float = 30.0
) -> np.ndarray:
    """``pose_iou_dm`` with the identity fallback, analytically (keypoint squares clipped to the pixel grid).

    Args:
        poses_t: float ``[n, K, 2]``; poses_t1: float ``[m, K, 2]``; image_size: (W, H) of frame t.

    Returns:
        float64 ``[n, m]``.
    """
    a = _keypoint_squares(np.asarray(poses_t, dtype=np.float64), mag)
    b = _keypoint_squares(np.asarray(poses_t1, dtype=np.float64), mag)
    per_keypoint = _grid_iou(*(v[:, None, :] for v in a), *(v[None, :, :] for v in b), image_size)
    return _top_mean(per_keypoint, num)


def affinity_terms(
    boxes_t: np.ndarray,
    poses_t: np.ndarray,
    boxes_t1: np.ndarray,
    poses_t1: np.ndarray,
    *,
    correspondences: np.ndarray | None,
    image_size_t: tuple[int, int],
    num: int = 7,
    mag: float = 30.0,
    with_correspondence_terms: bool = True,
) -> np.ndarray:
    """The four affinity terms of AlphaPose's ``best_matching_hungarian`` for every candidate × detection pair.

    Args:
        boxes_t, poses_t: candidates, int/float ``[n, 4]`` and float ``[n, K, 2]``.
        boxes_t1, poses_t1: detections, ``[m, 4]`` and ``[m, K, 2]``.
        correspondences: ``[M, 4]`` (x_t, y_t, x_t1, y_t1) pairs, or None for the identity fallback (analytic).
        image_size_t: (W, H) of frame t; only the identity fallback reads it.
        with_correspondence_terms: False leaves terms 1 and 3 at 0 (used when their weights are all 0).

    Returns:
        float64 ``[4, n, m]``: dm_iou, box_iou, pose_iou_dm, pose_iou.
    """
    n, m = len(boxes_t), len(boxes_t1)
    terms = np.zeros((4, n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return terms
    terms[1] = box_iou_matrix(boxes_t, boxes_t1)
    terms[3] = pose_iou_matrix(poses_t, poses_t1, num=num, mag=mag)
    if with_correspondence_terms:
        if correspondences is None:
            terms[0] = grid_box_iou(boxes_t, boxes_t1, image_size_t)
            terms[2] = grid_pose_iou(poses_t, poses_t1, image_size_t, num=num, mag=mag)
        else:
            terms[0] = correspondence_box_iou(boxes_t, boxes_t1, correspondences)
            terms[2] = correspondence_pose_iou(poses_t, poses_t1, correspondences, num=num, mag=mag)
    return terms


def grade_matrix(
    terms: np.ndarray,
    candidate_scores: np.ndarray,
    detection_scores: np.ndarray,
    recent: np.ndarray,
    weights: Sequence[float] = (1, 2, 1, 2, 0, 0),
    weights_old: Sequence[float] = (0, 1, 0, 1, 0, 0),
) -> np.ndarray:
    """``cal_grade``: Σ wᵢ·termᵢ, with ``weights`` for recent candidates and ``weights_old`` otherwise.

    Args:
        terms: float64 ``[4, n, m]`` from ``affinity_terms``.
        candidate_scores: ``[n]`` person scores (term 5); detection_scores: ``[m]`` (term 6).
        recent: bool ``[n]``: the candidate's record is from the previous frame with detections ("fff").

    Returns:
        float64 ``[n, m]``; summed left to right from 0, as Python's ``sum`` does in AlphaPose.
    """
    n, m = terms.shape[1:]
    w = np.where(
        np.asarray(recent, dtype=bool)[:, None],
        np.asarray(weights, np.float64)[None, :],
        np.asarray(weights_old, np.float64)[None, :],
    )[:, None, :]  # [n, 1, 6]
    s1 = np.broadcast_to(np.asarray(candidate_scores, np.float64)[:, None], (n, m))
    s2 = np.broadcast_to(np.asarray(detection_scores, np.float64)[None, :], (n, m))
    grade = np.zeros((n, m), dtype=np.float64)
    for i, term in enumerate((terms[0], terms[1], terms[2], terms[3], s1, s2)):
        grade = grade + term * w[..., i]
    return grade


def assign_ids(grades: np.ndarray, candidate_ids: np.ndarray, max_id: int, match: float) -> tuple[np.ndarray, int]:
    """Hungarian assignment and id rules of AlphaPose's ``tracker-general.py`` main loop.

    Maximum-weight assignment on ``grades``; a pair with grade > ``match`` (strict) gives the detection the
    candidate's id; every other detection gets ``max_id + 1``, ``max_id + 2``, … in detection order.

    Deviation from AlphaPose (``best_matching_hungarian``): SciPy's ``linear_sum_assignment`` instead of ``munkres``;
    both return a maximum-weight assignment, but when several assignments have the same total they may pick
    different ones (exact ties only).

    Args:
        grades: float ``[n, m]`` (candidates × detections).
        candidate_ids: int ``[n]``, ids of the candidates (distinct).
        max_id: largest id handed out so far (0 before the first frame).
        match: acceptance threshold.

    Returns:
        (ids int64 ``[m]``, new max_id).
    """
    from scipy.optimize import linear_sum_assignment  # 0.25 s to import: not for the stages that stage rows

    n, m = grades.shape
    ids = np.zeros(m, dtype=np.int64)
    if n and m:
        rows, cols = linear_sum_assignment(grades, maximize=True)
        ok = grades[rows, cols] > match
        ids[cols[ok]] = np.asarray(candidate_ids, dtype=np.int64)[rows[ok]]
        if ok.any():
            max_id = max(max_id, int(ids.max()))
    new = np.flatnonzero(ids == 0)
    ids[new] = max_id + 1 + np.arange(len(new), dtype=np.int64)
    return ids, max_id + len(new)


# ----------------------------------------------------------------------------------------------------------------
# Streaming tracker.
# ----------------------------------------------------------------------------------------------------------------


class _Track:
    """The most recent record of one track id, plus the motion state that ``mode="improved"`` keeps."""

    __slots__ = (
        "track_id",
        "seq",
        "row",
        "frame_index",
        "pose",
        "keypoint_scores",
        "score",
        "box",
        "velocity",
        "image_size",
        "centre",
        "hits",
    )

    def __init__(self, track_id, seq, row, frame_index, pose, keypoint_scores, score, box, image_size):
        self.track_id = track_id
        self.seq = seq  # position in the list of frames with detections (AlphaPose's frame list index)
        self.row = row  # record order within that frame (AlphaPose's stack_all_pids visits records in order)
        self.frame_index = frame_index  # update() call count: real time, empty frames included
        self.pose = pose
        self.keypoint_scores = keypoint_scores
        self.score = score
        self.box = box
        self.velocity = None  # improved mode: pixels per frame, [2], None until measured
        self.image_size = image_size
        self.centre = None  # improved mode: score-weighted mean keypoint, [2]
        self.hits = 1  # improved mode: number of frames this track was detected in


class PoseFlowTracker:
    """PoseFlow tracking of one video, one frame at a time (AlphaPose's ``tracker-general.py``; memory bounded by
    ``link_len``).

    Call ``update`` once per frame, in frame order; it returns the track ids of that frame's detections.

    Row order within a frame: permuting a frame's detections permutes its ids the same way (ids follow the people),
    except where AlphaPose itself depends on order: the first frame's ids and new ids are numbered in row order
    (``tracker-general.py``), candidates are listed most recent frame first then in row order (``stack_all_pids``),
    and among assignments with
    exactly equal total grade the solver's choice depends on that order.

    Example:
        >>> import numpy as np
        >>> tracker = PoseFlowTracker()
        >>> pose = np.array([[[100.0, 50.0], [120.0, 150.0]]])  # one person, two keypoints
        >>> tracker.update(pose, np.ones((1, 2)), np.ones(1), image_size=(320, 240)).tolist()
        [1]
        >>> tracker.update(np.concatenate([pose + 3, pose + 150]), np.ones((2, 2)), np.ones(2), (320, 240)).tolist()
        [1, 2]
    """

    def __init__(self, params: PoseFlowParams = PoseFlowParams()) -> None:
        if not isinstance(params, PoseFlowParams):
            raise TypeError(f"params must be a PoseFlowParams, got {type(params).__name__}")
        self.params = params
        self._tracks: dict[int, _Track] = {}  # id → most recent record, only ids inside the look-back window
        self._max_id = 0
        self._seq = -1  # index of the last frame with detections in the list of such frames
        self._frame_index = -1  # index of the last update() call
        self._num_keypoints: int | None = None
        self._last_grades = np.zeros((0, 0))
        self._last_candidate_ids = np.zeros(0, dtype=np.int64)

    @property
    def max_id(self) -> int:
        """Largest track id handed out so far (0 before the first detection)."""
        return self._max_id

    @property
    def last_grades(self) -> np.ndarray:
        """Grade matrix of the last frame with detections, float64 ``[candidates, detections]`` (a copy)."""
        return self._last_grades.copy()

    @property
    def last_candidate_ids(self) -> np.ndarray:
        """Track ids of the rows of ``last_grades``, in AlphaPose's candidate order (a copy)."""
        return self._last_candidate_ids.copy()

    def update(
        self,
        keypoints: np.ndarray,
        keypoint_scores: np.ndarray,
        scores: np.ndarray,
        image_size: tuple[int, int],
        correspondences: np.ndarray | None = None,
    ) -> np.ndarray:
        """Track one frame: the ids of its N detections.

        Args:
            keypoints: float ``[N, K, 2]`` (x, y) source-image pixels (K fixed for the video).
            keypoint_scores: float ``[N, K]`` (read by ``mode="improved"`` only; AlphaPose's grade ignores them).
            scores: float ``[N]`` person scores (grade terms 5/6, weight 0 by default).
            image_size: (W, H) of this frame in pixels.
            correspondences: ``[M, 4]`` (x_t, y_t, x_t1, y_t1) point pairs from the previous frame *with
                detections* (the frame whose records are the "recent" candidates) to this frame, any numeric dtype
                (``models.correspondences`` returns int16/int32), pairs may be pre-filtered with
                ``models.correspondences.filter_for_tracking``; or None: pose-only mode, AlphaPose's identity
                fallback computed analytically. When the previous update() call had no detections, correspondences
                computed between that empty frame and this one do not relate the right frames: pass None (the
                identity fallback, as AlphaPose uses when ORB fails) or pairs computed across the gap.

        Returns:
            int64 ``[N]`` track ids, 1-based; an empty int64 array for a frame without detections.

        Empty frames (N = 0) are skipped like AlphaPose's general tracker, whose input lists only frames with
        detections: they do not advance the ``link_len`` window (which counts frames with detections)
        and do not change which candidates count as recent. ``mode="improved"`` still counts them as elapsed time.
        """
        kp, kps, sc, size = self._check(keypoints, keypoint_scores, scores, image_size)
        self._frame_index += 1
        n = kp.shape[0]
        if n == 0:
            # Deviation from AlphaPose: the copy-the-previous-frame branch of ``tracker-general.py`` for empty frames is
            # unreachable from AlphaPose's own results and crashes its export; skipping is what its tracker does
            # for frames absent from its input.
            return np.zeros(0, dtype=np.int64)
        self._seq += 1
        p = self.params
        boxes = pose_boxes(kp, size, p.box_expand)
        # Tracks last seen more than link_len frames-with-detections ago can never be candidates again (this is
        # what bounds the memory). Improved mode also retires tracks seen once and then lost for
        # tentative_max_age frames: mostly false positives, which would otherwise crowd the candidate set.
        oldest = self._seq - p.link_len
        stale = [
            tid
            for tid, tr in self._tracks.items()
            if tr.seq < oldest
            or (p.mode == "improved" and tr.hits == 1 and self._frame_index - tr.frame_index > p.tentative_max_age)
        ]
        for tid in stale:
            del self._tracks[tid]
        if self._seq == 0:
            ids = np.arange(1, n + 1, dtype=np.int64)  # first frame: ids 1..n in input order, as AlphaPose
            self._max_id = n
            self._last_grades, self._last_candidate_ids = np.zeros((0, n)), np.zeros(0, dtype=np.int64)
        else:
            # AlphaPose's candidate order: most recent frame first, record order within a frame (stack_all_pids).
            cands = sorted(self._tracks.values(), key=lambda tr: (-tr.seq, tr.row))
            if p.mode == "released":
                grades = self._released_grades(cands, kp, boxes, sc, correspondences)
                match = p.match
            else:
                recent = np.array([tr.seq == self._seq - 1 for tr in cands], dtype=bool)
                grades = _improved_grades(cands, recent, kp, kps, self._frame_index, correspondences, p)
                match = p.improved_match
            cand_ids = np.array([tr.track_id for tr in cands], dtype=np.int64)
            ids, self._max_id = assign_ids(grades, cand_ids, self._max_id, match)
            self._last_grades, self._last_candidate_ids = grades, cand_ids
        self._record(ids, kp, kps, sc, boxes, size)
        return ids

    def _released_grades(self, cands, kp, boxes, sc, correspondences) -> np.ndarray:
        p = self.params
        recent = np.array([tr.seq == self._seq - 1 for tr in cands], dtype=bool)
        c_boxes = np.array([tr.box for tr in cands], dtype=np.int64).reshape(-1, 4)
        c_poses = np.array([tr.pose for tr in cands], dtype=np.float64).reshape(-1, kp.shape[1], 2)
        c_scores = np.array([tr.score for tr in cands], dtype=np.float64)
        terms = np.zeros((4, len(cands), len(kp)), dtype=np.float64)
        terms[1] = box_iou_matrix(c_boxes, boxes)
        terms[3] = pose_iou_matrix(c_poses, kp, num=p.num, mag=p.mag)
        # Terms 1 and 3 cost the most (they read the correspondences); compute them only for the candidates
        # whose weights use them. A skipped term contributes 0·x = 0, exactly what AlphaPose adds.
        uses_corr = np.where(
            recent, p.weights[0] != 0 or p.weights[2] != 0, p.weights_old[0] != 0 or p.weights_old[2] != 0
        )
        if uses_corr.any():
            sel = np.flatnonzero(uses_corr)
            size_t = cands[sel[0]].image_size
            if correspondences is None:
                terms[0][sel] = grid_box_iou(c_boxes[sel], boxes, size_t)
                terms[2][sel] = grid_pose_iou(c_poses[sel], kp, size_t, num=p.num, mag=p.mag)
            else:
                terms[0][sel] = correspondence_box_iou(c_boxes[sel], boxes, correspondences)
                terms[2][sel] = correspondence_pose_iou(c_poses[sel], kp, correspondences, num=p.num, mag=p.mag)
        return grade_matrix(terms, c_scores, sc, recent, p.weights, p.weights_old)

    def _record(self, ids, kp, kps, sc, boxes, size) -> None:
        improved = self.params.mode == "improved"
        centres = _pose_centres(kp, kps) if improved else None
        for row, tid in enumerate(ids.tolist()):
            prev = self._tracks.get(tid)
            tr = _Track(tid, self._seq, row, self._frame_index, kp[row], kps[row], float(sc[row]), boxes[row], size)
            if improved:
                tr.centre = centres[row]
                if prev is not None:
                    tr.velocity = _updated_velocity(prev, tr, self.params)
                    tr.hits = prev.hits + 1
            self._tracks[tid] = tr

    def _check(self, keypoints, keypoint_scores, scores, image_size):
        # Deviation from AlphaPose (tracker-general.py): it trusts its JSON; a wrong shape or a NaN here would
        # silently corrupt every later frame's ids, so bad input raises with the expected and found shapes.
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.size == 0 and kp.ndim >= 1 and kp.shape[0] == 0:  # an empty frame, whatever its trailing shape
            kp = kp.reshape(0, self._num_keypoints or 0, 2)
            keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64).reshape(0, kp.shape[1])
        if kp.ndim != 3 or kp.shape[2] != 2:
            raise ValueError(f"keypoints must be [N, K, 2] (x, y) pixels, got shape {kp.shape}")
        n, k = kp.shape[:2]
        kps = np.asarray(keypoint_scores, dtype=np.float64)
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if kps.shape != (n, k):
            raise ValueError(f"keypoint_scores must be [N, K] = [{n}, {k}], got shape {kps.shape}")
        if sc.shape != (n,):
            raise ValueError(f"scores must be [N] = [{n}], got shape {sc.shape}")
        if n and not (np.isfinite(kp).all() and np.isfinite(kps).all() and np.isfinite(sc).all()):
            raise ValueError("keypoints, keypoint_scores and scores must be finite (no NaN or inf)")
        if n:
            if self._num_keypoints is None:
                self._num_keypoints = k
            elif k != self._num_keypoints:
                raise ValueError(f"keypoints have K={k} but this video's earlier frames had K={self._num_keypoints}")
        try:
            width, height = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size must be (W, H) in pixels, got {image_size!r}") from None
        if width < 1 or height < 1:
            raise ValueError(f"image_size must be (W, H) >= (1, 1), got {image_size!r}")
        return kp, kps, sc, (width, height)


# ----------------------------------------------------------------------------------------------------------------
# mode="improved" (raypose's design, not AlphaPose).
# ----------------------------------------------------------------------------------------------------------------


def _pose_centres(poses: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
    """Score-weighted mean keypoint per pose, ``[N, 2]``: averaging K keypoints damps jitter in the motion."""
    w = np.maximum(keypoint_scores, 0.0)
    total = w.sum(axis=1, keepdims=True)
    weighted = (poses * w[..., None]).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, weighted, poses.mean(axis=1))


def _updated_velocity(prev: _Track, new: _Track, p: PoseFlowParams) -> np.ndarray:
    """Running average of the track's velocity in pixels per frame (constant-velocity model, improved mode)."""
    elapsed = max(new.frame_index - prev.frame_index, 1)
    measured = (new.centre - prev.centre) / elapsed
    if prev.velocity is None:
        return measured
    a = p.velocity_smoothing
    return a * measured + (1.0 - a) * prev.velocity


def _flow_displacement(box: np.ndarray, corr: np.ndarray, min_points: int) -> np.ndarray | None:
    """Median displacement of the correspondences whose frame-t point lies in ``box`` (None if too few)."""
    inside = (corr[:, 0] >= box[0]) & (corr[:, 0] <= box[1]) & (corr[:, 1] >= box[2]) & (corr[:, 1] <= box[3])
    if inside.sum() < max(min_points, 1):
        return None
    return np.median(corr[inside, 2:4] - corr[inside, 0:2], axis=0)


def _improved_grades(
    cands: list[_Track],
    recent: np.ndarray,
    kp: np.ndarray,
    kps: np.ndarray,
    frame_index: int,
    correspondences: np.ndarray | None,
    p: PoseFlowParams,
) -> np.ndarray:
    """Grades of ``mode="improved"``: OKS + box IoU between each track's predicted pose and each detection.

    Not AlphaPose (it replaces the four terms of ``best_matching_hungarian``; the candidate set, Hungarian and id
    rules stay). Why:
    AlphaPose compares a track's *last* pose with the detection, with fixed 61-pixel keypoint squares, and gives
    tracks older than one frame only the two geometric terms; a person who moved during a gap (missed detections,
    occlusion, skipped frames) is then re-linked only if their old and new boxes still overlap.

    1. Prediction: a recent candidate (seen in the previous frame with detections) is moved by the median ORB flow
       inside its box when it has ``flow_min_points`` pairs; otherwise any candidate is moved by its velocity
       (running average of its centre's motion, pixels per frame) × frames since it was last seen, capped at
       ``max_extrapolation``.
    2. OKS with keypoint scores: Σ_j min(c_j, c'_j)·exp(−d_j² / (2σ²)) / Σ_j max(c_j, c'_j), with c, c' the
       keypoint scores of track and detection. Low-confidence keypoints count less, and a confident detection
       cannot take over a low-confidence track (a false positive's) nor the reverse at full weight. The spread
       σ² = (κ² + (u·steps)²)·s² follows the person's size s (sqrt of the predicted keypoint-box area) instead of
       a fixed 30 px, and widens with the frames elapsed (``steps``, capped at ``max_extrapolation``) at a rate u =
       ``velocity_noise`` for tracks with a measured motion, ``initial_velocity_noise`` for tracks seen once.
    3. Box IoU of the predicted and the detected keypoint boxes (grown by ``box_expand``, not clipped), so that a
       pose-like match far from the track needs both terms to agree.
    4. Minus ``age_penalty`` per frame beyond the first since the track was last seen: the most recent track wins
       close calls.
    Grades are at most 2; a pair is accepted when its grade is > ``improved_match``. Cost: one ``[n, m, K]``
    broadcast (AlphaPose's pose terms need two) and, with correspondences, one point-in-box mask per recent
    candidate instead of K.
    """
    n, m = len(cands), len(kp)
    grades = np.zeros((n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return grades
    c_pose = np.array([tr.pose for tr in cands], dtype=np.float64)
    c_kps = np.array([tr.keypoint_scores for tr in cands], dtype=np.float64)
    age = np.array([frame_index - tr.frame_index for tr in cands], dtype=np.float64)
    velocity = np.array([(0.0, 0.0) if tr.velocity is None else tr.velocity for tr in cands], dtype=np.float64)
    known = np.array([tr.velocity is not None for tr in cands], dtype=bool)  # is the motion measured?
    shift = velocity * np.minimum(age, p.max_extrapolation)[:, None] if p.motion else np.zeros((n, 2))
    if correspondences is not None:
        # The correspondences relate the previous frame with detections to this one: only recent candidates can
        # read them, and their median inside the box measures the person's (and camera's) motion directly.
        corr = _as_correspondences(correspondences)
        for i in np.flatnonzero(recent).tolist():
            flow = _flow_displacement(cands[i].box, corr, p.flow_min_points)
            if flow is not None:
                shift[i] = flow
                known[i] = True
    pred = c_pose + shift[:, None, :]
    p_lo, p_hi = pred.min(axis=1), pred.max(axis=1)  # [n, 2] keypoint box of each prediction
    d_lo, d_hi = kp.min(axis=1), kp.max(axis=1)  # [m, 2] of each detection
    # OKS with per-keypoint weights; squared distances without a reduction over the (x, y) axis.
    dx = pred[:, None, :, 0] - kp[None, :, :, 0]
    dy = pred[:, None, :, 1] - kp[None, :, :, 1]
    area = np.maximum(np.prod(p_hi - p_lo, axis=1), 1.0)
    steps = np.minimum(np.maximum(age, 1.0), p.max_extrapolation)
    motion_sd = np.where(known, p.velocity_noise, p.initial_velocity_noise) * steps
    inv_two_var = (0.5 / ((p.oks_kappa**2 + motion_sd**2) * area))[:, None, None]
    w = np.minimum(c_kps[:, None, :], kps[None, :, :])
    wmax = np.maximum(c_kps[:, None, :], kps[None, :, :]).sum(axis=-1)
    num = (w * np.exp(-(dx * dx + dy * dy) * inv_two_var)).sum(axis=-1)
    oks = np.where(wmax > 0, num / np.where(wmax > 0, wmax, 1.0), 0.0)
    # Box IoU of the predicted and detected keypoint boxes, grown by box_expand, not clipped.
    p_ext, d_ext = p.box_expand * (p_hi - p_lo), p.box_expand * (d_hi - d_lo)
    a0, a1 = p_lo - p_ext, p_hi + p_ext
    b0, b1 = d_lo - d_ext, d_hi + d_ext
    overlap = np.clip(np.minimum(a1[:, None, :], b1[None, :, :]) - np.maximum(a0[:, None, :], b0[None, :, :]), 0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    union = np.prod(a1 - a0, axis=1)[:, None] + np.prod(b1 - b0, axis=1)[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return oks + iou - p.age_penalty * np.maximum(age - 1.0, 0.0)[:, None]


def track_video(
    keypoints: Sequence[np.ndarray],
    keypoint_scores: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    image_size: tuple[int, int],
    correspondences: Sequence[np.ndarray | None] | None = None,
    params: PoseFlowParams = PoseFlowParams(),
) -> list[np.ndarray]:
    """Track a whole video offline: ``PoseFlowTracker.update`` on every frame in order.

    Args:
        keypoints, keypoint_scores, scores: per-frame arrays ``[N_t, K, 2]``, ``[N_t, K]``, ``[N_t]``, in frame order.
        image_size: (W, H), the same for every frame.
        correspondences: None (pose-only mode throughout) or one entry per frame: entry t relates the previous frame
            with detections to frame t (``[M, 4]`` or None); entry 0 is ignored.
        params: tracker parameters.

    Returns:
        One int64 ``[N_t]`` id array per frame.
    """
    if not (len(keypoints) == len(keypoint_scores) == len(scores)):
        raise ValueError(
            f"keypoints, keypoint_scores and scores must have one entry per frame, got "
            f"{len(keypoints)}, {len(keypoint_scores)}, {len(scores)}"
        )
    if correspondences is not None and len(correspondences) != len(keypoints):
        raise ValueError(
            f"correspondences must have one entry per frame ({len(keypoints)}), got {len(correspondences)}"
        )
    tracker = PoseFlowTracker(params)
    return [
        tracker.update(
            keypoints[t],
            keypoint_scores[t],
            scores[t],
            image_size,
            None if correspondences is None else correspondences[t],
        )
        for t in range(len(keypoints))
    ]
