"""BlazePose (full) as a top-down SPPE: square person crops in, COCO-17 (or Halpe-26) keypoints out.

The network is MediaPipe's BlazePose landmark model ``pose_landmark_full.tflite`` (Bazarevsky et al., "BlazePose:
On-device Real-time Body Pose tracking", CVPR Workshops 2020; model card "BlazePose GHUM 3D", Apache-2.0), run as a
PyTorch module by ``models.tflite.TFLiteModule``. Its graph takes one 256×256 RGB crop as float NHWC in [0, 1] and
its first output (``Identity``, ``[N, 195]``) holds 39 points × (x, y, z, visibility, presence) in input pixels;
the first 33 are the body landmarks, visibility and presence are logits.

Conventions (``BLAZEPOSE_CROP``): MediaPipe aligns its crop with a rotation predicted by its own person detector;
raypose has no such rotation and cuts upright square crops around each detector box (centre = box centre, side =
1.25 × max(w, h)), so every detector in ``models.detectors`` can feed it. Crop pixels map back to the frame with the
same inverse as AlphaPose's heatmaps (``x = bx1 + x_in · w / 256``). Keypoint score = sigmoid(visibility logit).

Keypoints (BlazePose's 33 landmarks → raypose's sets):

* ``coco17``: exact points ``BLAZEPOSE_TO_COCO17`` (nose, eyes, ears, shoulders … ankles).
* ``halpe26``: COCO-17 plus heels (exact), big toes = BlazePose's foot index (its toe tip: exact up to the
  definition), and approximations: neck = mid-shoulders, hip = mid-hips, small toes = foot index, head top = eye
  midpoint + 1.6 × (eye midpoint − mouth midpoint); an approximated point's score is the minimum of the scores
  it was built from.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.crops import BLAZEPOSE_CROP, CropSpec
from models.names import BLAZEPOSE_KEYPOINT_SETS

__all__ = [
    "BLAZEPOSE_CROP",
    "BLAZEPOSE_NUM_LANDMARKS",
    "BLAZEPOSE_FLIP_PAIRS",
    "BLAZEPOSE_TO_COCO17",
    "BLAZEPOSE_KEYPOINT_SETS",
    "BlazePoseSPPE",
    "landmarks_to_keypoint_set",
]

BLAZEPOSE_NUM_LANDMARKS = 33
#: Left/right landmark pairs of the 33 body points (MediaPipe's landmark list: eyes, ears, mouth, limbs, hands, feet).
BLAZEPOSE_FLIP_PAIRS = (
    (1, 4),
    (2, 5),
    (3, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
    (17, 18),
    (19, 20),
    (21, 22),
    (23, 24),
    (25, 26),
    (27, 28),
    (29, 30),
    (31, 32),
)
#: BlazePose landmark of each COCO-17 keypoint (nose, l/r eye, l/r ear, shoulders, elbows, wrists, hips, knees,
#: ankles).
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
_HEEL = (29, 30)
_FOOT_INDEX = (31, 32)


def _flip_permutation() -> np.ndarray:
    perm = np.arange(BLAZEPOSE_NUM_LANDMARKS)
    for a, b in BLAZEPOSE_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def landmarks_to_keypoint_set(
    points: torch.Tensor, scores: torch.Tensor, keypoint_set: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """BlazePose's 33 landmarks → a raypose keypoint set (module docstring says which points are approximated).

    Args:
        points: float ``[N, 33, 2]`` (any pixel frame; the mapping is affine-invariant).
        scores: float ``[N, 33]``.
        keypoint_set: ``"coco17"`` or ``"halpe26"``.
    Returns:
        ``[N, K, 2]`` points and ``[N, K]`` scores of that set.
    """
    coco = list(BLAZEPOSE_TO_COCO17)
    kp, sc = points[:, coco], scores[:, coco]
    if keypoint_set == "coco17":
        return kp, sc
    if keypoint_set != "halpe26":
        raise ValueError(f"BlazePose maps to {', '.join(BLAZEPOSE_KEYPOINT_SETS)}, not {keypoint_set!r}")

    def mid(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (points[:, a] + points[:, b]) / 2, torch.minimum(scores[:, a], scores[:, b])

    eyes, eyes_s = mid(2, 5)
    mouth, mouth_s = mid(9, 10)
    head = eyes + 1.6 * (eyes - mouth)
    neck, neck_s = mid(11, 12)
    hip, hip_s = mid(23, 24)
    extra_p = [
        head,
        neck,
        hip,
        points[:, 31],
        points[:, 32],
        points[:, 31],
        points[:, 32],
        points[:, 29],
        points[:, 30],
    ]
    extra_s = [
        torch.minimum(eyes_s, mouth_s),
        neck_s,
        hip_s,
        scores[:, 31],
        scores[:, 32],
        scores[:, 31],
        scores[:, 32],
        scores[:, 29],
        scores[:, 30],
    ]
    return (torch.cat([kp, torch.stack(extra_p, 1)], 1), torch.cat([sc, torch.stack(extra_s, 1)], 1))


class BlazePoseSPPE(nn.Module):
    """BlazePose landmarks as an SPPE: uint8 square crops + crop boxes → keypoints in frame pixels and scores.

    Args:
        graph: the landmark network (``models.tflite.TFLiteModule`` of ``pose_landmark_full.tflite``): NHWC float
            ``[N, 256, 256, 3]`` in [0, 1] → a tuple whose first element is ``[N, 195]``.
        keypoint_set: ``"coco17"`` or ``"halpe26"``.
        flip_test: also run the mirrored crop and average coordinates and scores (AlphaPose's ``--flip`` idea).
    """

    def __init__(self, graph: nn.Module, *, keypoint_set: str = "coco17", flip_test: bool = False) -> None:
        super().__init__()
        if keypoint_set not in BLAZEPOSE_KEYPOINT_SETS:
            raise ValueError(f"BlazePose maps to {', '.join(BLAZEPOSE_KEYPOINT_SETS)}, not {keypoint_set!r}")
        self.graph = graph
        self.keypoint_set = keypoint_set
        self.flip_test = flip_test
        self.register_buffer("flip_perm", torch.as_tensor(_flip_permutation()), persistent=False)

    @property
    def crop(self) -> CropSpec:
        return BLAZEPOSE_CROP

    def landmarks(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[N, 256, 256, 3]`` RGB crops → the 33 body landmarks in crop pixels ``[N, 33, 2]`` (float32) and
        their scores ``[N, 33]`` (sigmoid of the visibility logit)."""
        dtype = next(self.graph.parameters(), torch.empty(0)).dtype
        x = crops.to(dtype=dtype).div_(255.0)
        raw = self.graph(x)[0].float().reshape(len(crops), -1, 5)[:, :BLAZEPOSE_NUM_LANDMARKS]
        points, scores = raw[..., :2], torch.sigmoid(raw[..., 3])
        if self.flip_test:
            width = float(crops.shape[2])
            raw_f = self.graph(x.flip(2))[0].float().reshape(len(crops), -1, 5)[:, :BLAZEPOSE_NUM_LANDMARKS]
            raw_f = raw_f[:, self.flip_perm]
            # Continuous coordinates: a mirrored crop of width W maps x to W − x.
            points_f = torch.stack([width - raw_f[..., 0], raw_f[..., 1]], -1)
            points = (points + points_f) / 2
            scores = (scores + torch.sigmoid(raw_f[..., 3])) / 2
        return points, scores

    def forward(self, crops: torch.Tensor, crop_boxes_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops ``[N, 256, 256, 3]`` uint8 and their crop regions ``[N, 4]`` (frame pixels, ``BLAZEPOSE_CROP``) →
        keypoints float32 ``[N, K, 2]`` in frame pixels and scores float32 ``[N, K]``."""
        points, scores = self.landmarks(crops)
        b = crop_boxes_xyxy.to(device=points.device, dtype=torch.float64).reshape(-1, 1, 4)
        out_h, out_w = BLAZEPOSE_CROP.output_size_hw
        x = b[..., 0] + points[..., 0].double() * (b[..., 2] - b[..., 0]) / out_w
        y = b[..., 1] + points[..., 1].double() * (b[..., 3] - b[..., 1]) / out_h
        kp, sc = landmarks_to_keypoint_set(torch.stack([x, y], -1), scores.double(), self.keypoint_set)
        return kp.float(), sc.float()
