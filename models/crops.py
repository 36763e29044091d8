"""Where a top-down SPPE's crop lies: box → centre/scale → crop region, and each network's crop spec. Torch-free.

AlphaPose's convention (``_box_to_center_scale`` in ``alphapose/utils/bbox.py``, commit c60106d): the box centre is
kept, the box is widened or heightened to the crop's aspect w/h (0.75 for 256×192 inputs), then enlarged ×1.25;
``crop_box_xyxy = center ± scale/2`` is the region that maps onto the network's input. ``models.transforms`` cuts
and normalises the crops (torch, OpenCV) and re-exports everything here; this module is apart so that job drivers
validate configurations (``actors.configs``) without importing torch (1.0–1.9 s per process, issue 13).
"""

from __future__ import annotations

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
