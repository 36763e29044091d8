"""ORB correspondences and their filtering (``models/correspondences.py``, spec §1.4; ray-notes §1.4).

Real frames: the first JPEGs of ``../shared/data/bonn_posetrack/060470979`` read as AlphaPose reads them
(``cv2.imread`` then BGR→RGB), with the clip's ground-truth poses as detections.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from models.correspondences import (OrbParams, alphapose_file_bytes, compact_correspondences, filter_for_tracking,
                                    filter_to_boxes, match_features, orb_correspondences, orb_features,
                                    tracking_regions, video_correspondences)
from models.poseflow import PoseFlowParams, PoseFlowTracker, pose_boxes

SIZE = (960, 540)


@pytest.fixture(scope="module")
def bonn(shared_data):
    root = shared_data / "bonn_posetrack"
    frames = [cv2.cvtColor(cv2.imread(str(root / "060470979" / f"{i:05d}.jpg")), cv2.COLOR_BGR2RGB)
              for i in (1, 2, 3)]
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
    corr = np.array([[5, 5, 50, 50],     # t-point in region_t
                     [50, 50, 5, 5],     # t+1-point in region_t1
                     [50, 50, 60, 60],   # neither
                     [10, 10, 10, 10]])  # both (inclusive bounds)
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
        filter_for_tracking(np.zeros((1, 4), np.int16), poses[0], poses[1], SIZE,
                            PoseFlowParams(weights_old=(1, 1, 0, 1, 0, 0)))


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
