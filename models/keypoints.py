"""Keypoint-set definitions: names, flip pairs, skeleton edges and OKS sigmas, plus the well-defined conversions.

Every stage that touches keypoints (flip test, pose NMS, evaluation, exporters, the renderer) reads its
per-set facts from here, so that a keypoint set is one value (`KeypointSet`) and never a bare ``K``.

Sources: COCO-17 names, skeleton and sigmas are the COCO keypoint challenge's (the skeleton is
``test_coco.json``'s, made 0-based); Halpe-26 extends COCO-17 with head, neck, hip and six foot points, its flip
pairs as AlphaPose's ``alphapose/datasets/halpe_26.py`` (``joint_pairs``) and its sigmas as AlphaPose's
``oks_iou`` uses them for 78-long vectors (COCO's 17, then .8, .8, .8 and six .89, all /10); CrowdPose-14 sigmas as
CrowdPose's evaluator (``crowdposetools/cocoeval.py``); MPII-16 order and the MPII → CrowdPose-14 remap as
AlphaPose's ``trackers/PoseFlow/tracker-baseline.py`` (``rmpe_part_ids``). PoseTrack 2018 uses COCO's layout with
``head_bottom``/``head_top`` in the eye slots and no ear labels in practice.

The whole-body sets (Halpe-136, COCO-WholeBody-133, Halpe-68 without face, single hand-21) are AlphaPose's (commit
c60106d; file and line numbers below refer to that tree): names from the Halpe-FullBody ``README.md`` ("Keypoints
format") and COCO-WholeBody's ``data_format.md`` (field order ``keypoints``, ``foot_kpts``, ``face_kpts``,
``lefthand_kpts``, ``righthand_kpts``; per-point names as MMPose's ``configs/_base_/datasets/coco_wholebody.py``),
flip pairs from AlphaPose's ``alphapose/datasets/*.py`` ``joint_pairs``, skeletons from ``alphapose/utils/vis.py``
and OKS sigmas from the evaluator AlphaPose reports whole-body AP with (``halpecocotools`` 0.0.1
``cocoeval.py``); see the comments at each definition.

MPII and PoseTrack have no official OKS sigmas; the values here follow the usual choice of reusing COCO's
per-part sigmas (head points take the ear/eye values, neck/thorax/pelvis the shoulder/hip values) and are
marked so by ``KeypointSet.sigmas_source``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "KeypointSet",
    "COCO_17",
    "HALPE_26",
    "CROWDPOSE_14",
    "MPII_16",
    "POSETRACK_18",
    "HALPE_136",
    "COCO_WHOLEBODY_133",
    "HALPE_68",
    "HAND_21",
    "HALPE136_EVAL_SIGMAS",
    "HALPE136_OKS_IOU_SIGMAS",
    "COCO_WHOLEBODY133_EVAL_SIGMAS",
    "COCO_WHOLEBODY133_OFFICIAL_SIGMAS",
    "COCO_WHOLEBODY_FACE_SIGMAS",
    "COCO_WHOLEBODY_HAND_SIGMAS",
    "KEYPOINT_SETS",
    "integral_channels",
    "get_keypoint_set",
    "keypoint_set_for_num_joints",
    "convert_keypoints",
    "conversion_indices",
]


@dataclass(frozen=True)
class KeypointSet:
    """One keypoint convention.

    Attributes:
        name: short identifier, the value of the Parquet column ``keypoint_set``.
        names: keypoint names in channel order (len K).
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        skeleton: 0-based (i, j) index pairs for drawing limbs.
        sigmas: per-keypoint OKS sigma (already divided by 10, as pycocotools uses them).
        sigmas_source: where the sigmas come from ("official" or a note on how they were chosen).
        parts: named index ranges ``(part, start, stop)`` (half-open, ``start <= k < stop``) of the body regions,
            e.g. ``("face", 26, 94)`` for Halpe-136; empty for sets that are one region.
        integral_channels: the number of trailing channels that AlphaPose's "Combined" loss decodes with the
            integral (soft-argmax) decoder, the leading ``K - integral_channels`` going to the heatmap argmax
            decoder (AlphaPose ``alphapose/utils/writer.py`` L115–137, ``face_hand_num``); 0 for sets that AlphaPose
            has no "Combined" model for.
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    sigmas_source: str = "official"
    parts: tuple[tuple[str, int, int], ...] = ()
    integral_channels: int = 0

    def __post_init__(self) -> None:
        k = len(self.names)
        if len(set(self.names)) != k:
            raise ValueError(f"{self.name}: keypoint names are not unique")
        if len(self.sigmas) != k:
            raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
        seen: set[int] = set()
        for a, b in self.flip_pairs:
            if not (0 <= a < k and 0 <= b < k) or a == b or a in seen or b in seen:
                raise ValueError(f"{self.name}: bad flip pair ({a}, {b})")
            seen.update((a, b))
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise ValueError(f"{self.name}: bad skeleton edge ({a}, {b})")
        part_names = [p for p, _, _ in self.parts]
        if len(set(part_names)) != len(part_names):
            raise ValueError(f"{self.name}: part names are not unique")
        for p, start, stop in self.parts:
            if not 0 <= start < stop <= k:
                raise ValueError(f"{self.name}: bad part {p!r} [{start}, {stop})")
        if not 0 <= self.integral_channels <= k:
            raise ValueError(f"{self.name}: integral_channels {self.integral_channels} not in [0, {k}]")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def flip_permutation(self) -> np.ndarray:
        """int64[K]: index map such that ``flipped[..., k, :] = original[..., perm[k], :]`` after a mirror."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def sigmas_array(self) -> np.ndarray:
        """float64[K] of OKS sigmas."""
        return np.asarray(self.sigmas, dtype=np.float64)

    def part(self, part: str) -> range:
        """The indices of one part (``parts``), e.g. ``HALPE_136.part("left_hand") == range(94, 115)``."""
        for p, start, stop in self.parts:
            if p == part:
                return range(start, stop)
        raise KeyError(f"{self.name} has no part {part!r}; it has {', '.join(p for p, _, _ in self.parts) or 'none'}")

    def part_ranges(self) -> dict[str, range]:
        """All parts, name → index range, in ``parts`` order."""
        return {p: range(start, stop) for p, start, stop in self.parts}

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.name} has no keypoint {name!r}; it has {', '.join(self.names)}") from None


_COCO_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
_COCO_FLIP = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
_COCO_SKELETON = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)
_COCO_SIGMAS = tuple(
    s / 10.0
    for s in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)

COCO_17 = KeypointSet(
    name="coco17", names=_COCO_NAMES, flip_pairs=_COCO_FLIP, skeleton=_COCO_SKELETON, sigmas=_COCO_SIGMAS
)

HALPE_26 = KeypointSet(
    name="halpe26",
    names=_COCO_NAMES
    + (
        "head",
        "neck",
        "hip",
        "left_big_toe",
        "right_big_toe",
        "left_small_toe",
        "right_small_toe",
        "left_heel",
        "right_heel",
    ),
    flip_pairs=_COCO_FLIP + ((20, 21), (22, 23), (24, 25)),
    skeleton=(
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (17, 18),
        (18, 0),
        (18, 5),
        (18, 6),
        (5, 7),
        (7, 9),
        (6, 8),
        (8, 10),
        (18, 19),
        (19, 11),
        (19, 12),
        (11, 13),
        (13, 15),
        (12, 14),
        (14, 16),
        (15, 20),
        (15, 22),
        (15, 24),
        (16, 21),
        (16, 23),
        (16, 25),
    ),
    sigmas=_COCO_SIGMAS + tuple(s / 10.0 for s in (0.8, 0.8, 0.8, 0.89, 0.89, 0.89, 0.89, 0.89, 0.89)),
    sigmas_source="AlphaPose oks_iou (78-long vectors)",
)

CROWDPOSE_14 = KeypointSet(
    name="crowdpose14",
    names=(
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "head",
        "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (12, 13),
        (13, 0),
        (13, 1),
        (0, 2),
        (2, 4),
        (1, 3),
        (3, 5),
        (0, 6),
        (1, 7),
        (6, 7),
        (6, 8),
        (8, 10),
        (7, 9),
        (9, 11),
    ),
    sigmas=tuple(
        s / 10.0 for s in (0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79)
    ),
)

MPII_16 = KeypointSet(
    name="mpii16",
    names=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ),
    sigmas=tuple(
        s / 10.0
        for s in (0.89, 0.87, 1.07, 1.07, 0.87, 0.89, 1.07, 0.79, 0.79, 0.35, 0.62, 0.72, 0.79, 0.79, 0.72, 0.62)
    ),
    sigmas_source="COCO per-part sigmas reused (MPII has no official OKS sigmas)",
)

POSETRACK_18 = KeypointSet(
    name="posetrack18",
    names=("nose", "head_bottom", "head_top") + _COCO_NAMES[3:],
    flip_pairs=((3, 4),) + _COCO_FLIP[2:],
    skeleton=((0, 1), (1, 2), (1, 5), (1, 6)) + _COCO_SKELETON[:12],
    sigmas=tuple(s / 10.0 for s in (0.26, 0.79, 0.35)) + _COCO_SIGMAS[3:],
    sigmas_source="COCO per-part sigmas reused (head_bottom takes the shoulder, head_top the ear value)",
)

# ---------------------------------------------------------------------------------------------------------------
# Whole-body sets (AlphaPose @c60106d): Halpe-136, COCO-WholeBody-133, Halpe-68 (no face), single hand-21
# ---------------------------------------------------------------------------------------------------------------

# 68 face points in the iBUG-300W layout that both Halpe and COCO-WholeBody use: contour 0–16 (8 = chin), brows
# 17–21 and 22–26, nose bridge 27–30, lower nose 31–35, eyes 36–41 and 42–47, outer lip 48–59, inner lip 60–67.
# Neither AlphaPose nor Halpe names them; MMPose's coco_wholebody.py calls them face-0 … face-67.
_FACE_NAMES = tuple(f"face_{i}" for i in range(68))

# A 21-point hand: wrist ("hand_root"), then four points per finger from the palm outwards, in COCO-WholeBody's
# finger order thumb, index, middle, ring, little (MMPose coco_wholebody.py, ids 91–132). Halpe's README shows the
# same 21-point hand as a picture only.
_HAND_NAMES = ("hand_root",) + tuple(
    f"{finger}{i}"
    for finger in ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
    for i in (1, 2, 3, 4)
)


def _sided(side: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{side}_{n}" for n in names)


def _chains(*spans: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Edges (i, i+1) along each inclusive span (a, b), a < b, span after span."""
    return tuple((i, i + 1) for a, b in spans for i in range(a, b))


def _hand_skeleton(root: int) -> tuple[tuple[int, int], ...]:
    """AlphaPose's 20 hand edges for a hand whose wrist is ``root``: wrist→1→2→3→4, wrist→5→…→8, …, wrist→17→…→20."""
    edges: list[tuple[int, int]] = []
    for finger in range(5):
        base = root + 1 + 4 * finger
        edges.append((root, base))
        edges.extend(_chains((base, base + 3)))
    return tuple(edges)


def _hand_pairs(left_root: int, right_root: int) -> tuple[tuple[int, int], ...]:
    return tuple((left_root + i, right_root + i) for i in range(21))


# Halpe-136 (names: Halpe-FullBody README.md "Keypoints format"; 0–16 are COCO-17 in COCO order, AlphaPose
# docs/output.md L69–86; 17 Head, 18 Neck, 19 Hip, 20–25 LBigToe, RBigToe, LSmallToe, RSmallToe, LHeel, RHeel, i.e.
# exactly Halpe-26's points, then 68 face points 26–93, left hand 94–114, right hand 115–135).
_HALPE136_NAMES = HALPE_26.names + _FACE_NAMES + _sided("left", _HAND_NAMES) + _sided("right", _HAND_NAMES)

# alphapose/datasets/halpe_136.py L38–45 (identical in halpe_coco_wholebody_136.py L39–46). The face pairs leave
# 34 (chin), 53–56 (nose bridge), 59 (middle of the lower nose), 77, 83 (outer lip middle) and 88, 92 (inner lip middle)
# unpaired.
_HALPE136_FLIP = (
    _COCO_FLIP
    + ((20, 21), (22, 23), (24, 25))  # feet
    + ((26, 42), (27, 41), (28, 40), (29, 39), (30, 38), (31, 37), (32, 36), (33, 35))  # face contour
    + ((43, 52), (44, 51), (45, 50), (46, 49), (47, 48))  # brows
    + ((62, 71), (63, 70), (64, 69), (65, 68), (66, 73), (67, 72))  # eyes
    + ((57, 61), (58, 60))  # lower nose
    + ((74, 80), (75, 79), (76, 78), (87, 89), (93, 91), (86, 90), (85, 81), (84, 82))  # mouth
    + _hand_pairs(94, 115)
)

# Halpe-26's part of AlphaPose's whole-body drawing (alphapose/utils/vis.py vis_frame_fast L94–109, the same in
# vis_frame L316–331): head, body (through neck 18 and hip 19), feet. The nose is joined to neither head nor neck.
_HALPE_BODY_EDGES = (
    ((0, 1), (0, 2), (1, 3), (2, 4))
    + ((5, 18), (6, 18), (5, 7), (7, 9), (6, 8), (8, 10), (17, 18), (18, 19), (19, 11), (19, 12))
    + ((11, 13), (12, 14), (13, 15), (14, 16))
    + ((20, 24), (21, 25), (23, 25), (22, 24), (15, 24), (16, 25))
)

# vis.py L94–109: Halpe-26 edges, then the face as open chains (contour, brows, nose bridge, lower nose, each eye,
# and one chain running from the outer lip into the inner lip, 85→86), then both hands. Because the eyes and lips
# are open chains, the face edges are not mirror-closed under the flip pairs (e.g. (65, 66) mirrors to (68, 73),
# which is not drawn).
_HALPE136_SKELETON = (
    _HALPE_BODY_EDGES
    + _chains((26, 42), (43, 47), (48, 52), (53, 56), (57, 61), (62, 67), (68, 73), (74, 93))
    + _hand_skeleton(94)
    + _hand_skeleton(115)
)

#: Halpe-136 OKS sigmas of ``halpecocotools`` 0.0.1 ``cocoeval.py`` L245–254, the evaluator AlphaPose reports
#: Halpe-136 AP with (``alphapose/utils/metrics.py`` L91–94, chosen for K = 133/136 by ``scripts/validate.py``
#: L77/L190): COCO's 17, 0.080 for head/neck/hip 17–19, 0.089 for the feet 20–25 (Halpe-26's), 0.015 for 26–135.
HALPE136_EVAL_SIGMAS: tuple[float, ...] = HALPE_26.sigmas + (0.015,) * 110

#: Halpe-136 OKS sigmas of AlphaPose's own ``oks_iou`` (``alphapose/utils/pPose_nms.py`` L161–167, 408-long
#: vectors; used by its OKS pose NMS, ``scripts/validate.py --oks-nms``): as the evaluator's but 0.025 for the face
#: and hands 26–135.
HALPE136_OKS_IOU_SIGMAS: tuple[float, ...] = HALPE_26.sigmas + (0.025,) * 110

HALPE_136 = KeypointSet(
    name="halpe136",
    names=_HALPE136_NAMES,
    flip_pairs=_HALPE136_FLIP,
    skeleton=_HALPE136_SKELETON,
    sigmas=HALPE136_EVAL_SIGMAS,
    sigmas_source="AlphaPose's AP evaluator halpecocotools 0.0.1 cocoeval.py (0.015 for face and hands); "
    "AlphaPose's oks_iou uses 0.025 there (HALPE136_OKS_IOU_SIGMAS)",
    parts=(
        ("body", 0, 17),
        ("head_neck_hip", 17, 20),
        ("feet", 20, 26),
        ("face", 26, 94),
        ("left_hand", 94, 115),
        ("right_hand", 115, 136),
    ),
    # alphapose/utils/writer.py L115–137: face_hand_num = 110, so 0–25 heatmap-decoded, 26–135 integral-decoded.
    integral_channels=110,
)

# COCO-WholeBody-133 (alphapose/datasets/coco_wholebody.py L88–92: COCO-WholeBody data_format.md's keypoints (17),
# foot_kpts (6), face_kpts (68), lefthand_kpts (21), righthand_kpts (21)). The feet are in COCO-WholeBody's order
# (MMPose coco_wholebody.py ids 17–22), named as Halpe's so that name-based conversion matches them.
_COCO_WHOLEBODY_FEET = (
    "left_big_toe",
    "left_small_toe",
    "left_heel",
    "right_big_toe",
    "right_small_toe",
    "right_heel",
)
_COCO_WHOLEBODY133_NAMES = (
    _COCO_NAMES + _COCO_WHOLEBODY_FEET + _FACE_NAMES + _sided("left", _HAND_NAMES) + _sided("right", _HAND_NAMES)
)

# alphapose/datasets/coco_wholebody.py L38–46: Halpe-136's face and hand pairs shifted by −3, the feet paired in
# COCO-WholeBody's order (they agree with MMPose's ``swap`` entries).
_COCO_WHOLEBODY133_FLIP = (
    _COCO_FLIP
    + ((17, 20), (18, 21), (19, 22))  # feet
    + ((23, 39), (24, 38), (25, 37), (26, 36), (27, 35), (28, 34), (29, 33), (30, 32))  # face contour
    + ((40, 49), (41, 48), (42, 47), (43, 46), (44, 45))  # brows
    + ((59, 68), (60, 67), (61, 66), (62, 65), (63, 70), (64, 69))  # eyes
    + ((54, 58), (55, 57))  # lower nose
    + ((71, 77), (72, 76), (73, 75), (84, 86), (90, 88), (83, 87), (82, 78), (81, 79))  # mouth
    + _hand_pairs(91, 112)
)

# alphapose/utils/vis.py L122–136 (vis_frame L344–358): head, arms, legs, feet — no torso edge at all (no
# shoulder–shoulder, hip–hip or shoulder–hip) — then the face chains and the hands as for Halpe-136.
_COCO_WHOLEBODY133_SKELETON = (
    ((0, 1), (0, 2), (1, 3), (2, 4))
    + ((5, 7), (7, 9), (6, 8), (8, 10))
    + ((11, 13), (12, 14), (13, 15), (14, 16))
    + ((18, 19), (21, 22), (20, 22), (17, 19), (15, 19), (16, 22))
    + _chains((23, 39), (40, 44), (45, 49), (50, 53), (54, 58), (59, 64), (65, 70), (71, 90))
    + _hand_skeleton(91)
    + _hand_skeleton(112)
)

#: COCO-WholeBody's official face sigmas (68), COCO-WholeBody ``evaluation/myeval_wholebody.py`` ``computeOks``
#: (list ``face``, commit 7705f87); the same values as AlphaPose's ``oks_iou`` for 399-long vectors
#: (``alphapose/utils/pPose_nms.py`` L168–179) and MMPose's ``configs/_base_/datasets/coco_wholebody.py``.
COCO_WHOLEBODY_FACE_SIGMAS: tuple[float, ...] = (
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043,
    0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
    0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011,
    0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007,
    0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.010, 0.008,
)  # fmt: skip

#: COCO-WholeBody's official sigmas of one hand (21; ``myeval_wholebody.py`` ``computeOks``, lists ``lefthand`` and
#: ``righthand``, which are equal).
COCO_WHOLEBODY_HAND_SIGMAS: tuple[float, ...] = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024,
    0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
)  # fmt: skip

#: COCO-WholeBody-133's official OKS sigmas (``myeval_wholebody.py`` ``computeOks``: ``body`` (COCO's 17),
#: ``foot``, ``face``, ``lefthand``, ``righthand``); AlphaPose's ``oks_iou`` uses the same for 133 keypoints.
COCO_WHOLEBODY133_OFFICIAL_SIGMAS: tuple[float, ...] = (
    _COCO_SIGMAS
    + (0.068, 0.066, 0.066, 0.092, 0.094, 0.094)
    + COCO_WHOLEBODY_FACE_SIGMAS
    + COCO_WHOLEBODY_HAND_SIGMAS
    + COCO_WHOLEBODY_HAND_SIGMAS
)

#: COCO-WholeBody-133 sigmas of ``halpecocotools`` 0.0.1 ``cocoeval.py`` L257–266, the evaluator AlphaPose reports
#: COCO-WholeBody AP with: COCO's 17, 0.089 for the six feet, 0.015 for the 110 face and hand points — not the
#: official ones (``COCO_WHOLEBODY133_OFFICIAL_SIGMAS``), so AlphaPose's COCO-WholeBody AP is not the official metric.
COCO_WHOLEBODY133_EVAL_SIGMAS: tuple[float, ...] = _COCO_SIGMAS + HALPE_26.sigmas[20:26] + (0.015,) * 110

COCO_WHOLEBODY_133 = KeypointSet(
    name="coco_wholebody133",
    names=_COCO_WHOLEBODY133_NAMES,
    flip_pairs=_COCO_WHOLEBODY133_FLIP,
    skeleton=_COCO_WHOLEBODY133_SKELETON,
    sigmas=COCO_WHOLEBODY133_EVAL_SIGMAS,
    sigmas_source="AlphaPose's AP evaluator halpecocotools 0.0.1 cocoeval.py (0.089 feet, 0.015 face and hands), "
    "not COCO-WholeBody's official sigmas (COCO_WHOLEBODY133_OFFICIAL_SIGMAS)",
    parts=(
        ("body", 0, 17),
        ("feet", 17, 23),
        ("face", 23, 91),
        ("left_hand", 91, 112),
        ("right_hand", 112, 133),
    ),
    # writer.py L115–137: face_hand_num = 110 → 0–22 heatmap-decoded, 23–132 integral-decoded.
    integral_channels=110,
)

# Halpe-68 without face (alphapose/datasets/halpe_68_noface.py L85): a Halpe-136 annotation's first 26 and last 42
# keypoints, i.e. Halpe-26, left hand 26–46, right hand 47–67. Flip pairs L38–41; skeleton vis.py L148–159
# (vis_frame L370–381): the Halpe-26 edges of Halpe-136's drawing, then both hands.
HALPE_68 = KeypointSet(
    name="halpe68",
    names=HALPE_26.names + _sided("left", _HAND_NAMES) + _sided("right", _HAND_NAMES),
    flip_pairs=_COCO_FLIP + ((20, 21), (22, 23), (24, 25)) + _hand_pairs(26, 47),
    skeleton=_HALPE_BODY_EDGES + _hand_skeleton(26) + _hand_skeleton(47),
    sigmas=HALPE136_EVAL_SIGMAS[:26] + HALPE136_EVAL_SIGMAS[94:],
    sigmas_source="no AlphaPose sigmas (oks_iou has no 68-keypoint case); Halpe-136's halpecocotools values for "
    "its indices 0–25 and 94–135",
    parts=(
        ("body", 0, 17),
        ("head_neck_hip", 17, 20),
        ("feet", 20, 26),
        ("left_hand", 26, 47),
        ("right_hand", 47, 68),
    ),
    # writer.py L115–123: face_hand_num = 42 when K = 68 → 0–25 heatmap-decoded, 26–67 (the hands) integral-decoded.
    integral_channels=42,
)

# One hand, left or right alike (alphapose/datasets/single_hand.py L81, L100–166: each annotation's two hands become
# two samples with the same 21-point order). No flip pairs (L38, ``joint_pairs = []``). vis.py L191–198 (vis_frame
# L413–420) lists 40 edges, but the last 20 join indices 21–41 of a second hand that a 21-point result never has,
# and an edge is drawn only when both its ends are (vis.py L262–263), so only the first 20 are ever drawn.
HAND_21 = KeypointSet(
    name="hand21",
    names=_HAND_NAMES,
    flip_pairs=(),
    skeleton=_hand_skeleton(0),
    sigmas=COCO_WHOLEBODY_HAND_SIGMAS,
    sigmas_source="no AlphaPose sigmas (oks_iou has no 21-keypoint case); COCO-WholeBody's official per-hand "
    "sigmas (myeval_wholebody.py computeOks)",
    parts=(
        ("wrist", 0, 1),
        ("thumb", 1, 5),
        ("forefinger", 5, 9),
        ("middle_finger", 9, 13),
        ("ring_finger", 13, 17),
        ("pinky_finger", 17, 21),
    ),
)

KEYPOINT_SETS: dict[str, KeypointSet] = {
    ks.name: ks
    for ks in (
        COCO_17,
        HALPE_26,
        CROWDPOSE_14,
        MPII_16,
        POSETRACK_18,
        HALPE_136,
        COCO_WHOLEBODY_133,
        HALPE_68,
        HAND_21,
    )
}


def get_keypoint_set(name: str) -> KeypointSet:
    """Look a keypoint set up by name; an unknown name lists the valid ones."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint set {name!r}; choose one of {', '.join(KEYPOINT_SETS)}") from None


def keypoint_set_for_num_joints(num_joints: int) -> KeypointSet:
    """The default set for a model head with ``num_joints`` channels (17 → COCO, 26 → Halpe, 14, 16, and the
    whole-body heads 136 → Halpe-136, 133 → COCO-WholeBody, 68 → Halpe-68, 21 → one hand)."""
    by_k = {
        17: COCO_17,
        26: HALPE_26,
        14: CROWDPOSE_14,
        16: MPII_16,
        136: HALPE_136,
        133: COCO_WHOLEBODY_133,
        68: HALPE_68,
        21: HAND_21,
    }
    if num_joints not in by_k:
        raise ValueError(
            f"no default keypoint set has {num_joints} keypoints; known counts are "
            + ", ".join(f"{k} ({ks.name})" for k, ks in by_k.items())
        )
    return by_k[num_joints]


def integral_channels(keypoint_set_name: str) -> int:
    """How many trailing channels AlphaPose's "Combined" loss decodes with the integral decoder.

    AlphaPose (``alphapose/utils/writer.py`` L115–137) sends the last ``face_hand_num`` channels to
    ``heatmap_to_coord_simple_regress`` and the rest to ``heatmap_to_coord_simple``: 110 (face and hands) for
    Halpe-136 and COCO-WholeBody-133, 42 (hands) for Halpe-68; 0 for every set without a "Combined" model.
    """
    return get_keypoint_set(keypoint_set_name).integral_channels


def _by_name(src: KeypointSet, dst: KeypointSet, renames: dict[str, str] | None = None) -> tuple[int, ...]:
    renames = renames or {}
    return tuple(src.index(renames.get(n, n)) for n in dst.names)


# Conversions that are exact selections: each target keypoint is one source keypoint with the same meaning.
# COCO-17 → CrowdPose-14 is not here on purpose: COCO has neither a head top nor a neck point.
_CONVERSIONS: dict[tuple[str, str], tuple[int, ...]] = {
    ("halpe26", "coco17"): _by_name(HALPE_26, COCO_17),
    ("halpe26", "crowdpose14"): _by_name(HALPE_26, CROWDPOSE_14),
    # AlphaPose's tracker-baseline.py rmpe_part_ids: MPII head_top → head, upper_neck → neck.
    ("mpii16", "crowdpose14"): _by_name(MPII_16, CROWDPOSE_14, {"head": "head_top", "neck": "upper_neck"}),
    ("posetrack18", "crowdpose14"): _by_name(POSETRACK_18, CROWDPOSE_14, {"head": "head_top", "neck": "head_bottom"}),
    # Whole-body sets, by name: body, feet, face_i and hand points mean the same in Halpe and COCO-WholeBody (the
    # face is the same 68-point layout; Halpe's 26–93 are COCO-WholeBody's 23–90). COCO-WholeBody has no head, neck
    # or hip point, so nothing converts into Halpe-26/68/136 from it. (AlphaPose's Halpe_coco_wholebody_136 training
    # set copies COCO-WholeBody's feet into Halpe's slots 20–25 without reordering them, halpe_coco_wholebody_136.py
    # L190–195; that is a training-time quirk, not the meaning of the points, and is not reproduced here.)
    ("halpe136", "coco17"): _by_name(HALPE_136, COCO_17),
    ("halpe136", "halpe26"): _by_name(HALPE_136, HALPE_26),
    ("halpe136", "crowdpose14"): _by_name(HALPE_136, CROWDPOSE_14),
    ("halpe136", "halpe68"): _by_name(HALPE_136, HALPE_68),
    ("halpe136", "coco_wholebody133"): _by_name(HALPE_136, COCO_WHOLEBODY_133),
    ("coco_wholebody133", "coco17"): _by_name(COCO_WHOLEBODY_133, COCO_17),
    ("halpe68", "coco17"): _by_name(HALPE_68, COCO_17),
    ("halpe68", "halpe26"): _by_name(HALPE_68, HALPE_26),
    ("halpe68", "crowdpose14"): _by_name(HALPE_68, CROWDPOSE_14),
}


def conversion_indices(src: str, dst: str) -> np.ndarray:
    """int64[K_dst]: source index of each target keypoint, for the well-defined conversions only."""
    if src == dst:
        return np.arange(get_keypoint_set(src).num_keypoints)
    try:
        return np.asarray(_CONVERSIONS[(src, dst)], dtype=np.int64)
    except KeyError:
        known = ", ".join(f"{a} → {b}" for a, b in _CONVERSIONS)
        raise ValueError(f"no well-defined conversion {src} → {dst}; available: {known}") from None


def convert_keypoints(keypoints: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Select ``dst``'s keypoints from an array in ``src`` order.

    Args:
        keypoints: array ``[..., K_src, D]`` (coordinates, optionally with scores/visibility in D) or
            ``[..., K_src]`` (scores); any dtype.
        src, dst: keypoint-set names.
    Returns:
        A new array with axis ``-2`` (or ``-1`` for ``[..., K]`` input) of length ``K_dst``.
    """
    idx = conversion_indices(src, dst)
    k_src = get_keypoint_set(src).num_keypoints
    arr = np.asarray(keypoints)
    if arr.ndim >= 2 and arr.shape[-2] == k_src:
        return arr[..., idx, :]
    if arr.shape[-1] == k_src:
        return arr[..., idx]
    raise ValueError(f"array of shape {arr.shape} has no axis of {k_src} keypoints ({src})")
