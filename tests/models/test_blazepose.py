"""BlazePose as an SPPE, with a stand-in graph whose landmarks are known: the crop convention, the way back to frame
pixels, the keypoint-set mapping and the flip test. The real network's parity with LiteRT is in test_tflite.py and
its accuracy in tests/jobs/test_accuracy.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.blazepose import (
    BLAZEPOSE_CROP,
    BLAZEPOSE_FLIP_PAIRS,
    BLAZEPOSE_TO_COCO17,
    BlazePoseSPPE,
    landmarks_to_keypoint_set,
)
from models.keypoints import COCO_17, HALPE_26
from models.transforms import crop_images


class PointGraph(nn.Module):
    """Stand-in for the landmark graph: landmark j sits at the centroid of the pixels of value j + 1 in channel 0 of
    the crop (NHWC float in [0, 1]) where channel 1 is 255, visibility logit = 2; the 6 auxiliary points are 0."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor):
        n, h, w, _ = x.shape
        # Only the interior of a block (channel 1 fully on) is read: resampling blends the edges with the background.
        labels = torch.where(x[..., 1] * 255 > 254.5, torch.round(x[..., 0] * 255), 0).long()  # [N, H, W]
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        out = torch.zeros(n, 39, 5)
        for j in range(33):
            m = (labels == j + 1).float()
            cnt = m.sum((1, 2)).clamp(min=1)
            # Continuous coordinates: pixel i covers [i, i + 1), its centre is i + 0.5.
            out[:, j, 0] = (m * (xs + 0.5)).sum((1, 2)) / cnt
            out[:, j, 1] = (m * (ys + 0.5)).sum((1, 2)) / cnt
            out[:, j, 3] = 2.0
        return (out.reshape(n, 195),)


def _frame_with_points(points_xy: np.ndarray, size_hw=(400, 600)) -> np.ndarray:
    """A frame whose channel 0 holds a 5×5 block of value j + 1 around point j (channel 1: 255 on every block)."""
    frame = np.zeros((*size_hw, 3), np.uint8)
    for j, (x, y) in enumerate(points_xy):
        xi, yi = int(round(x)), int(round(y))
        frame[yi - 2 : yi + 3, xi - 2 : xi + 3, 0] = j + 1
        frame[yi - 2 : yi + 3, xi - 2 : xi + 3, 1] = 255
    return frame


def test_crop_is_square_and_125_percent_of_the_longer_side():
    crop = BLAZEPOSE_CROP.crop_boxes(np.array([[100.0, 50.0, 180.0, 250.0]]))[0]
    np.testing.assert_allclose(crop, [140 - 125, 150 - 125, 140 + 125, 150 + 125])
    assert BLAZEPOSE_CROP.output_size_hw == (256, 256)


def _grid_points(seed: int) -> np.ndarray:
    """33 distinct points on a 12-px grid inside the box (150, 75)–(350, 325), so no two blocks touch."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(14 * 18, 33, replace=False)
    return np.stack([170 + 12 * (cells % 14), 90 + 12 * (cells // 14)], 1).astype(np.float64)


def test_landmarks_return_to_frame_pixels():
    """Landmarks found in a crop (scale 256/250 ≈ 1) map back onto the frame points they were drawn at."""
    pts = _grid_points(0)
    frame = _frame_with_points(pts)
    crop_box = BLAZEPOSE_CROP.crop_boxes(np.array([[150.0, 75.0, 350.0, 325.0]]))
    crops = crop_images([frame], np.zeros(1, int), crop_box, BLAZEPOSE_CROP.output_size_hw)
    model = BlazePoseSPPE(PointGraph())
    kp, sc = model(torch.as_tensor(crops), torch.as_tensor(crop_box))
    assert kp.shape == (1, 17, 2) and sc.shape == (1, 17) and kp.dtype == torch.float32
    # Block centres are integer pixels; the stand-in reports continuous centres (+0.5 crop px ≈ +0.49 frame px).
    # Resampling shifts which interior pixels stay fully on by up to half a pixel.
    np.testing.assert_allclose(kp[0].numpy(), pts[list(BLAZEPOSE_TO_COCO17)] + 0.49, atol=0.6)
    np.testing.assert_allclose(sc.numpy(), 1 / (1 + np.exp(-2.0)), rtol=1e-6)


def test_flip_test_swaps_left_and_right():
    """A graph that reports only the mirror image's geometry must be undone by the flip: with the flip test the
    result equals the plain run of a correct graph."""
    pts = _grid_points(1)
    frame = _frame_with_points(pts)
    crop_box = BLAZEPOSE_CROP.crop_boxes(np.array([[150.0, 75.0, 350.0, 325.0]]))
    crops = torch.as_tensor(crop_images([frame], np.zeros(1, int), crop_box, (256, 256)))
    plain = BlazePoseSPPE(PointGraph())(crops, torch.as_tensor(crop_box))[0]
    flipped = BlazePoseSPPE(PointGraph(), flip_test=True)(crops, torch.as_tensor(crop_box))[0]
    # The stand-in labels pixels by landmark id, so in the mirrored crop "left" pixels stay labelled "left": the
    # flipped run, mirrored back, finds each landmark where it is and the pair swap hands it to its partner.
    # Averaging gives the midpoint of each left/right pair; the unpaired nose (0) must be unchanged.
    np.testing.assert_allclose(flipped[0, 0].numpy(), plain[0, 0].numpy(), atol=1e-3)
    coco_of = {b: i for i, b in enumerate(BLAZEPOSE_TO_COCO17)}
    for a, b in BLAZEPOSE_FLIP_PAIRS:
        if a in coco_of:
            mid = (plain[0, coco_of[a]] + plain[0, coco_of[b]]) / 2
            np.testing.assert_allclose(flipped[0, coco_of[a]].numpy(), mid.numpy(), atol=1e-3)
    flat = [i for p in BLAZEPOSE_FLIP_PAIRS for i in p]
    assert len(set(flat)) == len(flat) == 32 and 0 not in flat


def test_halpe26_adds_feet_and_approximated_points():
    pts = torch.arange(33 * 2, dtype=torch.float64).reshape(1, 33, 2)
    scores = torch.linspace(0.1, 0.9, 33, dtype=torch.float64)[None]
    coco, coco_s = landmarks_to_keypoint_set(pts, scores, "coco17")
    halpe, halpe_s = landmarks_to_keypoint_set(pts, scores, "halpe26")
    assert coco.shape == (1, COCO_17.num_keypoints, 2) and halpe.shape == (1, HALPE_26.num_keypoints, 2)
    torch.testing.assert_close(halpe[:, :17], coco)
    names = HALPE_26.names
    torch.testing.assert_close(halpe[0, names.index("left_heel")], pts[0, 29])
    torch.testing.assert_close(halpe[0, names.index("right_big_toe")], pts[0, 32])
    torch.testing.assert_close(halpe[0, names.index("neck")], (pts[0, 11] + pts[0, 12]) / 2)
    assert halpe_s[0, names.index("hip")] == min(scores[0, 23], scores[0, 24])
    with pytest.raises(ValueError, match="coco17, halpe26"):
        landmarks_to_keypoint_set(pts, scores, "crowdpose14")
