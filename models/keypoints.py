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
    "KEYPOINT_SETS",
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
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    sigmas_source: str = "official"

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

KEYPOINT_SETS: dict[str, KeypointSet] = {ks.name: ks for ks in (COCO_17, HALPE_26, CROWDPOSE_14, MPII_16, POSETRACK_18)}


def get_keypoint_set(name: str) -> KeypointSet:
    """Look a keypoint set up by name; an unknown name lists the valid ones."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise ValueError(f"unknown keypoint set {name!r}; choose one of {', '.join(KEYPOINT_SETS)}") from None


def keypoint_set_for_num_joints(num_joints: int) -> KeypointSet:
    """The default set for a model head with ``num_joints`` channels (17 → COCO, 26 → Halpe, 14, 16)."""
    by_k = {17: COCO_17, 26: HALPE_26, 14: CROWDPOSE_14, 16: MPII_16}
    if num_joints not in by_k:
        raise ValueError(
            f"no default keypoint set has {num_joints} keypoints; known counts are "
            + ", ".join(f"{k} ({ks.name})" for k, ks in by_k.items())
        )
    return by_k[num_joints]


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
