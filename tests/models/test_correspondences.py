"""ORB correspondences and their filtering (``models/correspondences.py``; AlphaPose's
``trackers/PoseFlow/matching.py`` ``orb_matching``).

Real frames: the first JPEGs of ``../shared/data/bonn_posetrack/060470979`` read as AlphaPose reads them
(``cv2.imread`` then BGR→RGB), with the clip's ground-truth poses as detections.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.correspondences import (
    OrbFeatures,
    OrbParams,
    _two_nearest_windowed,
    alphapose_file_bytes,
    compact_correspondences,
    filter_for_tracking,
    filter_to_boxes,
    match_features,
    orb_correspondences,
    orb_features,
    tracking_regions,
    video_correspondences,
)
from models.poseflow import PoseFlowParams, PoseFlowTracker, pose_boxes

SIZE = (960, 540)


@pytest.fixture(scope="module")
def bonn(shared_data):
    root = shared_data / "bonn_posetrack"
    frames = [cv2.cvtColor(cv2.imread(str(root / "060470979" / f"{i:05d}.jpg")), cv2.COLOR_BGR2RGB) for i in (1, 2, 3)]
    gt = json.loads((root / "060470979.json").read_text())
    frame_of = {im["id"]: im["frame_id"] for im in gt["images"]}
    poses = [np.zeros((4, 14, 2)) for _ in range(3)]
    for a in gt["annotations"]:
        t = frame_of[a["image_id"]]
        if t < 3:
            poses[t][a["track_id"]] = np.asarray(a["keypoints"], np.float64).reshape(14, 3)[:, :2]
    features = [orb_features(f) for f in frames]
    return frames, poses, features, match_features(features[0], features[1])


def test_orb_finds_matches_on_real_frames(bonn):
    frames, _, _, corr = bonn
    assert corr is not None and corr.dtype == np.int16 and corr.ndim == 2 and corr.shape[1] == 4
    assert len(corr) > 500
    assert (corr[:, [0, 2]] >= 0).all() and (corr[:, [0, 2]] < SIZE[0]).all()
    assert (corr[:, [1, 3]] >= 0).all() and (corr[:, [1, 3]] < SIZE[1]).all()
    # Consecutive frames: most matches move a few pixels (camera motion); the median well under 30 px.
    assert np.median(np.abs(corr[:, 2:].astype(int) - corr[:, :2]).max(axis=1)) < 30
    # The one-call form gives the same pairs (features are deterministic).
    np.testing.assert_array_equal(orb_correspondences(frames[0], frames[1]), corr)


def test_bruteforce_is_the_exact_two_nearest_neighbours_with_ratio_test(bonn):
    """Check the kept pairs against a NumPy Hamming 2-NN on a sample of frame-t keypoints."""
    _, _, (f0, f1, _), corr = bonn
    bits0 = np.unpackbits(f0.descriptors, axis=1).astype(bool)
    bits1 = np.unpackbits(f1.descriptors, axis=1).astype(bool)
    kept = {tuple(row) for row in corr.tolist()}
    t_points = np.trunc(f0.points).astype(int)
    _, first, counts = np.unique(t_points, axis=0, return_index=True, return_counts=True)
    shared = {tuple(t_points[i]) for i, c in zip(first, counts) if c > 1}  # truncated points of several keypoints
    rng = np.random.default_rng(0)
    checked = 0
    for q in rng.choice(len(f0), 80, replace=False):
        if tuple(t_points[q]) in shared:
            continue
        dist = (bits0[q] ^ bits1).sum(axis=1)
        order = np.argsort(dist, kind="stable")
        row = tuple(t_points[q].tolist() + np.trunc(f1.points[order[0]]).astype(int).tolist())
        if dist[order[0]] < 0.8 * dist[order[1]]:
            assert row in kept
        else:
            assert not any(r[:2] == row[:2] for r in kept)
        checked += 1
    assert checked > 50


def test_flann_recipe_agrees_with_bruteforce(bonn):
    """AlphaPose's FLANN LSH search approximates the exact 2-NN: nearly the same pairs on a real pair of frames."""
    _, _, (f0, f1, _), corr = bonn
    exact = {tuple(r) for r in corr.tolist()}
    flann = {tuple(r) for r in match_features(f0, f1, OrbParams(matcher="flann")).tolist()}
    assert len(exact & flann) >= 0.95 * max(len(exact), len(flann))


def test_windowed_matcher_stays_in_its_window(bonn):
    _, _, (f0, f1, _), _ = bonn
    corr = match_features(f0, f1, OrbParams(matcher="windowed", window=32))
    assert corr is not None and len(corr) > 500
    # Truncation can add < 1 px to the float displacement.
    assert (np.abs(corr[:, 2:].astype(int) - corr[:, :2]) <= 33).all()


def _windowed_reference(f_t: OrbFeatures, f_t1: OrbFeatures, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition, computed the obvious way: for every frame-t point, one exhaustive Hamming search over all
    frame-t+1 points, masked by the window test in float64 (exact for float32 coordinates)."""
    dist = np.full((len(f_t), 2), -1, np.int64)
    nidx = np.full((len(f_t), 2), -1, np.int64)
    p1 = f_t1.points.astype(np.float64)
    for start in range(0, len(f_t), 1024):
        q = f_t.points[start : start + 1024].astype(np.float64)
        near = (np.abs(q[:, None, 0] - p1[None, :, 0]) <= window) & (np.abs(q[:, None, 1] - p1[None, :, 1]) <= window)
        d, i = cv2.batchDistance(
            f_t.descriptors[start : start + 1024],
            f_t1.descriptors,
            cv2.CV_32S,
            normType=cv2.NORM_HAMMING,
            K=2,
            mask=near.view(np.uint8),
        )
        dist[start : start + 1024] = np.where(i >= 0, d, -1)
        nidx[start : start + 1024] = i
    return dist, nidx


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a ^ b, axis=-1).sum(axis=-1)


@pytest.mark.parametrize("window", [5, 16, 48, 100])
def test_windowed_matcher_is_the_exact_two_nearest_inside_the_window(bonn, window):
    """The strip/group implementation against the exhaustive definition on real Bonn frames: the same two
    distances for every query, the same best neighbour whenever it is unique (a tie for first place fails the ratio
    test, so which tied index is reported cannot matter), second neighbours inside the window at the reported
    distance, and hence the same correspondences."""
    _, _, (f0, f1, f2), _ = bonn
    for f_t, f_t1 in ((f0, f1), (f1, f2)):
        dist, nidx = _two_nearest_windowed(f_t, f_t1, window)
        ref_dist, ref_nidx = _windowed_reference(f_t, f_t1, window)
        np.testing.assert_array_equal(dist, ref_dist)
        unique = (dist[:, 0] >= 0) & ((dist[:, 1] < 0) | (dist[:, 0] < dist[:, 1]))
        np.testing.assert_array_equal(nidx[unique, 0], ref_nidx[unique, 0])
        assert ((nidx >= 0) == (dist >= 0)).all()
        q, k = np.nonzero(nidx >= 0)
        j = nidx[q, k]
        np.testing.assert_array_equal(_hamming(f_t.descriptors[q], f_t1.descriptors[j]), dist[q, k])
        delta = np.abs(f_t1.points[j].astype(np.float64) - f_t.points[q])
        assert (delta <= window).all()
        if window >= 16:
            assert unique.sum() > 0.9 * len(f_t)  # real frames: nearly every query has a window neighbour

        # match_features applies the ratio test to exactly these neighbours.
        keep = (ref_nidx >= 0).all(axis=1) & (ref_dist[:, 0] < 0.8 * ref_dist[:, 1])
        expected = np.trunc(np.concatenate([f_t.points[keep], f_t1.points[ref_nidx[keep, 0]]], axis=1))
        got = match_features(f_t, f_t1, OrbParams(matcher="windowed", window=window))
        if len(expected) < OrbParams().min_matches:
            assert got is None
        else:
            np.testing.assert_array_equal(got, expected.astype(np.int16))


def _features(points, descriptors) -> OrbFeatures:
    return OrbFeatures(np.asarray(points, np.float32).reshape(-1, 2), np.asarray(descriptors, np.uint8))


def test_windowed_window_test_is_exact():
    """|Δ| ≤ window in exact arithmetic: a point exactly `window` away is inside, the next float32 is outside, also
    where a float32 subtraction would round the difference to exactly `window` (1 − 2⁻²⁴ to 49: Δ = 48 + 2⁻²⁴) or
    where the float32 nearest to (coordinate ∓ window) lies on the wrong side of it (1 + 2⁻²³ − 48)."""
    rng = np.random.default_rng(0)
    desc = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    near_copy = desc[0].copy()
    near_copy[0] ^= 1  # Hamming 1 from query 0: the best neighbour whenever it is inside the window
    below_one = np.nextafter(np.float32(1.0), np.float32(0.0))  # 1 − 2⁻²⁴
    above_one = np.nextafter(np.float32(1.0), np.float32(2.0))  # 1 + 2⁻²³
    assert np.float32(49.0) - below_one == np.float32(48.0)  # float32 rounding would accept these two
    assert np.float32(-47.0) - above_one == np.float32(-48.0)
    cases = [  # (query point, candidate point, inside a ±48 window)
        ((100.0, 200.0), (148.0, 200.0), True),
        ((100.0, 200.0), (52.0, 248.0), True),
        ((100.0, 200.0), (100.0, 152.0), True),
        ((100.0, 200.0), (np.nextafter(np.float32(148.0), np.float32(np.inf)), 200.0), False),
        ((100.0, 200.0), (np.nextafter(np.float32(52.0), np.float32(0.0)), 200.0), False),
        ((100.0, 200.0), (100.0, np.nextafter(np.float32(248.0), np.float32(np.inf))), False),
        ((100.0, 200.0), (100.0, np.nextafter(np.float32(152.0), np.float32(0.0))), False),
        ((below_one, 200.0), (49.0, 200.0), False),
        ((100.0, below_one), (100.0, 49.0), False),
        ((above_one, 200.0), (-47.0, 200.0), False),
        ((100.0, above_one), (100.0, -47.0), False),
        ((above_one, 200.0), (-47.0 + 2.0**-18, 200.0), True),
        ((0.0, 0.0), (-48.0, 48.0), True),
        ((-0.0, 5.0), (48.0, -43.0), True),
    ]
    for q, t, inside in cases:
        # The candidate (index 1) competes with a far point (index 0, inside the window, Hamming ~128).
        f_t = _features([q], desc[:1])
        f_t1 = _features([q, t], np.stack([desc[1], near_copy]))
        dist, nidx = _two_nearest_windowed(f_t, f_t1, 48)
        ref_dist, _ = _windowed_reference(f_t, f_t1, 48)
        np.testing.assert_array_equal(dist, ref_dist)
        if inside:
            assert nidx[0].tolist() == [1, 0] and dist[0, 0] == 1, (q, t)
        else:
            assert nidx[0].tolist() == [0, -1] and dist[0, 1] == -1, (q, t)


def test_windowed_sparse_and_degenerate_inputs():
    rng = np.random.default_rng(1)
    n = 300
    # Few, scattered points (empty windows, single-point windows, whole strips without candidates), duplicates.
    p0 = rng.uniform(0, 2000, (n, 2)).astype(np.float32)
    p1 = np.concatenate(
        [
            p0[:100] + rng.normal(0, 20, (100, 2)).astype(np.float32),
            p0[:5],
            rng.uniform(0, 2000, (50, 2)).astype(np.float32),
        ]
    )
    d0 = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    d1 = np.concatenate(
        [
            d0[:100] ^ rng.integers(0, 2, (100, 32), dtype=np.uint8),
            d0[:5],
            rng.integers(0, 256, (50, 32), dtype=np.uint8),
        ]
    )
    f0, f1 = _features(p0, d0), _features(p1, d1)
    for window in (1, 7, 30, 64):
        for strip, group in ((None, 64), (3, 2), (500, 1000)):  # internal tiling must not change the result
            dist, nidx = _two_nearest_windowed(f0, f1, window, strip=strip, group=group)
            ref_dist, ref_nidx = _windowed_reference(f0, f1, window)
            np.testing.assert_array_equal(dist, ref_dist)
            unique = (dist[:, 0] >= 0) & ((dist[:, 1] < 0) | (dist[:, 0] < dist[:, 1]))
            np.testing.assert_array_equal(nidx[unique, 0], ref_nidx[unique, 0])
        assert (dist[:, 0] == -1).any() and (dist[:, 1] == -1).any()
    empty = _features(np.zeros((0, 2)), np.zeros((0, 32)))
    for a, b in ((empty, f1), (f0, empty)):
        dist, nidx = _two_nearest_windowed(a, b, 48)
        assert dist.shape == nidx.shape == (len(a), 2) and (nidx == -1).all()


def test_video_correspondences_threads_give_the_same_pairs(bonn):
    frames = bonn[0]
    params = OrbParams(matcher="windowed")
    one = video_correspondences(iter(frames), params)
    for workers in (2, 3):
        many = video_correspondences(iter(frames), params, workers=workers)
        assert len(many) == len(one) == 3 and many[0] is None
        for a, b in zip(one[1:], many[1:]):
            np.testing.assert_array_equal(a, b)
    assert video_correspondences(iter([]), params, workers=2) == []
    assert video_correspondences(iter(frames[:1]), params, workers=2) == [None]
    with pytest.raises(ValueError, match="workers"):
        video_correspondences(frames, params, workers=0)


def test_orb_points_are_the_keypoint_coordinates(bonn):
    frames, _, features, _ = bonn
    keypoints, descriptors = cv2.ORB_create(nfeatures=10000, scoreType=cv2.ORB_FAST_SCORE).detectAndCompute(
        frames[0], None
    )
    np.testing.assert_array_equal(features[0].points, np.array([kp.pt for kp in keypoints], np.float32))
    np.testing.assert_array_equal(features[0].descriptors, descriptors)


def test_fallbacks_to_identity():
    """Too few keypoints (a blank frame) or too few matches → None, AlphaPose's identity fallback."""
    blank = np.zeros((120, 160, 3), np.uint8)
    assert orb_correspondences(blank, blank) is None
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    corr = orb_correspondences(noise, noise)
    assert corr is not None and len(corr) >= 38
    assert orb_correspondences(noise, noise, OrbParams(min_matches=len(corr) + 1)) is None
    assert orb_correspondences(noise, noise, OrbParams(min_matches=len(corr))) is not None


def test_alphapose_file_size_rule():
    corr = np.array([[123, 45, 130, 47], [5, 6, 7, 8]])
    # "123 45 130 47 23.000000 \n" = 25 bytes, "5 6 7 8 9.000000 \n" = 18 bytes.
    assert alphapose_file_bytes(corr, np.array([23, 9])) == 25 + 18
    assert len("123 45 130 47 23.000000 \n") == 25 and len("5 6 7 8 9.000000 \n") == 18
    # 38 typical 960×540 rows (27 bytes) pass the 1000-byte rule, 37 do not: the default min_matches is 38.
    row = np.array([[523, 145, 530, 147]])
    assert alphapose_file_bytes(np.repeat(row, 37, 0), np.full(37, 23)) == 999
    assert alphapose_file_bytes(np.repeat(row, 38, 0), np.full(38, 23)) == 1026
    assert OrbParams().min_matches == 38


def test_compact_dtypes():
    assert compact_correspondences(np.array([[0, 1, 32767, 5]])).dtype == np.int16
    assert compact_correspondences(np.array([[0, 1, 40000, 5]])).dtype == np.int32


def test_filter_to_boxes_keeps_either_side():
    corr = np.array(
        [
            [5, 5, 50, 50],  # t-point in region_t
            [50, 50, 5, 5],  # t+1-point in region_t1
            [50, 50, 60, 60],  # neither
            [10, 10, 10, 10],
        ]
    )  # both (inclusive bounds)
    kept = filter_to_boxes(corr, [[0, 10, 0, 10]], [[0, 5, 0, 5]])
    assert kept.tolist() == [[5, 5, 50, 50], [50, 50, 5, 5], [10, 10, 10, 10]]
    assert filter_to_boxes(None, [[0, 1, 0, 1]], []) is None


@pytest.mark.parametrize("mode", ["released", "improved"])
def test_filtered_correspondences_give_identical_grades(bonn, mode):
    """``filter_for_tracking`` keeps every pair a grade can read: grades with the filtered pairs equal the grades
    with all pairs exactly; filtering by the frame-t+1 boxes alone would change them (it shrinks S₁ ∪ S₂)."""
    _, poses, _, corr = bonn
    params = PoseFlowParams(mode=mode)
    filtered = filter_for_tracking(corr, poses[0], poses[1], SIZE, params)
    assert filtered.dtype == np.int16 and len(filtered) < len(corr)

    def grades(c):
        tracker = PoseFlowTracker(params)
        tracker.update(poses[0], np.ones((4, 14)), np.ones(4), SIZE)
        tracker.update(poses[1], np.ones((4, 14)), np.ones(4), SIZE, correspondences=c)
        return tracker.last_grades

    full = grades(corr)
    np.testing.assert_array_equal(grades(filtered), full)
    np.testing.assert_array_equal(grades(filtered.astype(np.float32)), full)
    if mode == "released":
        naive = filter_to_boxes(corr, np.zeros((0, 4)), pose_boxes(poses[1], SIZE))
        assert not np.array_equal(grades(naive), full)


def test_filter_rejects_weights_it_cannot_preserve(bonn):
    _, poses, _, _ = bonn
    with pytest.raises(ValueError, match="weights_old"):
        filter_for_tracking(
            np.zeros((1, 4), np.int16), poses[0], poses[1], SIZE, PoseFlowParams(weights_old=(1, 1, 0, 1, 0, 0))
        )


def test_tracking_regions_cover_boxes_and_keypoint_squares():
    kp = np.array([[[100.0, 100.0], [140.0, 300.0]]])
    regions = tracking_regions(kp, SIZE, PoseFlowParams(mag=30))
    assert regions.tolist() == [[96, 144, 80, 320], [70, 170, 70, 330]]


def test_video_correspondences_layout(bonn):
    frames, _, _, corr = bonn
    out = video_correspondences(iter(frames[:2]))
    assert len(out) == 2 and out[0] is None
    np.testing.assert_array_equal(out[1], corr)


def test_params_validation():
    with pytest.raises(ValueError, match="matcher"):
        OrbParams(matcher="knn")
    with pytest.raises(ValueError, match="ratio"):
        OrbParams(ratio=1.5)
    with pytest.raises(ValueError, match="frame must be uint8"):
        orb_features(np.zeros((10, 10), np.uint8))
