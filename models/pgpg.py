"""Training-proposal augmentation of RMPE: AlphaPose's released DPG, exactly, and the paper's pose-guided PGPG.

RMPE (Fang, Xie, Tai and Lu, "RMPE: Regional Multi-person Pose Estimation", ICCV 2017, arXiv:1612.00137) trains
the single-person pose estimator (SPPE) on *proposals* distributed like real detector boxes instead of on the
ground-truth (GT) boxes alone. The paper's section "Pose-guided Proposals Generator" (PGPG; called "deep proposals
generator (DPG)" in arXiv v1) models the offset δB between a detected box and its GT box as depending on the pose:

1. align all GT poses so that their torsos have the same length, and cluster them with k-means; the cluster
   centres are the *atomic poses*;
2. for the training persons of each atomic pose, collect the offsets between the GT box and the matched detector
   box, normalised by the GT box side in that direction, and fit a Gaussian mixture to them, one per atomic pose;
3. at training time, look up a GT pose's atomic pose and densely sample offsets from its mixture.

The code AlphaPose releases implements something else: a pose-*independent* DPG, one proposal per loaded sample,
with the same constants in three places (Torch7 ``train/src/util/pose.lua`` L85–171 at commit 4a97e1f; PyTorch
``train_sppe/src/utils/pose.py`` L29–104 on the ``pytorch`` branch, commit ded84d4; and ``addDPG`` in
``alphapose/utils/transforms.py`` L43–73 on ``master``, commit c60106d). This module provides both:

* ``dpg_proposal``: the released DPG, draw for draw (see its docstring for the exact steps and the order of the
  random draws), with the pre-enlargement and the random truncation of ``train_sppe/src/utils/pose.py``
  (``pre_enlarge``/``truncate`` switch them off, which gives ``master``'s ``addDPG`` on the raw box).
* ``align_poses``, ``match_detections``, ``fit_pgpg``, ``PGPGModel`` and ``pgpg_proposal``: the paper's PGPG. The
  paper states neither the number k of atomic poses nor the number of mixture components (neither is in any
  released code or text); here both are chosen from the data (k by the silhouette of the k-means partitions,
  the components by BIC), as ``fit_pgpg`` documents exactly.

Conventions: boxes are float ``(x1, y1, x2, y2)`` in image pixels; keypoints ``[J, 2]`` (x, y) in the same pixels
with a boolean visibility ``[J]``; the torso joints default to COCO-17's shoulders and hips. Every function is a
deterministic function of its arrays and of an explicit ``numpy.random.Generator`` (or an integer seed for the
fits); nothing global is read or written, and inputs are never modified. Arrays held by the frozen dataclasses are
read-only.

Deviations from AlphaPose are marked ``Deviation from AlphaPose:``: float64 arithmetic (AlphaPose stores the box
corners in float32 tensors), the joint count over all J given joints (AlphaPose counts COCO's first 17), an
explicit visibility mask (AlphaPose tests only ``x > 0``, which is kept as well), and the order of random draws
(one generator, a fixed number of draws per proposal, where AlphaPose interleaves Python's ``random`` and
NumPy's global generators and draws only what each branch needs); the draws have the same distributions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_limits

from models.keypoints import COCO_17

__all__ = [
    "DPGParams",
    "ALPHAPOSE_DPG",
    "TRUNCATIONS",
    "COCO_TORSO",
    "DPGProposal",
    "dpg_proposal",
    "proposal_rng",
    "joints_inside",
    "AlignedPoses",
    "align_poses",
    "Matches",
    "match_detections",
    "box_iou_matrix",
    "box_offsets",
    "GaussianMixtureParams",
    "KSelection",
    "PGPGModel",
    "fit_pgpg",
    "pgpg_proposal",
]

Branch = Literal["patch", "jitter", "pgpg"]
Truncation = Literal[
    "none",
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "left_half",
    "right_half",
    "top_half",
    "bottom_half",
]

#: The eight truncations in the order of AlphaPose's ``if/elif`` chain (``train_sppe/src/utils/pose.py`` L81–104):
#: the i-th is taken when the switch draw v exceeds ``DPGParams.truncation_thresholds[i]`` (first match wins).
TRUNCATIONS: tuple[str, ...] = (
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "left_half",
    "right_half",
    "top_half",
    "bottom_half",
)

#: COCO-17 indices of (left shoulder, right shoulder, left hip, right hip), the torso of ``align_poses``.
COCO_TORSO: tuple[int, int, int, int] = tuple(
    COCO_17.names.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


# ---- DPG as AlphaPose releases it --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DPGParams:
    """The constants of AlphaPose's DPG (``train_sppe/src/utils/pose.py``; same values in ``pose.lua`` and
    ``transforms.py``). Offsets are normalised by the box width (x) or height (y); 𝒩 takes (mean, *std*)."""

    pre_enlarge_range: tuple[float, float] = (0.2, 0.3)  # scale_factor (``dataset/coco.py`` L17): r ~ U(lo, hi)
    patch_threshold: float = 0.85  # u > this: random sub-patch of size u·w × u·h; else Gaussian jitter
    jitter_mean: tuple[float, float, float, float] = (-0.0142, 0.0043, 0.0154, -0.0013)  # x1, y1, x2, y2
    jitter_std: tuple[float, float, float, float] = (0.1158, 0.0680, 0.1337, 0.0711)  # x1, y1, x2, y2
    truncation_min_joints: int = 13  # truncate only if strictly more joints than this lie inside the box
    truncation_thresholds: tuple[float, ...] = (0.96, 0.92, 0.88, 0.84, 0.80, 0.76, 0.72, 0.68)  # see TRUNCATIONS

    def __post_init__(self) -> None:
        lo, hi = self.pre_enlarge_range
        if not 0.0 <= lo <= hi:
            raise ValueError(f"pre_enlarge_range={self.pre_enlarge_range}: need 0 <= lo <= hi")
        if len(self.truncation_thresholds) != len(TRUNCATIONS):
            raise ValueError(f"truncation_thresholds needs {len(TRUNCATIONS)} values, one per truncation")
        if any(s < 0 for s in self.jitter_std):
            raise ValueError("jitter_std must be >= 0")


ALPHAPOSE_DPG = DPGParams()


@dataclass(frozen=True)
class DPGProposal:
    """One training proposal for one GT person.

    Attributes:
        box_xyxy: float64[4], the final proposal (after truncation): the region the SPPE input is cropped from.
        start_xyxy: float64[4], the box the sampling started from: the GT box after AlphaPose's ``int()`` and
            pre-enlargement (``pre_enlarge=True``), the raw GT box otherwise, or the GT box for PGPG. The
            parallel SPPE's centred labels are drawn in this frame (RMPE, "Parallel SPPE"; ``pose.lua`` L112–126).
        sampled_xyxy: float64[4], after the patch/jitter/PGPG offset and before truncation.
        branch: "patch", "jitter" (DPG) or "pgpg".
        truncation: "none" or one of ``TRUNCATIONS``.
        inside: bool[J], the joints inside the final box, i.e. the joints that get a heatmap label (all False, shape
            [0], when no keypoints were given).
        joint_count: joints inside ``sampled_xyxy`` (AlphaPose's ``jointNum``; decides truncation and ``empty``).
        empty: no joint inside the sampled box: the sample's *input* must be zeroed (AlphaPose zeroes the input
            when ``jointNum == 0``, counted before truncation, so a truncated box can hold no joint without being
            ``empty``; its heatmaps are then all zero). False when no keypoints were given.
        atom: the atomic pose used (PGPG; -1 for DPG and for PGPG's pooled fallback).
        component: the mixture component drawn (PGPG; -1 for DPG).
    """

    box_xyxy: np.ndarray
    start_xyxy: np.ndarray
    sampled_xyxy: np.ndarray
    branch: Branch
    truncation: Truncation
    inside: np.ndarray
    joint_count: int
    empty: bool
    atom: int = -1
    component: int = -1


def joints_inside(keypoints: np.ndarray, visible: np.ndarray, box_xyxy: np.ndarray) -> np.ndarray:
    """bool[J]: labelled joints strictly inside the box, AlphaPose's test (``train_sppe/src/utils/pose.py`` L76–79,
    L117–120): ``x > 0`` (AlphaPose's "labelled" test, kept) and ``x1 < x < x2`` and ``y1 < y < y2``.

    Deviation from AlphaPose: ``visible`` is required as well (AlphaPose has no mask; unlabelled COCO joints are
    (0, 0) and fail ``x > 0``).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    x1, y1, x2, y2 = np.asarray(box_xyxy, dtype=np.float64)
    x, y = kp[:, 0], kp[:, 1]
    return vis & (x > 0) & (x > x1) & (y > y1) & (x < x2) & (y < y2)


def _check_box_image(box_xyxy: Any, image_wh: Any) -> tuple[np.ndarray, float, float]:
    box = np.asarray(box_xyxy, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"box_xyxy must be 4 finite numbers, got {box_xyxy!r}")
    W, H = (float(v) for v in image_wh)
    if not (W > 0 and H > 0):
        raise ValueError(f"image_wh must be positive, got {image_wh!r}")
    return box, W, H


def _check_keypoints(keypoints: Any, visible: Any) -> tuple[np.ndarray, np.ndarray]:
    if keypoints is None:
        if visible is not None:
            raise ValueError("visible given without keypoints")
        return np.zeros((0, 2)), np.zeros(0, dtype=bool)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise ValueError(f"keypoints must be [J, 2], got shape {kp.shape}")
    if visible is None:
        vis = np.isfinite(kp).all(axis=1) & (kp[:, 0] > 0)  # AlphaPose's only "labelled" test
    else:
        vis = np.asarray(visible, dtype=bool)
        if vis.shape != (kp.shape[0],):
            raise ValueError(f"visible must be [J] = [{kp.shape[0]}], got shape {vis.shape}")
    return kp, vis & np.isfinite(kp).all(axis=1)


def _truncate(box: np.ndarray, option: str) -> np.ndarray:
    """Shrink to a half or a quadrant (``train_sppe/src/utils/pose.py`` L84–104): the midpoint replaces one corner
    coordinate per halved direction."""
    x1, y1, x2, y2 = box
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    if option in ("top_left", "left_half", "bottom_left"):
        x2 = mx
    if option in ("top_right", "right_half", "bottom_right"):
        x1 = mx
    if option in ("top_left", "top_right", "top_half"):
        y2 = my
    if option in ("bottom_left", "bottom_right", "bottom_half"):
        y1 = my
    return np.array([x1, y1, x2, y2])


def dpg_proposal(
    rng: np.random.Generator,
    box_xyxy: Any,
    image_wh: tuple[float, float],
    keypoints: Any = None,
    visible: Any = None,
    *,
    pre_enlarge: bool = True,
    truncate: bool = True,
    params: DPGParams = ALPHAPOSE_DPG,
) -> DPGProposal:
    """One DPG proposal for one GT person, as AlphaPose's ``generateSampleBox`` makes it with ``--addDPG``
    (``train_sppe/src/utils/pose.py`` L29–104, ``pytorch`` branch: RMPE's PGPG as released).

    Random draws, always exactly these and in this order, whatever the options and the branch taken (so the
    generator's state after the call, and every draw, depend only on its state before the call):
    ``g = rng.random(5)`` then ``z = rng.standard_normal(4)``; g[0] → r, g[1] → u, g[2], g[3] → the patch position,
    g[4] → the truncation switch v; z → the four jitter offsets in the order x1, y1, x2, y2.

    Steps, with (x1, y1, x2, y2) the GT box, W×H the image:

    1. ``pre_enlarge`` (L29–40): the corners are truncated to integers (``int()``, toward zero), w = x2 − x1,
       h = y2 − y1 of that box; r = 0.2 + (0.3 − 0.2)·g[0]; x1 ← max(0, x1 − w·r/2), y1 ← max(0, y1 − h·r/2),
       x2 ← min(W − 1, x2 + w·r/2), y2 ← min(H − 1, y2 + h·r/2). w and h stay those of the un-enlarged box. Without
       it (``master``'s ``addDPG``, ``transforms.py`` L43–73) the raw float box is used and w, h are its sides.
    2. u = g[1]. If u > 0.85 (``branch="patch"``, L44–57): a patch of u·w × u·h (AlphaPose's two equivalent
       branches on w < h are kept) at x1 + g[2]·(w − u·w), y1 + g[3]·(h − u·h); its far corner is the near corner
       + size + 1; no clamping. Else (``branch="jitter"``, L58–66): with n_i = mean_i + std_i·z[i],
       x1′ = max(1, min(x1 + n_0·w, W − 3)), y1′ = max(1, min(y1 + n_1·h, H − 3)),
       x2′ = min(max(x1′ + 2, x2 + n_2·w), W − 3), y2′ = min(max(y1′ + 2, y2 + n_3·h), H − 3).
    3. ``joint_count`` = joints inside that box (``joints_inside``; L73–79). If ``truncate`` and joint_count > 13
       (L81–104): v = g[4]; the first i with v > (0.96, 0.92, …, 0.68)[i] gives ``TRUNCATIONS[i]`` (4 % each,
       32 % in all); otherwise (68 %) the box is unchanged.
    4. ``inside`` = joints inside the final box (their heatmaps are drawn, L116–124); ``empty`` = joint_count == 0
       (the input is zeroed, L111–112).

    Raises ValueError for a box without positive width and height (after ``int()`` when ``pre_enlarge``).
    """
    box, W, H = _check_box_image(box_xyxy, image_wh)
    kp, vis = _check_keypoints(keypoints, visible)
    # Deviation from AlphaPose (generateSampleBox): one explicit generator and always these nine draws, where
    # AlphaPose mixes Python's `random` (r, u, patch position, switch) and NumPy's global state (the jitter) and
    # draws only what the branch needs. Same distributions; float64 throughout (AlphaPose: float32 tensors).
    g = rng.random(5)
    z = rng.standard_normal(4)

    if pre_enlarge:
        x1, y1, x2, y2 = np.trunc(box)
        w, h = x2 - x1, y2 - y1
        lo, hi = params.pre_enlarge_range
        r = lo + (hi - lo) * g[0]  # Python's random.uniform(lo, hi)
        if w > 0 and h > 0:
            x1, y1 = max(0.0, x1 - w * r / 2), max(0.0, y1 - h * r / 2)
            x2, y2 = min(W - 1, x2 + w * r / 2), min(H - 1, y2 + h * r / 2)
    else:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
    if not (w > 0 and h > 0):
        raise ValueError(f"box {box.tolist()} has no positive width and height")
    start = np.array([x1, y1, x2, y2])

    u = g[1]
    if u > params.patch_threshold:
        branch: Branch = "patch"
        ratio = h / w
        if w < h:
            pw = u * w
            ph = pw * ratio
        else:
            ph = u * h
            pw = ph / ratio
        px1 = x1 + g[2] * (w - pw)
        py1 = y1 + g[3] * (h - ph)
        sampled = np.array([px1, py1, px1 + pw + 1, py1 + ph + 1])
    else:
        branch = "jitter"
        n = np.asarray(params.jitter_mean) + np.asarray(params.jitter_std) * z
        jx1 = max(1.0, min(x1 + n[0] * w, W - 3))
        jy1 = max(1.0, min(y1 + n[1] * h, H - 3))
        jx2 = min(max(jx1 + 2, x2 + n[2] * w), W - 3)
        jy2 = min(max(jy1 + 2, y2 + n[3] * h), H - 3)
        sampled = np.array([jx1, jy1, jx2, jy2])

    # Deviation from AlphaPose (generateSampleBox, "Counting Joints number"): all J given joints are counted
    # (AlphaPose: COCO's first 17, and none for MPII samples, whose input it therefore always zeroes).
    inside_sampled = joints_inside(kp, vis, sampled)
    joint_count = int(inside_sampled.sum())
    truncation: Truncation = "none"
    final = sampled
    inside = inside_sampled
    if truncate and joint_count > params.truncation_min_joints:
        v = g[4]
        for option, threshold in zip(TRUNCATIONS, params.truncation_thresholds):
            if v > threshold:
                truncation = option
                final = _truncate(sampled, option)
                inside = joints_inside(kp, vis, final)
                break
    return DPGProposal(
        box_xyxy=_readonly(final),
        start_xyxy=_readonly(start),
        sampled_xyxy=_readonly(sampled),
        branch=branch,
        truncation=truncation,
        inside=_readonly(inside),
        joint_count=joint_count,
        # Deviation from AlphaPose: without keypoints nothing can be counted, and the proposal is not `empty`
        # (AlphaPose would zero the input: its jointNum stays 0).
        empty=keypoints is not None and joint_count == 0,
    )


def _id_word(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def proposal_rng(seed: int, epoch: int, image_id: int | str, person_index: int) -> np.random.Generator:
    """The generator for one person's proposal in one epoch: a PCG64 seeded by ``numpy.random.SeedSequence`` with
    the entropy (seed, epoch, person_index, the 8 32-bit words of sha256(image_id)). ``image_id`` is hashed with
    a type tag (``b"int:"`` + decimal digits, or ``b"str:"`` + UTF-8), so 785 and "785" differ, and the value is
    stable across processes and machines (never Python's ``hash()``). RMPE's DPG draws a new proposal every time a
    sample is loaded (``generateSampleBox``), so a different epoch gives a different proposal.
    """
    words = [_id_word(seed, "seed"), _id_word(epoch, "epoch"), _id_word(person_index, "person_index")]
    if isinstance(image_id, str):
        tagged = b"str:" + image_id.encode("utf-8")
    elif isinstance(image_id, int | np.integer) and not isinstance(image_id, bool):
        tagged = b"int:" + str(int(image_id)).encode("ascii")
    else:
        raise ValueError(f"image_id must be an int or a str, got {image_id!r}")
    digest = hashlib.sha256(tagged).digest()
    words += [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


# ---- the paper's PGPG: alignment, matching, atoms, offset mixtures ------------------------------------------------


@dataclass(frozen=True)
class AlignedPoses:
    """Result of ``align_poses``: the persons with a visible torso, translated and scaled.

    Attributes:
        aligned: float64[M, J, 2], torso centre at the origin and torso length 1; invisible joints are 0.
        visible: bool[M, J].
        index: int64[M], each aligned person's index in the input.
        excluded: int64[N − M], the input persons without a visible torso (any of the four torso joints not
            visible, or a torso shorter than ``min_torso_length`` pixels).
        centre: float64[M, 2], torso centres in pixels.
        torso_length: float64[M], in pixels.
    """

    aligned: np.ndarray
    visible: np.ndarray
    index: np.ndarray
    excluded: np.ndarray
    centre: np.ndarray
    torso_length: np.ndarray


def align_poses(
    keypoints: Any,
    visible: Any,
    *,
    torso: tuple[int, int, int, int] = COCO_TORSO,
    min_torso_length: float = 1.0,
) -> AlignedPoses:
    """Align poses "so that their torsos have the same length" (RMPE, PGPG, "atomic poses"): translate each pose so
    that the torso centre, the midpoint of the shoulder midpoint and the hip midpoint, is at the origin, and scale
    it so that the torso (shoulder midpoint to hip midpoint) has length 1. No rotation and no flip (the paper
    names only the length). ``torso`` gives (left shoulder, right shoulder, left hip, right hip); all four must be
    visible. Keypoints ``[N, J, 2]`` (or one pose ``[J, 2]``), visibility ``[N, J]``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    if kp.ndim == 2:
        kp, vis = kp[None], vis[None]
    if kp.ndim != 3 or kp.shape[2] != 2 or vis.shape != kp.shape[:2]:
        raise ValueError(f"keypoints must be [N, J, 2] and visible [N, J], got {kp.shape} and {vis.shape}")
    vis = vis & np.isfinite(kp).all(axis=2)
    ls, rs, lh, rh = torso
    shoulder = (kp[:, ls] + kp[:, rs]) / 2
    hip = (kp[:, lh] + kp[:, rh]) / 2
    length = np.linalg.norm(shoulder - hip, axis=1)
    torso_ok = vis[:, [ls, rs, lh, rh]].all(axis=1)
    ok = torso_ok & np.isfinite(length) & (np.where(torso_ok, length, 0.0) >= min_torso_length)
    centre = (shoulder + hip) / 2
    idx = np.flatnonzero(ok)
    k = kp[idx]
    v = vis[idx]
    aligned = np.where(v[..., None], (k - centre[idx, None, :]) / length[idx, None, None], 0.0)
    return AlignedPoses(
        aligned=_readonly(aligned),
        visible=_readonly(v),
        index=_readonly(idx.astype(np.int64)),
        excluded=_readonly(np.flatnonzero(~ok).astype(np.int64)),
        centre=_readonly(centre[idx]),
        torso_length=_readonly(length[idx]),
    )


def box_iou_matrix(a: Any, b: Any) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of float xyxy boxes (continuous areas, no "+1")."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class Matches:
    """One-to-one GT ↔ detection pairs (``match_detections``), sorted by GT index: ``gt_index``, ``det_index``
    (int64[P]) and their ``iou`` (float64[P])."""

    gt_index: np.ndarray
    det_index: np.ndarray
    iou: np.ndarray


def match_detections(gt_boxes: Any, det_boxes: Any, det_scores: Any, iou: float = 0.5) -> Matches:
    """Match detections to GT boxes of one image one-to-one, greedily by detection score, as COCO's evaluation
    matches detections: detections in descending score order (ties: input order), each takes the still unmatched
    GT box with the highest IoU (ties: the lower GT index) if that IoU is ≥ ``iou``. RMPE pairs each GT person with
    "the detected bounding box" of the detector it models; greedy-by-score keeps the box a detector's evaluation
    would credit to that person (a Hungarian maximum-IoU assignment could give a person a lower-scored box).
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    det = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != det.shape[0]:
        raise ValueError(f"{det.shape[0]} detection boxes but {scores.shape[0]} scores")
    ious = box_iou_matrix(gt, det)
    free = np.ones(gt.shape[0], dtype=bool)
    pairs: list[tuple[int, int, float]] = []
    for d in np.argsort(-scores, kind="stable"):
        if not free.any():
            break
        col = np.where(free, ious[:, d], -1.0)
        gi = int(np.argmax(col))
        if col[gi] >= iou:
            free[gi] = False
            pairs.append((gi, int(d), float(col[gi])))
    pairs.sort()
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 3)
    return Matches(
        gt_index=_readonly(arr[:, 0].astype(np.int64)),
        det_index=_readonly(arr[:, 1].astype(np.int64)),
        iou=_readonly(arr[:, 2]),
    )


def box_offsets(gt_boxes: Any, det_boxes: Any) -> np.ndarray:
    """RMPE's normalised offsets δB ``[N, 4]`` = ((x1d − x1g)/wg, (y1d − y1g)/hg, (x2d − x2g)/wg, (y2d − y2g)/hg),
    wg, hg the GT box's width and height (which must be positive)."""
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    if g.shape != d.shape:
        raise ValueError(f"gt_boxes {g.shape} and det_boxes {d.shape} must pair up")
    wh = np.stack([g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]], axis=1)
    if not np.all(wh > 0):
        raise ValueError("every GT box needs a positive width and height")
    return (d - g) / np.tile(wh, 2)


@dataclass(frozen=True)
class GaussianMixtureParams:
    """A 4-D full-covariance Gaussian mixture of δB (``box_offsets``).

    Attributes:
        weights: float64[C]; means: float64[C, 4]; covariances: float64[C, 4, 4].
        n_samples: the offsets it was fitted to.
        selection: how C was chosen: "bic" (lowest BIC over the admissible C), "single" (C = 1 was the only
            admissible value because n_samples < 2·min_component_samples) or "single_sample" (one offset: its value
            as the mean and reg_covar·I as the covariance).
        bic: BIC per candidate C = 1, 2, … (None where C was not admissible).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    n_samples: int
    selection: str
    bic: tuple[float | None, ...]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` offsets ``[n, 4]`` and their components ``[n]``. Draws: ``rng.random(n)`` (component, by the
        cumulative weights), then ``rng.standard_normal((n, 4))`` (through the covariance's Cholesky factor)."""
        u = rng.random(n)
        z = rng.standard_normal((n, 4))
        comp = np.minimum(np.searchsorted(np.cumsum(self.weights), u, side="right"), len(self.weights) - 1)
        chol = np.linalg.cholesky(self.covariances)
        return self.means[comp] + np.einsum("nij,nj->ni", chol[comp], z), comp

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covariances": self.covariances.tolist(),
            "n_samples": self.n_samples,
            "selection": self.selection,
            "bic": list(self.bic),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianMixtureParams:
        return cls(
            weights=_readonly(np.asarray(d["weights"], dtype=np.float64)),
            means=_readonly(np.asarray(d["means"], dtype=np.float64).reshape(-1, 4)),
            covariances=_readonly(np.asarray(d["covariances"], dtype=np.float64).reshape(-1, 4, 4)),
            n_samples=int(d["n_samples"]),
            selection=str(d["selection"]),
            bic=tuple(None if b is None else float(b) for b in d["bic"]),
        )


@dataclass(frozen=True)
class KSelection:
    """How ``fit_pgpg`` chose k.

    Attributes:
        method: "given" (the caller's k), "silhouette" (the admissible k ≥ 2 with the highest mean silhouette),
            "no_structure" (k = 1: no admissible k ≥ 2, or its best mean silhouette was below ``min_silhouette``)
            or "single" (k = 1: fewer than 2·min_atom_samples persons with a visible torso, so no two atoms of the
            minimum size could exist).
        k: the chosen k.
        silhouette: mean silhouette of the k-means partition for k = 1 … max_k (None for k = 1, for k not tried,
            and for k rejected because a cluster had fewer than ``min_atom_samples`` persons).
        min_atom_samples, min_silhouette: the thresholds used.
        note: the decision in words (e.g. how few samples forced k = 1).
    """

    method: str
    k: int
    silhouette: tuple[float | None, ...]
    min_atom_samples: int
    min_silhouette: float
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "k": self.k,
            "silhouette": list(self.silhouette),
            "min_atom_samples": self.min_atom_samples,
            "min_silhouette": self.min_silhouette,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KSelection:
        return cls(
            method=str(d["method"]),
            k=int(d["k"]),
            silhouette=tuple(None if b is None else float(b) for b in d["silhouette"]),
            min_atom_samples=int(d["min_atom_samples"]),
            min_silhouette=float(d["min_silhouette"]),
            note=str(d["note"]),
        )


_FORMAT = "raypose.pgpg/1"


@dataclass(frozen=True)
class PGPGModel:
    """A fitted PGPG (RMPE, "Pose-guided Proposals Generator"): atomic poses and, per atomic pose, a Gaussian
    mixture of δB.

    Attributes:
        atoms: float64[k, J, 2], the atomic poses in aligned coordinates (``align_poses``); a joint never visible
            in a cluster keeps its k-means++ initial value (the mean over all aligned persons).
        mixtures: one ``GaussianMixtureParams`` per atom.
        pooled: the mixture of all pairs (every pair, also those without a visible torso), used for poses whose
            torso is not visible (their atom is unknown).
        atom_counts: int64[k], the aligned persons per atom.
        k_selection: how k was chosen (``KSelection``).
        n_pairs: GT–detection pairs fitted; n_excluded: of those, persons without a visible torso.
        torso: the torso joint indices used for alignment; seed: the fit's seed.
    """

    atoms: np.ndarray
    mixtures: tuple[GaussianMixtureParams, ...]
    pooled: GaussianMixtureParams
    atom_counts: np.ndarray
    k_selection: KSelection
    n_pairs: int
    n_excluded: int
    torso: tuple[int, int, int, int] = COCO_TORSO
    seed: int = 0
    format: str = field(default=_FORMAT)

    @property
    def k(self) -> int:
        return int(self.atoms.shape[0])

    def atom_of(self, keypoints: Any, visible: Any) -> int:
        """The nearest atomic pose of one pose ``[J, 2]`` after ``align_poses``: least mean squared distance over
        its visible joints (ties: the lower index). -1 when its torso is not visible (no alignment possible)."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.shape != self.atoms.shape[1:]:
            raise ValueError(f"keypoints must be {self.atoms.shape[1:]}, got {kp.shape}")
        al = align_poses(kp, visible, torso=self.torso)
        if al.index.size == 0:
            return -1
        return int(np.argmin(_masked_sq_dist(al.aligned.reshape(1, -1), _coord_mask(al.visible), self._flat())[0]))

    def mixture_of(self, atom: int) -> GaussianMixtureParams:
        """The mixture of ``atom``, or the pooled mixture for -1."""
        return self.pooled if atom == -1 else self.mixtures[atom]

    def sample_offsets(self, rng: np.random.Generator, atom: int, n: int) -> np.ndarray:
        """``n`` offsets δB ``[n, 4]`` from ``atom``'s mixture (-1: pooled); see ``GaussianMixtureParams.sample``."""
        return self.mixture_of(atom).sample(rng, n)[0]

    def _flat(self) -> np.ndarray:
        return self.atoms.reshape(self.k, -1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (lists, numbers, strings); ``from_dict`` restores the model exactly (floats go
        through JSON by their shortest round-trip repr)."""
        return {
            "format": self.format,
            "atoms": self.atoms.tolist(),
            "mixtures": [m.to_dict() for m in self.mixtures],
            "pooled": self.pooled.to_dict(),
            "atom_counts": self.atom_counts.tolist(),
            "k_selection": self.k_selection.to_dict(),
            "n_pairs": self.n_pairs,
            "n_excluded": self.n_excluded,
            "torso": list(self.torso),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PGPGModel:
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} model: format={d.get('format')!r}")
        atoms = np.asarray(d["atoms"], dtype=np.float64)
        return cls(
            atoms=_readonly(atoms.reshape(len(d["atoms"]), -1, 2)),
            mixtures=tuple(GaussianMixtureParams.from_dict(m) for m in d["mixtures"]),
            pooled=GaussianMixtureParams.from_dict(d["pooled"]),
            atom_counts=_readonly(np.asarray(d["atom_counts"], dtype=np.int64)),
            k_selection=KSelection.from_dict(d["k_selection"]),
            n_pairs=int(d["n_pairs"]),
            n_excluded=int(d["n_excluded"]),
            torso=tuple(int(t) for t in d["torso"]),
            seed=int(d["seed"]),
        )


def _coord_mask(visible: np.ndarray) -> np.ndarray:
    """bool[N, J] → float[N, 2J]: the mask of each flattened (x, y) coordinate."""
    return np.repeat(np.asarray(visible, dtype=np.float64), 2, axis=1)


def _masked_sq_dist(x: np.ndarray, m: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[N, K]: Σ_d m[n,d]·(x[n,d] − c[k,d])², squared distances over the observed coordinates only."""
    d = (m * x * x).sum(axis=1)[:, None] - 2.0 * (m * x) @ c.T + m @ (c * c).T
    return np.maximum(d, 0.0)


def _masked_kmeans(
    x: np.ndarray, m: np.ndarray, k: int, rng: np.random.Generator, n_init: int, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means on partly observed vectors (Lloyd's iterations on the observed coordinates; k-means++ seeding).

    Each of ``n_init`` runs: a first centre is a uniformly drawn person, later ones are drawn with probability
    ∝ squared masked distance to the nearest centre (Arthur and Vassilvitskii, SODA 2007); unobserved coordinates
    of a seed take the mean of that coordinate over all persons. Assignment: least masked squared distance (ties:
    the lower index); update: per coordinate, the mean over the members that observe it (unchanged where none
    does); an empty cluster is re-seeded with the person farthest from its centre. Stops when no label changes.
    Returns (centres [k, D], labels [N], inertia) of the run with the lowest inertia (ties: the first run).
    """
    n = x.shape[0]
    obs = m.sum(axis=0)
    coord_mean = np.divide((m * x).sum(axis=0), obs, out=np.zeros(x.shape[1]), where=obs > 0)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        seeds = [int(rng.integers(n))]
        for _ in range(1, k):
            c = np.where(m[seeds] > 0, x[seeds], coord_mean)
            d2 = _masked_sq_dist(x, m, c).min(axis=1)
            total = d2.sum()
            if total > 0:
                pick = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
                seeds.append(min(pick, n - 1))
            else:
                seeds.append(int(rng.integers(n)))
        centres = np.where(m[seeds] > 0, x[seeds], coord_mean)
        labels = np.full(n, -1)
        for _ in range(max_iter):
            dist = _masked_sq_dist(x, m, centres)
            new = np.argmin(dist, axis=1)
            counts = np.bincount(new, minlength=k)
            for empty in np.flatnonzero(counts == 0):  # re-seed empty clusters deterministically
                far = int(np.argmax(dist[np.arange(n), new]))
                new[far] = empty
                dist[far] = 0.0
                counts = np.bincount(new, minlength=k)
            if np.array_equal(new, labels):
                break
            labels = new
            onehot = (labels[:, None] == np.arange(k)[None, :]).astype(np.float64)
            num = onehot.T @ (m * x)
            den = onehot.T @ m
            centres = np.where(den > 0, num / np.where(den > 0, den, 1.0), centres)
        inertia = float(_masked_sq_dist(x, m, centres)[np.arange(n), labels].sum())
        if best is None or inertia < best[2]:
            best = (centres, labels, inertia)
    assert best is not None
    return best


def _mean_silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Rousseeuw, J. Comput. Appl. Math. 20, 1987) of a partition, from a precomputed distance
    matrix."""
    from sklearn.metrics import silhouette_score  # ~1.2 s to import: not in every pipeline worker

    return float(silhouette_score(distances, labels, metric="precomputed"))


def _derived_seed(seed: int, *words: int) -> int:
    return int(np.random.SeedSequence([seed, *words]).generate_state(1)[0])


def _fit_mixture(
    offsets: np.ndarray, max_components: int, min_component_samples: int, reg_covar: float, seed: int
) -> GaussianMixtureParams:
    """A 4-D full-covariance Gaussian mixture of ``offsets`` with C chosen by BIC over C = 1 … max_components
    among the C with at least ``min_component_samples`` offsets per component (C = 1 is always admissible);
    scikit-learn's ``GaussianMixture`` (k-means initialisation, ``n_init=3``, ``random_state`` from ``seed``)."""
    from sklearn.mixture import GaussianMixture  # ~1.2 s to import: not in every pipeline worker

    n = offsets.shape[0]
    if n == 1:
        return GaussianMixtureParams(
            weights=_readonly(np.ones(1)),
            means=_readonly(offsets.copy()),
            covariances=_readonly(reg_covar * np.eye(4)[None]),
            n_samples=1,
            selection="single_sample",
            bic=(None,) * max_components,
        )
    bics: list[float | None] = []
    best: tuple[float, GaussianMixture] | None = None
    for c in range(1, max_components + 1):
        if c > 1 and n < c * min_component_samples:
            bics.append(None)
            continue
        gm = GaussianMixture(
            n_components=c,
            covariance_type="full",
            reg_covar=reg_covar,
            n_init=3,
            max_iter=500,
            random_state=_derived_seed(seed, c),
        ).fit(offsets)
        b = float(gm.bic(offsets))
        bics.append(b)
        if best is None or b < best[0]:
            best = (b, gm)
    assert best is not None
    gm = best[1]
    admissible = sum(b is not None for b in bics)
    return GaussianMixtureParams(
        weights=_readonly(gm.weights_),
        means=_readonly(gm.means_),
        covariances=_readonly(gm.covariances_),
        n_samples=n,
        selection="bic" if admissible > 1 else "single",
        bic=tuple(bics),
    )


def fit_pgpg(
    gt_keypoints: Any,
    gt_visible: Any,
    gt_boxes: Any,
    det_boxes: Any,
    *,
    k: int | None = None,
    max_k: int = 8,
    max_components: int = 4,
    min_atom_samples: int = 20,
    min_silhouette: float = 0.25,
    max_silhouette_samples: int = 2000,
    min_component_samples: int = 10,
    n_init: int = 10,
    reg_covar: float = 1e-6,
    torso: tuple[int, int, int, int] = COCO_TORSO,
    seed: int = 0,
) -> PGPGModel:
    """Fit RMPE's PGPG to N already matched GT–detection pairs (``match_detections``): GT keypoints
    ``[N, J, 2]``, their visibility ``[N, J]``, GT boxes ``[N, 4]`` and the matched detector boxes ``[N, 4]``.

    1. δB = ``box_offsets(gt_boxes, det_boxes)`` for every pair.
    2. ``align_poses``: the M persons with a visible torso; the others are excluded from the atoms (counted in
       ``n_excluded``) but kept in the pooled mixture.
    3. Atomic poses: ``_masked_kmeans`` (k-means over the visible joints, ``n_init`` k-means++ restarts, seeded
       from ``seed`` and k). k (the paper does not give it):
       * given: used as is ("given"; 1 ≤ k ≤ M);
       * else, if M < 2·``min_atom_samples``: k = 1 ("single": too few persons for two atoms of the minimum size);
       * else, for k = 2 … min(``max_k``, M // ``min_atom_samples``): the k-means partition, rejected if a
         cluster has fewer than ``min_atom_samples`` persons, else scored by its mean silhouette (Rousseeuw 1987)
         under the NaN-Euclidean distance between aligned poses (squared differences over the coordinates both
         persons have visible, scaled up to all coordinates: scikit-learn's ``nan_euclidean_distances``),
         computed on at most ``max_silhouette_samples`` persons (a seeded subsample, the same for every k). The
         highest mean silhouette wins ("silhouette"; ties: the smaller k), unless it is below ``min_silhouette``
         (0.25: "no substantial structure", Kaufman and Rousseeuw, *Finding Groups in Data*, 1990) or no k ≥ 2 is
         admissible: then k = 1 ("no_structure").
       Why not BIC: the aligned poses of one atomic pose are not Gaussian (the torso-length normalisation turns
       noise into a pose-dependent scale spread), and every BIC variant tried (spherical X-means, diagonal, tied
       full covariance, full-covariance GMM on principal components) split clean synthetic atoms further; the
       silhouette found the true k on every synthetic set tried (1 to 4 atoms, 10–40 % invisible joints).
    4. Per atom, and once pooled over all N pairs: a full-covariance 4-D Gaussian mixture of δB with the number of
       components C chosen by BIC over 1 … ``max_components``, a C being admissible when the atom has at least
       C·``min_component_samples`` offsets (``_fit_mixture``; BIC suits these low-dimensional offsets).

    Everything is a deterministic function of the arrays and ``seed`` (the mixture fits run on one
    thread). Raises ValueError when no person has a visible torso.
    """
    from sklearn.metrics.pairwise import nan_euclidean_distances  # ~1.2 s to import: not in every pipeline worker

    kp = np.asarray(gt_keypoints, dtype=np.float64)
    vis = np.asarray(gt_visible, dtype=bool)
    if kp.ndim != 3 or kp.shape[2] != 2 or vis.shape != kp.shape[:2]:
        raise ValueError(f"gt_keypoints must be [N, J, 2] and gt_visible [N, J], got {kp.shape} and {vis.shape}")
    offsets = box_offsets(gt_boxes, det_boxes)
    if offsets.shape[0] != kp.shape[0]:
        raise ValueError(f"{kp.shape[0]} poses but {offsets.shape[0]} box pairs")
    if not np.all(np.isfinite(offsets)):
        raise ValueError("box offsets must be finite")
    al = align_poses(kp, vis, torso=torso)
    n_aligned = int(al.index.size)
    if n_aligned == 0:
        raise ValueError("no person has a visible torso: atomic poses cannot be fitted")
    x = al.aligned.reshape(n_aligned, -1)
    m = _coord_mask(al.visible)

    def cluster(kk: int) -> tuple[np.ndarray, np.ndarray, float]:
        return _masked_kmeans(x, m, kk, np.random.Generator(np.random.PCG64(_derived_seed(seed, 0, kk))), n_init)

    sil: list[float | None] = [None] * max_k
    thresholds = (min_atom_samples, min_silhouette)
    if k is not None:
        if not 1 <= k <= n_aligned:
            raise ValueError(f"k={k} must be between 1 and the {n_aligned} persons with a visible torso")
        centres, labels, _ = cluster(k)
        selection = KSelection("given", k, (), *thresholds, f"k={k} given by the caller")
    elif n_aligned < 2 * min_atom_samples:
        centres, labels, _ = cluster(1)
        selection = KSelection(
            "single",
            1,
            tuple(sil),
            *thresholds,
            f"only {n_aligned} persons with a visible torso (< 2 × min_atom_samples = {2 * min_atom_samples}): "
            "k = 1, one atomic pose",
        )
    else:
        sub = np.arange(n_aligned)
        if n_aligned > max_silhouette_samples:
            sub = np.sort(np.random.default_rng(_derived_seed(seed, 3)).permutation(n_aligned)[:max_silhouette_samples])
        dist = nan_euclidean_distances(np.where(m[sub] > 0, x[sub], np.nan))
        fits: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        top = min(max_k, n_aligned // min_atom_samples)
        for kk in range(2, top + 1):
            fit = cluster(kk)
            if np.bincount(fit[1], minlength=kk).min() < min_atom_samples or np.unique(fit[1][sub]).size < 2:
                continue
            fits[kk] = fit
            sil[kk - 1] = _mean_silhouette(dist, fit[1][sub])
        best_k = max(fits, key=lambda kk: (sil[kk - 1], -kk), default=None)
        if best_k is not None and sil[best_k - 1] >= min_silhouette:
            centres, labels, _ = fits[best_k]
            selection = KSelection(
                "silhouette",
                best_k,
                tuple(sil),
                *thresholds,
                f"highest mean silhouette {sil[best_k - 1]:.3f} over k = 2..{top} with every atom >= "
                f"{min_atom_samples} persons; {n_aligned} persons aligned",
            )
        else:
            centres, labels, _ = cluster(1)
            best = "no admissible k >= 2" if best_k is None else f"best mean silhouette {sil[best_k - 1]:.3f}"
            selection = KSelection(
                "no_structure",
                1,
                tuple(sil),
                *thresholds,
                f"{best} (< {min_silhouette}): no substantial cluster structure among {n_aligned} persons, k = 1",
            )
    kk = centres.shape[0]
    atom_offsets = offsets[al.index]
    with threadpool_limits(limits=1):  # BLAS and OpenMP: tiny problems, where threads only cost time
        mixtures = tuple(
            _fit_mixture(
                atom_offsets[labels == a], max_components, min_component_samples, reg_covar, _derived_seed(seed, 1, a)
            )
            for a in range(kk)
        )
        pooled = _fit_mixture(offsets, max_components, min_component_samples, reg_covar, _derived_seed(seed, 2))
    return PGPGModel(
        atoms=_readonly(centres.reshape(kk, -1, 2)),
        mixtures=mixtures,
        pooled=pooled,
        atom_counts=_readonly(np.bincount(labels, minlength=kk).astype(np.int64)),
        k_selection=selection,
        n_pairs=int(offsets.shape[0]),
        n_excluded=int(al.excluded.size),
        torso=tuple(int(t) for t in torso),
        seed=int(seed),
    )


def pgpg_proposal(
    model: PGPGModel,
    rng: np.random.Generator,
    box_xyxy: Any,
    image_wh: tuple[float, float],
    keypoints: Any,
    visible: Any,
    *,
    min_size: float = 2.0,
) -> DPGProposal:
    """One PGPG proposal (RMPE, PGPG, "proposals generation"): the pose's atom (``PGPGModel.atom_of``; the pooled
    mixture when its torso is not visible, reported as atom -1), one δB drawn from that atom's mixture (draws:
    ``rng.random(1)`` then ``rng.standard_normal((1, 4))``), the box (x1g + δ0·wg, y1g + δ1·hg, x2g + δ2·wg,
    y2g + δ3·hg), clamped to the image with a minimum size: x1 ∈ [0, W − min_size], x2 ∈ [x1 + min_size, W]
    (same for y). Sample it repeatedly ("dense sampling") for more proposals. ``branch="pgpg"``, no truncation;
    ``inside``/``empty`` as in ``dpg_proposal`` (on the final box)."""
    box, W, H = _check_box_image(box_xyxy, image_wh)
    kp, vis = _check_keypoints(keypoints, visible)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"box {box.tolist()} has no positive width and height")
    if not (W >= min_size and H >= min_size):
        raise ValueError(f"image {W}×{H} is smaller than min_size={min_size}")
    atom = model.atom_of(kp, vis) if kp.shape[0] else -1
    delta, comp = model.mixture_of(atom).sample(rng, 1)
    w, h = box[2] - box[0], box[3] - box[1]
    sampled = box + delta[0] * np.array([w, h, w, h])
    x1 = min(max(sampled[0], 0.0), W - min_size)
    y1 = min(max(sampled[1], 0.0), H - min_size)
    x2 = min(max(sampled[2], x1 + min_size), W)
    y2 = min(max(sampled[3], y1 + min_size), H)
    final = np.array([x1, y1, x2, y2])
    inside = joints_inside(kp, vis, final)
    return DPGProposal(
        box_xyxy=_readonly(final),
        start_xyxy=_readonly(box),
        sampled_xyxy=_readonly(sampled),
        branch="pgpg",
        truncation="none",
        inside=_readonly(inside),
        joint_count=int(inside.sum()),
        empty=kp.shape[0] > 0 and not inside.any(),
        atom=atom,
        component=int(comp[0]),
    )
