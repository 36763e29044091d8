"""JC-SPPE targets in training: interference joints of a sample (crop pixels, mirrored types) and the targets."""

from __future__ import annotations

import numpy as np

from models.keypoints import get_keypoint_set
from models.proposals import crop_interference
from models.train import prepare_batch, render_targets

FLIP = get_keypoint_set("coco17").flip_pairs


def test_interference_joints_are_mapped_into_the_crop_and_cut_to_it():
    m = np.array([[0.5, 0.0, -10.0], [0.0, 0.5, -20.0]])  # image → crop: scale ½, shift
    kp = np.zeros((2, 17, 2))
    kp[0, 5], kp[0, 6] = (40, 60), (1000, 60)  # the second lands outside the 192-wide crop
    kp[1, 9] = (100, 200)
    vis = np.zeros((2, 17), bool)
    vis[0, [5, 6]] = True
    vis[1, 9] = True
    xy, types = crop_interference(m, False, kp, vis, FLIP, (256, 192))
    np.testing.assert_allclose(xy, [[10, 10], [40, 80]])
    assert types.tolist() == [5, 9]


def test_a_flipped_sample_swaps_interference_types_like_the_target():
    m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    kp = np.full((1, 17, 2), 50.0)
    vis = np.zeros((1, 17), bool)
    vis[0, [5, 0]] = True  # left shoulder, nose
    _, types = crop_interference(m, True, kp, vis, FLIP, (256, 192))
    assert types.tolist() == [0, 6]  # nose stays, left shoulder becomes the right shoulder's channel


def test_jc_targets_put_half_peaks_on_labelled_channels_only():
    crops = np.zeros((1, 256, 192, 3), np.uint8)
    kps = np.full((1, 17, 2), np.nan, np.float32)
    weight = np.zeros((1, 17), np.float32)
    kps[0, 5], weight[0, 5] = (96, 128), 1  # target left shoulder at heatmap (24, 32)
    inter_xy = [np.array([[40.0, 40.0], [100.0, 200.0]], np.float32)]  # heatmap (10, 10) and (25, 50)
    inter_types = [np.array([5, 9], np.int16)]  # channel 9 has no labelled target: no peak there
    plain = prepare_batch(crops, kps, weight)
    jc = prepare_batch(crops, kps, weight, interference=(inter_xy, inter_types))
    t = jc["targets"][0]
    assert t[5, 32, 24] == 1.0 and t[5, 10, 10] == np.float32(0.5)
    assert t[9].max() == 0.0
    np.testing.assert_array_equal(jc["target_weight"], plain["target_weight"])
    same = t.copy()
    same[5, 4:17, 4:17] = 0
    ref = plain["targets"][0].copy()
    ref[5, 4:17, 4:17] = 0
    np.testing.assert_array_equal(same, ref)  # elsewhere exactly the plain targets
    empty = prepare_batch(crops, kps, weight, interference=([np.zeros((0, 2))], [np.zeros(0, int)]))
    np.testing.assert_array_equal(empty["targets"], render_targets(kps, weight, (256, 192))[0])
