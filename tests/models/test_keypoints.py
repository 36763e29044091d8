"""Keypoint sets against the real annotation files' own definitions, flip structure, and conversions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.keypoints import (
    COCO_17,
    CROWDPOSE_14,
    HALPE_26,
    KEYPOINT_SETS,
    MPII_16,
    POSETRACK_18,
    convert_keypoints,
    get_keypoint_set,
    keypoint_set_for_num_joints,
)


def _category(path):
    with open(path) as f:
        return json.load(f)["categories"][0]


def test_names_and_skeleton_match_the_datasets(shared_data, coco_gt):
    cat = coco_gt["categories"][0]
    assert COCO_17.names == tuple(cat["keypoints"])
    assert {tuple(sorted((a - 1, b - 1))) for a, b in cat["skeleton"]} == {tuple(sorted(e)) for e in COCO_17.skeleton}
    assert CROWDPOSE_14.names == tuple(_category(shared_data / "crowdpose" / "test_crowdpose.json")["keypoints"])
    pt = _category(shared_data / "posetrack18" / "annotations" / "test_posetrack18_val.json")
    assert POSETRACK_18.names == tuple(pt["keypoints"])


@pytest.mark.parametrize("ks", list(KEYPOINT_SETS.values()), ids=list(KEYPOINT_SETS))
def test_flip_pairs_mirror_left_and_right(ks):
    perm = ks.flip_permutation()
    assert np.array_equal(perm[perm], np.arange(ks.num_keypoints))  # an involution
    for i, name in enumerate(ks.names):
        j = perm[i]
        if name.startswith("left_"):
            assert ks.names[j] == "right_" + name[5:]
        elif name.startswith("right_"):
            assert ks.names[j] == "left_" + name[6:]
        elif not name.startswith("face_"):  # face points are numbered (iBUG-300W), their pairs are left/right
            assert j == i
    # the skeleton is mirror-closed: flipping an edge gives an edge. Not for the whole-body sets: AlphaPose draws
    # their eyes and lips as open chains (vis.py), whose mirror images are other chords.
    if ks.name not in ("halpe136", "coco_wholebody133"):
        edges = {frozenset(e) for e in ks.skeleton}
        assert {frozenset((perm[a], perm[b])) for a, b in ks.skeleton} == edges
    assert len(ks.sigmas) == ks.num_keypoints and all(0 < s < 0.2 for s in ks.sigmas)


def test_sigmas_and_halpe_extends_coco():
    assert COCO_17.sigmas[0] == pytest.approx(0.026) and COCO_17.sigmas[11] == pytest.approx(0.107)
    assert HALPE_26.names[:17] == COCO_17.names and HALPE_26.sigmas[:17] == COCO_17.sigmas
    assert HALPE_26.sigmas[17:] == pytest.approx([0.08] * 3 + [0.089] * 6)
    assert CROWDPOSE_14.sigmas == pytest.approx(
        [0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079]
    )


def test_conversions():
    mpii = np.arange(16 * 3, dtype=float).reshape(16, 3)
    cp = convert_keypoints(mpii, "mpii16", "crowdpose14")
    # rmpe_part_ids order [0,1,2,3,4,5,10,11,12,13,14,15,8,9] in MPII terms, reordered to CrowdPose's names
    assert cp.shape == (14, 3)
    assert cp[CROWDPOSE_14.index("head"), 0] == mpii[MPII_16.index("head_top"), 0]
    assert cp[CROWDPOSE_14.index("neck"), 0] == mpii[MPII_16.index("upper_neck"), 0]
    assert cp[CROWDPOSE_14.index("left_wrist"), 0] == mpii[MPII_16.index("left_wrist"), 0]
    h = np.random.rand(5, 26, 2)
    assert np.array_equal(convert_keypoints(h, "halpe26", "coco17"), h[:, :17])
    scores = np.random.rand(5, 26)
    assert np.array_equal(convert_keypoints(scores, "halpe26", "coco17"), scores[:, :17])
    pt = convert_keypoints(np.arange(17.0)[:, None].repeat(2, 1), "posetrack18", "crowdpose14")
    assert pt[12, 0] == 2 and pt[13, 0] == 1  # head_top → head, head_bottom → neck
    with pytest.raises(ValueError, match="no well-defined conversion coco17 → crowdpose14"):
        convert_keypoints(np.zeros((17, 2)), "coco17", "crowdpose14")
    with pytest.raises(ValueError, match="no axis of 16"):
        convert_keypoints(np.zeros((17, 2)), "mpii16", "crowdpose14")


def test_lookup_errors_list_choices():
    with pytest.raises(ValueError, match="coco17, halpe26"):
        get_keypoint_set("coco")
    assert keypoint_set_for_num_joints(26) is HALPE_26
    with pytest.raises(ValueError, match="no default keypoint set has 99"):
        keypoint_set_for_num_joints(99)
    with pytest.raises(KeyError, match="has no keypoint 'tail'"):
        COCO_17.index("tail")
