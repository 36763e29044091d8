"""Symmetric spatial transformer network (SSTN) and the parallel SPPE of RMPE, in PyTorch.

RMPE (Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017, §3.2) puts a spatial transformer
(Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015) in front of the SPPE so that an inaccurate
detector box is turned into a centred, well-framed person, and a spatial *de*-transformer (SDTN) after it that maps
the heatmaps back into the proposal's frame, where the loss (and inference's back-projection) happen. A second,
frozen SPPE branch (the "parallel SPPE") sees the same transformed crop without the SDTN and is trained against
centre-located labels, so that a badly centred transform is penalised; it is discarded at test time.

Facts used (from AlphaPose's historical Torch7 training code,
commit 4a97e1f, ``train/src/``):

* STN: source coordinates from target coordinates, ``(xˢ, yˢ)ᵀ = θ·(xᵗ, yᵗ, 1)ᵀ``, bilinear sampling.
* SDTN: ``γ₁₂ = θ₁₂⁻¹``, ``γ₃ = −γ₁₂·θ₃``; the gradient reaches θ through the inverse (``Get_Alpha.lua`` L17–68
  writes the 2×2 inverse's derivative by hand; here autograd differentiates ``torch.linalg.inv``).
* Localisation network (``spatial_transformer_with_theta.lua`` L9–141): ResNet-18 (basic blocks, type-B shortcuts,
  BN) on the input crop → average pool → 512 → ``Linear(512, 6)`` with weight 0 and bias (1, 0, 0, 0, 1, 0), so θ
  starts as the identity (L114–121). Lua pools 8×8 on its 256×256 grid; here a global average pool, which is the same
  thing for any input size. Lua's grid generator outputs 256×256 although its SPPE input is 320×256 (an inconsistency
  in the released code); here the warp keeps the input's size.
* Use (``model.lua`` L86–128): the base SPPE runs on the warped crop; the SDTN maps each output back; the loss is in
  the proposal frame. Parallel SPPE (``model.lua`` L52–84): a separate pretrained SPPE on the warped crop, no SDTN,
  labels drawn in the frame of the GT box (``pose.lua`` L112–126, L256–282).
* Freezing: the paper freezes **all** layers of the parallel SPPE. AlphaPose's Lua freezes its **convolutions only**
  (``model.lua`` L59–65), so the BN layers there keep learning their affine parameters and running statistics. Both
  are offered (``SSTNPose(..., parallel_freeze="all" | "conv")``); the default is the paper's.

Coordinates and ``align_corners``: ``affine_grid``/``grid_sample`` work in normalised coordinates ``[−1, 1]²`` over
the image's extent. raypose uses ``align_corners=False`` throughout: −1 and +1 are the outer edges of the border
pixels, so the normalised frame is the continuous crop region itself, independent of resolution, and the identity θ
samples every pixel at its own centre (the warp is the identity up to float rounding). The 256×192 crop and its
64×48 heatmaps cover the same region (each heatmap pixel a 4×4 block of input pixels), so one θ, estimated on the
crop, applies unchanged to the heatmaps. ``models.transforms`` uses the same pixel-centre convention for its device
crop path (``crop_images_torch``).

Nothing here imports Ray.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.sppe import BasicBlock, DeformConv, SEResNet
from models.targets import gaussian_targets
from models.transforms import ALPHAPOSE_CROP, CropSpec, image_to_heatmap_coords

__all__ = [
    "IDENTITY_THETA",
    "ALIGN_CORNERS",
    "LocalisationNet",
    "stn_warp",
    "invert_theta",
    "sdtn",
    "SSTNPose",
    "centre_targets",
]

#: θ of the identity transform, row-major ``[θ11 θ12 θ13 θ21 θ22 θ23]`` (the localisation head's initial bias).
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: ``align_corners`` of every ``affine_grid``/``grid_sample`` here (module docstring).
ALIGN_CORNERS = False


class LocalisationNet(nn.Module):
    """The STN's localisation network: a ResNet-18 on the crop → global average pool → ``Linear(512, 6)`` → θ.

    The trunk is ``models.sppe.SEResNet(BasicBlock, (2, 2, 2, 2), with_se=False)``: ResNet-18 with BN and projection
    (type-B) shortcuts where the shape changes, as the Lua code's ``shortcutType B``. The head starts with weight 0 and
    bias ``IDENTITY_THETA`` (``spatial_transformer_with_theta.lua`` L114–121), so every input gets the identity θ
    until training moves it; the trunk receives gradient once the head's weight is non-zero.

    ``forward(x [N, 3, H, W]) → θ [N, 2, 3]`` in ``affine_grid``'s convention: θ maps normalised output (target)
    coordinates ``(x, y, 1)``, x to the right and y down, to normalised source coordinates. (Torch7's
    ``AffineGridGeneratorBHWD`` orders them (y, x); the identity bias is the same in both.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = SEResNet(BasicBlock, (2, 2, 2, 2), with_se=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.trunk.out_channels, 6)
        nn.init.zeros_(self.fc.weight)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor(IDENTITY_THETA))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.trunk(x)).flatten(1)
        return self.fc(features).view(-1, 2, 3)


def stn_warp(images: torch.Tensor, theta: torch.Tensor, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """The spatial transformer's grid generator and sampler: ``out[p] = images[θ·p]`` (bilinear).

    Args:
        images: float ``[N, C, H, W]``.
        theta: ``[N, 2, 3]`` (cast to the images' dtype), normalised output coordinates → normalised source
            coordinates (Jaderberg et al. 2015, eq. 1).
        out_hw: output (H, W); default the input's.
    Returns:
        ``[N, C, H_out, W_out]``. Samples outside the source read 0 (``padding_mode="zeros"``, as Torch7's
        ``BilinearSamplerBHWD``; for ``normalize_crops`` inputs 0 is the mean colour, not black).
        ``align_corners=False`` (``ALIGN_CORNERS``; module docstring).
    """
    n, c = images.shape[:2]
    h, w = images.shape[-2:] if out_hw is None else out_hw
    grid = F.affine_grid(theta.to(images.dtype), [n, c, int(h), int(w)], align_corners=ALIGN_CORNERS)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS)


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """The SDTN's parameters: ``γ₁₂ = θ₁₂⁻¹`` (the 2×2 block, ``torch.linalg.inv``) and ``γ₃ = −γ₁₂·θ₃``.

    ``[N, 2, 3] → [N, 2, 3]``, differentiable (autograd through ``linalg.inv``: ``∂J/∂θ₁₂`` collects the terms through
    both ``γ₁₂`` and ``γ₃``, and ``∂J/∂θ₃ = γ₁₂ᵀ·(−∂J/∂γ₃)``, the derivatives ``Get_Alpha.lua`` L34–68 writes out).
    Singular θ₁₂ raises (``torch.linalg.inv``).
    """
    a = theta[..., :, :2]
    t = theta[..., :, 2:]
    a_inv = torch.linalg.inv(a)
    return torch.cat([a_inv, -(a_inv @ t)], dim=-1)


def sdtn(heatmaps: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Spatial de-transformer: heatmaps predicted on the STN-warped crop → heatmaps in the proposal (input crop) frame.

    ``stn_warp(heatmaps, invert_theta(theta))`` at the heatmaps' own size. ``stn_warp(x, θ)`` shows at target point
    ``p`` the source at ``θp``, so a feature at source ``q`` appears at ``θ⁻¹q``; sampling the heatmaps at ``γq =
    θ⁻¹q`` moves it back to ``q``.

    Why one θ serves crop and heatmaps: θ acts on normalised coordinates, in which ``align_corners=False`` makes
    ``[−1, 1]²`` the continuous region of the crop whatever its pixel count, and the 64×48 heatmaps span exactly the
    256×192 crop (stride 4 on both axes, the same aspect). So the same θ (and γ) describes the same geometric map at
    both resolutions, and no rescaling of the translation is needed.

    Residual convention offset: AlphaPose reads heatmap pixel ``i`` as input pixel ``4i`` (``transforms.py``), while the
    normalised frame puts its centre at input pixel ``4i + 1.5``. The offset (1.5 input px on both axes) is common to
    both frames, so the identity maps it exactly; a non-identity θ with linear part A moves a decoded peak by
    ``(A − I)·(1.5, 1.5)`` input px, e.g. 0.3 px for a 20 % zoom, below the decoder's own ±0.25-heatmap-px (1 input
    px) step.

    Args:
        heatmaps: float ``[N, K, H_hm, W_hm]``; theta: ``[N, 2, 3]``.
    Returns:
        ``[N, K, H_hm, W_hm]``.
    """
    return stn_warp(heatmaps, invert_theta(theta), tuple(heatmaps.shape[-2:]))


class SSTNPose(nn.Module):
    """RMPE's SPPE with SSTN (and optionally the parallel SPPE), around any ``models.sppe`` network.

    ``forward(x)`` with ``x`` the normalised proposal crop ``[N, 3, H, W]`` returns a dict:

    * ``heatmaps``: ``sdtn(sppe(stn_warp(x, θ)), θ)``, in the proposal frame (train against the targets of
      ``models.targets.training_sample``; decode as any SPPE output);
    * ``theta``: ``[N, 2, 3]``;
    * ``parallel``: ``parallel(stn_warp(x, θ))`` (no SDTN; train against ``centre_targets``), or None without a
      parallel branch. Its gradient flows into the STN only.

    Attributes:
        sppe: the base SPPE, holding AlphaPose's state-dict keys (``preact.*``, ``duc1.*``, ``conv_out.*`` …);
            ``base_state_dict()`` is its state dict, with no prefix.
        stn: the ``LocalisationNet``.
        parallel: the frozen parallel SPPE or None.

    Args:
        sppe: base network (``models.sppe.build_sppe``).
        parallel: optional pretrained SPPE for the parallel branch. Its parameters get ``requires_grad=False``.
        stn: localisation network (default a fresh ``LocalisationNet``).
        parallel_freeze: ``"all"`` (the paper: every parameter frozen and every BN kept in eval mode, so running
            statistics never change, also under ``.train()``) or ``"conv"`` (AlphaPose's Lua, ``model.lua`` L59–65:
            only convolution weights and biases frozen; BN affine parameters train and BN statistics update).
    """

    def __init__(
        self,
        sppe: nn.Module,
        parallel: nn.Module | None = None,
        *,
        stn: nn.Module | None = None,
        parallel_freeze: Literal["all", "conv"] = "all",
    ) -> None:
        super().__init__()
        if parallel_freeze not in ("all", "conv"):
            raise ValueError(f"parallel_freeze must be 'all' or 'conv', got {parallel_freeze!r}")
        self.sppe = sppe
        self.stn = stn if stn is not None else LocalisationNet()
        self.parallel = parallel
        self.parallel_freeze = parallel_freeze
        if parallel is not None:
            if parallel_freeze == "all":
                parallel.requires_grad_(False)
            else:
                for m in parallel.modules():
                    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, DeformConv)):
                        m.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> SSTNPose:
        """As ``nn.Module.train``, but with ``parallel_freeze="all"`` the parallel branch stays in eval mode."""
        super().train(mode)
        if self.parallel is not None and self.parallel_freeze == "all":
            self.parallel.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        theta = self.stn(x)
        warped = stn_warp(x, theta)
        heatmaps = sdtn(self.sppe(warped), theta)
        parallel = self.parallel(warped) if self.parallel is not None else None
        return {"heatmaps": heatmaps, "theta": theta, "parallel": parallel}

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The base SPPE's state dict with AlphaPose's keys and no prefix: what ``models.checkpoints.load_checkpoint``
        (and so ``jobs.label``) loads strictly into ``build_sppe(arch)``. STN and parallel branch are left out: at
        test time RMPE drops the parallel SPPE, and the STN/SDTN pair is a training device whose effect lives in the
        SPPE's weights (raypose's inference pipeline runs the plain SPPE on the detector crop)."""
        return self.sppe.state_dict()


def centre_targets(
    keypoints_xy: np.ndarray,
    visible: np.ndarray,
    gt_boxes_xyxy: np.ndarray,
    *,
    crop: CropSpec = ALPHAPOSE_CROP,
    heatmap_size_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Centre-located labels for the parallel SPPE: the GT pose drawn in the frame of its tight GT box.

    The frame is the crop region the SPPE's convention makes of the GT box (``crop.crop_boxes``: aspect 0.75, ×1.25
    for AlphaPose's crop), i.e. what a perfectly centred proposal would show the network; pass
    ``CropSpec(scale_mult=1.0)`` for the bare box. (AlphaPose's Lua draws ``out_center`` in the frame of the GT box
    enlarged by its pre-jitter factor ``U(0.2, 0.3)``, ``pose.lua`` L112–126; RMPE's text only says "centre-located".)
    Heatmap positions follow the inference convention (``models.transforms.image_to_heatmap_coords``: heatmap pixel
    ``i`` ↔ input pixel ``4i``) and the maps are ``gaussian_targets``.

    Keypoints and boxes must be in the same image frame as the proposal crop's source: for a flipped training sample
    pass ``models.targets.flip_keypoints`` / ``flip_boxes`` of them. No rotation is applied: undoing the proposal's
    rotation is the STN's job.

    Args:
        keypoints_xy: float ``[N, K, 2]`` image pixels; visible ``[N, K]``; gt_boxes_xyxy float ``[N, 4]``.
    Returns:
        ``target`` float32 ``[N, K, H_hm, W_hm]`` and ``target_weight`` float32 ``[N, K]``.
    """
    kps = np.asarray(keypoints_xy, dtype=np.float64)
    if kps.ndim != 3:
        raise ValueError(f"keypoints must be [N, K, 2], got {kps.shape}")
    boxes = crop.crop_boxes(np.asarray(gt_boxes_xyxy, dtype=np.float64).reshape(-1, 4))
    kps_hm = image_to_heatmap_coords(kps, boxes, heatmap_size_hw)
    return gaussian_targets(kps_hm, np.asarray(visible), heatmap_size_hw, sigma)
