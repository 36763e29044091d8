"""One SPPE training step, its targets, loss and learning-rate schedule: the pure-PyTorch core of ``jobs.train_sppe``.

Everything a training loop needs that is math, shared by the Ray Train loop (``jobs.train_sppe``, one call per
worker under DDP) and the plain single-process loop (``jobs.train_sppe.train_plain``, used by the benchmark and the
tests), so the two cannot drift:

* ``render_targets``: training-sample keypoints (crop pixels, ``store.training.sample_arrays``) → AlphaPose's
  Gaussian heatmap targets at stride 4 (``models.targets.gaussian_targets``: ``_target_generator`` of
  ``alphapose/utils/presets/simple_transform.py`` L126–163).
* ``centre_frame_targets``: the parallel SPPE's centre-located labels of RMPE (Fang et al., "RMPE: Regional
  Multi-person Pose Estimation", ICCV 2017, §3.2; ``models.sstn.centre_targets``) computed in the crop frame.
* ``compute_loss`` / ``train_step`` / ``train_epoch``: the loss of ``scripts/train.py`` L52–54 (0.5·MSE with target
  weights, ``models.targets.heatmap_mse_loss``), optionally through RMPE's SSTN (``models.sstn.SSTNPose``:
  loss in the proposal frame after the SDTN, plus the parallel SPPE's loss against centre-located targets), with
  optional bf16 autocast (forward only; loss and gradients in fp32, no GradScaler needed for bf16).
* ``build_optimizer`` / ``learning_rate``: AlphaPose's ``Adam(lr=1e-3)`` (no weight decay) and its per-epoch
  ``MultiStepLR(milestones=[90, 120], gamma=0.1)``, reset to the base rate at the DPG milestone with milestones
  counted from there (``scripts/train.py`` L267–316), as a pure function of the epoch, so resuming needs
  no scheduler state.
* ``export_state_dict``: the plain state dict of the base SPPE in AlphaPose's layout (no ``module.`` prefix, no
  STN or parallel branch), what ``models.checkpoints.load_checkpoint`` loads strictly into ``build_sppe(arch)``.

Nothing here imports Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.sppe import build_sppe
from models.sstn import SSTNPose, centre_targets
from models.targets import gaussian_targets, heatmap_mse_loss
from models.transforms import CropSpec, normalize_crops

__all__ = [
    "HEATMAP_STRIDE",
    "ALPHAPOSE_LR",
    "ALPHAPOSE_MILESTONES",
    "ALPHAPOSE_DPG_MILESTONES",
    "heatmap_size",
    "render_targets",
    "centre_frame_targets",
    "prepare_batch",
    "build_train_model",
    "build_optimizer",
    "learning_rate",
    "set_learning_rate",
    "compute_loss",
    "train_step",
    "EpochStats",
    "train_epoch",
    "unwrap",
    "export_state_dict",
]

#: Input pixels per heatmap pixel (256×192 crops → 64×48 maps; AlphaPose's ``feat_stride``).
HEATMAP_STRIDE = 4
#: ``configs/coco/resnet/256x192_res50_lr1e-3_1x.yaml`` ``TRAIN.LR``.
ALPHAPOSE_LR = 1e-3
#: ``TRAIN.LR_STEP`` of the same config: the rate drops ×0.1 after these epochs.
ALPHAPOSE_MILESTONES = (90, 120)
#: ``DPG_STEP − DPG_MILESTONE`` = [160, 190] − 140: milestones counted from the DPG phase's first epoch.
ALPHAPOSE_DPG_MILESTONES = (20, 50)


def heatmap_size(crop_hw: Sequence[int]) -> tuple[int, int]:
    """(H, W) of the heatmaps for a crop of ``crop_hw`` pixels: ``crop / HEATMAP_STRIDE`` (256×192 → 64×48)."""
    h, w = int(crop_hw[0]), int(crop_hw[1])
    if h % HEATMAP_STRIDE or w % HEATMAP_STRIDE:
        raise ValueError(f"crop size {h}×{w} is not a multiple of the heatmap stride {HEATMAP_STRIDE}")
    return h // HEATMAP_STRIDE, w // HEATMAP_STRIDE


def _visible(keypoints: np.ndarray, target_weight: np.ndarray) -> np.ndarray:
    # A joint has a target only where it has coordinates: NaN keypoints get weight 0 whatever the stored weight.
    finite = np.isfinite(keypoints).all(axis=-1)
    return np.where(finite, np.asarray(target_weight, dtype=np.float32), np.float32(0.0))


def render_targets(
    keypoints: np.ndarray, target_weight: np.ndarray, crop_hw: Sequence[int], sigma: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap targets of a batch of training samples (AlphaPose's ``_target_generator``).

    Args:
        keypoints: float ``[B, K, 2]`` (x, y) in crop (network-input) pixels, NaN where the joint has no target.
        target_weight: float ``[B, K]`` (0 or 1).
        crop_hw: the crops' (H, W); the maps are ``heatmap_size(crop_hw)``.
        sigma: Gaussian σ in heatmap pixels (``DATA_PRESET.SIGMA`` 2).
    Returns:
        ``targets`` float32 ``[B, K, H/4, W/4]`` and ``weights`` float32 ``[B, K]`` (0 where the Gaussian window lies
        outside the map, as AlphaPose).
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    vis = _visible(kps, target_weight)
    kps_hm = np.nan_to_num(kps / HEATMAP_STRIDE, nan=0.0)
    return gaussian_targets(kps_hm, vis, heatmap_size(crop_hw), sigma)


def render_jc_targets(
    keypoints: np.ndarray,
    target_weight: np.ndarray,
    interference_xy: Sequence[np.ndarray],
    interference_types: Sequence[np.ndarray],
    crop_hw: Sequence[int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """CrowdPose's JC-SPPE targets of a batch (Li et al., CVPR 2019, §3.2; ``models.crowdpose.jc_targets``): each
    sample's ``render_targets`` map plus μ = 0.5 Gaussians at its interference joints (crop pixels, per sample
    ``[J, 2]`` with types ``[J]``), max-combined, only on channels whose target joint is labelled."""
    from models.crowdpose import jc_targets

    kps = np.asarray(keypoints, dtype=np.float64)
    vis = _visible(kps, target_weight)
    kps_hm = np.nan_to_num(kps / HEATMAP_STRIDE, nan=0.0)
    hw = heatmap_size(crop_hw)
    maps, weights = [], []
    for b in range(len(kps)):
        xy = np.asarray(interference_xy[b], dtype=np.float64).reshape(-1, 2) / HEATMAP_STRIDE
        t, w = jc_targets(kps_hm[b], vis[b], xy, np.asarray(interference_types[b]).reshape(-1), hw, sigma)
        maps.append(t)
        weights.append(w)
    k = kps.shape[1]
    if not maps:
        return np.zeros((0, k, *hw), np.float32), np.zeros((0, k), np.float32)
    return np.stack(maps).astype(np.float32), np.stack(weights).astype(np.float32)


def centre_frame_targets(
    keypoints: np.ndarray,
    target_weight: np.ndarray,
    gt_boxes_xyxy: np.ndarray,
    image_to_crop: np.ndarray,
    crop_hw: Sequence[int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre-located labels for RMPE's parallel SPPE, in the crop frame.

    The GT box is mapped into the crop through the sample's ``image_to_crop`` affine (its four corners; the
    axis-aligned bounds, so a mirrored or rotated crop works), enlarged as the SPPE's crop convention enlarges a box
    (aspect ``W/H`` of the crop, ×1.25: ``CropSpec.crop_boxes``), and the crop-pixel keypoints are drawn in that frame
    (``models.sstn.centre_targets``): what a perfectly centred proposal would show the network.

    Args:
        keypoints: float ``[B, K, 2]`` crop pixels (NaN: no target); target_weight ``[B, K]``.
        gt_boxes_xyxy: float ``[B, 4]`` image pixels; image_to_crop: ``[B, 6]`` or ``[B, 2, 3]`` row-major affine.
        crop_hw: (H, W) of the crops.
    Returns:
        ``targets`` float32 ``[B, K, H/4, W/4]`` and ``weights`` float32 ``[B, K]``.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    n = len(kps)
    m = np.asarray(image_to_crop, dtype=np.float64).reshape(n, 2, 3)
    b = np.asarray(gt_boxes_xyxy, dtype=np.float64).reshape(n, 4)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)  # [B, 4, 2]
    c = np.einsum("nij,nkj->nki", m[:, :, :2], corners) + m[:, None, :, 2]
    boxes_crop = np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1)
    h, w = int(crop_hw[0]), int(crop_hw[1])
    spec = CropSpec(output_size_hw=(h, w), aspect_ratio=w / h)
    vis = _visible(kps, target_weight)
    return centre_targets(
        np.nan_to_num(kps, nan=0.0), vis, boxes_crop, crop=spec, heatmap_size_hw=heatmap_size((h, w)), sigma=sigma
    )


def prepare_batch(
    crops: np.ndarray,
    keypoints: np.ndarray,
    target_weight: np.ndarray,
    *,
    gt_boxes_xyxy: np.ndarray | None = None,
    image_to_crop: np.ndarray | None = None,
    interference: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    sigma: float = 2.0,
) -> dict[str, np.ndarray]:
    """Decoded samples (``store.training.sample_arrays``) → the arrays one training step consumes.

    Returns a dict of numpy arrays: ``crops`` uint8 ``[B, H, W, 3]`` (normalised on the training device by
    ``models.transforms.normalize_crops``, inference's normalisation), ``targets`` float32 ``[B, K, H/4, W/4]``,
    ``target_weight`` float32 ``[B, K]``, and with ``gt_boxes_xyxy`` and ``image_to_crop`` also ``centre_targets``
    and ``centre_weight`` (``centre_frame_targets``) for the parallel SPPE. With ``interference`` (per-sample
    interference joints and their types, crop pixels) the targets are JC-SPPE's (``render_jc_targets``).
    """
    crop_hw = crops.shape[1:3]
    if interference is not None:
        targets, weights = render_jc_targets(keypoints, target_weight, *interference, crop_hw, sigma)
    else:
        targets, weights = render_targets(keypoints, target_weight, crop_hw, sigma)
    out = {"crops": np.ascontiguousarray(crops), "targets": targets, "target_weight": weights}
    if gt_boxes_xyxy is not None and image_to_crop is not None:
        ct, cw = centre_frame_targets(keypoints, target_weight, gt_boxes_xyxy, image_to_crop, crop_hw, sigma)
        out["centre_targets"], out["centre_weight"] = ct, cw
    return out


def build_train_model(
    arch: str,
    num_joints: int = 17,
    *,
    sstn: bool = False,
    parallel_state: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """The network to train: ``build_sppe(arch, num_joints)``, wrapped in RMPE's ``SSTNPose`` when ``sstn`` (with a
    frozen parallel SPPE of the same arch loaded from ``parallel_state`` when given, strictly).

    Build it after seeding torch: initial weights come from the global generator.
    """
    sppe = build_sppe(arch, num_joints)
    if not sstn:
        if parallel_state is not None:
            raise ValueError("a parallel SPPE needs the SSTN (sstn=True): RMPE's parallel branch sees the STN's crop")
        return sppe
    parallel = None
    if parallel_state is not None:
        from models.checkpoints import load_state_dict_strict

        parallel = build_sppe(arch, num_joints)
        load_state_dict_strict(parallel, parallel_state, "<parallel SPPE>")
    return SSTNPose(sppe, parallel)


def build_optimizer(model: nn.Module, lr: float = ALPHAPOSE_LR) -> torch.optim.Adam:
    """AlphaPose's optimiser (``scripts/train.py`` L267): ``Adam(lr)`` with PyTorch's defaults (betas 0.9/0.999,
    eps 1e-8, no weight decay), over the parameters that require gradients (a frozen parallel SPPE has none)."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def learning_rate(
    epoch: int,
    *,
    base_lr: float = ALPHAPOSE_LR,
    milestones: Sequence[int] = ALPHAPOSE_MILESTONES,
    gamma: float = 0.1,
    dpg_from_epoch: int | None = None,
    dpg_milestones: Sequence[int] = ALPHAPOSE_DPG_MILESTONES,
) -> float:
    """The learning rate of 0-based ``epoch``: what AlphaPose's ``MultiStepLR`` stepped once per epoch gives.

    ``base_lr · gamma^(number of milestones ≤ epoch)``; from ``dpg_from_epoch`` on, the schedule restarts at
    ``base_lr`` with ``dpg_milestones`` counted from that epoch (``scripts/train.py`` L307–316: at the DPG milestone
    the rate is reset and a new ``MultiStepLR(DPG_STEP − DPG_MILESTONE)`` created). E.g. the 1x config: 1e-3 for
    epochs 0–89, 1e-4 for 90–119, 1e-5 from 120; with the DPG phase from 140: 1e-3 again for 140–159, 1e-4 for
    160–189, 1e-5 after.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be ≥ 0, got {epoch}")
    if dpg_from_epoch is not None and epoch >= dpg_from_epoch:
        e, steps = epoch - dpg_from_epoch, dpg_milestones
    else:
        e, steps = epoch, milestones
    return float(base_lr * gamma ** sum(1 for m in steps if e >= m))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def compute_loss(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward pass and loss of one batch.

    Args:
        model: a ``models.sppe`` network, or ``SSTNPose`` (its ``heatmaps`` output is already in the proposal frame,
            after the SDTN; with a parallel branch its output is scored against ``centre_targets``), possibly inside
            DDP.
        batch: ``crops`` uint8 ``[B, H, W, 3]`` (or already normalised float ``[B, 3, H, W]``), ``targets``
            ``[B, K, h, w]``, ``target_weight`` ``[B, K]``; ``centre_targets`` / ``centre_weight`` for the parallel
            branch. Tensors on the model's device.
        autocast_dtype: ``torch.bfloat16`` to run the forward pass under autocast on the batch's device type; the
            loss is computed in fp32 from the cast-back output.
    Returns:
        the scalar loss (fp32) and its parts as floats (``heatmap``, and ``parallel`` with a parallel branch).
    """
    crops = batch["crops"]
    x = normalize_crops(crops) if crops.dtype == torch.uint8 else crops
    device_type = x.device.type
    if autocast_dtype is not None:
        with torch.autocast(device_type, dtype=autocast_dtype):
            out = model(x)
    else:
        out = model(x)
    if isinstance(out, dict):
        heatmaps, parallel = out["heatmaps"], out.get("parallel")
    else:
        heatmaps, parallel = out, None
    if heatmaps.shape != batch["targets"].shape:
        raise ValueError(
            f"the network predicts heatmaps of shape {tuple(heatmaps.shape)} but the targets are "
            f"{tuple(batch['targets'].shape)}: crops must be multiples of 32 pixels for models.sppe networks"
        )
    loss = heatmap_mse_loss(heatmaps.float(), batch["targets"], batch["target_weight"])
    parts = {"heatmap": float(loss.detach())}
    if parallel is not None:
        if "centre_targets" not in batch:
            raise ValueError("the model has a parallel SPPE but the batch has no centre_targets (prepare_batch)")
        p_loss = heatmap_mse_loss(parallel.float(), batch["centre_targets"], batch["centre_weight"])
        parts["parallel"] = float(p_loss.detach())
        loss = loss + p_loss
    return loss, parts


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Mapping[str, torch.Tensor],
    *,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """One optimisation step (zero grad → loss → backward → step); returns the loss before the step.

    Under DDP each worker's loss is the mean over its own batch and DDP averages the gradients, which equals the
    gradient of the mean over the global batch when every worker's batch has the same size (equal shards).
    """
    optimizer.zero_grad(set_to_none=True)
    loss, _ = compute_loss(model, batch, autocast_dtype=autocast_dtype)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@dataclass
class EpochStats:
    """Totals of one worker's epoch: ``loss_sum`` (Σ batch loss · batch size), ``samples``, ``steps``, ``seconds``
    (wall time of the loop, data waits included), ``first_batch_s`` (of which waiting for the first batch: a
    streaming pipeline's per-epoch start-up) and ``data_wait_s`` (all waits for batches, the first included)."""

    loss_sum: float = 0.0
    samples: int = 0
    steps: int = 0
    seconds: float = 0.0
    first_batch_s: float = 0.0
    data_wait_s: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else math.nan


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Mapping[str, torch.Tensor | np.ndarray]],
    *,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> EpochStats:
    """One pass over ``batches`` (dicts as ``prepare_batch`` makes them; numpy or torch), one ``train_step`` each.

    The caller sets the learning rate (``set_learning_rate(optimizer, learning_rate(epoch, ...))``) and the mode.
    """
    stats = EpochStats()
    t0 = time.perf_counter()
    it = iter(batches)
    while True:
        t_wait = time.perf_counter()
        raw = next(it, None)
        waited = time.perf_counter() - t_wait
        stats.data_wait_s += waited
        if stats.steps == 0 and stats.samples == 0:
            stats.first_batch_s += waited
        if raw is None:
            break
        batch = {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in raw.items()}
        n = int(batch["crops"].shape[0])
        if n == 0:
            continue
        loss = train_step(model, optimizer, batch, autocast_dtype=autocast_dtype)
        stats.loss_sum += loss * n
        stats.samples += n
        stats.steps += 1
    stats.seconds = time.perf_counter() - t0
    return stats


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained SPPE as AlphaPose saves it (``m.module.state_dict()``, ``scripts/train.py``): a plain state dict
    of ``build_sppe(arch)``'s module, on the CPU, without DDP's ``module.`` prefix and without the SSTN's
    localisation net or the parallel SPPE (``SSTNPose.base_state_dict``)."""
    m = unwrap(model)
    state = m.base_state_dict() if isinstance(m, SSTNPose) else m.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items()}
