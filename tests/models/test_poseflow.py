"""PoseFlow tracker (``models/poseflow.py``): reference values of AlphaPose's own functions, exactness against a
per-pair reference loop written from AlphaPose's code, the analytic identity fallback against explicit per-pixel
rows, the id rules, empty frames, order independence, and the improved mode's behaviour on small hand-made scenes.

Reference: AlphaPose's ``trackers/PoseFlow/tracker-general.py``, ``utils.py`` and ``matching.py`` at commit c60106d.
"""

from __future__ import annotations

import dataclasses
import doctest
import heapq
import sys

import numpy as np
import pytest

import models.poseflow as poseflow
from models.poseflow import (
    PoseFlowParams,
    PoseFlowTracker,
    affinity_terms,
    assign_ids,
    box_iou_matrix,
    grade_matrix,
    pose_boxes,
    pose_iou_matrix,
    track_video,
)

# ----------------------------------------------------------------------------------------------------------------
# A per-pair reference written from AlphaPose's utils.py (sets, loops and Python floats), sharing no code with the
# module.
# ----------------------------------------------------------------------------------------------------------------


def _ref_bbox_iou(a, b) -> float:
    """AlphaPose's ``cal_bbox_iou`` (grade term 2), boxes [x_min, x_max, y_min, y_max]."""
    xa, ya, xb, yb = max(a[0], b[0]), max(a[2], b[2]), min(a[1], b[1]), min(a[3], b[3])
    if xa < xb and ya < yb:
        inter = (xb - xa + 1) * (yb - ya + 1)
        area_a = (a[1] - a[0] + 1) * (a[3] - a[2] + 1)
        area_b = (b[1] - b[0] + 1) * (b[3] - b[2] + 1)
        return inter / float(area_a + area_b - inter + 0.00001)
    return 0.0


def _ref_region(box, xs, ys) -> set:
    return {i for i, (x, y) in enumerate(zip(xs, ys)) if box[0] <= x <= box[1] and box[2] <= y <= box[3]}


def _ref_set_iou(s1: set, s2: set) -> float:
    return len(s1 & s2) / (len(s1 | s2) + 0.00001)


def _squares(pose, mag):
    return [[x - mag, x + mag, y - mag, y + mag] for x, y in pose]


def _ref_terms(box1, pose1, box2, pose2, corr, num, mag):
    """Grade terms 1–4 of AlphaPose's ``best_matching_hungarian_kernel`` for one candidate/detection pair."""
    x1, y1, x2, y2 = (corr[:, c].tolist() for c in range(4))
    dm = _ref_set_iou(_ref_region(box1, x1, y1), _ref_region(box2, x2, y2))
    box = _ref_bbox_iou(box1, box2)
    s1, s2 = _squares(pose1, mag), _squares(pose2, mag)
    pdm = np.mean(
        heapq.nlargest(num, [_ref_set_iou(_ref_region(a, x1, y1), _ref_region(b, x2, y2)) for a, b in zip(s1, s2)])
    )
    pose = np.mean(heapq.nlargest(num, [_ref_bbox_iou(a, b) for a, b in zip(s1, s2)]))
    return [dm, box, pdm, pose]


def _ref_grade(terms, score1, score2, weights) -> float:
    return sum(np.array(terms + [score1, score2]) * np.array(weights))


def _identity_rows(width: int, height: int) -> np.ndarray:
    """AlphaPose's fake correspondences (``matching.py`` ``generate_fake_cor``): one (x, y, x, y) row per pixel of
    frame t."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


def _random_poses(rng, n, k, width, height, margin=15):
    centre = rng.uniform([-margin, -margin], [width + margin, height + margin], (n, 1, 2))
    return centre + rng.normal(0, 6, (n, k, 2))


# ----------------------------------------------------------------------------------------------------------------
# Reference values (AlphaPose's own functions on these inputs).
# ----------------------------------------------------------------------------------------------------------------


def test_box_iou_reference_value():
    """AlphaPose's cal_bbox_iou([0,10,0,10],[5,15,5,15]) = 0.174757 (order x_min, x_max, y_min, y_max)."""
    value = box_iou_matrix([[0, 10, 0, 10]], [[5, 15, 5, 15]])[0, 0]
    assert round(value, 6) == 0.174757
    assert value == 36 / (121 + 121 - 36 + 1e-5)
    assert box_iou_matrix([[0, 10, 0, 10]], [[10, 20, 0, 10]])[0, 0] == 0.0  # touching: strict overlap rule


def test_pose_iou_reference_value():
    """AlphaPose's cal_pose_iou(P, P+(10,0), num=7, mag=30) = 0.718310 = 51·61 / (2·61² − 51·61)."""
    rng = np.random.default_rng(0)
    pose = rng.uniform(100, 300, (1, 16, 2))
    value = pose_iou_matrix(pose, pose + [10.0, 0.0], num=7, mag=30)[0, 0]
    assert round(value, 6) == 0.718310
    assert value == pytest.approx(51 * 61 / (2 * 61**2 - 51 * 61), abs=1e-6)


# A toy case run through AlphaPose's own functions recorded its results but not its figures. These two 16-keypoint
# stick figures in a 200×160 image were constructed to reproduce every recorded number; they are not necessarily the
# figures of that run.
_STICK = np.array(
    [
        (0.3, 1),
        (0.32, 0.75),
        (0.35, 0.5),
        (0.65, 0.5),
        (0.68, 0.75),
        (0.7, 1),
        (0.5, 0.5),
        (0.5, 0.2),
        (0.5, 0.15),
        (0.5, 0),
        (0, 0.5),
        (0.1, 0.35),
        (0.3, 0.2),
        (0.7, 0.2),
        (0.9, 0.35),
        (1, 0.5),
    ]
)


def _toy_scene():
    # Figure A: 50×20 px, its leftmost keypoint at x = 25, shifted (+5, 0). Every keypoint square IoU is then
    # 56·61 / (2·61² − 56·61) = 0.848485 (pose_iou), its box is 60 px wide after expansion and truncation (box IoU
    # 56/66 = 0.848485 = dm_iou, the box lies inside the image), and only the leftmost keypoint's square is clipped
    # by the image edge: its pixel IoU is 56/61, so pose_iou_dm = (56/61 + 6·0.848485) / 7 = 0.858420.
    a_t = np.c_[25 + 50 * _STICK[:, 0], 0 + 20 * _STICK[:, 1]]
    a_t1 = a_t + [5.0, 0.0]
    # Figure B: 66×76 px at (86.5, 67.5), shifted (−4, −5) (6.4 px); found by a search over placements.
    b_t = np.c_[86.5 + 66 * _STICK[:, 0], 67.5 + 76 * _STICK[:, 1]]
    b_t1 = b_t + [-4.0, -5.0]
    return np.stack([a_t, b_t]), np.stack([b_t1, a_t1])  # detections listed in swapped order


def test_toy_grade_matrix_reproduces_spec_values():
    """Toy case run through AlphaPose's functions: grades [[0, 5.1008], [4.7151, 0]] → Hungarian (0→1, 1→0);
    with fff=False [[0, 1.697], [1.5684, 0]]; matched pair (0→1): dm_iou = box_iou = 0.8485, pose_iou_dm = 0.8584,
    pose_iou = 0.8485. Identity correspondences, computed both analytically and as the 32 000 explicit rows.

    The figures are our construction (see ``_toy_scene``): that run recorded the numbers, not the figures.
    """
    size = (200, 160)
    poses_t, poses_t1 = _toy_scene()
    boxes_t, boxes_t1 = pose_boxes(poses_t, size), pose_boxes(poses_t1, size)
    terms = affinity_terms(boxes_t, poses_t, boxes_t1, poses_t1, correspondences=None, image_size_t=size)
    explicit = affinity_terms(
        boxes_t, poses_t, boxes_t1, poses_t1, correspondences=_identity_rows(*size), image_size_t=size
    )
    np.testing.assert_array_equal(terms, explicit)
    zeros = np.zeros(2)
    recent = grade_matrix(terms, zeros, zeros, np.ones(2, bool))
    old = grade_matrix(terms, zeros, zeros, np.zeros(2, bool))
    np.testing.assert_array_equal(np.round(recent, 4), [[0, 5.1008], [4.7151, 0]])
    np.testing.assert_array_equal(np.round(old, 4), [[0, 1.697], [1.5684, 0]])
    np.testing.assert_array_equal(np.round(terms[:, 0, 1], 4), [0.8485, 0.8485, 0.8584, 0.8485])
    ids, max_id = assign_ids(recent, np.array([1, 2]), 2, 0.2)
    assert ids.tolist() == [2, 1] and max_id == 2  # candidate 0 → detection 1, candidate 1 → detection 0

    # The same through the streaming tracker.
    tracker = PoseFlowTracker()
    assert tracker.update(poses_t, np.ones((2, 16)), np.ones(2), size).tolist() == [1, 2]
    assert tracker.update(poses_t1, np.ones((2, 16)), np.ones(2), size).tolist() == [2, 1]
    np.testing.assert_array_equal(tracker.last_grades, recent)


# ----------------------------------------------------------------------------------------------------------------
# Exactness of the vectorised terms.
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_terms_and_grades_equal_per_pair_reference(seed):
    """Every term and grade equals the per-pair reference exactly (==), with random integer correspondences."""
    rng = np.random.default_rng(seed)
    size = (64, 48)
    k = 17
    poses_t = _random_poses(rng, 4, k, *size)
    poses_t1 = poses_t[rng.permutation(4)][:3] + rng.normal(0, 3, (3, k, 2))
    boxes_t, boxes_t1 = pose_boxes(poses_t, size), pose_boxes(poses_t1, size)
    corr = np.stack(
        [
            rng.integers(0, size[0], 400),
            rng.integers(0, size[1], 400),
            rng.integers(0, size[0], 400),
            rng.integers(0, size[1], 400),
        ],
        axis=1,
    ).astype(np.int16)
    params = PoseFlowParams(num=5, mag=12)
    terms = affinity_terms(
        boxes_t, poses_t, boxes_t1, poses_t1, correspondences=corr, image_size_t=size, num=params.num, mag=params.mag
    )
    scores_t, scores_t1 = rng.uniform(0, 1, 4), rng.uniform(0, 1, 3)
    recent = np.array([True, False, True, False])
    weights = (1, 2, 1, 2, 0.5, 0.25)  # non-zero score weights exercise terms 5 and 6 too
    grades = grade_matrix(terms, scores_t, scores_t1, recent, weights, params.weights_old)
    for i in range(4):
        for j in range(3):
            ref = _ref_terms(
                boxes_t[i].tolist(),
                poses_t[i].tolist(),
                boxes_t1[j].tolist(),
                poses_t1[j].tolist(),
                corr.astype(np.float64),
                params.num,
                params.mag,
            )
            assert terms[:, i, j].tolist() == ref
            w = weights if recent[i] else params.weights_old
            assert grades[i, j] == _ref_grade(ref, scores_t[i], scores_t1[j], w)


@pytest.mark.parametrize("seed", range(3))
def test_pose_only_fallback_equals_explicit_identity_rows(seed):
    """Pose-only mode (analytic) equals AlphaPose's W·H identity rows on a 40×30 image, term by term and in the
    tracker's grades and ids, including poses and squares partly outside the image."""
    rng = np.random.default_rng(100 + seed)
    size = (40, 30)
    rows = _identity_rows(*size)
    frames = [_random_poses(rng, 3, 14, *size, margin=10)]
    for _ in range(5):
        frames.append(frames[-1] + rng.normal(0, 2.5, frames[-1].shape))
    frames[3] = frames[3][[2, 0]]  # a person missing: an older candidate appears in frame 4's grades
    analytic, explicit = PoseFlowTracker(PoseFlowParams(mag=8)), PoseFlowTracker(PoseFlowParams(mag=8))
    for t, kp in enumerate(frames):
        kps, sc = np.ones(kp.shape[:2]), np.ones(len(kp))
        ids_a = analytic.update(kp, kps, sc, size)
        ids_e = explicit.update(kp, kps, sc, size, None if t == 0 else rows)
        assert ids_a.tolist() == ids_e.tolist()
        np.testing.assert_array_equal(analytic.last_grades, explicit.last_grades)
    boxes = pose_boxes(frames[0], size)
    a = affinity_terms(boxes, frames[0], boxes[::-1], frames[0][::-1], correspondences=None, image_size_t=size)
    e = affinity_terms(boxes, frames[0], boxes[::-1], frames[0][::-1], correspondences=rows, image_size_t=size)
    np.testing.assert_array_equal(a, e)


def test_pose_boxes_expand_clip_truncate():
    """AlphaPose's get_box: expand by 0.1 of width/height, clip to [0, W] × [0, H], int-truncate; [x_min, x_max,
    y_min, y_max]."""
    kp = np.array([[[10.0, 20.0], [30.0, 70.0]], [[-5.0, 90.0], [95.5, 130.0]]])
    boxes = pose_boxes(kp, (100, 120))
    assert boxes.dtype == np.int64
    # Person 0: width 20 → ±2, height 50 → ±5: [8, 32, 15, 75]. Person 1: x [-15.05, 105.55] → [0, 100];
    # y [86, 134] → [86, 120].
    assert boxes.tolist() == [[8, 32, 15, 75], [0, 100, 86, 120]]
    assert pose_boxes(np.zeros((0, 5, 2)), (10, 10)).shape == (0, 4)


# ----------------------------------------------------------------------------------------------------------------
# Id rules (tracker-general.py), window (stack_all_pids), empty frames.
# ----------------------------------------------------------------------------------------------------------------

_SIZE = (640, 480)


def _person(x, y, k=14):
    """A static, 40×100 px person with k keypoints at (x, y)."""
    t = np.linspace(0, 1, k)
    return np.stack([x + 40 * np.abs(np.sin(7 * t)), y + 100 * t], axis=1)


def _frame(*people):
    kp = np.stack(people) if people else np.zeros((0, 14, 2))
    return kp, np.ones(kp.shape[:2]), np.ones(len(kp))


A, B, C, D = _person(50, 50), _person(300, 50), _person(50, 300), _person(500, 300)


def test_first_frame_then_new_people_get_max_plus_one_in_row_order():
    tracker = PoseFlowTracker()
    assert tracker.update(*_frame(A, B), _SIZE).tolist() == [1, 2]
    assert tracker.update(*_frame(D, B, C, A), _SIZE).tolist() == [3, 2, 4, 1]
    assert tracker.max_id == 4


@pytest.mark.parametrize("mode", ["released", "improved"])
def test_link_len_window_absent_fewer_vs_more_frames(mode):
    """A person absent for link_len − 1 frames (with detections) gets its id back; absent for link_len, a new one.
    Ids are never recycled."""
    link = 5
    for absent, expect_same in ((link - 1, True), (link, False)):
        params = PoseFlowParams(link_len=link, mode=mode, tentative_max_age=100)
        tracker = PoseFlowTracker(params)
        assert tracker.update(*_frame(A, B), _SIZE).tolist() == [1, 2]
        tracker.update(*_frame(A, B), _SIZE)
        for _ in range(absent):
            assert tracker.update(*_frame(B), _SIZE).tolist() == [2]
        ids = tracker.update(*_frame(A, B), _SIZE).tolist()
        assert ids == ([1, 2] if expect_same else [3, 2])
        # Id 1 is gone for good: a new person later gets 4 (or 3), never 1.
        later = tracker.update(*_frame(A, B, D), _SIZE).tolist()
        assert later[2] == max(ids) + 1 and 1 not in later[2:]


def test_empty_frames_are_skipped_like_absent_input_frames():
    """Released: frames with no detections do not advance the link_len window and keep 'recent' candidates recent
    (AlphaPose's input lists only frames with detections). They return an empty int64 array."""
    params = PoseFlowParams(link_len=2)
    tracker = PoseFlowTracker(params)
    tracker.update(*_frame(A), _SIZE)
    for _ in range(10):
        ids = tracker.update(*_frame(), _SIZE)
        assert ids.dtype == np.int64 and ids.shape == (0,)
    assert tracker.update(*_frame(A), _SIZE).tolist() == [1]
    # The candidate stayed "recent": the grade uses the full weights [1, 2, 1, 2] (max 6), not weights_old (max 2).
    assert tracker.last_grades[0, 0] > 2.0
    # Against a tracker that never saw the empty frames: identical ids and grades.
    plain = PoseFlowTracker(params)
    plain.update(*_frame(A), _SIZE)
    plain.update(*_frame(A), _SIZE)
    np.testing.assert_array_equal(plain.last_grades, tracker.last_grades)
    # An empty frame before the first detections: the first frame with people still starts at id 1.
    fresh = PoseFlowTracker()
    assert fresh.update(np.zeros((0, 14, 2)), np.zeros((0, 14)), np.zeros(0), _SIZE).tolist() == []
    assert fresh.update(*_frame(B, A), _SIZE).tolist() == [1, 2]


def test_order_independence_within_a_frame():
    """Permuting the detections of a frame permutes its ids the same way (ids follow the persons). Where it is not
    independent: the first frame and new people are numbered in row order (as AlphaPose), and exact grade ties."""
    rng = np.random.default_rng(7)
    people = [_person(x, y) for x, y in ((60, 40), (200, 60), (340, 80), (480, 100), (120, 300))]
    velocity = rng.uniform(-6, 6, (5, 2))
    frames = [np.stack(people) + velocity[:, None, :] * t + rng.normal(0, 1.5, (5, 14, 2)) for t in range(8)]
    frames[5] = frames[5][:4]  # one person missing for a frame
    for mode in ("released", "improved"):
        base = track_video(
            frames,
            [np.ones(f.shape[:2]) for f in frames],
            [np.ones(len(f)) for f in frames],
            _SIZE,
            params=PoseFlowParams(mode=mode),
        )
        for _trial in range(3):
            perms = [np.arange(len(frames[0]))] + [rng.permutation(len(f)) for f in frames[1:]]
            shuffled = track_video(
                [f[p] for f, p in zip(frames, perms)],
                [np.ones((len(p), 14)) for p in perms],
                [np.ones(len(p)) for p in perms],
                _SIZE,
                params=PoseFlowParams(mode=mode),
            )
            for ids, ids_shuffled, p in zip(base, shuffled, perms):
                assert ids[p].tolist() == ids_shuffled.tolist()


def test_strict_match_threshold_and_new_ids():
    grades = np.array([[0.2, 0.0], [0.0, 0.2000001]])
    ids, max_id = assign_ids(grades, np.array([7, 9]), 9, 0.2)
    assert ids.tolist() == [10, 9] and max_id == 10  # 0.2 is not > 0.2: a new id, numbered after max_id
    ids, max_id = assign_ids(np.zeros((0, 3)), np.zeros(0, np.int64), 4, 0.2)
    assert ids.tolist() == [5, 6, 7] and max_id == 7


def test_correspondences_none_vs_given_and_dtypes():
    """ORB mode accepts int16 rows; with no pairs at all the correspondence terms are 0 (not the fallback)."""
    tracker = PoseFlowTracker()
    tracker.update(*_frame(A, B), _SIZE)
    ids = tracker.update(*_frame(B, A), _SIZE, correspondences=np.zeros((0, 4), np.int16))
    assert ids.tolist() == [2, 1]
    assert tracker.last_grades.max() <= 4.0 + 1e-9  # only box_iou and pose_iou (weights 2 + 2) contribute


# ----------------------------------------------------------------------------------------------------------------
# Improved mode.
# ----------------------------------------------------------------------------------------------------------------


def _moving(x0, vx, t):
    return _person(x0 + vx * t, 200)


def test_improved_relinks_a_moving_person_after_a_gap_released_does_not():
    """A person walking 12 px/frame is missed for 8 frames: the constant-velocity prediction finds them again;
    AlphaPose's old-candidate terms (box and pose IoU against the last position, 100 px away) cannot."""
    results = {}
    for mode in ("released", "improved"):
        tracker = PoseFlowTracker(PoseFlowParams(mode=mode))
        ids = []
        for t in range(20):
            people = [D] + ([_moving(40, 12, t)] if not 6 <= t < 14 else [])
            ids.append(tracker.update(*_frame(*people), _SIZE).tolist())
        results[mode] = ids
    assert results["improved"][-1] == [1, 2]
    assert results["released"][-1] == [1, 3]


def test_improved_counts_empty_frames_as_time():
    """Improved mode predicts across frames without any detection (they are elapsed time)."""
    tracker = PoseFlowTracker(PoseFlowParams(mode="improved"))
    for t in range(4):
        tracker.update(*_frame(_moving(40, 15, t)), _SIZE)
    for _t in range(4, 10):
        tracker.update(*_frame(), _SIZE)
    assert tracker.update(*_frame(_moving(40, 15, 10)), _SIZE).tolist() == [1]


# ----------------------------------------------------------------------------------------------------------------
# API hygiene.
# ----------------------------------------------------------------------------------------------------------------


def test_params_validation():
    with pytest.raises(ValueError, match="mode"):
        PoseFlowParams(mode="fast")
    with pytest.raises(ValueError, match="link_len"):
        PoseFlowParams(link_len=0)
    with pytest.raises(TypeError, match="num"):
        PoseFlowParams(num=2.5)
    with pytest.raises(ValueError, match="weights"):
        PoseFlowParams(weights=(1, 2, 1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        PoseFlowParams().match = 0.5  # type: ignore[misc]
    assert PoseFlowParams(mag=30).mag == 30.0 and isinstance(PoseFlowParams().weights[0], float)


def test_update_input_errors():
    tracker = PoseFlowTracker()
    with pytest.raises(ValueError, match=r"\[N, K, 2\]"):
        tracker.update(np.zeros((2, 14)), np.zeros((2, 14)), np.zeros(2), _SIZE)
    with pytest.raises(ValueError, match="keypoint_scores"):
        tracker.update(np.zeros((2, 14, 2)), np.zeros((2, 13)), np.zeros(2), _SIZE)
    with pytest.raises(ValueError, match="image_size"):
        tracker.update(*_frame(A), (0, 10))
    tracker.update(*_frame(A), _SIZE)
    with pytest.raises(ValueError, match="K=17"):
        tracker.update(np.zeros((1, 17, 2)), np.ones((1, 17)), np.ones(1), _SIZE)
    with pytest.raises(ValueError, match="correspondences"):
        tracker.update(*_frame(A), _SIZE, correspondences=np.zeros((3, 2)))


def test_inputs_not_modified_and_track_video_matches_streaming():
    frames = [np.stack([A, B]) + t for t in range(3)]
    copies = [f.copy() for f in frames]
    out = track_video(frames, [np.ones((2, 14))] * 3, [np.ones(2)] * 3, _SIZE)
    assert [o.tolist() for o in out] == [[1, 2]] * 3
    for f, c in zip(frames, copies):
        np.testing.assert_array_equal(f, c)
    with pytest.raises(ValueError, match="one entry per frame"):
        track_video(frames, [np.ones((2, 14))] * 2, [np.ones(2)] * 3, _SIZE)


def test_docstring_examples_and_no_ray_import():
    assert doctest.testmod(poseflow).failed == 0
    import models.correspondences  # noqa: F401
    import models.tracking_metrics  # noqa: F401

    for name in ("models.poseflow", "models.correspondences", "models.tracking_metrics"):
        source = open(sys.modules[name].__file__).read()
        assert "import ray" not in source and "from ray" not in source
