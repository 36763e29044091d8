"""Whole-body keypoint sets (Halpe-136, COCO-WholeBody-133, Halpe-68, hand-21) against AlphaPose's numbers.

The expected values are written out here independently of ``models.keypoints`` (AlphaPose @c60106d:
``alphapose/datasets/{halpe_136,coco_wholebody,halpe_68_noface,single_hand}.py`` ``joint_pairs``,
``alphapose/utils/vis.py`` edges, ``halpecocotools`` 0.0.1 ``cocoeval.py`` sigmas; COCO-WholeBody
``evaluation/myeval_wholebody.py`` ``computeOks`` for the official sigmas).
"""

from __future__ import annotations

import numpy as np
import pytest

from models.keypoints import (
    COCO_17,
    COCO_WHOLEBODY133_EVAL_SIGMAS,
    COCO_WHOLEBODY133_OFFICIAL_SIGMAS,
    COCO_WHOLEBODY_133,
    COCO_WHOLEBODY_FACE_SIGMAS,
    COCO_WHOLEBODY_HAND_SIGMAS,
    CROWDPOSE_14,
    HALPE136_EVAL_SIGMAS,
    HALPE136_OKS_IOU_SIGMAS,
    HALPE_26,
    HALPE_68,
    HALPE_136,
    HAND_21,
    KeypointSet,
    conversion_indices,
    convert_keypoints,
    get_keypoint_set,
    integral_channels,
    keypoint_set_for_num_joints,
)

WHOLEBODY = (HALPE_136, COCO_WHOLEBODY_133, HALPE_68, HAND_21)
COCO_SIG = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087]
COCO_SIG += [0.089, 0.089]


def _edges(ks: KeypointSet) -> list[tuple[int, int]]:
    return [tuple(map(int, e)) for e in ks.skeleton]


def _pairs(ks: KeypointSet) -> set[frozenset]:
    return {frozenset(p) for p in ks.flip_pairs}


# ---------------------------------------------------------------------------------------------------------------
# Counts, registry, parts
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ks", "name", "k", "pairs", "edges"),
    [
        (HALPE_136, "halpe136", 136, 61, 124),
        (COCO_WHOLEBODY_133, "coco_wholebody133", 133, 61, 118),
        (HALPE_68, "halpe68", 68, 32, 64),
        (HAND_21, "hand21", 21, 0, 20),
    ],
)
def test_counts_and_registry(ks, name, k, pairs, edges):
    assert ks.name == name and ks.num_keypoints == k and len(ks.sigmas) == k
    assert len(ks.flip_pairs) == pairs and len(ks.skeleton) == edges
    assert get_keypoint_set(name) is ks
    assert keypoint_set_for_num_joints(k) is ks
    assert len(set(ks.names)) == k
    assert len(set(ks.skeleton)) == edges  # no edge twice


def test_flip_permutation_is_an_involution_and_pairs_each_index_once():
    for ks in WHOLEBODY:
        perm = ks.flip_permutation()
        assert np.array_equal(perm[perm], np.arange(ks.num_keypoints))
        flat = [i for p in ks.flip_pairs for i in p]
        assert len(flat) == len(set(flat))
    assert np.array_equal(HAND_21.flip_permutation(), np.arange(21))  # single_hand.py: joint_pairs = []


def test_unpaired_indices():
    def fixed(ks):
        perm = ks.flip_permutation()
        return [int(i) for i in np.nonzero(perm == np.arange(ks.num_keypoints))[0]]

    # spec: Halpe-136 unpaired 0, 17, 18, 19, 34, 53–56, 59, 77, 83, 88, 92
    assert fixed(HALPE_136) == [0, 17, 18, 19, 34, 53, 54, 55, 56, 59, 77, 83, 88, 92]
    # COCO-WholeBody: the same face points minus 3, no head/neck/hip
    assert fixed(COCO_WHOLEBODY_133) == [0, 31, 50, 51, 52, 53, 56, 74, 80, 85, 89]
    assert fixed(HALPE_68) == [0, 17, 18, 19]


def test_parts_and_integral_channels():
    assert HALPE_136.part_ranges() == {
        "body": range(0, 17),
        "head_neck_hip": range(17, 20),
        "feet": range(20, 26),
        "face": range(26, 94),
        "left_hand": range(94, 115),
        "right_hand": range(115, 136),
    }
    assert COCO_WHOLEBODY_133.part_ranges() == {
        "body": range(0, 17),
        "feet": range(17, 23),
        "face": range(23, 91),
        "left_hand": range(91, 112),
        "right_hand": range(112, 133),
    }
    assert HALPE_68.part("left_hand") == range(26, 47) and HALPE_68.part("right_hand") == range(47, 68)
    assert HAND_21.part("thumb") == range(1, 5) and HAND_21.part("pinky_finger") == range(17, 21)
    for ks in WHOLEBODY:  # parts partition the set, in order
        covered = [i for r in ks.part_ranges().values() for i in r]
        assert covered == list(range(ks.num_keypoints))
    with pytest.raises(KeyError, match="has no part 'tail'"):
        HALPE_136.part("tail")
    # writer.py: face_hand_num 110, 42 for K = 68; the integral channels are exactly face + hands / hands
    assert [integral_channels(n) for n in ("halpe136", "coco_wholebody133", "halpe68", "hand21")] == [110, 110, 42, 0]
    assert integral_channels("coco17") == 0 and integral_channels("halpe26") == 0
    assert HALPE_136.num_keypoints - HALPE_136.integral_channels == 26 == HALPE_136.part("face").start
    assert COCO_WHOLEBODY_133.num_keypoints - COCO_WHOLEBODY_133.integral_channels == 23
    assert HALPE_68.num_keypoints - HALPE_68.integral_channels == 26 == HALPE_68.part("left_hand").start


def test_keypointset_stays_backward_compatible_and_validates_new_fields():
    ks = KeypointSet(name="x", names=("a", "b"), flip_pairs=(), skeleton=((0, 1),), sigmas=(0.1, 0.1))
    assert ks.parts == () and ks.integral_channels == 0 and ks.sigmas_source == "official"
    assert COCO_17.parts == () and COCO_17.integral_channels == 0
    with pytest.raises(ValueError, match="bad part"):
        KeypointSet(name="x", names=("a", "b"), flip_pairs=(), skeleton=(), sigmas=(0.1, 0.1), parts=(("p", 1, 3),))
    with pytest.raises(ValueError, match="integral_channels"):
        KeypointSet(name="x", names=("a", "b"), flip_pairs=(), skeleton=(), sigmas=(0.1, 0.1), integral_channels=3)


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------

HAND = ["hand_root"] + [
    f"{f}{i}" for f in ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger") for i in (1, 2, 3, 4)
]


def test_names():
    assert HALPE_136.names[:26] == HALPE_26.names and HALPE_136.names[:17] == COCO_17.names
    assert HALPE_136.names[17:26] == (
        "head",
        "neck",
        "hip",
        "left_big_toe",
        "right_big_toe",
        "left_small_toe",
        "right_small_toe",
        "left_heel",
        "right_heel",
    )
    assert HALPE_136.names[26] == "face_0" and HALPE_136.names[93] == "face_67"
    assert list(HALPE_136.names[94:115]) == ["left_" + n for n in HAND]
    assert list(HALPE_136.names[115:]) == ["right_" + n for n in HAND]
    assert HALPE_136.names[98] == "left_thumb4" and HALPE_136.names[99] == "left_forefinger1"
    assert HALPE_136.names[135] == "right_pinky_finger4"

    assert COCO_WHOLEBODY_133.names[:17] == COCO_17.names
    assert COCO_WHOLEBODY_133.names[17:23] == (
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    )
    assert COCO_WHOLEBODY_133.names[23:91] == tuple(f"face_{i}" for i in range(68))
    assert COCO_WHOLEBODY_133.names[91] == "left_hand_root" and COCO_WHOLEBODY_133.names[112] == "right_hand_root"

    assert HALPE_68.names == HALPE_136.names[:26] + HALPE_136.names[94:]
    assert list(HAND_21.names) == HAND


# ---------------------------------------------------------------------------------------------------------------
# Flip pairs
# ---------------------------------------------------------------------------------------------------------------

# Halpe-136's pairs as the spec lists them (halpe_136.py L38–45).
HALPE136_PAIRS = (
    [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
    + [(20, 21), (22, 23), (24, 25)]
    + [(26, 42), (27, 41), (28, 40), (29, 39), (30, 38), (31, 37), (32, 36), (33, 35)]
    + [(43, 52), (44, 51), (45, 50), (46, 49), (47, 48)]
    + [(62, 71), (63, 70), (64, 69), (65, 68), (66, 73), (67, 72)]
    + [(57, 61), (58, 60)]
    + [(74, 80), (75, 79), (76, 78), (87, 89), (93, 91), (86, 90), (85, 81), (84, 82)]
    + [(94 + i, 115 + i) for i in range(21)]
)
# COCO-WholeBody's (coco_wholebody.py L38–46).
CWB_PAIRS = (
    [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
    + [(17, 20), (18, 21), (19, 22)]
    + [(23, 39), (24, 38), (25, 37), (26, 36), (27, 35), (28, 34), (29, 33), (30, 32)]
    + [(40, 49), (41, 48), (42, 47), (43, 46), (44, 45)]
    + [(59, 68), (60, 67), (61, 66), (62, 65), (63, 70), (64, 69)]
    + [(54, 58), (55, 57)]
    + [(71, 77), (72, 76), (73, 75), (84, 86), (90, 88), (83, 87), (82, 78), (81, 79)]
    + [(91 + i, 112 + i) for i in range(21)]
)


def test_flip_pairs_exactly():
    assert [tuple(p) for p in HALPE_136.flip_pairs] == HALPE136_PAIRS
    assert [tuple(p) for p in COCO_WHOLEBODY_133.flip_pairs] == CWB_PAIRS
    assert [tuple(p) for p in HALPE_68.flip_pairs] == HALPE136_PAIRS[:11] + [(26 + i, 47 + i) for i in range(21)]
    assert HAND_21.flip_pairs == ()


def test_flip_pair_spot_checks():
    h, c = _pairs(HALPE_136), _pairs(COCO_WHOLEBODY_133)
    for p in [(26, 42), (33, 35), (43, 52), (47, 48), (62, 71), (66, 73), (57, 61), (74, 80), (93, 91), (84, 82)]:
        assert frozenset(p) in h
    assert frozenset((94, 115)) in h and frozenset((114, 135)) in h and frozenset((104, 125)) in h
    assert frozenset((26, 27)) not in h and frozenset((94, 114)) not in h
    for p in [(17, 20), (19, 22), (23, 39), (30, 32), (40, 49), (63, 70), (54, 58), (90, 88), (81, 79)]:
        assert frozenset(p) in c
    assert frozenset((91, 112)) in c and frozenset((111, 132)) in c
    # the COCO-WholeBody face/hand pairs are Halpe's minus 3
    assert {frozenset((a - 3, b - 3)) for a, b in HALPE136_PAIRS[11:]} == {frozenset(p) for p in CWB_PAIRS[11:]}
    # flipping maps names left ↔ right for every side-named point
    for ks in WHOLEBODY:
        perm = ks.flip_permutation()
        for i, n in enumerate(ks.names):
            if n.startswith("left_"):
                assert ks.names[perm[i]] == "right_" + n[5:]
            elif n.startswith("right_"):
                assert ks.names[perm[i]] == "left_" + n[6:]


# ---------------------------------------------------------------------------------------------------------------
# Skeletons
# ---------------------------------------------------------------------------------------------------------------


def _chain(a, b):
    return [(i, i + 1) for i in range(a, b)]


def _hand(r):
    out = []
    for f in range(5):
        s = r + 1 + 4 * f
        out += [(r, s), (s, s + 1), (s + 1, s + 2), (s + 2, s + 3)]
    return out


HALPE26_DRAWN = [
    (0, 1), (0, 2), (1, 3), (2, 4),
    (5, 18), (6, 18), (5, 7), (7, 9), (6, 8), (8, 10), (17, 18), (18, 19), (19, 11), (19, 12),
    (11, 13), (12, 14), (13, 15), (14, 16),
    (20, 24), (21, 25), (23, 25), (22, 24), (15, 24), (16, 25),
]  # fmt: skip


def test_halpe136_skeleton_exactly():
    face = []
    for a, b in [(26, 42), (43, 47), (48, 52), (53, 56), (57, 61), (62, 67), (68, 73), (74, 93)]:
        face += _chain(a, b)
    assert len(face) == 60
    assert _edges(HALPE_136) == HALPE26_DRAWN + face + _hand(94) + _hand(115)
    e = _edges(HALPE_136)
    assert e[:4] == [(0, 1), (0, 2), (1, 3), (2, 4)] and e[23] == (16, 25) and e[24] == (26, 27)
    assert (85, 86) in e and (67, 68) not in e and (73, 74) not in e and (42, 43) not in e
    assert e[84:88] == [(94, 95), (95, 96), (96, 97), (97, 98)] and e[88] == (94, 99)
    assert e[-1] == (134, 135) and e[-4] == (115, 132)
    assert not any(0 in edge and ({17, 18} & set(edge)) for edge in e)  # the nose joins neither head nor neck


def test_coco_wholebody_skeleton_exactly():
    face = []
    for a, b in [(23, 39), (40, 44), (45, 49), (50, 53), (54, 58), (59, 64), (65, 70), (71, 90)]:
        face += _chain(a, b)
    body = [(0, 1), (0, 2), (1, 3), (2, 4), (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (12, 14), (13, 15), (14, 16)]
    feet = [(18, 19), (21, 22), (20, 22), (17, 19), (15, 19), (16, 22)]
    assert _edges(COCO_WHOLEBODY_133) == body + feet + face + _hand(91) + _hand(112)
    e = set(_edges(COCO_WHOLEBODY_133))
    assert not e & {(5, 6), (6, 5), (11, 12), (12, 11), (5, 11), (6, 12)}  # no torso edge
    assert (82, 83) in e and (90, 91) not in e


def test_halpe68_and_hand21_skeletons():
    assert _edges(HALPE_68) == HALPE26_DRAWN + _hand(26) + _hand(47)
    assert _edges(HALPE_68)[24:29] == [(26, 27), (27, 28), (28, 29), (29, 30), (26, 31)]
    assert _edges(HAND_21) == [
        (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
        (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Sigmas
# ---------------------------------------------------------------------------------------------------------------

CWB_FACE = [
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043,
    0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
    0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011,
    0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,
]  # fmt: skip
CWB_HAND = [0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017]
CWB_HAND += [0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031]


def test_halpe136_sigmas():
    assert HALPE_136.sigmas == HALPE136_EVAL_SIGMAS
    assert HALPE_136.sigmas_array() == pytest.approx(COCO_SIG + [0.08] * 3 + [0.089] * 6 + [0.015] * 110)
    assert HALPE136_OKS_IOU_SIGMAS == pytest.approx(COCO_SIG + [0.08] * 3 + [0.089] * 6 + [0.025] * 110)
    assert HALPE_136.sigmas[26] == pytest.approx(0.015) and HALPE_136.sigmas[135] == pytest.approx(0.015)
    assert "halpecocotools" in HALPE_136.sigmas_source


def test_coco_wholebody_sigmas():
    assert COCO_WHOLEBODY_133.sigmas == COCO_WHOLEBODY133_EVAL_SIGMAS
    assert COCO_WHOLEBODY_133.sigmas_array() == pytest.approx(COCO_SIG + [0.089] * 6 + [0.015] * 110)
    assert "halpecocotools" in COCO_WHOLEBODY_133.sigmas_source
    official = COCO_SIG + [0.068, 0.066, 0.066, 0.092, 0.094, 0.094] + CWB_FACE + CWB_HAND + CWB_HAND
    assert len(COCO_WHOLEBODY133_OFFICIAL_SIGMAS) == 133
    assert COCO_WHOLEBODY133_OFFICIAL_SIGMAS == pytest.approx(official)
    assert COCO_WHOLEBODY_FACE_SIGMAS == pytest.approx(CWB_FACE) and COCO_WHOLEBODY_HAND_SIGMAS == pytest.approx(
        CWB_HAND
    )
    # spec: face values within 0.007–0.045, contour 0.020–0.045, the one outlier 0.034 at face point 47 = index 70
    face = np.asarray(COCO_WHOLEBODY133_OFFICIAL_SIGMAS[23:91])
    assert face.min() == pytest.approx(0.007) and face.max() == pytest.approx(0.045)
    assert face[:17].min() == pytest.approx(0.020)
    assert COCO_WHOLEBODY133_OFFICIAL_SIGMAS[70] == pytest.approx(0.034) and face[17:].max() == pytest.approx(0.034)
    assert COCO_WHOLEBODY133_OFFICIAL_SIGMAS[91] == pytest.approx(0.029)
    assert COCO_WHOLEBODY133_OFFICIAL_SIGMAS[95] == pytest.approx(0.047)
    assert COCO_WHOLEBODY133_OFFICIAL_SIGMAS[132] == pytest.approx(0.031)


def test_halpe68_and_hand21_sigmas():
    assert HALPE_68.sigmas_array() == pytest.approx(COCO_SIG + [0.08] * 3 + [0.089] * 6 + [0.015] * 42)
    assert HALPE_68.sigmas == HALPE_136.sigmas[:26] + HALPE_136.sigmas[94:]
    assert HAND_21.sigmas_array() == pytest.approx(CWB_HAND)
    assert "Halpe-136" in HALPE_68.sigmas_source and "COCO-WholeBody" in HAND_21.sigmas_source


# ---------------------------------------------------------------------------------------------------------------
# Conversions by name
# ---------------------------------------------------------------------------------------------------------------


def _marked(k):
    """[k, 3]: x = index, so a converted array tells which source index each target point came from."""
    return np.stack([np.arange(k, dtype=float), np.zeros(k), np.ones(k)], axis=1)


def test_halpe136_to_coco_wholebody():
    idx = conversion_indices("halpe136", "coco_wholebody133")
    # body 0–16 the same; CWB feet L-big, L-small, L-heel, R-big, R-small, R-heel ← Halpe 20, 22, 24, 21, 23, 25
    assert idx[:17].tolist() == list(range(17))
    assert idx[17:23].tolist() == [20, 22, 24, 21, 23, 25]
    assert idx[23:].tolist() == list(range(26, 136))  # face and both hands: Halpe = CWB + 3
    assert idx[91] == 94 and idx[19] == 24 and idx[112] == 115 and idx[132] == 135
    out = convert_keypoints(_marked(136), "halpe136", "coco_wholebody133")
    assert out.shape == (133, 3)
    assert out[COCO_WHOLEBODY_133.index("left_hand_root"), 0] == 94
    assert out[COCO_WHOLEBODY_133.index("left_heel"), 0] == 24  # CWB 19 ← Halpe LHeel 24


def test_to_halpe26_coco17_crowdpose():
    assert conversion_indices("halpe136", "halpe26").tolist() == list(range(26))
    assert conversion_indices("halpe136", "coco17").tolist() == list(range(17))
    assert conversion_indices("coco_wholebody133", "coco17").tolist() == list(range(17))
    assert conversion_indices("halpe68", "halpe26").tolist() == list(range(26))
    assert conversion_indices("halpe68", "coco17").tolist() == list(range(17))
    assert np.array_equal(conversion_indices("halpe136", "crowdpose14"), conversion_indices("halpe26", "crowdpose14"))
    cp = convert_keypoints(_marked(68), "halpe68", "crowdpose14")
    assert cp[CROWDPOSE_14.index("head"), 0] == 17 and cp[CROWDPOSE_14.index("neck"), 0] == 18
    scores = np.random.default_rng(0).random((4, 133))
    assert np.array_equal(convert_keypoints(scores, "coco_wholebody133", "coco17"), scores[:, :17])


def test_halpe136_to_halpe68():
    idx = conversion_indices("halpe136", "halpe68")
    assert idx.tolist() == list(range(26)) + list(range(94, 136))
    assert idx[26] == 94 and idx[47] == 115 and idx[67] == 135
    x = np.random.default_rng(1).random((3, 136, 2))
    assert np.array_equal(convert_keypoints(x, "halpe136", "halpe68"), np.concatenate([x[:, :26], x[:, 94:]], 1))


def test_no_conversion_invents_points():
    for src, dst in [
        ("coco_wholebody133", "halpe136"),  # no head, neck, hip
        ("coco_wholebody133", "halpe26"),
        ("halpe68", "halpe136"),  # no face
        ("coco17", "halpe136"),
    ]:
        with pytest.raises(ValueError, match="no well-defined conversion"):
            conversion_indices(src, dst)
