"""The configurations of the detection and pose stages, torch-free: a job's driver validates, resolves and hashes
them (``jobs.label``, ``pipelines.label.LabelConfig``) without importing torch, which cost 1.0–1.9 s of every job's
start before Ray could start (issue 13). The stages themselves (``actors.detect.Detector``, ``actors.sppe.SPPE``)
import torch in the workers that run them; both modules re-export their config from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from models.crops import ALPHAPOSE_CROP, BLAZEPOSE_CROP, CropSpec
from models.keypoints import get_keypoint_set
from models.names import (
    BLAZEPOSE_KEYPOINT_SETS,
    DECODE_METHODS,
    DETECTOR_ARCH_NAMES,
    SPPE_ARCH_NAMES,
    combined_integral_channels,
)
from models.precision import resolve_precision

__all__ = [
    "DetectorConfig",
    "FRAME_OUTPUT_COLUMNS",
    "DETECTOR_DTYPES",
    "SPPEConfig",
    "POSE_ARCHS",
    "PRECISION_NAMES",
    "PRECISION_CHOICES",
    "INT8_ARCHS",
    "CANDIDATE_DECODES",
    "inference_form",
]

#: Columns the actor adds (per-frame arrays ``[n, …]``, as ``actors.sppe`` reads them, then per-frame values); an
#: input column with one of these names is refused.
FRAME_OUTPUT_COLUMNS = (
    "crops",
    "crop_boxes_xyxy",
    "boxes_xyxy",
    "box_scores",
    "n_persons",
    "frame_width",
    "frame_height",
    "detector",
    "detector_weights",
    "random_weights",
    "error",
    "stage",
    "t_detect",
)

#: Detector precision name → the torch dtype name its weights and activations take (``yolo`` only beyond fp32).
DETECTOR_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True, kw_only=True)
class DetectorConfig:
    """Everything the detection stage needs; plain data (pickled to every actor through ``fn_constructor_kwargs``).

    Model fields map one-to-one to ``models.detectors.build_detector`` arguments; see it for defaults per arch.
    """

    arch: str = "fasterrcnn_resnet50_fpn_v2"  # a key of models.detectors.DETECTOR_ARCH_NAMES
    weights: str | None = None  # checkpoint path/URL, "torchvision", or the detections file for "precomputed"
    random_weights: bool = False  # build without weights (tests, smoke runs); every output is marked "random"
    device: str = "auto"  # "auto" (CUDA iff Ray gave this worker a GPU; actors.common.pick_device), "cpu", "cuda:1"
    score_threshold: float | None = None  # keep score > this; None: the arch's default
    nms_iou: float | None = None  # NMS IoU; None: the arch's default (YOLOv3-SPP 0.6)
    min_box_area: float = 0.0  # keep boxes with area >= this, frame pixels²
    min_box_side: float = 2.0  # keep boxes with width and height >= this, frame pixels (drops boxes clamped away)
    max_persons: int | None = None  # at most this many persons per frame (highest scores); None: no limit
    input_size: int | None = None  # YOLOv3-SPP letterbox side (608) / torchvision min_size
    rpn_proposals: int | None = None  # Faster R-CNN proposals per image at test time
    darknet_cfg: str | None = None  # a .cfg for yolov3_spp (default: the standard layer list)
    frame_column: str = "frame"  # input column with the uint8 RGB frames
    key_column: str | None = None  # input column with frame keys (image id or file name); needed by "precomputed"
    drop_columns: tuple[str, ...] = ()  # input columns not to pass through (e.g. other large arrays)
    crop_backend: Literal["auto", "opencv", "torch"] = "auto"  # auto: OpenCV (bit-exact) on CPU, torch elsewhere
    precision: str = "fp32"  # "fp32", or "bf16"/"fp16" network weights and activations (yolo only)

    def __post_init__(self) -> None:
        if self.arch not in DETECTOR_ARCH_NAMES:
            choices = ", ".join(DETECTOR_ARCH_NAMES)
            raise ValueError(f"DetectorConfig.arch: unknown {self.arch!r}; choose one of: {choices}")
        if self.arch != "precomputed" and self.weights is None and not self.random_weights:
            raise ValueError(
                f"DetectorConfig: {self.arch} has no weights. Set weights=PATH (or 'torchvision'), or "
                f"random_weights=True for smoke tests (outputs are then marked 'random' and are not detections)"
            )
        if self.weights is not None and self.random_weights:
            raise ValueError("DetectorConfig: weights and random_weights=True contradict each other; choose one")
        if self.arch == "precomputed" and (self.weights is None or self.key_column is None):
            raise ValueError(
                "DetectorConfig: arch 'precomputed' needs weights=PATH of the detections file and "
                "key_column naming the input column with image ids or file names"
            )
        if self.crop_backend not in ("auto", "opencv", "torch"):
            raise ValueError(
                f"DetectorConfig.crop_backend must be 'auto', 'opencv' or 'torch', got {self.crop_backend!r}"
            )
        if self.precision not in DETECTOR_DTYPES:
            choices = ", ".join(DETECTOR_DTYPES)
            raise ValueError(f"DetectorConfig.precision must be one of {choices}, got {self.precision!r}")
        if self.precision != "fp32" and self.arch != "yolo":
            raise ValueError(f"DetectorConfig.precision={self.precision} is supported by arch 'yolo' only")
        if self.frame_column in FRAME_OUTPUT_COLUMNS:
            raise ValueError(f"DetectorConfig.frame_column {self.frame_column!r} collides with an output column")


#: Heatmap SPPEs (``models.sppe``), BlazePose, and "the detector's own keypoints".
POSE_ARCHS = SPPE_ARCH_NAMES + ("blazepose_full", "detector")
#: ``precision`` names other than ``auto``; ``actors.sppe.PRECISION_DTYPES`` maps each to the dtype of the network's
#: input (``int8``: float32 in and out, an int8 network inside, ``models.quantize``).
PRECISION_NAMES = ("fp32", "bf16", "fp16", "int8")
#: ``precision`` values: the above, and ``auto`` (``models.precision.resolve_precision``: bf16 on CPUs with native bf16,
#: else fp32), the default.
PRECISION_CHOICES = ("auto", *PRECISION_NAMES)
#: Architectures int8 is offered for: their int8 heatmaps stayed within 0.8% of fp32 (relative L2, seeded weights,
#: benchmarks/sppe.py). HRNet-W32 (100%: its outputs collapse) and HarDNet (concatenations of tensors with different
#: quantization ranges) are left out.
INT8_ARCHS = tuple(a for a in SPPE_ARCH_NAMES if a.startswith(("fastpose_", "simplepose_")))
#: Decoders whose network outputs are MSE heatmaps, the only outputs joint candidates (peaks) can be read from;
#: integral regression's logits have no meaningful peaks.
CANDIDATE_DECODES = ("alphapose", "dark")


@dataclass(frozen=True, kw_only=True)
class SPPEConfig:
    """Settings of the pose stage."""

    arch: str = "fastpose_res50"  # a POSE_ARCHS name: models.sppe.SPPE_ARCHS, "blazepose_full" or "detector"
    # path or URI of an AlphaPose-format .pth; for blazepose_full the converted file (default: the weights folder's
    # pose_landmark_full.pt, models.zoo)
    checkpoint: str | None = None
    random_weights: bool = False  # required (and announced) when no checkpoint is given
    # AlphaPose YAML model config (path or URI): jobs.label sets arch, num_joints, keypoint_set and decode from it
    # (models.alphapose_config), and the actor builds exactly what it describes
    alphapose_config: str | None = None
    num_joints: int = 17
    keypoint_set: str = "coco17"  # models.keypoints name of the heatmap channels
    flip_test: bool = False  # average with the mirrored input (AlphaPose --flip)
    # "alphapose" (heatmap argmax, exact), "dark" (sub-pixel), "integral" (AlphaPose's symmetric integral
    # regression) or "combined" (heatmap for body and feet, integral for face and hands): models.heatmaps
    decode: str = "alphapose"
    # persons per forward pass; 0 = by device: 8 on CPU (per-crop cost rises with the batch there: 0.13 s at 8 vs
    # 0.18 s at 64 for FastPose-res50 on 2 threads, 3 interleaved passes on a loaded 2-core machine; the whole job:
    # 4.95 vs 4.15 persons/s in benchmarks/end_to_end.py), 64 on a GPU
    batch_size: int = 0
    device: str = "auto"  # "auto" (GPU iff Ray assigned one), "cpu", "cuda", "cuda:N"
    # "auto": bf16 for the heatmap SPPEs on a CPU with native bf16, else fp32 (models.precision; BlazePose: fp32);
    # "fp32" (exact: outputs equal AlphaPose's);
    # "bf16"/"fp16" trunk (the heatmap layer stays fp32: models.sppe.cast_for_inference); "int8": static int8
    # quantization on CPU, heatmap SPPEs only (models.quantize; outputs differ from fp32, see its docstring)
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in POSE_ARCHS:
            raise ValueError(f"sppe.arch: unknown {self.arch!r}; choose one of {', '.join(POSE_ARCHS)}")
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"sppe.precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        if self.precision == "int8" and self.arch not in INT8_ARCHS:
            raise ValueError(f"sppe.precision=int8 is for {', '.join(INT8_ARCHS)}, not {self.arch}")
        if self.precision == "int8" and self.device.startswith("cuda"):
            raise ValueError("sppe.precision=int8 runs on the CPU; on a GPU use fp16 or bf16")
        if self.arch == "blazepose_full" and self.keypoint_set not in BLAZEPOSE_KEYPOINT_SETS:
            raise ValueError(
                f"sppe.keypoint_set: BlazePose maps to {', '.join(BLAZEPOSE_KEYPOINT_SETS)}, not {self.keypoint_set!r}"
            )
        if self.arch == "detector" and self.flip_test:
            raise ValueError("sppe.flip_test: sppe.arch=detector runs no pose network to flip")
        if self.arch in ("blazepose_full", "detector") and self.random_weights:
            raise ValueError(f"sppe.arch={self.arch} has no random-weights mode (its weights are real or absent)")
        ks = get_keypoint_set(self.keypoint_set)
        if ks.num_keypoints != self.num_joints:
            raise ValueError(
                f"sppe.keypoint_set {self.keypoint_set} has {ks.num_keypoints} keypoints, "
                f"sppe.num_joints is {self.num_joints}"
            )
        if self.decode not in DECODE_METHODS:
            raise ValueError(f"sppe.decode must be one of {', '.join(DECODE_METHODS)}, got {self.decode!r}")
        if self.decode == "combined":
            combined_integral_channels(self.num_joints)  # refuses a keypoint count without AlphaPose's split
        if self.batch_size < 0:
            raise ValueError(f"sppe.batch_size must be ≥ 1, or 0 for the device's default; got {self.batch_size}")
        if self.checkpoint is None and not self.random_weights and self.arch in SPPE_ARCH_NAMES:
            raise ValueError(
                "sppe.checkpoint is not set: give an AlphaPose-format checkpoint (sppe.checkpoint=PATH), or "
                "sppe.random_weights=true for a smoke run whose keypoints are meaningless"
            )

    @property
    def identifier(self) -> str:
        return self.arch

    @property
    def crop(self) -> CropSpec | None:
        """The crops this pose network takes (None: the detector's keypoints, no crops)."""
        return {"blazepose_full": BLAZEPOSE_CROP, "detector": None}.get(self.arch, ALPHAPOSE_CROP)

    def resolved(self, *, gpu: bool) -> SPPEConfig:
        """This config with ``precision="auto"`` replaced by what it means on this machine (``models.precision``);
        ``gpu``: the pose actors get a GPU. Other precisions are returned as they are."""
        if self.precision != "auto":
            return self
        # bf16 only for AlphaPose's heatmap SPPEs (1.7–2.2× FastPose-res50's fp32 forward): BlazePose's keypoints move
        # 1.7 px median in bf16 and its pipeline AP dropped on the real samples (benchmarks/precision.py, README)
        offers = self.arch in SPPE_ARCH_NAMES
        return dataclasses.replace(self, precision=resolve_precision("auto", gpu=gpu, offers_bf16=offers))

    def weights_path(self) -> str | None:
        """The checkpoint this stage loads: ``checkpoint``, BlazePose's fetched file, or None (random/detector)."""
        if self.checkpoint is not None or self.arch != "blazepose_full":
            return self.checkpoint
        from models.zoo import weights_file

        return weights_file("blazepose_full")


def inference_form(cfg: SPPEConfig) -> dict:
    """How the pose stage runs its network, recorded in the run summary (``sppe_inference``).

    FastPose (AlphaPose's SPPE) runs in an inference form whose outputs equal the plain network's up to float
    rounding: batch norm folded into the convolutions (``models.sppe.fold_batchnorm``) and channels-last (NHWC)
    weights, as the crops already arrive NHWC (``normalize_crops`` permutes without copying). FastPose-res50, batch
    8, 2 CPU threads, medians of 5 interleaved passes: NCHW 8.18, channels-last 9.40, both 10.11 persons/s (1.24×).
    ``cfg.precision`` should be resolved (``SPPEConfig.resolved``); ``auto`` is recorded as it is.
    """
    if cfg.arch in SPPE_ARCH_NAMES:
        form = {"precision": cfg.precision, "batchnorm_folded": True, "memory_format": "channels_last"}
        if cfg.precision in ("bf16", "fp16"):
            form["heatmap_layer"] = "fp32"  # models.sppe.cast_for_inference
        if cfg.precision == "int8":
            form["quantization"] = (
                "static post-training, torch.ao FX, x86/fbgemm: int8 per-channel weights, uint8 per-tensor activations "
                "(min/max), calibrated on 32 fixed crops of samples/images/000000000785.jpg (models.quantize)"
            )
        return form
    if cfg.arch == "blazepose_full":
        return {"precision": cfg.precision, "batchnorm_folded": False, "memory_format": "contiguous"}
    return {}  # sppe.arch=detector: no pose network
