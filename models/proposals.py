"""One training sample from one labelled person: a proposal box (GT, DPG or PGPG), then AlphaPose's augmentations.

Used by ``jobs.proposals`` (samples written ahead of training, one Parquet row each, ``store.training``) and by the
SPPE trainer for on-the-fly generation: the same function of the same numbers, so a stored sample and a generated
one agree bit for bit.

RMPE (Fang, Xie, Tai and Lu, "RMPE: Regional Multi-person Pose Estimation", ICCV 2017, arXiv:1612.00137) trains the
single-person pose estimator on *proposals* distributed like detector boxes (its "Pose-guided Proposals Generator")
rather than on ground-truth boxes only. One sample here is, in order:

1. the proposal box (``mode``):

   * ``"gt"``: the annotation's box, every labelled joint keeps its label (AlphaPose's first training phase:
     ``alphapose/utils/presets/simple_transform.py`` ``SimpleTransform.__call__`` without ``addDPG``);
   * ``"dpg"``: AlphaPose's released DPG (``models.pgpg.dpg_proposal``; ``"jitter"`` or ``"patch"`` branch), in
     one of two variants (``dpg_variant``):

     - ``"train_sppe"`` (default): ``generateSampleBox`` of ``train_sppe/src/utils/pose.py``, RMPE's code, with
       the pre-enlargement and the random truncation;
     - ``"master"``: ``addDPG`` of ``alphapose/utils/transforms.py`` (AlphaPose's current trainer) on the raw box,
       no truncation;
   * ``"pgpg"``: the paper's pose-guided generator (``models.pgpg.pgpg_proposal`` of a fitted ``PGPGModel``).

   For ``"train_sppe"`` DPG and for PGPG only the joints inside the proposal box get a label
   (``DPGProposal.inside``; ``generateSampleBox`` draws heatmaps only for them, ``pose.py`` L116–124) and a proposal
   with no labelled joint inside the sampled box is ``empty``: its input crop is zeroed (``pose.py`` L111–112).
   ``"master"`` keeps every labelled joint and is never empty, as ``SimpleTransform`` after ``addDPG`` does.
2. AlphaPose's ``SimpleTransform`` augmentations on the proposal box (``models.targets.sample_transform``: the
   ×1.25 crop box of aspect 0.75, half-body, scale, rotation, flip), in that order, as AlphaPose applies them after
   ``addDPG``. ``TrainAugment.dpg`` must be off: the proposal *is* the DPG step.
   With ``"train_sppe"`` (whose own trainer cropped the enlarged box as it was) the ×1.25 of step 2 comes on top of
   the pre-enlargement, so the crop spans about 1.25 × 1.2–1.3 × the GT box; ``"master"`` is AlphaPose's current
   pipeline exactly (``models.targets.training_sample`` with ``TrainAugment(dpg=True)``, draw for draw).
3. The crop, cut exactly as ``models.targets.training_sample`` cuts it (``warp_crop`` of the mirrored image when
   flipped), and the labelled joints in crop pixels.

Randomness: one ``numpy.random.Generator`` per sample, ``sample_rng(seed, epoch, image_id, person_index,
proposal_index)``, so a sample depends only on those five values and its inputs, never on which shard, worker or
order produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.pgpg import ALPHAPOSE_DPG, DPGParams, PGPGModel, dpg_proposal, pgpg_proposal, proposal_rng
from models.targets import NO_AUGMENT, TrainAugment, sample_transform, warp_crop

__all__ = [
    "PROPOSAL_MODES",
    "DPG_VARIANTS",
    "ProposalSample",
    "proposal_sample",
    "sample_rng",
    "image_to_crop_matrix",
    "crop_interference",
]

#: ``mode`` values of ``proposal_sample``.
PROPOSAL_MODES = ("gt", "dpg", "pgpg")
#: ``dpg_variant`` values of ``proposal_sample`` (module docstring).
DPG_VARIANTS = ("train_sppe", "master")


@dataclass(frozen=True, eq=False)
class ProposalSample:
    """One training sample (the columns of ``store.training.SAMPLE_SCHEMA`` that depend on the image and the draw).

    Attributes:
        proposal_box_xyxy: float64 ``[4]``, the box the crop was cut around, original-image pixels (before flip).
        branch: ``"gt"``, ``"jitter"``, ``"patch"`` or ``"pgpg"``.
        truncation: ``"none"`` or one of ``models.pgpg.TRUNCATIONS``.
        atom: PGPG's atomic pose (-1: pooled mixture), None unless ``branch == "pgpg"``.
        empty: no labelled joint inside the sampled proposal: ``crop`` is all zeros (AlphaPose zeroes the input).
        crop: uint8 ``[H, W, 3]`` RGB network input (256×192 for ``ALPHAPOSE_CROP``).
        image_to_crop: float64 ``[2, 3]``, original image pixels → crop pixels (the flip folded in).
        flipped: mirrored; ``keypoints``/``target_weight`` are then in the flipped joint order (left/right swapped).
        keypoints: float32 ``[K, 2]`` (x, y) crop pixels; NaN where ``target_weight`` is 0.
        target_weight: float32 ``[K]``, 1 for joints that get a heatmap label, else 0. (Joints whose Gaussian lies
            wholly outside the heatmap get weight 0 later, in ``models.targets.gaussian_targets``, as AlphaPose.)
        rotation_deg, scale_multiplier: the drawn augmentation (for inspection; not stored).
    """

    proposal_box_xyxy: np.ndarray
    branch: str
    truncation: str
    atom: int | None
    empty: bool
    crop: np.ndarray
    image_to_crop: np.ndarray
    flipped: bool
    keypoints: np.ndarray
    target_weight: np.ndarray
    rotation_deg: float
    scale_multiplier: float


def sample_rng(
    seed: int, epoch: int, image_id: int | str, person_index: int, proposal_index: int
) -> np.random.Generator:
    """The generator of one sample: ``models.pgpg.proposal_rng(seed, epoch, image_id, person_index)``'s seed
    sequence, spawned at key ``(proposal_index,)`` (``numpy.random.SeedSequence(entropy, spawn_key=...)``: the
    child that ``SeedSequence.spawn`` gives as its ``proposal_index``-th, without making the others). Stable across
    processes and machines; independent streams for different proposal indices."""
    if isinstance(proposal_index, bool) or not isinstance(proposal_index, int | np.integer) or proposal_index < 0:
        raise ValueError(f"proposal_index must be a non-negative integer, got {proposal_index!r}")
    base = proposal_rng(seed, epoch, image_id, person_index).bit_generator.seed_seq
    child = np.random.SeedSequence(base.entropy, spawn_key=(int(proposal_index),))
    return np.random.Generator(np.random.PCG64(child))


def image_to_crop_matrix(matrix: np.ndarray, flipped: bool, image_width: int) -> np.ndarray:
    """Fold the mirror ``x → W − x − 1`` into a crop affine: ``matrix`` maps the (mirrored, if ``flipped``) image to
    the crop; the result maps the original image to the crop. float64 ``[2, 3]``."""
    m = np.array(matrix, dtype=np.float64).reshape(2, 3)
    if flipped:
        m[:, 2] += m[:, 0] * (image_width - 1)
        m[:, 0] = -m[:, 0]
    return m


def crop_interference(
    image_to_crop: np.ndarray,
    flipped: bool,
    keypoints: np.ndarray,
    visible: np.ndarray,
    flip_pairs: Sequence[tuple[int, int]],
    crop_hw: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """The interference joints of a sample for JC-SPPE targets: the other persons' labelled joints that land in the
    crop, in crop pixels, with their joint types (CrowdPose, Li et al. CVPR 2019, §3.2: "joints of other persons in
    the proposal"; the crop is the network's view of the proposal, ×1.25 enlarged as AlphaPose cuts it).

    Args:
        image_to_crop: float ``[2, 3]`` original image → crop (``ProposalSample.image_to_crop``, flip folded in).
        flipped: the sample was mirrored: a joint's type becomes its mirror's (left ↔ right), as the target person's.
        keypoints: float ``[Q, K, 2]`` the *other* persons' joints, image pixels; visible: ``[Q, K]`` labelled.
        flip_pairs: the keypoint set's left/right pairs.
        crop_hw: the crop's (height, width).
    Returns:
        ``xy`` float32 ``[J, 2]`` crop pixels and ``types`` int16 ``[J]``, persons in order, joints in order.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.size == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int16)
    k = kp.shape[-2]
    kp = kp.reshape(-1, k, 2)
    vis = (np.asarray(visible).reshape(kp.shape[:2]) > 0) & np.isfinite(kp).all(axis=2)
    m = np.asarray(image_to_crop, dtype=np.float64).reshape(2, 3)
    xy = kp @ m[:, :2].T + m[:, 2]
    h, w = crop_hw
    inside = vis & (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    types = np.arange(k)
    if flipped:
        for a, b in flip_pairs:
            types[a], types[b] = b, a
    q, j = np.nonzero(inside)
    return xy[q, j].astype(np.float32), types[j].astype(np.int16)


def proposal_sample(
    image: np.ndarray,
    gt_box_xyxy: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    rng: np.random.Generator,
    *,
    mode: str,
    aug: TrainAugment = NO_AUGMENT,
    flip_pairs: Sequence[tuple[int, int]] = (),
    pgpg_model: PGPGModel | None = None,
    dpg_variant: str = "train_sppe",
    dpg_params: DPGParams = ALPHAPOSE_DPG,
) -> ProposalSample:
    """One training sample of one person: proposal box, augmentation, crop and crop-pixel labels (module docstring).

    Args:
        image: uint8 ``[H, W, 3]`` RGB (never modified).
        gt_box_xyxy: float ``[4]`` the person's box, image pixels (COCO: ``x2 = x + w − 1``, AlphaPose §7.1).
        keypoints: float ``[K, 2]`` (x, y) image pixels; visible: bool or 0/1 ``[K]`` (labelled joints).
        rng: the sample's generator (``sample_rng``); draws: the proposal's (none for ``"gt"``), then
            ``sample_transform``'s.
        mode: ``"gt"``, ``"dpg"`` or ``"pgpg"`` (``PROPOSAL_MODES``).
        aug: ``TrainAugment`` (``NO_AUGMENT``, ``ALPHAPOSE_1X_AUGMENT`` …) with ``dpg=False``; its ``crop`` sets the
            output size.
        flip_pairs: left/right pairs of the keypoint set (``models.keypoints.KeypointSet.flip_pairs``).
        pgpg_model: required for ``"pgpg"``.
        dpg_variant: ``"train_sppe"`` or ``"master"`` (module docstring).
        dpg_params: ``models.pgpg.dpg_proposal``'s constants (AlphaPose's by default).
    Returns:
        ``ProposalSample``.
    Raises:
        ValueError: unknown mode, ``aug.dpg`` on, ``"pgpg"`` without a model, wrong shapes, or a box without
            positive width and height.
    """
    if mode not in PROPOSAL_MODES:
        raise ValueError(f"mode must be one of {PROPOSAL_MODES}, got {mode!r}")
    if dpg_variant not in DPG_VARIANTS:
        raise ValueError(f"dpg_variant must be one of {DPG_VARIANTS}, got {dpg_variant!r}")
    if aug.dpg:
        raise ValueError("aug.dpg must be False: the proposal (mode='dpg') replaces SimpleTransform's addDPG")
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    box = np.asarray(gt_box_xyxy, dtype=np.float64).reshape(4)
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    if len(vis) != len(kps):
        raise ValueError(f"{len(kps)} keypoints but {len(vis)} visibility flags")
    vis = vis & np.isfinite(kps).all(axis=1)

    atom: int | None = None
    if mode == "gt":
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"box {box.tolist()} has no positive width and height")
        proposal_box, branch, truncation, empty, labelled = box, "gt", "none", False, vis
    else:
        if mode == "dpg":
            released = dpg_variant == "train_sppe"
            p = dpg_proposal(rng, box, (w, h), kps, vis, pre_enlarge=released, truncate=released, params=dpg_params)
        else:
            if pgpg_model is None:
                raise ValueError("mode='pgpg' needs pgpg_model (models.pgpg.PGPGModel)")
            p = pgpg_proposal(pgpg_model, rng, box, (w, h), kps, vis)
            atom = int(p.atom)
        proposal_box, branch, truncation, empty = np.array(p.box_xyxy), p.branch, p.truncation, bool(p.empty)
        labelled = np.asarray(p.inside, dtype=bool)  # generateSampleBox: heatmaps only for joints inside the proposal
        if mode == "dpg" and dpg_variant == "master":  # addDPG moves the box only; SimpleTransform labels every joint
            empty, labelled = False, vis

    st = sample_transform(rng, proposal_box, kps, labelled, aug, flip_pairs, w, image_height=h)
    out_hw = aug.crop.output_size_hw
    if empty:
        crop = np.zeros((*out_hw, 3), dtype=np.uint8)
    else:
        crop = warp_crop(img[:, ::-1] if st.flipped else img, st.matrix, out_hw)  # as models.targets.training_sample
    weight = st.visible.astype(np.float32)
    crop_kps = np.where(st.visible[:, None], st.keypoints, np.nan).astype(np.float32)
    return ProposalSample(
        proposal_box_xyxy=np.asarray(proposal_box, dtype=np.float64),
        branch=branch,
        truncation=truncation,
        atom=atom,
        empty=empty,
        crop=crop,
        image_to_crop=image_to_crop_matrix(st.matrix, st.flipped, w),
        flipped=st.flipped,
        keypoints=crop_kps,
        target_weight=weight,
        rotation_deg=float(st.rotation_deg),
        scale_multiplier=float(st.scale_multiplier),
    )
