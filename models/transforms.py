"""Top-down crop transforms: box → center/scale → affine crop → normalised SPPE input, and their inverses.

Conventions, kept identical to AlphaPose at commit c60106d (``SimpleTransform.test_transform`` in
``alphapose/utils/presets/simple_transform.py``, ``_box_to_center_scale`` in ``alphapose/utils/bbox.py``,
``get_affine_transform`` and ``heatmap_to_coord_simple`` in ``alphapose/utils/transforms.py``) so its checkpoints see
the inputs they were trained on:

* Boxes are ``(x1, y1, x2, y2)`` in source-image pixels, pixel centres at integer coordinates (OpenCV's).
* ``center = box centre``; the box is widened or heightened to aspect w/h = 0.75, then enlarged ×1.25. The result,
  ``crop_box_xyxy = center ± scale/2``, is the region that maps onto the 192×256 input, corners onto (0, 0) and
  (192, 256) (no half-pixel correction).
* The affine is isotropic: ``x_in = s·(x − cx) + 96``, ``y_in = s·(y − cy) + 128`` with ``s = 192 / scale_w``.
* Crops are bilinear with a black border and rounded to uint8 (``cv2.warpAffine``), then normalised by /255 and
  subtracting (0.406, 0.457, 0.480) from R, G, B; there is no std division.
* Heatmap pixel ``i`` corresponds to input pixel ``4i``; back-projection is ``x = bx1 + x_hm·w/48``.

Two crop paths share one matrix: ``crop_images`` (OpenCV, CPU, bit-exact with AlphaPose) and ``crop_images_torch``
(``grid_sample``, any device, within one intensity level of the CPU path). Used by the detector → SPPE hand-off and
by the oracle SPPE in tests.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.crops import (
    ALPHAPOSE_CROP,
    ASPECT_RATIO,
    INPUT_SIZE_HW,
    SCALE_MULT,
    CropSpec,
    boxes_to_center_scale,
    center_scale_to_boxes,
    crop_images,
    crop_matrices,
    invert_affine,
)

__all__ = [
    "INPUT_SIZE_HW",
    "CropSpec",
    "ALPHAPOSE_CROP",
    "PIXEL_MEANS_RGB",
    "ASPECT_RATIO",
    "SCALE_MULT",
    "boxes_to_center_scale",
    "center_scale_to_boxes",
    "crop_matrices",
    "invert_affine",
    "crop_images",
    "crop_images_torch",
    "normalize_crops",
    "image_to_input_coords",
    "heatmap_to_image_coords",
    "image_to_heatmap_coords",
]

#: Subtracted from R, G, B after /255 (AlphaPose's values; ImageNet's means in BGR order, ``simple_transform.py``).
PIXEL_MEANS_RGB = (0.406, 0.457, 0.480)


def crop_images_torch(
    images: torch.Tensor,
    image_index: torch.Tensor,
    crop_boxes_xyxy: torch.Tensor,
    output_size_hw: tuple[int, int] = INPUT_SIZE_HW,
) -> torch.Tensor:
    """Device crop path with ``grid_sample``: same matrix and pixel convention as ``crop_images``.

    Args:
        images: uint8 ``[B, H, W, 3]`` RGB frames of one size, on any device (pad a batch of mixed sizes
            to a common size with zeros; the padding is outside every crop's source region or black anyway).
        image_index: int ``[N]`` frame of each box.
        crop_boxes_xyxy: float ``[N, 4]`` crop regions.
    Returns:
        uint8 ``[N, H_out, W_out, 3]`` on the images' device, rounded like OpenCV (within one intensity level
        of ``crop_images`` on ≥ 99 % of pixels; OpenCV quantises the interpolation weights to 1/32).
    """
    out_h, out_w = output_size_hw
    dev = images.device
    n = int(crop_boxes_xyxy.shape[0])
    if n == 0:
        return torch.zeros((0, out_h, out_w, 3), dtype=torch.uint8, device=dev)
    b = crop_boxes_xyxy.to(device=dev, dtype=torch.float64)
    width = b[:, 2] - b[:, 0]
    inv_s = torch.where(width > 0, width / out_w, torch.zeros_like(width))  # crop pixel → image pixel scale
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    xs = torch.arange(out_w, device=dev, dtype=torch.float64)
    ys = torch.arange(out_h, device=dev, dtype=torch.float64)
    # Destination pixel (x, y) samples the source at the inverse affine of (x, y), pixel centres at integers.
    src_x = (xs[None, :] - out_w / 2) * inv_s[:, None] + cx[:, None]  # [N, W_out]
    src_y = (ys[None, :] - out_h / 2) * inv_s[:, None] + cy[:, None]  # [N, H_out]
    h_img, w_img = images.shape[1], images.shape[2]
    # grid_sample(align_corners=False): normalised -1 and 1 are the outer pixel edges.
    gx = (src_x + 0.5) * (2.0 / w_img) - 1.0
    gy = (src_y + 0.5) * (2.0 / h_img) - 1.0
    grid = torch.stack([gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)], dim=-1).to(
        torch.float32
    )
    src = images.index_select(0, image_index.to(device=dev, dtype=torch.long)).permute(0, 3, 1, 2).float()
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = torch.where((width > 0)[:, None, None, None], out, torch.zeros_like(out))
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def normalize_crops(crops: torch.Tensor | np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` RGB crops → float ``[N, 3, H, W]`` SPPE input: /255, minus (0.406, 0.457, 0.480).

    AlphaPose divides by 255 only when the crop's max exceeds 1 (``im_to_torch``); an all-black or all-(0|1) crop is
    the only case where that differs, and such a crop carries no person, so raypose always divides.
    """
    t = torch.as_tensor(crops)
    if t.dtype != torch.uint8:
        raise TypeError(f"normalize_crops expects uint8 crops, got {t.dtype}")
    # float32 arithmetic whatever ``dtype`` (bf16 holds 8 significant bits: /255 and the means would round twice)
    x = t.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    means = torch.tensor(PIXEL_MEANS_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = x.sub_(means)
    return x if dtype == torch.float32 else x.to(dtype)


def image_to_input_coords(
    points_xy: np.ndarray, crop_boxes_xyxy: np.ndarray, output_size_hw: tuple[int, int] = INPUT_SIZE_HW
) -> np.ndarray:
    """Image pixels ``[N, K, 2]`` → crop-input pixels through each box's crop matrix."""
    m = crop_matrices(crop_boxes_xyxy, output_size_hw)
    p = np.asarray(points_xy, dtype=np.float64)
    return np.einsum("nij,nkj->nki", m[:, :, :2], p) + m[:, None, :, 2]


def image_to_heatmap_coords(
    points_xy: np.ndarray, crop_boxes_xyxy: np.ndarray, heatmap_size_hw: tuple[int, int] = (64, 48)
) -> np.ndarray:
    """Image pixels ``[N, K, 2]`` → heatmap pixels (inverse of ``heatmap_to_image_coords``), float64."""
    b = np.asarray(crop_boxes_xyxy, dtype=np.float64).reshape(-1, 1, 4)
    p = np.asarray(points_xy, dtype=np.float64)
    hm_h, hm_w = heatmap_size_hw
    x = (p[..., 0] - b[..., 0]) * hm_w / (b[..., 2] - b[..., 0])
    y = (p[..., 1] - b[..., 1]) * hm_h / (b[..., 3] - b[..., 1])
    return np.stack([x, y], axis=-1)


def heatmap_to_image_coords(
    coords_hm: torch.Tensor, crop_boxes_xyxy: torch.Tensor, heatmap_size_hw: tuple[int, int] = (64, 48)
) -> torch.Tensor:
    """Heatmap pixels ``[N, K, 2]`` → image pixels: ``x = bx1 + x_hm·w/W_hm``, ``y = by1 + y_hm·h/H_hm`` (as
    AlphaPose's ``heatmap_to_coord_simple``)."""
    b = crop_boxes_xyxy.to(coords_hm.dtype).reshape(-1, 1, 4)
    hm_h, hm_w = heatmap_size_hw
    x = b[..., 0] + coords_hm[..., 0] * (b[..., 2] - b[..., 0]) / hm_w
    y = b[..., 1] + coords_hm[..., 1] * (b[..., 3] - b[..., 1]) / hm_h
    return torch.stack([x, y], dim=-1)
