"""Where a top-down SPPE's crop lies: box → centre/scale → crop region, and each network's crop spec. Torch-free.

AlphaPose's convention (``_box_to_center_scale`` in ``alphapose/utils/bbox.py``, commit c60106d): the box centre is
kept, the box is widened or heightened to the crop's aspect w/h (0.75 for 256×192 inputs), then enlarged ×1.25;
``crop_box_xyxy = center ± scale/2`` is the region that maps onto the network's input. The CPU crop cut
(``crop_images``: OpenCV, bit-exact with AlphaPose) lives here too; ``models.transforms`` adds the torch paths (GPU
crops, normalisation) and re-exports everything here. This module is apart so that job drivers validate
configurations (``actors.configs``), and a detection stage that only looks boxes up cuts its crops, without importing
torch (1.0–1.9 s per process, issue 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INPUT_SIZE_HW",
    "ASPECT_RATIO",
    "SCALE_MULT",
    "CropSpec",
    "ALPHAPOSE_CROP",
    "BLAZEPOSE_CROP",
    "boxes_to_center_scale",
    "center_scale_to_boxes",
    "crop_matrices",
    "invert_affine",
    "crop_images",
]

INPUT_SIZE_HW = (256, 192)
ASPECT_RATIO = INPUT_SIZE_HW[1] / INPUT_SIZE_HW[0]
SCALE_MULT = 1.25


@dataclass(frozen=True, kw_only=True)
class CropSpec:
    """How a top-down SPPE wants its person crops: output size, crop aspect (w/h) and enlargement.

    The detector stage cuts crops by the SPPE's spec (``boxes_to_center_scale(boxes, aspect_ratio, scale_mult)`` →
    ``crop_images(..., output_size_hw)``), so one convention travels with each network. AlphaPose's SPPEs take
    ``ALPHAPOSE_CROP`` (256×192, aspect 0.75, ×1.25); BlazePose takes square crops (``models.blazepose``).
    """

    output_size_hw: tuple[int, int] = INPUT_SIZE_HW
    aspect_ratio: float = ASPECT_RATIO
    scale_mult: float = SCALE_MULT

    def __post_init__(self) -> None:
        if min(self.output_size_hw) < 1 or self.aspect_ratio <= 0 or self.scale_mult <= 0:
            raise ValueError(f"invalid crop spec {self}")

    def crop_boxes(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Detector boxes ``[N, 4]`` → crop regions float64 ``[N, 4]`` (``center_scale_to_boxes`` of
        ``boxes_to_center_scale`` with this crop's aspect and enlargement)."""
        return center_scale_to_boxes(*boxes_to_center_scale(boxes_xyxy, self.aspect_ratio, self.scale_mult))


#: AlphaPose's crop (``_box_to_center_scale``, 256×192): what every ``models.sppe`` network was trained on.
ALPHAPOSE_CROP = CropSpec()


def boxes_to_center_scale(
    boxes_xyxy: np.ndarray, aspect_ratio: float = ASPECT_RATIO, scale_mult: float = SCALE_MULT
) -> tuple[np.ndarray, np.ndarray]:
    """Detector boxes → crop centres and sizes (AlphaPose's ``_box_to_center_scale``).

    Args:
        boxes_xyxy: float ``[N, 4]`` in image pixels.
        aspect_ratio: target w/h of the crop (0.75 for 256×192 inputs).
        scale_mult: enlargement applied after the aspect fix (1.25).
    Returns:
        ``center_xy`` float64 ``[N, 2]`` and ``scale_wh`` float64 ``[N, 2]`` with ``scale_w / scale_h == aspect``.
        Degenerate boxes (zero size) give zero scale; callers drop or flag them.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    center = np.stack([b[:, 0] + w * 0.5, b[:, 1] + h * 0.5], axis=1)
    wider = w > aspect_ratio * h
    h = np.where(wider, w / aspect_ratio, h)
    w = np.where(~wider, h * aspect_ratio, w)
    return center, np.stack([w, h], axis=1) * scale_mult


def center_scale_to_boxes(center_xy: np.ndarray, scale_wh: np.ndarray) -> np.ndarray:
    """The crop region ``center ± scale/2`` as float64 ``[N, 4]`` xyxy (the box heatmaps are projected back into)."""
    c = np.asarray(center_xy, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scale_wh, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([c - s / 2, c + s / 2], axis=1)


#: BlazePose's crops (``models.blazepose``): square 256×256, side 1.25 × max(w, h) around the box centre.
BLAZEPOSE_CROP = CropSpec(output_size_hw=(256, 256), aspect_ratio=1.0, scale_mult=1.25)


def crop_matrices(crop_boxes_xyxy: np.ndarray, output_size_hw: tuple[int, int] = INPUT_SIZE_HW) -> np.ndarray:
    """Affine matrices mapping image pixels into the crop, float64 ``[N, 2, 3]``.

    Isotropic, scale set by the crop width, as AlphaPose's ``get_affine_transform`` with rot=0:
    the crop box's corners map to ``(0, 0)`` and ``(W_out, H_out)``.
    """
    b = np.asarray(crop_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    out_h, out_w = output_size_hw
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    width = b[:, 2] - b[:, 0]
    with np.errstate(divide="ignore"):
        s = np.where(width > 0, out_w / np.where(width > 0, width, 1.0), 0.0)
    m = np.zeros((len(b), 2, 3))
    m[:, 0, 0] = s
    m[:, 1, 1] = s
    m[:, 0, 2] = out_w / 2 - s * cx
    m[:, 1, 2] = out_h / 2 - s * cy
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Invert ``[N, 2, 3]`` affine matrices (image→crop becomes crop→image)."""
    m = np.asarray(m, dtype=np.float64)
    a = m[:, :, :2]
    inv_a = np.linalg.inv(a)
    t = -np.einsum("nij,nj->ni", inv_a, m[:, :, 2])
    return np.concatenate([inv_a, t[:, :, None]], axis=2)


def crop_images(
    images: Sequence[np.ndarray],
    image_index: np.ndarray,
    crop_boxes_xyxy: np.ndarray,
    output_size_hw: tuple[int, int] = INPUT_SIZE_HW,
) -> np.ndarray:
    """CPU crop path, bit-exact with AlphaPose: one ``cv2.warpAffine`` (bilinear, black border) per box.

    Args:
        images: uint8 ``[H_i, W_i, 3]`` RGB frames (sizes may differ).
        image_index: int ``[N]``, which frame each box belongs to.
        crop_boxes_xyxy: ``[N, 4]`` crop regions from ``center_scale_to_boxes``.
    Returns:
        uint8 ``[N, H_out, W_out, 3]``.
    """
    import cv2

    out_h, out_w = output_size_hw
    mats = crop_matrices(crop_boxes_xyxy, output_size_hw)
    out = np.zeros((len(mats), out_h, out_w, 3), dtype=np.uint8)
    for i, (fi, m) in enumerate(zip(np.asarray(image_index).reshape(-1), mats)):
        if m[0, 0] <= 0:  # degenerate box: leave the crop black
            continue
        # OpenCV's fixed-point bilinear rounds to uint8, exactly as AlphaPose's cv2.warpAffine. cv2 takes float32
        # matrices internally in AlphaPose too (getAffineTransform on float32 points).
        out[i] = cv2.warpAffine(
            np.ascontiguousarray(images[int(fi)]),
            m.astype(np.float32),
            (out_w, out_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    return out
