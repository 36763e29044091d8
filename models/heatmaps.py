"""Heatmap decoding, flip test and Gaussian heatmap rendering — vectorised, on any device.

Decoding follows AlphaPose's ``heatmap_to_coord_simple`` (``alphapose/utils/transforms.py`` at commit c60106d)
exactly by default (``method="alphapose"``):
first-maximum argmax, coordinates (0, 0) when the maximum is ≤ 0, a ±0.25 px step towards the larger neighbour
only when ``1 < px < W−1`` and ``1 < py < H−1``, back-projection through the enlarged crop box, and the raw
maximum as the keypoint score. ``method="dark"`` adds a second-order (Taylor) refinement on the log-heatmap
around the argmax (Zhang et al., "Distribution-Aware Coordinate Representation", CVPR 2020), which recovers the
centre of a Gaussian peak to a small fraction of a heatmap pixel instead of ±0.25.

The person score is AlphaPose's ``mean(c) + box_score + 1.25·max(c)`` (``proposal_score`` in
``alphapose/utils/writer.py``).

``render_gaussian_heatmaps`` is the encoder matching the decoder's pixel convention; the oracle SPPE and the
round-trip tests use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from models.transforms import heatmap_to_image_coords

__all__ = [
    "decode_heatmaps",
    "heatmaps_to_keypoints",
    "person_scores",
    "flip_heatmaps",
    "flip_test",
    "render_gaussian_heatmaps",
]

DecodeMethod = Literal["alphapose", "dark"]


def decode_heatmaps(heatmaps: torch.Tensor, method: DecodeMethod = "alphapose") -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps → keypoint positions in heatmap pixels and raw maxima.

    Args:
        heatmaps: float ``[N, K, H, W]`` on any device.
        method: ``"alphapose"`` (exact AlphaPose decoding) or ``"dark"`` (sub-pixel Taylor refinement).
    Returns:
        ``coords`` float32 ``[N, K, 2]`` as (x, y) heatmap pixels, and ``maxvals`` float32 ``[N, K]``.
        N = 0 gives empty tensors of those shapes.
    """
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be [N, K, H, W], got shape {tuple(heatmaps.shape)}")
    if method not in ("alphapose", "dark"):
        raise ValueError(f"unknown decode method {method!r}; choose 'alphapose' or 'dark'")
    n, k, h, w = heatmaps.shape
    hm = heatmaps.float()
    flat = hm.reshape(n, k, h * w)
    maxvals, idx = flat.max(dim=2)
    # torch.max/argmax return the first maximal index on CPU and CUDA, as NumPy's argmax in AlphaPose's get_max_pred.
    px = (idx % w).long()
    py = torch.div(idx, w, rounding_mode="floor").long()
    coords = torch.stack([px, py], dim=-1).float()
    positive = maxvals > 0
    coords = torch.where(positive[..., None], coords, torch.zeros_like(coords))
    px = torch.where(positive, px, torch.zeros_like(px))
    py = torch.where(positive, py, torch.zeros_like(py))
    if n * k == 0:
        return coords, maxvals

    # Gather the 4-neighbourhood (clamped indices; results only used where the bounds below hold).
    def at(dy: int, dx: int) -> torch.Tensor:
        yy = (py + dy).clamp(0, h - 1)
        xx = (px + dx).clamp(0, w - 1)
        return flat.gather(2, (yy * w + xx).reshape(n, k, 1)).reshape(n, k)

    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    if method == "alphapose":
        dx = torch.sign(at(0, 1) - at(0, -1)) * 0.25
        dy = torch.sign(at(1, 0) - at(-1, 0)) * 0.25
    else:
        # DARK: Newton step on log(hm) with central differences (the exact centre for a Gaussian peak).
        eps = 1e-10
        lc = torch.log(at(0, 0).clamp_min(eps))
        lr, ll = torch.log(at(0, 1).clamp_min(eps)), torch.log(at(0, -1).clamp_min(eps))
        ld, lu = torch.log(at(1, 0).clamp_min(eps)), torch.log(at(-1, 0).clamp_min(eps))
        ldr, lul = torch.log(at(1, 1).clamp_min(eps)), torch.log(at(-1, -1).clamp_min(eps))
        ldl, lur = torch.log(at(1, -1).clamp_min(eps)), torch.log(at(-1, 1).clamp_min(eps))
        gx, gy = (lr - ll) / 2, (ld - lu) / 2
        hxx, hyy = lr - 2 * lc + ll, ld - 2 * lc + lu
        hxy = (ldr - ldl - lur + lul) / 4
        det = hxx * hyy - hxy * hxy
        ok = (det > 1e-12) & (hxx < 0) & (hyy < 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        dx = torch.where(ok, -(hyy * gx - hxy * gy) / safe, torch.zeros_like(det))
        dy = torch.where(ok, -(hxx * gy - hxy * gx) / safe, torch.zeros_like(det))
        # A Newton step beyond half a pixel means the peak is not locally quadratic: keep the argmax.
        far = (dx.abs() > 0.5) | (dy.abs() > 0.5)
        dx = torch.where(far, torch.zeros_like(dx), dx)
        dy = torch.where(far, torch.zeros_like(dy), dy)
    step = torch.stack([dx, dy], dim=-1)
    coords = coords + torch.where((inside & positive)[..., None], step, torch.zeros_like(step))
    return coords, maxvals


def heatmaps_to_keypoints(
    heatmaps: torch.Tensor, crop_boxes_xyxy: torch.Tensor, method: DecodeMethod = "alphapose"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode heatmaps and project them into the source image through each crop box (as ``heatmap_to_coord_simple``).

    Args:
        heatmaps: float ``[N, K, H, W]``.
        crop_boxes_xyxy: float ``[N, 4]``, the enlarged crop regions (``models.transforms.center_scale_to_boxes``).
    Returns:
        ``keypoints`` float32 ``[N, K, 2]`` in image pixels and ``keypoint_scores`` float32 ``[N, K]`` (raw maxima).
    """
    coords, maxvals = decode_heatmaps(heatmaps, method)
    boxes = torch.as_tensor(crop_boxes_xyxy, device=coords.device)
    # float64 for the projection: image coordinates of 4K frames need more than float32's 24 bits of headroom.
    kps = heatmap_to_image_coords(coords.double(), boxes.double(), tuple(heatmaps.shape[-2:]))
    return kps.float(), maxvals


def person_scores(keypoint_scores: torch.Tensor, box_scores: torch.Tensor) -> torch.Tensor:
    """AlphaPose's person score, ``mean_j c_j + box_score + 1.25·max_j c_j`` (``writer.py``), float ``[N]``."""
    c = torch.as_tensor(keypoint_scores)
    if c.shape[0] == 0:
        return c.new_zeros((0,))
    return c.mean(dim=1) + torch.as_tensor(box_scores, dtype=c.dtype, device=c.device) + 1.25 * c.max(dim=1).values


def flip_heatmaps(heatmaps: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool = True) -> torch.Tensor:
    """Map the heatmaps of a horizontally flipped input back to the original orientation.

    Flips the width axis, swaps left/right channels, and with ``shift`` moves every column one to the right
    (column 0 keeps its value), which aligns the flipped map with the original's pixel grid.

    Deviation from AlphaPose (``flip_heatmap`` in ``alphapose/utils/transforms.py``): AlphaPose shifts with an
    in-place copy between overlapping views (``out[..., 1:] = out[..., :-1]``), whose result is
    implementation-defined — on CPU with torch 2.13 columns 17 and 33–47 come out wrong. raypose implements the
    intended shift with a copy.

    Returns a new tensor; the input is not modified.
    """
    out = heatmaps.flip(dims=[3])
    k = out.shape[1]
    perm = list(range(k))
    for a, b in flip_pairs:
        if max(a, b) >= k:
            raise ValueError(f"flip pair ({a}, {b}) out of range for {k} heatmap channels")
        perm[a], perm[b] = b, a
    out = out[:, perm]
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=3)
    return out


def flip_test(
    model: torch.nn.Module, inputs: torch.Tensor, flip_pairs: Sequence[tuple[int, int]], shift: bool = True
) -> torch.Tensor:
    """Run ``model`` on ``inputs`` and their mirror images in one batch and average the heatmaps (as AlphaPose's
    ``scripts/demo_inference.py`` ``--flip``)."""
    n = inputs.shape[0]
    both = model(torch.cat([inputs, inputs.flip(dims=[3])], dim=0))
    return (both[:n] + flip_heatmaps(both[n:], flip_pairs, shift=shift)) * 0.5


def render_gaussian_heatmaps(
    coords_hm: torch.Tensor,
    heatmap_size_hw: tuple[int, int] = (64, 48),
    sigma: float = 2.0,
    amplitude: torch.Tensor | float = 1.0,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render unnormalised Gaussians ``amplitude·exp(−d²/2σ²)`` centred at float heatmap positions.

    Args:
        coords_hm: float ``[N, K, 2]`` (x, y) centres in heatmap pixels (same convention as ``decode_heatmaps``).
        heatmap_size_hw: (H, W) of the maps.
        sigma: Gaussian sigma in heatmap pixels (AlphaPose trains with 2).
        amplitude: peak value, scalar or ``[N, K]``.
        visible: optional bool ``[N, K]``; invisible keypoints get all-zero maps.
    Returns:
        float32 ``[N, K, H, W]`` on ``coords_hm``'s device.
    """
    h, w = heatmap_size_hw
    c = coords_hm.float()
    xs = torch.arange(w, device=c.device, dtype=torch.float32)
    ys = torch.arange(h, device=c.device, dtype=torch.float32)
    gx = torch.exp(-((xs[None, None, :] - c[..., 0:1]) ** 2) / (2 * sigma**2))  # [N, K, W]
    gy = torch.exp(-((ys[None, None, :] - c[..., 1:2]) ** 2) / (2 * sigma**2))  # [N, K, H]
    hm = gy[..., :, None] * gx[..., None, :]
    amp = torch.as_tensor(amplitude, dtype=torch.float32, device=c.device)
    hm = hm * (amp[..., None, None] if amp.dim() else amp)
    if visible is not None:
        hm = hm * visible.to(device=c.device, dtype=hm.dtype)[..., None, None]
    return hm
