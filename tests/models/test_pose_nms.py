"""Pose NMS (``models.pose_nms``): each rule of AlphaPose's ``alphapose/utils/pPose_nms.py`` (commit c60106d) on
hand-checked cases, and the vectorised implementation against the per-pair loop of ``benchmarks/pose_nms.py`` on
seeded random frames.

Hand-checked numbers are worked out in the comments from AlphaPose's formulas; the reference scenario reproduces
the values AlphaPose's own ``pose_nms`` gave for it, where they do not depend on that run's (unknown) noise draw.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import models.pose_nms as pose_nms_module
from models.keypoints import COCO_17, CROWDPOSE_14, HALPE_26
from models.pose_nms import (
    BODY_PARAMS,
    WHOLEBODY_REGRESSION_PARAMS,
    PoseNMSParams,
    oks_matrix,
    oks_nms,
    pairwise_pose_similarity,
    pose_nms,
    soft_oks_nms,
)

REPO = Path(__file__).resolve().parents[2]


def _load_benchmark():
    # By path: benchmarks/ is not an installed package, and the loop must be the benchmark's own.
    spec = importlib.util.spec_from_file_location("_pose_nms_benchmark", REPO / "benchmarks" / "pose_nms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _load_benchmark()
_reference_pose_nms_loop = BENCH._reference_pose_nms_loop
check_same_result = BENCH.check_same_result


def _pose(k: int = 17, x0: float = 100.0, y0: float = 50.0) -> np.ndarray:
    """A deterministic pose: K points on a line from (x0, y0) to (x0 + 60, y0 + 250), float64 [K, 2]."""
    return np.stack([np.linspace(x0, x0 + 60, k), np.linspace(y0, y0 + 250, k)], axis=1)


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _members(result) -> list[list[int]]:
    return [_np(m).tolist() for m in result.merged_indices]


# ------------------------------------------------------------------------------------------------------------
# Reference scenario (values from running AlphaPose's own pose_nms on it)
# ------------------------------------------------------------------------------------------------------------


def _spec_8_3_scene(noise_seed: int = 83):
    """P0, P1 = P0 + N(0, 2²) noise, P2 = P0 + 300 px, P3 = P0 + (20, 5), as run through AlphaPose."""
    p0 = _pose()
    p1 = p0 + np.random.default_rng(noise_seed).normal(0.0, 2.0, p0.shape)
    kps = np.stack([p0, p1, p0 + [300.0, 0.0], p0 + [20.0, 5.0]])
    scores = np.repeat([[0.9], [0.7], [0.8], [0.2]], 17, axis=1)
    boxes = np.array([[90, 40, 170, 310], [92, 42, 168, 312], [390, 40, 470, 310], [110, 45, 190, 315]], float)
    box_scores = np.array([0.95, 0.9, 0.85, 0.3])
    return boxes, box_scores, kps, scores


def test_spec_8_3_similarity_vector():
    boxes, _, kps, scores = _spec_8_3_scene()
    simi, pck = pairwise_pose_similarity(boxes, kps, scores)
    # simi(P0, P0) = 17·tanh(0.9)² + 1.7·17 = 8.7224 + 28.9; simi(P0, P3) = 1.7·17·exp(−√(20² + 5²)/2.65).
    assert simi[0, 0] == pytest.approx(17 * math.tanh(0.9) ** 2 + 1.7 * 17, rel=1e-12)
    assert round(simi[0, 0], 3) == 37.622
    assert simi[0, 2] == pytest.approx(0.0, abs=1e-40)
    assert simi[0, 3] == pytest.approx(1.7 * 17 * math.exp(-math.hypot(20, 5) / 2.65), rel=1e-12)
    assert round(simi[0, 3], 3) == 0.012
    # P1 depends on the noise draw (AlphaPose's run gave 13.004 with its own): check it against the formula by hand.
    d = np.hypot(*(kps[0] - kps[1]).T)
    expected = (d <= 1).sum() * math.tanh(0.9) * math.tanh(0.7) + 1.7 * np.exp(-d / 2.65).sum()
    assert simi[0, 1] == pytest.approx(expected, rel=1e-12)
    assert simi[0, 1] < BODY_PARAMS.gamma  # P1 is eliminated by the match count, not the similarity
    # ref_dist(P0) = 0.1·max(80, 270) = 27 → PCK radius min(27, 7) = 7; P1's noise (σ = 2 px) stays inside it.
    assert pck[0].tolist() == [17, 17, 0, 0]


def test_spec_8_3_decisions_merge_and_scores():
    boxes, box_scores, kps, scores = _spec_8_3_scene()
    r = pose_nms(boxes, box_scores, kps, scores)
    # Picks P0, P2, P3 (by mean score 0.9, 0.8, 0.2); P3 is dropped because its max score 0.2 < 0.3.
    assert r.kept.tolist() == [0, 2]
    assert _members(r) == [[0, 1], [2]]
    assert len(r) == 2
    np.testing.assert_allclose(r.keypoint_scores[0], (0.9**2 + 0.7**2) / 1.6, rtol=1e-12)  # 0.8125
    assert r.keypoint_scores[0, 0] == pytest.approx(0.8125, rel=1e-12)
    assert r.pose_scores[0] == pytest.approx(0.8125 + 0.95 + 1.25 * 0.8125, rel=1e-12)  # 2.778125
    assert r.pose_scores[0] == pytest.approx(2.778125, rel=1e-12)
    assert r.pose_scores[1] == pytest.approx(0.8 + 0.85 + 1.25 * 0.8, rel=1e-12)  # 2.65
    np.testing.assert_allclose(r.keypoints[0], (0.9 * kps[0] + 0.7 * kps[1]) / 1.6, rtol=1e-12)
    np.testing.assert_array_equal(r.keypoints[1], kps[2])
    # The emitted box is the pick's detector box (JSON [90, 40, 80, 270] as x, y, w, h).
    np.testing.assert_array_equal(r.boxes_xyxy, boxes[[0, 2]])
    np.testing.assert_array_equal(r.box_scores, [0.95, 0.85])


# ------------------------------------------------------------------------------------------------------------
# Reference-pose order
# ------------------------------------------------------------------------------------------------------------


def test_tie_in_mean_score_goes_to_first_index():
    a, b = _pose(), _pose() + 0.5  # within 1 px and 7 px of each other: each eliminates the other
    scores = np.full((2, 17), 0.5)
    boxes = np.array([[90, 40, 170, 310], [91, 41, 171, 311]], float)
    for order in ([0, 1], [1, 0]):
        kps = np.stack([a, b])[order]
        r = pose_nms(boxes[order], np.array([0.9, 0.8])[order], kps, scores)
        assert r.kept.tolist() == [0]
        np.testing.assert_array_equal(r.boxes_xyxy[0], boxes[order][0])
        assert _members(r) == [[0, 1]]


def test_pick_order_follows_mean_keypoint_score_not_box_score():
    kps = np.stack([_pose(x0=0), _pose(x0=500), _pose(x0=1000)])
    scores = np.stack([np.full(17, 0.5), np.full(17, 0.9), np.full(17, 0.5)])
    # Highest box score on candidate 0, highest mean keypoint score on candidate 1; 0 and 2 tie (first wins).
    r = pose_nms(
        np.array([[0, 0, 80, 310], [500, 0, 580, 310], [1000, 0, 1080, 310]], float),
        np.array([0.99, 0.1, 0.5]),
        kps,
        scores,
    )
    assert r.kept.tolist() == [1, 0, 2]


# ------------------------------------------------------------------------------------------------------------
# Elimination rule: thresholds, radii, r = 0
# ------------------------------------------------------------------------------------------------------------


def _two_poses_with_matches(matched: int, k: int = 17):
    """P0 and P1 that coincide on ``matched`` keypoints and are 10^4 px apart on the others."""
    p0 = _pose(k)
    p1 = p0.copy()
    p1[matched:] += 1e4
    return np.stack([p0, p1])


# δ1 = 1e-3 saturates tanh(c/δ1) to exactly 1.0 and exp(−10^4/δ2) is exactly 0.0, so with μ = 2 a pair that
# coincides on m keypoints has simi = m·1 + 2·m·exp(0) = 3m exactly; its match count is m.
_EXACT = dict(delta1=1e-3, mu=2.0)


@pytest.mark.parametrize("gamma, eliminated", [(12.0, False), (11.999, True)])
def test_similarity_threshold_is_strict(gamma, eliminated):
    kps = _two_poses_with_matches(4)
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.8)])
    boxes = np.array([[90, 40, 170, 310]] * 2, float)
    params = PoseNMSParams(**_EXACT, gamma=gamma, match_threshold=5)  # pck = 4 < 5: only simi can eliminate
    simi, pck = pairwise_pose_similarity(boxes, kps, scores, params)
    assert simi[0, 1] == 12.0 and pck[0, 1] == 4
    r = pose_nms(boxes, np.ones(2), kps, scores, params)
    assert r.kept.tolist() == ([0] if eliminated else [0, 1])


@pytest.mark.parametrize("match_threshold, eliminated", [(4.0, True), (4.5, False)])
def test_match_count_threshold_is_non_strict(match_threshold, eliminated):
    kps = _two_poses_with_matches(4)
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.8)])
    params = PoseNMSParams(**_EXACT, gamma=100.0, match_threshold=match_threshold)
    r = pose_nms(np.array([[90, 40, 170, 310]] * 2, float), np.ones(2), kps, scores, params)
    assert r.kept.tolist() == ([0] if eliminated else [0, 1])


def test_radii_are_inclusive():
    # Keypoint 0 of P1 at exactly 1 px (score mask), keypoint 1 at exactly 7 px (PCK radius min(27, 7)), keypoint
    # 2 at 7 + 1e-6 px; everything else 10^4 px away.
    p0 = _pose()
    p1 = p0 + 1e4
    p1[0] = p0[0] + [1.0, 0.0]
    p1[1] = p0[1] + [0.0, 7.0]
    p1[2] = p0[2] + [7.0 + 1e-6, 0.0]
    boxes = np.array([[90, 40, 170, 310]] * 2, float)
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.8)])
    simi, pck = pairwise_pose_similarity(boxes, np.stack([p0, p1]), scores)
    score_term = math.tanh(0.9) * math.tanh(0.8)  # only keypoint 0 is within 1 px
    spatial = math.exp(-1 / 2.65) + math.exp(-7 / 2.65) + math.exp(-(7 + 1e-6) / 2.65)
    assert simi[0, 1] == pytest.approx(score_term + 1.7 * spatial, rel=1e-12)
    assert pck[0, 1] == 2  # 1 px and exactly 7 px count, 7 + 1e-6 px does not


def test_merge_radius_is_min_ref_15_inclusive():
    # ref_dist = 0.1·270 = 27 → merge radius 15: keypoint 0 of P1 at exactly 15 px merges, keypoint 1 at 15.001
    # does not. The two are one cluster because the other 15 keypoints coincide.
    p0 = _pose()
    p1 = p0.copy()
    p1[0] += [15.0, 0.0]
    p1[1] += [0.0, 15.001]
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.6)])
    r = pose_nms(np.array([[90, 40, 170, 310]] * 2, float), np.ones(2), np.stack([p0, p1]), scores)
    assert _members(r) == [[0, 1]]
    np.testing.assert_allclose(r.keypoints[0, 0], (0.9 * p0[0] + 0.6 * p1[0]) / 1.5, rtol=1e-12)
    np.testing.assert_array_equal(r.keypoints[0, 1], p0[1])
    assert r.keypoint_scores[0, 0] == pytest.approx((0.81 + 0.36) / 1.5, rel=1e-12)
    assert r.keypoint_scores[0, 1] == pytest.approx(0.9, rel=1e-12)


def test_zero_size_reference_box_only_similarity_eliminates():
    # P0 has a zero-size box: r = 0, so d / min(r, 7) is NaN or inf and its match counts are 0, for itself too.
    p0 = _pose()
    near = p0 + [3.0, 0.0]  # pck would be 17 with any r >= 3; simi = 1.7·17·exp(−3/2.65) = 9.32 < 22.48
    dup = p0.copy()  # simi = 17·tanh(.9)·tanh(.5) + 28.9 > 22.48
    kps = np.stack([p0, near, dup])
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.8), np.full(17, 0.5)])
    boxes = np.array([[100, 50, 100, 50], [90, 40, 170, 310], [90, 40, 170, 310]], float)
    simi, pck = pairwise_pose_similarity(boxes, kps, scores)
    assert pck[0].tolist() == [0, 0, 0]
    assert simi[0, 1] == pytest.approx(1.7 * 17 * math.exp(-3 / 2.65), rel=1e-12)
    r = pose_nms(boxes, np.ones(3), kps, scores)
    assert r.kept.tolist() == [0, 1]
    assert _members(r) == [[0, 2], [1]]
    # Merge radius min(0, 15) = 0: only keypoints at exactly the same place merge (the duplicate's all do).
    np.testing.assert_allclose(r.keypoint_scores[0], (0.81 + 0.25) / 1.4, rtol=1e-12)
    # With a real box the same P0 also takes `near` (pck = 17 >= 5).
    boxes[0] = [90, 40, 170, 310]
    assert _members(pose_nms(boxes, np.ones(3), kps, scores)) == [[0, 1, 2]]


def test_pick_always_leaves_with_its_cluster():
    # Deviation from AlphaPose (pose_nms_body's pick loop). Both poses at the same place with zero-size boxes (r = 0: no
    # matches). With δ1 = 10, tanh(c/δ1) ≈ c/10, so simi(P0, P0) ≈ Σc0²/100 + 28.9 = 28.968 and simi(P0, P1) ≈
    # Σc0·c1/100 + 28.9 = 28.972, although P1's mean score is lower (0.476 < 0.529, so P0 is the pick). With γ in
    # between, P0 eliminates P1 but not itself: AlphaPose would keep P0 in R and pick it a second time.
    p0 = _pose()
    kps = np.stack([p0, p0])
    scores = np.stack([np.r_[np.full(8, 0.9), np.full(9, 0.2)], np.r_[np.full(8, 1.0), np.full(9, 0.01)]])
    boxes = np.array([[100, 50, 100, 50], [100, 50, 100, 50]], float)
    simi, pck = pairwise_pose_similarity(boxes, kps, scores, PoseNMSParams(delta1=10.0))
    assert pck[0].tolist() == [0, 0]
    gamma = float(simi[0, 0] + simi[0, 1]) / 2
    assert simi[0, 0] < gamma < simi[0, 1]
    params = PoseNMSParams(delta1=10.0, gamma=gamma)
    r = pose_nms(boxes, np.ones(2), kps, scores, params)
    assert r.kept.tolist() == [0]
    assert _members(r) == [[0, 1]]


# ------------------------------------------------------------------------------------------------------------
# Degenerate inputs
# ------------------------------------------------------------------------------------------------------------


def test_empty_input_numpy_and_torch():
    for k in (17, 26):
        r = pose_nms(np.zeros((0, 4)), np.zeros(0), np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32))
        assert r.kept.shape == (0,) and r.kept.dtype == np.int64
        assert r.keypoints.shape == (0, k, 2) and r.keypoints.dtype == np.float32
        assert r.keypoint_scores.shape == (0, k) and r.pose_scores.shape == (0,)
        assert r.boxes_xyxy.shape == (0, 4) and r.box_scores.shape == (0,)
        assert r.merged_indices == () and len(r) == 0
    t = pose_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 17, 2), torch.zeros(0, 17))
    assert isinstance(t.kept, torch.Tensor) and t.keypoints.shape == (0, 17, 2)
    assert t.kept.dtype == torch.int64 and t.keypoints.dtype == torch.float32


def test_one_candidate():
    kp = _pose()
    scores = np.linspace(0.2, 0.9, 17)
    r = pose_nms(np.array([[90, 40, 170, 310.0]]), np.array([0.7]), kp[None], scores[None])
    assert r.kept.tolist() == [0] and _members(r) == [[0]]
    np.testing.assert_array_equal(r.keypoints[0], kp)  # merged with itself: weight w/w = 1 exactly
    np.testing.assert_allclose(r.keypoint_scores[0], scores, rtol=1e-15)
    assert r.pose_scores[0] == pytest.approx(scores.mean() + 0.7 + 1.25 * 0.9, rel=1e-12)
    # Below the score threshold it is dropped, and the result is empty with the right shapes.
    low = pose_nms(np.array([[90, 40, 170, 310.0]]), np.array([0.7]), kp[None], np.full((1, 17), 0.29))
    assert len(low) == 0 and low.keypoints.shape == (0, 17, 2)


def test_all_identical_candidates_merge_into_the_first():
    n = 5
    kps = np.repeat(_pose()[None], n, axis=0)
    scores = np.repeat(np.linspace(0.3, 0.9, 17)[None], n, axis=0)
    boxes = np.repeat([[90, 40, 170, 310.0]], n, axis=0)
    r = pose_nms(boxes, np.linspace(0.5, 0.9, n), kps, scores)
    assert r.kept.tolist() == [0] and _members(r) == [list(range(n))]
    np.testing.assert_allclose(r.keypoints[0], kps[0], rtol=1e-15)
    np.testing.assert_allclose(r.keypoint_scores[0], scores[0], rtol=1e-14)  # n·c²/(n·c) = c
    assert r.box_scores.tolist() == [0.5]


def test_zero_scores_become_1e5_on_a_copy():
    kp = np.stack([_pose(), _pose() + 0.25]).astype(np.float32)
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.6)]).astype(np.float32)
    scores[0, 3] = 0.0
    scores[1, 3] = 0.0
    boxes = np.array([[90, 40, 170, 310], [90, 40, 170, 310]], np.float32)
    box_scores = np.array([0.9, 0.8], np.float32)
    originals = [a.copy() for a in (boxes, box_scores, kp, scores)]
    for a in (boxes, box_scores, kp, scores):
        a.setflags(write=False)  # Ray batches are read-only views: writing would raise
    r = pose_nms(boxes, box_scores, kp, scores)
    for a, original in zip((boxes, box_scores, kp, scores), originals):
        np.testing.assert_array_equal(a, original)
    # Both zeros became 1e-5: W = 2e-5 and the merged score is (2·1e-10)/2e-5 = 1e-5.
    assert r.keypoint_scores[0, 3] == pytest.approx(1e-5, rel=1e-5)
    assert r.keypoint_scores.dtype == np.float32
    ts = [torch.from_numpy(a.copy()) for a in originals]
    tr = pose_nms(*ts)
    for t, original in zip(ts, originals):
        np.testing.assert_array_equal(t.numpy(), original)
    check_same_result(tr, r)


def test_torch_in_torch_out_numpy_in_numpy_out():
    boxes, box_scores, kps, scores = _spec_8_3_scene()
    r = pose_nms(
        torch.from_numpy(boxes),
        torch.from_numpy(box_scores),
        torch.from_numpy(kps).float(),
        torch.from_numpy(scores).float(),
    )
    for name in ("kept", "keypoints", "keypoint_scores", "pose_scores", "boxes_xyxy", "box_scores"):
        assert isinstance(getattr(r, name), torch.Tensor), name
    assert all(isinstance(m, torch.Tensor) for m in r.merged_indices)
    assert r.keypoints.dtype == torch.float32 and r.boxes_xyxy.dtype == torch.float64
    assert r.kept.tolist() == [0, 2]
    n = pose_nms(boxes, box_scores, kps, scores)
    assert isinstance(n.kept, np.ndarray) and n.keypoints.dtype == np.float64
    assert all(isinstance(m, np.ndarray) for m in n.merged_indices)


def test_negative_scores_enter_unclamped():
    # As AlphaPose's pose_nms_body: raw heatmap maxima below 0 are not clamped; a lone pose keeps them as its merged
    # score.
    scores = np.full((1, 17), 0.9)
    scores[0, 5] = -0.05
    r = pose_nms(np.array([[90, 40, 170, 310.0]]), np.ones(1), _pose()[None], scores)
    assert r.keypoint_scores[0, 5] == pytest.approx(-0.05, rel=1e-12)


@pytest.mark.parametrize("k, keypoint_set", [(17, COCO_17), (26, HALPE_26)])
def test_body_path_sums_over_all_k(k, keypoint_set):
    assert keypoint_set.num_keypoints == k
    kps = np.stack([_pose(k), _pose(k) + [20.0, 5.0], _pose(k) + 0.5])
    scores = np.stack([np.full(k, 0.9), np.full(k, 0.2), np.full(k, 0.8)])
    boxes = np.array([[90, 40, 170, 310]] * 3, float)
    simi, pck = pairwise_pose_similarity(boxes, kps, scores)
    # As AlphaPose's body path: sums over K with unchanged constants, so K = 26 scores higher than K = 17 for the
    # same pose.
    assert simi[0, 0] == pytest.approx(k * math.tanh(0.9) ** 2 + 1.7 * k, rel=1e-12)
    assert simi[0, 1] == pytest.approx(1.7 * k * math.exp(-math.hypot(20, 5) / 2.65), rel=1e-12)
    assert pck[0].tolist() == [k, 0, k]
    r = pose_nms(boxes, np.ones(3), kps, scores)
    assert r.kept.tolist() == [0] and _members(r) == [[0, 2]]  # P1 is picked but dropped (max 0.2 < 0.3)
    assert r.keypoints.shape == (1, k, 2)


# ------------------------------------------------------------------------------------------------------------
# Output filters
# ------------------------------------------------------------------------------------------------------------


def test_pre_merge_filter_uses_the_picks_own_scores():
    # The pick's max score is 0.29 < 0.3: dropped, although merging its member (one keypoint at 0.9) would lift
    # the merged max to (0.29² + 0.9²)/1.19 = 0.75. The member is consumed by the cluster, not emitted.
    pick = np.full(17, 0.29)
    member = np.full(17, 0.2)
    member[4] = 0.9  # mean 0.2412 < 0.29, so the pick is still the reference
    r = pose_nms(
        np.array([[90, 40, 170, 310]] * 2, float),
        np.ones(2),
        np.stack([_pose(), _pose() + 0.5]),
        np.stack([pick, member]),
    )
    assert len(r) == 0


def test_post_merge_filter_uses_merged_scores():
    # The pick passes pre-merge (max 0.35) but merging drops keypoint 0 to (0.35² + 0.1²)/0.45 = 0.2944 < 0.3.
    pick = np.full(17, 0.2)
    pick[0] = 0.35
    member = np.full(17, 0.1999)
    member[0] = 0.1
    boxes = np.array([[90, 40, 170, 310]] * 2, float)
    kps = np.stack([_pose(), _pose() + 0.5])
    assert len(pose_nms(boxes, np.ones(2), kps, np.stack([pick, member]))) == 0
    # Without the member the same pick is emitted.
    assert pose_nms(boxes[:1], np.ones(1), kps[:1], pick[None]).kept.tolist() == [0]


def test_area_filter_is_strict_on_merged_extent():
    kp = np.stack([np.linspace(0, 40, 17), np.linspace(0, 100, 17)], axis=1)  # extent 40 × 100 → 1.5²·4000 = 9000
    args = (np.array([[0, 0, 40, 100.0]]), np.ones(1), kp[None], np.full((1, 17), 0.9))
    assert len(pose_nms(*args, PoseNMSParams(area_threshold=9000.0))) == 1
    assert len(pose_nms(*args, PoseNMSParams(area_threshold=9000.001))) == 0
    assert len(pose_nms(*args)) == 1  # default areaThres 0 drops nothing


# ------------------------------------------------------------------------------------------------------------
# Equality with the per-pair loop on seeded random frames
# ------------------------------------------------------------------------------------------------------------


def _random_frame(rng: np.random.Generator, n: int, k: int, dtype=np.float32):
    """People with 1–5 proposals each (jitter from 0.1 to 15 px), exact duplicates, zero scores, zero-size boxes
    and a few negative scores: the cases where decisions could differ."""
    boxes, kps, scores = [], [], []
    while len(boxes) < n:
        h = rng.uniform(20, 300)
        x0, y0 = rng.uniform(0, 600, 2)
        base = np.stack([x0 + rng.uniform(0, 0.5 * h, k), y0 + rng.uniform(0, h, k)], 1)
        base_c = rng.uniform(0, 1, k)
        for _ in range(min(int(rng.integers(1, 6)), n - len(boxes))):
            kind = rng.random()
            if kind < 0.15 and kps:
                kp, c = kps[-1].copy(), scores[-1].copy()  # exact duplicate of the previous proposal
            else:
                kp = base + rng.normal(0, rng.choice([0.1, 1.0, 3.0, 8.0, 15.0]), base.shape)
                c = np.clip(base_c + rng.normal(0, 0.1, k), -0.05, 1.0)
            c[rng.random(k) < 0.05] = 0.0
            box = np.array([x0, y0, x0 + 0.5 * h, y0 + h]) + rng.normal(0, 2, 4)
            box[2:] = np.maximum(box[2:], box[:2])
            if rng.random() < 0.05:
                box[2:] = box[:2]  # zero-size box: r = 0
            boxes.append(box)
            kps.append(kp)
            scores.append(c)
    return (
        np.asarray(boxes, dtype).reshape(n, 4),
        rng.uniform(0.1, 1.0, n).astype(dtype),
        np.asarray(kps, dtype).reshape(n, k, 2),
        np.asarray(scores, dtype).reshape(n, k),
    )


def _random_params(rng: np.random.Generator) -> PoseNMSParams:
    return PoseNMSParams(
        delta1=float(rng.uniform(0.3, 2)),
        mu=float(rng.uniform(0.5, 3)),
        delta2=float(rng.uniform(1, 10)),
        gamma=float(rng.uniform(2, 40)),
        match_threshold=float(rng.integers(1, 10)),
        alpha=float(rng.uniform(0.05, 0.3)),
        area_threshold=float(rng.choice([0.0, 500.0, 5000.0])),
    )


@pytest.mark.parametrize("k", [17, 26, 14])
def test_matches_reference_loop_on_random_frames(k):
    rng = np.random.default_rng(1000 + k)
    checked = kept_total = 0
    for trial in range(40):
        n = int(rng.choice([0, 1, 2, 3, 5, 8, 15, 16, 17, 25, 40, 60]))
        frame = _random_frame(rng, n, k, dtype=np.float32 if trial % 2 else np.float64)
        params = BODY_PARAMS if trial % 3 else _random_params(rng)
        reference = _reference_pose_nms_loop(*frame, params)
        ours = pose_nms(*frame, params)
        check_same_result(ours, reference)
        check_same_result(pose_nms(*(torch.from_numpy(a) for a in frame), params), reference)
        checked += 1
        kept_total += len(ours)
    assert checked == 40 and kept_total > 50  # the frames are not trivially empty


def test_prefilter_changes_no_decision():
    # Crowded frames straddling the prefilter size (16): all-pairs and prefiltered decisions agree with the loop,
    # including people whose keypoint boxes nearly touch.
    rng = np.random.default_rng(7)
    for n in (15, 16, 30, 80):
        boxes, box_scores, kps, scores = _random_frame(rng, n, 17, np.float64)
        kps = kps * 0.2  # squeeze everyone into a small area: most pairs are near the prefilter bounds
        check_same_result(
            pose_nms(boxes, box_scores, kps, scores), _reference_pose_nms_loop(boxes, box_scores, kps, scores)
        )


def _compact_frame(first: np.ndarray, second: np.ndarray, boxes: np.ndarray, scores: np.ndarray):
    """Two given poses plus 14 far-away fillers, so that the frame (16 poses) takes the prefiltered path."""
    rng = np.random.default_rng(5)
    fillers = [rng.uniform(0, 2, (17, 2)) + [1000.0 + 100 * j, 1000.0] for j in range(14)]
    kps = np.stack([first, second] + fillers)
    all_boxes = np.concatenate([boxes, [[1000.0 + 100 * j, 1000, 1010 + 100 * j, 1010] for j in range(14)]])
    all_scores = np.concatenate([scores, np.full((14, 17), 0.5)])
    return all_boxes, np.ones(16), kps, all_scores


def test_prefilter_keeps_pairs_within_spatial_reach():
    # Compact poses (keypoints within 2 px) 9 px apart: keypoint boxes 7 px apart. μ = 3, δ2 = 10, γ = 20: simi =
    # 3·17·exp(−0.9) = 20.74 > γ, so P0 eliminates P1 through the spatial term alone (match counts disabled),
    # although the gap is far beyond the 1 px score radius and the 1 px match radius of these 10 px boxes.
    p0 = np.random.default_rng(4).uniform(0, 2, (17, 2)) + 100.0
    params = PoseNMSParams(mu=3.0, delta2=10.0, gamma=20.0, match_threshold=100.0)
    frame = _compact_frame(
        p0,
        p0 + [9.0, 0.0],
        np.array([[100, 100, 110, 110], [109, 100, 119, 110.0]]),
        np.stack([np.full(17, 0.9), np.full(17, 0.8)]),
    )
    r = pose_nms(*frame, params)
    assert _members(r)[0] == [0, 1]
    check_same_result(r, _reference_pose_nms_loop(*frame, params))


def test_prefilter_uses_the_larger_match_radius_of_a_pair():
    # P0 (10 px box: match radius 1) and P1 (100 px box: radius 7), 5 px apart. P1 has the higher score, is picked
    # first and eliminates P0 by its match count (17 keypoints within 7 px); P0 could not have eliminated P1.
    p0 = np.random.default_rng(4).uniform(0, 2, (17, 2)) + 100.0
    frame = _compact_frame(
        p0,
        p0 + [5.0, 0.0],
        np.array([[100, 100, 110, 110], [100, 100, 200, 200.0]]),
        np.stack([np.full(17, 0.6), np.full(17, 0.9)]),
    )
    r = pose_nms(*frame)
    assert r.kept.tolist()[0] == 1 and _members(r)[0] == [0, 1]
    check_same_result(r, _reference_pose_nms_loop(*frame))


def test_deterministic():
    frame = _random_frame(np.random.default_rng(3), 40, 17)
    a, b = pose_nms(*frame), pose_nms(*frame)
    check_same_result(a, b, rtol=0.0)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


@pytest.mark.gpu
def test_torch_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    rng = np.random.default_rng(11)
    for n in (0, 1, 10, 40, 120):
        frame = _random_frame(rng, n, 17)
        cuda = pose_nms(*(torch.from_numpy(a).cuda() for a in frame))
        assert cuda.kept.device.type == "cuda" and cuda.keypoints.device.type == "cuda"
        check_same_result(cuda, _reference_pose_nms_loop(*frame))
        check_same_result(cuda, pose_nms(*frame))


# ------------------------------------------------------------------------------------------------------------
# Full-body path (K = 133 / 136), raypose's intended behaviour
# ------------------------------------------------------------------------------------------------------------


def _fullbody_pose(k: int, x0: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(k)
    return np.stack([x0 + rng.uniform(0, 80, k), 40 + rng.uniform(0, 270, k)], axis=1)


@pytest.mark.parametrize("extra", [0, 1, 3, 8, 15])  # 15: 17 poses, the prefiltered path
def test_fullbody_duplicate_merges_whatever_else_is_in_the_frame(extra):
    # Deviation from AlphaPose (PCK_match_fullbody): AlphaPose's match count for an exact copy is 34/n (17 for
    # n = 2, 6.8 for n = 5), so with 7+ proposals left the copy survives. Here it is 17 for any frame.
    k = 136
    pose = _fullbody_pose(k)
    kps = np.stack([pose, pose + 0.5] + [pose + 1000.0 * (j + 1) for j in range(extra)])
    n = len(kps)
    scores = np.full((n, k), 0.9)
    boxes = np.array([[100, 40, 180, 310]] * n, float)
    simi, pck = pairwise_pose_similarity(boxes, kps, scores)
    assert pck[0, 1] == pytest.approx(17.0)  # count 136 · K / (8 · m = 136)
    assert simi[0, 1] < BODY_PARAMS.gamma  # heatmap constants: full-body simi <= ~8, elimination is by PCK
    r = pose_nms(boxes, np.ones(n), kps, scores)
    assert _members(r)[0] == [0, 1] and len(r) == 1 + extra


def test_fullbody_133_uses_its_own_part_boundaries():
    # Deviation from AlphaPose (PCK_match_fullbody): for K = 133 the face starts at 23 (K − 110), not Halpe's 26. Offset
    # keypoints 23..25 by 1.5·r7 = 10.5 px: they match under the face factor 1.9, not under the body factor 1.
    k = 133
    p0 = _fullbody_pose(k)
    p1 = p0 + 1e4
    p1[23:26] = p0[23:26] + [10.5, 0.0]
    scores = np.full((2, k), 0.9)
    _, pck = pairwise_pose_similarity(np.array([[100, 40, 180, 310]] * 2, float), np.stack([p0, p1]), scores)
    assert pck[0, 1] == pytest.approx(3 * k / (8 * k))


def test_fullbody_similarity_counts_confident_keypoints():
    # Deviation from AlphaPose (get_parametric_distance with use_dist_mask): only the candidate's keypoints with
    # c >= score_threshold enter.
    k = 136
    p0 = _fullbody_pose(k)
    kps = np.stack([p0, p0])
    boxes = np.array([[100, 40, 180, 310]] * 2, float)
    confident = np.stack([np.full(k, 0.9), np.full(k, 0.9)])
    doubtful = np.stack([np.full(k, 0.9), np.full(k, 0.1)])  # candidate below 0.3 everywhere
    s_conf, _ = pairwise_pose_similarity(boxes, kps, confident)
    s_doubt, _ = pairwise_pose_similarity(boxes, kps, doubtful)
    t = math.tanh(0.9)
    # Means per part: score term t² per part with weights 1, 1, 0.1; spatial 1 per part with weights 1, 1, 1.5.
    assert s_conf[0, 1] == pytest.approx(t * t * 2.1 + 1.7 * 3.5, rel=1e-12)
    assert s_doubt[0, 1] == pytest.approx(0.0, abs=1e-15)


def test_wholebody_regression_params_are_a_separate_value():
    assert (
        WHOLEBODY_REGRESSION_PARAMS.delta1,
        WHOLEBODY_REGRESSION_PARAMS.mu,
        WHOLEBODY_REGRESSION_PARAMS.delta2,
        WHOLEBODY_REGRESSION_PARAMS.gamma,
        WHOLEBODY_REGRESSION_PARAMS.score_threshold,
        WHOLEBODY_REGRESSION_PARAMS.match_threshold,
        WHOLEBODY_REGRESSION_PARAMS.alpha,
    ) == (1.0, 1.65, 8.0, 3.6, 0.01, 3.0, 0.15)
    k = 136
    p0 = _fullbody_pose(k)
    kps = np.stack([p0, p0 + 2.0])
    boxes = np.array([[100, 40, 180, 310]] * 2, float)
    r = pose_nms(boxes, np.ones(2), kps, np.full((2, k), 0.5), WHOLEBODY_REGRESSION_PARAMS)
    assert _members(r) == [[0, 1]]
    # Using them changed nothing for the next body call (AlphaPose's global override in pose_nms would).
    assert PoseNMSParams() == BODY_PARAMS and BODY_PARAMS.gamma == 22.48


# ------------------------------------------------------------------------------------------------------------
# OKS-NMS and soft-OKS-NMS (AlphaPose's oks_pose_nms, soft_oks_nms)
# ------------------------------------------------------------------------------------------------------------


def test_oks_matrix_hand_checked():
    p0 = _pose()
    p1 = p0.copy()
    p1[0] += [3.0, 4.0]  # 5 px on the nose only
    boxes = np.array([[0, 0, 10, 20], [0, 0, 20, 10]], float)  # areas 200 and 200
    oks = oks_matrix(boxes, np.stack([p0, p1]))
    sigma = COCO_17.sigmas[0]
    e = 25 / (2 * sigma) ** 2 / (200 + np.spacing(1.0)) / 2
    assert oks[0, 1] == pytest.approx((16 + math.exp(-e)) / 17, rel=1e-12)
    assert oks[0, 0] == 1.0 and oks[1, 0] == oks[0, 1]
    assert oks_matrix(np.zeros((1, 4)) + [0, 0, 1, 1], np.zeros((1, 26, 2))).shape == (1, 1)
    assert oks_matrix(np.zeros((1, 4)) + [0, 0, 1, 1], np.zeros((1, 14, 2)), sigmas=CROWDPOSE_14.sigmas)[0, 0] == 1
    with pytest.raises(ValueError, match="sigmas"):
        oks_matrix(np.zeros((1, 4)), np.zeros((1, 15, 2)))


def test_oks_nms_rescores_and_suppresses():
    kps = np.stack([_pose(), _pose() + 0.1, _pose(x0=900)])
    scores = np.stack([np.full(17, 0.5), np.r_[np.full(10, 0.9), np.full(7, 0.1)], np.full(17, 0.3)])
    boxes = np.array([[90, 40, 170, 310], [90, 40, 170, 310], [890, 40, 970, 310]], float)
    box_scores = np.array([0.9, 0.8, 0.9])
    # Rescored: 0.9·0.5 = 0.45; 0.8·0.9 = 0.72 (the 0.1 scores are below vis_thr 0.2); 0.9·0.3 = 0.27.
    r = oks_nms(boxes, box_scores, kps, scores)
    assert r.kept.tolist() == [1, 2] and _members(r) == [[1], [2]]
    np.testing.assert_allclose(r.pose_scores, [0.72, 0.27], rtol=1e-12)
    np.testing.assert_array_equal(r.keypoints, kps[[1, 2]])
    same = pose_nms(boxes, box_scores, kps, scores, PoseNMSParams(method="oks"))
    assert same.kept.tolist() == [1, 2]


def test_soft_oks_nms_decays_instead_of_dropping():
    kps = np.stack([_pose(), _pose(), _pose(x0=900)])
    scores = np.full((3, 17), 0.5)
    boxes = np.array([[90, 40, 170, 310], [90, 40, 170, 310], [890, 40, 970, 310]], float)
    r = soft_oks_nms(boxes, np.array([0.9, 0.8, 0.6]), kps, scores)
    # Rescored 0.45, 0.4, 0.3. After keeping 0.45, its identical copy (OKS 1) decays to 0.4·exp(−1/0.9) = 0.1318
    # and the far pose (OKS 0) keeps 0.3, so the far pose comes second.
    assert r.kept.tolist() == [0, 2, 1]
    np.testing.assert_allclose(r.pose_scores, [0.45, 0.3, 0.4 * math.exp(-1 / 0.9)], rtol=1e-12)
    capped = soft_oks_nms(boxes, np.array([0.9, 0.8, 0.6]), kps, scores, PoseNMSParams(soft_oks_max_dets=2))
    assert capped.kept.tolist() == [0, 2]
    assert pose_nms(boxes, np.array([0.9, 0.8, 0.6]), kps, scores, PoseNMSParams(method="soft_oks")).kept.tolist() == [
        0,
        2,
        1,
    ]


# ------------------------------------------------------------------------------------------------------------
# Parameters, validation, module hygiene
# ------------------------------------------------------------------------------------------------------------


def test_params_defaults_are_the_spec_constants():
    p = BODY_PARAMS
    assert (p.delta1, p.mu, p.delta2, p.gamma, p.score_threshold, p.match_threshold, p.alpha, p.area_threshold) == (
        1.0,
        1.7,
        2.65,
        22.48,
        0.3,
        5.0,
        0.1,
        0.0,
    )
    assert (
        p.vis_threshold,
        p.oks_threshold,
        p.face_factor,
        p.hand_factor,
        p.hand_weight_score,
        p.face_weight_score,
        p.hand_weight_dist,
        p.face_weight_dist,
    ) == (0.2, 0.9, 1.9, 0.55, 0.1, 1.0, 1.5, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.gamma = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(delta1=0.0), "delta1"),
        (dict(delta2=-1.0), "delta2"),
        (dict(mu=-0.1), "mu"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(oks_threshold=0.0), "oks_threshold"),
        (dict(vis_threshold=1.5), "vis_threshold"),
        (dict(soft_oks_max_dets=0), "soft_oks_max_dets"),
        (dict(method="greedy"), "parametric, oks, soft_oks"),
        (dict(alpha="0.1"), "alpha"),
    ],
)
def test_params_range_checks(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        PoseNMSParams(**bad)


def test_params_dict_round_trip_is_strict():
    p = PoseNMSParams(gamma=10, mu=2)
    assert isinstance(p.gamma, float)
    assert PoseNMSParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="unknown PoseNMSParams field.*'gama'.*valid fields: method, delta1"):
        PoseNMSParams.from_dict({"gama": 1.0})


def test_input_validation_names_the_argument():
    kp = _pose()[None]
    ok = dict(
        boxes_xyxy=np.array([[90, 40, 170, 310.0]]),
        box_scores=np.ones(1),
        keypoints=kp,
        keypoint_scores=np.ones((1, 17)),
    )
    with pytest.raises(ValueError, match="keypoints must be"):
        pose_nms(**{**ok, "keypoints": kp[..., :1]})
    with pytest.raises(ValueError, match="box_scores must have shape"):
        pose_nms(**{**ok, "box_scores": np.ones(2)})
    with pytest.raises(ValueError, match="keypoint_scores contains NaN"):
        pose_nms(**{**ok, "keypoint_scores": np.full((1, 17), np.nan)})
    with pytest.raises(ValueError, match=r"boxes_xyxy\[0\].*x1 <= x2"):
        pose_nms(**{**ok, "boxes_xyxy": np.array([[170, 40, 90, 310.0]])})


def test_docstring_example_runs():
    result = doctest.testmod(pose_nms_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_models_pose_nms_does_not_import_ray():
    tree = ast.parse(Path(pose_nms_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "ray" not in imported


def test_oks_of_whole_body_poses_uses_alphaposes_oks_iou_sigmas():
    """AlphaPose's ``oks_iou`` (pPose_nms.py L161-179) takes 0.025 for Halpe-136's face and hands and the official
    COCO-WholeBody sigmas for 133 keypoints, not the sigmas its AP evaluator uses (which the keypoint sets carry)."""
    from models.keypoints import COCO_WHOLEBODY133_OFFICIAL_SIGMAS, HALPE136_OKS_IOU_SIGMAS
    from models.pose_nms import oks_matrix

    rng = np.random.default_rng(4)
    for k, sig in ((136, HALPE136_OKS_IOU_SIGMAS), (133, COCO_WHOLEBODY133_OFFICIAL_SIGMAS)):
        kp = rng.uniform(0, 100, (2, k, 2))
        boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 100]], np.float64)
        np.testing.assert_allclose(oks_matrix(boxes, kp), oks_matrix(boxes, kp, sigmas=sig))
        assert not np.allclose(oks_matrix(boxes, kp), oks_matrix(boxes, kp, sigmas=[0.015] * k))
