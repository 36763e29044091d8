"""CLEAR-MOT and IDF1 (``models/tracking_metrics.py``) on sequences whose counts are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.tracking_metrics import (
    box_iou_matrix,
    clear_mot,
    evaluate_tracking,
    identity_metrics,
    keypoint_boxes,
    oks_matrix,
    pck_matrix,
)

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [100.0, 0.0, 110.0, 10.0]
FAR = [500.0, 500.0, 510.0, 510.0]


def _boxes(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def test_box_iou_values():
    iou = box_iou_matrix(_boxes(BOX_A), _boxes([5, 5, 15, 15], BOX_A, BOX_B))
    np.testing.assert_allclose(iou, [[25 / 175, 1.0, 0.0]])
    assert box_iou_matrix(_boxes(), _boxes(BOX_A)).shape == (0, 1)


def test_toy_sequence_switch_fp_fn_by_hand():
    """Two GT people (1: box A, 2: box B) over 4 frames.

    frame 0: predictions 10@A, 20@B            → 2 matches
    frame 1: predictions 10@A, 30@B            → 2 matches, GT 2 was last matched to 20: 1 ID switch
    frame 2: predictions 10@A, 30@B, 40@far    → 2 matches, 1 FP
    frame 3: prediction  10@A                  → 1 match, 1 FN
    CLEAR-MOT: num_gt 8, matches 7, FP 1, FN 1, IDSW 1, MOTA = 1 − 3/8 = 0.625, MOTP = 1 (identical boxes).
    IDF1: overlaps (1,10) = 4, (2,20) = 1, (2,30) = 2; best pairing 1↔10, 2↔30 → IDTP 6; GT detections 8,
    predicted detections 8 → IDFN 2, IDFP 2, IDF1 = 12 / 16 = 0.75, IDP = IDR = 0.75.
    """
    gt_ids = [[1, 2]] * 4
    gt_pos = [_boxes(BOX_A, BOX_B)] * 4
    pred_ids = [[10, 20], [10, 30], [10, 30, 40], [10]]
    pred_pos = [_boxes(BOX_A, BOX_B), _boxes(BOX_A, BOX_B), _boxes(BOX_A, BOX_B, FAR), _boxes(BOX_A)]
    m = evaluate_tracking(gt_ids, gt_pos, pred_ids, pred_pos, similarity="box_iou", threshold=0.5)
    c = m.clear_mot
    assert (c.num_gt, c.num_predictions, c.matches, c.false_positives, c.false_negatives, c.id_switches) == (
        8,
        8,
        7,
        1,
        1,
        1,
    )
    assert c.mota == pytest.approx(0.625) and c.motp == pytest.approx(1.0)
    i = m.identity
    assert (i.idtp, i.idfp, i.idfn) == (6, 2, 2)
    assert i.idf1 == pytest.approx(0.75) and i.idp == pytest.approx(0.75) and i.idr == pytest.approx(0.75)


def test_last_match_is_kept_and_switch_counts_across_gaps():
    """A GT object keeps its previous prediction while it is still similar enough, even if another prediction is
    closer (no switch); a change of prediction after frames without a match still counts as a switch."""
    near = [1.0, 1.0, 11.0, 11.0]  # IoU with A = 81/119 ≈ 0.68
    sims = [
        box_iou_matrix(_boxes(BOX_A), _boxes(near)),
        box_iou_matrix(_boxes(BOX_A), _boxes(near, BOX_A)),  # 20 is the better box, 10 is kept
        np.zeros((1, 0)),  # GT unmatched (FN)
        box_iou_matrix(_boxes(BOX_A), _boxes(BOX_A)),
    ]  # matched to 20 after the gap: a switch
    c = clear_mot([[1]] * 4, [[10], [10, 20], [], [20]], sims, 0.5)
    assert (c.matches, c.false_positives, c.false_negatives, c.id_switches) == (3, 1, 1, 1)
    assert c.motp == pytest.approx((81 / 119 + 81 / 119 + 1.0) / 3)


def test_perfect_and_empty_sequences():
    ids = [[1, 2], [1, 2], [], [2]]
    pos = [_boxes(BOX_A, BOX_B), _boxes(BOX_A, BOX_B), _boxes(), _boxes(BOX_B)]
    m = evaluate_tracking(ids, pos, [[7, 9], [7, 9], [], [9]], pos)
    assert m.clear_mot.mota == 1.0 and m.clear_mot.id_switches == 0 and m.identity.idf1 == 1.0
    empty = evaluate_tracking([[]], [_boxes()], [[]], [_boxes()])
    assert math.isnan(empty.clear_mot.mota) and math.isnan(empty.identity.idf1)


def test_mota_can_be_negative():
    c = clear_mot([[1]], [[5, 6, 7]], [np.zeros((1, 3))], 0.5)
    assert (c.false_positives, c.false_negatives) == (3, 1) and c.mota == -3.0


def test_identity_assignment_is_global():
    """GT 1 is similar to prediction 5 in frames 0, 2, 3 and to 6 in frame 1; GT 2 to 6 in frame 0 and to 5 in
    frame 1. Overlaps (1,5) = 3, (1,6) = 1, (2,6) = 1, (2,5) = 1: the best one-to-one pairing 1↔5, 2↔6 gives
    IDTP 4 of 6 GT and 6 predicted detections → IDFN 2, IDFP 2, IDF1 8/12. Without the swap in frame 1 every
    detection is an identity true positive."""
    gt_ids = [[1, 2], [1, 2], [1], [1]]
    pred_ids = [[5, 6], [5, 6], [5], [5]]
    same, swapped, one = np.eye(2), np.eye(2)[::-1], np.ones((1, 1))
    r = identity_metrics(gt_ids, pred_ids, [same, swapped, one, one], 0.5)
    assert (r.idtp, r.idfp, r.idfn) == (4, 2, 2) and r.idf1 == pytest.approx(8 / 12)
    r = identity_metrics(gt_ids, pred_ids, [same, same, one, one], 0.5)
    assert (r.idtp, r.idfp, r.idfn) == (6, 0, 0) and r.idf1 == 1.0
    # CLEAR-MOT on the swapped sequence: GT 1 goes 5 → 6 → 5 and GT 2 goes 6 → 5: three switches.
    assert clear_mot(gt_ids, pred_ids, [same, swapped, one, one], 0.5).id_switches == 3


def test_keypoint_similarities():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    vis = np.array([[True, True, False]])
    pred = np.stack([gt[0], gt[0] + [3.0, 4.0]])  # exact, and every keypoint 5 px off
    oks = oks_matrix(gt, vis, np.array([100.0]), pred, sigmas=0.1)
    np.testing.assert_allclose(oks, [[1.0, math.exp(-25 / (2 * 100 * 0.2**2))]])
    pck = pck_matrix(gt, vis, np.array([8.0]), pred, alpha=0.5)  # radius 4 px: the 5 px errors miss
    np.testing.assert_allclose(pck, [[1.0, 0.0]])
    boxes = keypoint_boxes(gt, vis)
    np.testing.assert_allclose(boxes, [[0, 0, 10, 0]])


def test_keypoint_options_in_evaluate_tracking():
    rng = np.random.default_rng(0)
    kp = [rng.uniform(0, 100, (3, 14, 2)) for _ in range(3)]
    ids = [[1, 2, 3]] * 3
    m = evaluate_tracking(ids, kp, [[4, 5, 6]] * 3, kp, similarity="oks", threshold=0.5)
    assert m.identity.idf1 == 1.0
    m = evaluate_tracking(
        ids, kp, [[4, 5, 6], [5, 4, 6], [5, 4, 6]], kp, similarity="pck", gt_scale=[np.full(3, 10.0)] * 3, threshold=0.5
    )
    assert m.clear_mot.id_switches == 2 and m.clear_mot.mota == pytest.approx(1 - 2 / 9)
    with pytest.raises(ValueError, match="gt_scale"):
        evaluate_tracking(ids, kp, ids, kp, similarity="pck")
    with pytest.raises(ValueError, match="similarity"):
        evaluate_tracking(ids, kp, ids, kp, similarity="iou")
    with pytest.raises(ValueError, match="unique"):
        clear_mot([[1, 1]], [[2]], [np.ones((2, 1))])
