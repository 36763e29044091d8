"""Training-time crops and heatmap targets: what AlphaPose's ``SimpleTransform`` does to one training sample.

AlphaPose's crop convention (shared with inference), augmentations, targets and loss, from AlphaPose at c60106d:
``alphapose/utils/presets/simple_transform.py`` (``__call__`` L184–269, ``_target_generator`` L126–163,
``half_body_transform`` L271–314), ``alphapose/utils/transforms.py`` (``addDPG`` L43–73, ``flip_joints_3d``
L526–552, ``get_affine_transform`` L762–795), ``alphapose/utils/bbox.py`` (``_box_to_center_scale`` L197–214),
``scripts/train.py`` L52–54 (the loss) and ``configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml`` L7–12 (the values).
The method is the SPPE training of RMPE (Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017) as
AlphaPose implements it today.

One sample, in AlphaPose's order (``sample_transform``):

1. DPG box jitter (``dpg_box``), only when ``TrainAugment.dpg`` (AlphaPose's second training phase, §7.5).
2. Box → centre/scale: aspect 0.75, ×1.25 (``models.transforms.boxes_to_center_scale``, the inference rule).
3. Half-body: if more than ``num_joints_half_body`` joints are visible and ``U < prob_half_body``, the centre and
   scale come from the visible joints of the upper or the lower body instead (``half_body_center_scale``).
4. Scale ``·= clip(N(0,1)·sf + 1, 1 − sf, 1 + sf)``.
5. Rotation ``r = clip(N(0,1)·rf, −2rf, 2rf)`` with probability ``rot_prob`` (0.6), else 0.
6. Horizontal flip with probability ``flip_prob`` (0.5): the image is mirrored, joints go to ``x → W − x − 1`` with
   left/right swapped (``flip_keypoints``), ``center_x → W − center_x − 1``.
7. The affine ``get_affine_transform(center, scale, r, [192, 256])`` (``rotated_crop_matrix``); visible joints go
   through it.

``training_sample`` then cuts the crop with ``cv2.warpAffine`` exactly as ``models.transforms.crop_images`` (bilinear,
black border, uint8) and renders the targets (``gaussian_targets``); the network input is ``normalize_crops`` of the
crop, as at inference. ``heatmap_mse_loss`` is AlphaPose's ``0.5·MSELoss`` on weighted maps.

Random numbers come from one ``numpy.random.Generator`` passed in (AlphaPose mixes ``np.random`` and Python's
``random``); the draws happen in AlphaPose's order and under its conditions, but the streams are not AlphaPose's, so
only the distributions match, not individual samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.pgpg import dpg_proposal
from models.transforms import (
    ALPHAPOSE_CROP,
    CropSpec,
    boxes_to_center_scale,
    center_scale_to_boxes,
    crop_matrices,
)

__all__ = [
    "TrainAugment",
    "ALPHAPOSE_1X_AUGMENT",
    "ALPHAPOSE_2X_AUGMENT",
    "NO_AUGMENT",
    "COCO_UPPER_BODY_IDS",
    "SampleTransform",
    "sample_transform",
    "dpg_box",
    "half_body_center_scale",
    "flip_keypoints",
    "flip_boxes",
    "rotated_crop_matrix",
    "warp_crop",
    "training_sample",
    "gaussian_targets",
    "heatmap_mse_loss",
]

#: COCO-17's upper body for the half-body transform: nose, eyes, ears, shoulders, elbows, wrists (AlphaPose's
#: ``alphapose/datasets/mscoco.py`` ``upper_body_ids``); every other visible joint counts as lower body.
COCO_UPPER_BODY_IDS: tuple[int, ...] = tuple(range(11))


@dataclass(frozen=True, kw_only=True)
class TrainAugment:
    """Augmentation parameters of AlphaPose's ``SimpleTransform`` in training mode.

    Defaults are ``configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml`` L7–12 (``AUG``): ``SCALE_FACTOR 0.3``,
    ``ROT_FACTOR 40``, ``NUM_JOINTS_HALF_BODY 8``, ``PROB_HALF_BODY -1`` (half-body off).

    Attributes:
        scale_factor: sf; the crop scale is multiplied by ``clip(N(0,1)·sf + 1, 1 − sf, 1 + sf)``. 0 turns it off.
        rot_factor: rf in degrees; a rotated sample gets ``clip(N(0,1)·rf, −2rf, 2rf)``.
        rot_prob: probability of rotating at all (AlphaPose hard-codes 0.6, ``random.random() <= 0.6``).
        flip_prob: probability of a horizontal flip. AlphaPose always flips with 0.5 (``random.random() > 0.5``):
            the config's ``AUG.FLIP`` is never read (§7.2 item 6). 0 turns it off.
        num_joints_half_body: half-body needs strictly more visible joints than this.
        prob_half_body: probability of the half-body transform when it applies (−1 in the 1x configs: never; 0.3 in
            the 2x configs).
        upper_body_ids: joints that count as upper body; the rest are lower body (COCO: 0–10).
        half_body_scale: enlargement of the half-body box (1.5, after the aspect fix; not the 1.25 of whole boxes).
        dpg: apply ``dpg_box`` first (AlphaPose's DPG phase, after ``DPG_MILESTONE``).
        crop: output size, aspect and enlargement of the crop (AlphaPose's 256×192, 0.75, ×1.25).
    """

    scale_factor: float = 0.3
    rot_factor: float = 40.0
    rot_prob: float = 0.6
    flip_prob: float = 0.5
    num_joints_half_body: int = 8
    prob_half_body: float = -1.0
    upper_body_ids: tuple[int, ...] = COCO_UPPER_BODY_IDS
    half_body_scale: float = 1.5
    dpg: bool = False
    crop: CropSpec = ALPHAPOSE_CROP

    def __post_init__(self) -> None:
        if not 0 <= self.scale_factor < 1:
            raise ValueError(f"scale_factor must lie in [0, 1), got {self.scale_factor}")
        if self.rot_factor < 0 or self.half_body_scale <= 0:
            raise ValueError(f"invalid rot_factor / half_body_scale in {self}")
        for name in ("rot_prob", "flip_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


#: ``256x192_res50_lr1e-3_1x.yaml`` (the released FastPose-res50): no half-body.
ALPHAPOSE_1X_AUGMENT = TrainAugment()
#: The 2x configs (``*_2x*.yaml``): ``ROT_FACTOR 45``, ``SCALE_FACTOR 0.35``, ``PROB_HALF_BODY 0.3``.
ALPHAPOSE_2X_AUGMENT = TrainAugment(scale_factor=0.35, rot_factor=45.0, prob_half_body=0.3)
#: Every augmentation off: ``sample_transform`` then reproduces the inference crop bit for bit.
NO_AUGMENT = TrainAugment(scale_factor=0.0, rot_factor=0.0, rot_prob=0.0, flip_prob=0.0, prob_half_body=-1.0)


@dataclass(frozen=True, eq=False)
class SampleTransform:
    """The geometry of one training crop (``sample_transform``).

    Attributes:
        matrix: float64 ``[2, 3]``, image pixels → network-input pixels, for the image **after** the mirror when
            ``flipped`` (AlphaPose warps ``image[:, ::-1]``); ``source_matrix`` is the same map from the original image.
        flipped: whether the sample was mirrored.
        keypoints: float64 ``[K, 2]`` in input pixels (after the flip's left/right swap); NaN where not visible
            (AlphaPose leaves those untransformed; they get weight 0 and no Gaussian either way).
        visible: bool ``[K]`` after the swap.
        center_xy, scale_wh: float64 ``[2]``, the crop centre (in the mirrored image when flipped) and size, after
            half-body and the scale multiplier; the crop box before rotation is ``center ± scale/2``.
        rotation_deg: r (0 when not rotated).
        scale_multiplier: the drawn ``clip(N·sf + 1, 1 − sf, 1 + sf)``.
        half_body: ``"upper"``, ``"lower"`` or None (not applied, or too few selected joints).
        box_xyxy: float64 ``[4]``, the person box used (after DPG), original image.
        image_width: W of the source image (defines the mirror).
    """

    matrix: np.ndarray
    flipped: bool
    keypoints: np.ndarray
    visible: np.ndarray
    center_xy: np.ndarray
    scale_wh: np.ndarray
    rotation_deg: float
    scale_multiplier: float
    half_body: str | None
    box_xyxy: np.ndarray
    image_width: int

    @property
    def source_matrix(self) -> np.ndarray:
        """float64 ``[2, 3]`` mapping the *original* (unmirrored) image into the input: ``matrix`` composed with
        ``x → W − 1 − x`` when ``flipped``."""
        if not self.flipped:
            return self.matrix.copy()
        mirror = np.array([[-1.0, 0.0, self.image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return self.matrix @ mirror


def dpg_box(rng: np.random.Generator, box_xyxy: np.ndarray, image_width: int, image_height: int) -> np.ndarray:
    """AlphaPose's pose-independent DPG box augmentation as ``master`` applies it in training (``addDPG``,
    ``alphapose/utils/transforms.py`` L43–73): ``models.pgpg.dpg_proposal`` on the raw box, without the
    pre-enlargement and the truncation of the older ``train_sppe`` (see there for the steps and the draws).

    With ``u ~ U(0, 1)``: if ``u > 0.85`` a sub-patch of ``u·w × u·h`` placed uniformly inside the box; otherwise each
    corner jittered by ``N(μ, σ)·size`` and clamped (``x1 ∈ [1, W−3]``, ``x2 ∈ [x1+2, W−3]``, y likewise).

    Returns float64 ``[4]``.
    """
    proposal = dpg_proposal(rng, box_xyxy, (image_width, image_height), pre_enlarge=False, truncate=False)
    return np.array(proposal.box_xyxy)


def half_body_center_scale(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    visible: np.ndarray,
    upper_body_ids: Sequence[int],
    aspect_ratio: float,
    scale_mult: float = 1.5,
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """AlphaPose's half-body crop (``half_body_transform``, ``simple_transform.py`` L271–314).

    Visible joints split into upper (``upper_body_ids``) and lower (all others). The upper body is chosen when
    ``N(0,1) < 0.5`` (a standard normal, not a uniform: p ≈ Φ(0.5) ≈ 0.69) and it has more than 2 visible joints;
    otherwise the lower body if it has more than 2, else the upper. Fewer than 2 selected joints → None. The centre
    is the **mean** of the selected joints (not their box centre); the size is their extent, aspect-fixed as
    ``_box_to_center_scale`` (``w > a·h`` → ``h = w/a``, ``w < a·h`` → ``w = a·h``), times ``scale_mult`` (1.5).

    Returns ``(center_xy [2], scale_wh [2], "upper" | "lower")`` float64, or None.
    """
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    in_upper = np.zeros(len(kps), dtype=bool)
    in_upper[[i for i in upper_body_ids if i < len(kps)]] = True
    upper, lower = kps[vis & in_upper], kps[vis & ~in_upper]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        part, sel = "upper", upper
    elif len(lower) > 2:
        part, sel = "lower", lower
    else:
        part, sel = "upper", upper
    if len(sel) < 2:
        return None
    center = sel.mean(axis=0)
    w, h = sel.max(axis=0) - sel.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h]) * scale_mult, part


def flip_keypoints(
    keypoints: np.ndarray, visible: np.ndarray, flip_pairs: Sequence[tuple[int, int]], image_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints as AlphaPose's ``flip_joints_3d`` (``transforms.py`` L526–552): ``x → W − x − 1``, then
    left/right pairs swapped (positions and visibility), then positions of invisible joints zeroed.

    Args:
        keypoints: float ``[K, 2]`` image pixels.
        visible: bool or 0/1 ``[K]``.
    Returns:
        float64 ``[K, 2]`` and bool ``[K]``.
    """
    kps = np.array(keypoints, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    kps[:, 0] = image_width - kps[:, 0] - 1
    perm = np.arange(len(kps))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    kps, vis = kps[perm], vis[perm]
    kps[~vis] = 0.0
    return kps, vis


def flip_boxes(boxes_xyxy: np.ndarray, image_width: int) -> np.ndarray:
    """Mirror xyxy boxes ``[..., 4]`` with the keypoints' rule ``x → W − x − 1`` (x1 and x2 trade places)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    out = b.copy()
    out[..., 0] = image_width - b[..., 2] - 1
    out[..., 2] = image_width - b[..., 0] - 1
    return out


def rotated_crop_matrix(
    center_xy: np.ndarray, scale_wh: np.ndarray, rotation_deg: float, output_size_hw: tuple[int, int]
) -> np.ndarray:
    """AlphaPose's ``get_affine_transform(center, scale, rot, [W_out, H_out])`` as a closed form, float64 ``[2, 3]``.

    ``get_affine_transform`` maps the centre to ``(W_out/2, H_out/2)`` and the point ``scale_w/2`` above the centre,
    rotated by ``r`` (``get_dir``: ``(x, y) → (x cos r − y sin r, x sin r + y cos r)``), to the point ``W_out/2`` above
    the output centre; the third points are the perpendiculars. Solving gives the similarity
    ``x_in = s·R(−r)·(x − c) + (W_out/2, H_out/2)`` with ``s = W_out/scale_w`` and ``R(−r) = [[cos r, sin r],
    [−sin r, cos r]]``: only the width sets the scale, and a positive ``r`` turns the image content
    counter-clockwise on screen (y down).

    With ``r = 0`` the result is ``models.transforms.crop_matrices`` of the crop box ``center ± scale/2``, bit for bit
    (the same float64 arithmetic), so an unaugmented training crop is the inference crop.
    """
    box = center_scale_to_boxes(np.asarray(center_xy, dtype=np.float64), np.asarray(scale_wh, dtype=np.float64))
    m = crop_matrices(box, output_size_hw)[0]
    if rotation_deg == 0:
        return m
    out_h, out_w = output_size_hw
    s = m[0, 0]
    cx, cy = (box[0, 0] + box[0, 2]) / 2, (box[0, 1] + box[0, 3]) / 2  # as crop_matrices derives them
    rad = np.deg2rad(rotation_deg)
    cos, sin = np.cos(rad), np.sin(rad)
    a = s * np.array([[cos, sin], [-sin, cos]])
    t = np.array([out_w / 2, out_h / 2]) - a @ np.array([cx, cy])
    return np.concatenate([a, t[:, None]], axis=1)


def sample_transform(
    rng: np.random.Generator,
    box_xyxy: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    aug: TrainAugment,
    flip_pairs: Sequence[tuple[int, int]],
    image_width: int,
    *,
    image_height: int | None = None,
) -> SampleTransform:
    """Draw one training crop's geometry, following AlphaPose's ``SimpleTransform.__call__`` (train mode) step by step
    (module docstring).

    Draw order and conditions as AlphaPose: DPG (if on); the half-body uniform only when more than
    ``num_joints_half_body`` joints are visible, then its normal; the scale normal; the rotation uniform, then its
    normal only when rotating; the flip uniform. Half-body uses the unflipped joints.

    Args:
        rng: the random source.
        box_xyxy: float ``[4]`` person box in image pixels (AlphaPose's dataset gives ``x + w − 1`` as x2, §7.1).
        keypoints: float ``[K, 2]`` image pixels.
        visible: bool or 0/1 ``[K]`` (COCO's ``min(1, v)``).
        aug: augmentation parameters.
        flip_pairs: left/right index pairs (``models.keypoints.KeypointSet.flip_pairs``).
        image_width: W of the image (the mirror is ``x → W − x − 1``).
        image_height: H, needed only when ``aug.dpg`` (its clamps).
    Returns:
        ``SampleTransform``.
    """
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    if len(vis) != len(kps):
        raise ValueError(f"{len(kps)} keypoints but {len(vis)} visibility flags")
    if aug.dpg:
        if image_height is None:
            raise ValueError("DPG clamps to the image: pass image_height")
        box = dpg_box(rng, box, image_width, image_height)

    centers, scales = boxes_to_center_scale(box[None], aug.crop.aspect_ratio, aug.crop.scale_mult)
    center, scale = centers[0], scales[0]

    half_body = None
    if vis.sum() > aug.num_joints_half_body and rng.random() < aug.prob_half_body:
        hb = half_body_center_scale(rng, kps, vis, aug.upper_body_ids, aug.crop.aspect_ratio, aug.half_body_scale)
        if hb is not None:
            center, scale, half_body = hb

    sf = aug.scale_factor
    mult = float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
    scale = scale * mult

    rf = aug.rot_factor
    # AlphaPose: ``random.random() <= 0.6``; ``<`` differs only on a set of probability zero and makes 0 mean "never".
    rotation = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)) if rng.random() < aug.rot_prob else 0.0

    flipped = bool(rng.random() < aug.flip_prob)  # AlphaPose: ``random.random() > 0.5``
    if flipped:
        kps, vis = flip_keypoints(kps, vis, flip_pairs, image_width)
        center = np.array([image_width - center[0] - 1, center[1]])

    matrix = rotated_crop_matrix(center, scale, rotation, aug.crop.output_size_hw)
    kps_in = np.full_like(kps, np.nan)
    kps_in[vis] = kps[vis] @ matrix[:, :2].T + matrix[:, 2]
    return SampleTransform(
        matrix=matrix,
        flipped=flipped,
        keypoints=kps_in,
        visible=vis,
        center_xy=np.asarray(center, dtype=np.float64),
        scale_wh=np.asarray(scale, dtype=np.float64),
        rotation_deg=rotation,
        scale_multiplier=mult,
        half_body=half_body,
        box_xyxy=box,
        image_width=int(image_width),
    )


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size_hw: tuple[int, int]) -> np.ndarray:
    """Cut one crop with ``cv2.warpAffine`` as ``models.transforms.crop_images`` does (float32 matrix, bilinear,
    constant black border, uint8 rounding), but from any affine (rotated ones included). uint8 ``[H_out, W_out, 3]``."""
    import cv2

    out_h, out_w = output_size_hw
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        np.asarray(matrix, dtype=np.float64).astype(np.float32),
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def training_sample(
    image: np.ndarray,
    box_xyxy: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    rng: np.random.Generator,
    aug: TrainAugment,
    flip_pairs: Sequence[tuple[int, int]],
    *,
    heatmap_size_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample as AlphaPose's ``SimpleTransform`` (train mode, ``MSELoss``) makes it.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        box_xyxy: float ``[4]`` person box; keypoints float ``[K, 2]`` and visible ``[K]`` in image pixels.
        rng, aug, flip_pairs: as ``sample_transform``.
        heatmap_size_hw, sigma: target maps (``DATA_PRESET.HEATMAP_SIZE`` 64×48, ``SIGMA`` 2).
    Returns:
        ``crop`` uint8 ``[H_in, W_in, 3]`` (feed ``models.transforms.normalize_crops``), ``target`` float32
        ``[K, H_hm, W_hm]`` and ``target_weight`` float32 ``[K]``.

    Keypoints go from input to heatmap pixels by the stride per axis (``x/4``, ``y/4`` for 256×192 → 64×48;
    AlphaPose divides x by the height stride and y by the width stride, equal here).
    """
    st = sample_transform(
        rng, box_xyxy, keypoints, visible, aug, flip_pairs, image.shape[1], image_height=image.shape[0]
    )
    src = image[:, ::-1] if st.flipped else image
    crop = warp_crop(src, st.matrix, aug.crop.output_size_hw)
    in_h, in_w = aug.crop.output_size_hw
    hm_h, hm_w = heatmap_size_hw
    kps_hm = st.keypoints / np.array([in_w / hm_w, in_h / hm_h])
    target, weight = gaussian_targets(kps_hm, st.visible, heatmap_size_hw, sigma)
    return crop, target, weight


def gaussian_targets(
    keypoints_hm: np.ndarray,
    visible: np.ndarray,
    heatmap_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap targets exactly as AlphaPose's ``_target_generator`` (``simple_transform.py`` L126–163).

    Per joint with heatmap position ``(x, y)``:

    * the centre is rounded half up by truncation: ``μ = int(x + 0.5)``, ``int(y + 0.5)`` (Python ``int`` truncates
      towards zero, so ``x = −0.7`` gives μ = 0, not −1);
    * the patch is an unnormalised Gaussian ``exp(−((i − μx)² + (j − μy)²) / 2σ²)`` (peak exactly 1, float32) on the
      ``(6σ+1)²`` window ``[μ − 3σ, μ + 3σ]`` (13×13 for σ = 2), written where it overlaps the map; elsewhere 0;
    * weight = visibility; set to 0 when the window's top-left ``ul = μ − 3σ`` is at or past the right/bottom edge
      (``ul ≥ W`` or ``ul ≥ H``) or its exclusive bottom-right ``br = μ + 3σ + 1`` is **negative**. AlphaPose's
      test is ``br < 0``, not ``br ≤ 0``: a window ending exactly at column −1 (``br = 0``: μ = −3σ − 1 = −7 for
      σ = 2, i.e. ``x ∈ (−8.5, −7.5]``) keeps its weight with an all-zero map. Reproduced;
    * the Gaussian is pasted only for visibility > 0.5; invisible joints have weight 0 and a zero map.

    Args:
        keypoints_hm: float ``[..., K, 2]`` (x, y) in heatmap pixels (input pixels / 4; NaN allowed where not
            visible).
        visible: bool or 0/1 float ``[..., K]``.
        heatmap_hw: (H, W) of the maps.
        sigma: Gaussian σ in heatmap pixels.
    Returns:
        ``target`` float32 ``[..., K, H, W]`` and ``target_weight`` float32 ``[..., K]``.
    """
    kps = np.asarray(keypoints_hm, dtype=np.float64)
    vis = np.asarray(visible, dtype=np.float32)
    lead = kps.shape[:-1]
    if vis.shape != lead:
        raise ValueError(f"keypoints {kps.shape} and visibility {vis.shape} disagree")
    h, w = heatmap_hw
    flat_k, flat_v = kps.reshape(-1, 2), vis.reshape(-1)
    target = np.zeros((len(flat_k), h, w), dtype=np.float32)
    weight = flat_v.copy()
    tmp = sigma * 3
    size = 2 * tmp + 1
    offs = np.arange(0, size, 1, dtype=np.float32) - np.float32(size // 2)  # patch offsets from its centre
    d2 = offs[None, :] ** 2 + offs[:, None] ** 2
    patch = np.exp(-d2 / np.float32(2 * sigma**2)).astype(np.float32)  # [rows, cols], centre value exactly 1
    for j, ((x, y), v) in enumerate(zip(flat_k, flat_v)):
        if v <= 0:  # weight = v = 0 already, and AlphaPose pastes nothing for v <= 0.5
            continue
        mu_x, mu_y = int(x + 0.5), int(y + 0.5)
        ul = (int(mu_x - tmp), int(mu_y - tmp))
        br = (int(mu_x + tmp + 1), int(mu_y + tmp + 1))
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[j] = 0.0
            continue
        if v <= 0.5:
            continue
        x0, x1 = max(0, ul[0]), min(br[0], w)
        y0, y1 = max(0, ul[1]), min(br[1], h)
        target[j, y0:y1, x0:x1] = patch[y0 - ul[1] : y1 - ul[1], x0 - ul[0] : x1 - ul[0]]
    return target.reshape(*lead, h, w), weight.reshape(lead)


def heatmap_mse_loss(pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
    """AlphaPose's SPPE loss for ``LOSS.TYPE: MSELoss`` (``scripts/train.py`` L52–54):
    ``0.5 · MSELoss(reduction='mean')(pred ⊙ w, target ⊙ w)``.

    The 0.5 is in ``train.py`` (not in ``nn.MSELoss``). The mean runs over all ``N·K·H·W`` values, joints with weight
    0 included: such a joint contributes nothing and gets zero gradient, but it still counts in the denominator.

    Args:
        pred, target: float ``[N, K, H, W]``.
        target_weight: ``[N, K]`` (or ``[N, K, 1, 1]``, AlphaPose's shape), broadcast over each map.
    Returns:
        scalar tensor.
    """
    w = target_weight.to(pred.dtype).reshape(*pred.shape[:2], 1, 1)
    return 0.5 * F.mse_loss(pred * w, target.to(pred.dtype) * w, reduction="mean")
