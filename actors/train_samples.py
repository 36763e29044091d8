"""Ray Data callable of the SPPE training set: proposal-sample rows → the arrays one training step consumes.

One row of ``store.training.SAMPLE_SCHEMA`` is what AlphaPose's ``SimpleTransform`` hands the network in training
mode (``alphapose/utils/presets/simple_transform.py``: the crop and its crop-pixel keypoints); this stage decodes the
crop and renders the heatmap targets (``models.train.prepare_batch``), on the CPUs Ray Data keeps next to the
training workers, so the GPU workers only normalise and step (``jobs.train_sppe``). The targets are RMPE's SPPE
labels (Fang et al., "RMPE: Regional Multi-person Pose Estimation", ICCV 2017), plus the parallel SPPE's
centre-located labels, or CrowdPose's joint-candidate (JC-SPPE) labels, when asked.
"""

from __future__ import annotations

import numpy as np

from models.train import prepare_batch
from store.training import sample_arrays

__all__ = ["TrainingSampleDecoder", "SAMPLE_COLUMNS", "JC_COLUMNS"]

#: The ``SAMPLE_SCHEMA`` columns the decoder reads (read only these from Parquet).
SAMPLE_COLUMNS = (
    "sample_id",
    "branch",
    "empty",
    "crop",
    "crop_format",
    "crop_height",
    "crop_width",
    "keypoints",
    "target_weight",
    "num_joints",
    "gt_box_xyxy",
    "image_to_crop",
)
#: Read as well for JC-SPPE targets (proposal shards of training schema ≥ 2).
JC_COLUMNS = ("interference_keypoints", "interference_types")


class TrainingSampleDecoder:
    """``__call__(batch of sample rows) → {"crops", "targets", "target_weight"[, "centre_targets",
    "centre_weight"]}`` (``models.train.prepare_batch``). Stateless and cheap to build: usable as a plain function
    in Ray Data's task pool, or called directly in a test or the plain training loop.

    Args:
        sigma: Gaussian σ of the targets in heatmap pixels (AlphaPose's 2).
        centre_targets: also render the parallel SPPE's centre-located targets (``--parallel-sppe``).
        jc_targets: CrowdPose's JC-SPPE targets (``--jc-targets``): interference joints (``JC_COLUMNS``) get
            μ = 0.5 peaks on their type's channel (``models.train.render_jc_targets``).
    """

    def __init__(self, *, sigma: float = 2.0, centre_targets: bool = False, jc_targets: bool = False) -> None:
        self.sigma = float(sigma)
        self.centre_targets = bool(centre_targets)
        self.jc_targets = bool(jc_targets)

    @property
    def columns(self) -> tuple[str, ...]:
        """The Parquet columns this decoder reads."""
        return SAMPLE_COLUMNS + (JC_COLUMNS if self.jc_targets else ())

    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        crops, kps, weight = sample_arrays(batch)
        extra = {}
        if self.centre_targets:
            extra = {
                "gt_boxes_xyxy": np.stack([np.asarray(b, np.float64) for b in batch["gt_box_xyxy"]]),
                "image_to_crop": np.stack([np.asarray(m, np.float64) for m in batch["image_to_crop"]]),
            }
        if self.jc_targets:
            extra["interference"] = (list(batch["interference_keypoints"]), list(batch["interference_types"]))
        return prepare_batch(crops, kps, weight, sigma=self.sigma, **extra)
