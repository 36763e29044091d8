"""Person detectors behind one interface: torchvision's detection models, YOLOv3-SPP as AlphaPose runs it, and
precomputed detections.

This is the first model stage of the pipeline (``actors.detect.Detector`` wraps it). Every detector is called the
same way: a batch of RGB uint8 frames of any sizes in, one ``FrameDetections`` per frame out — person boxes
(float32 ``[n, 4]`` xyxy in frame pixels, clamped to ``[0, W] × [0, H]``), scores (float32 ``[n]``, descending)
and the frame size. Thresholds are applied the same way for all: score > ``score_threshold`` (strict), box area
(after clamping, no +1) ≥ ``min_box_area``, box width and height (after clamping) ≥ ``min_box_side`` (default 2 px:
a box outside the frame, clamped to zero area, is no person), at most ``max_persons`` boxes (highest scores first).
Each output also keeps the boxes as the detector produced them, before clamping (``boxes_raw_xyxy``): the SPPE
crop is cut from those, as AlphaPose does.

Architectures (``DETECTOR_ARCHS``; the name is the builder function's name):

* ``fasterrcnn_resnet50_fpn_v2``, ``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn``: torchvision's COCO
  detectors (the accurate default family); ``fasterrcnn_mobilenet_v3_large_fpn``,
  ``fasterrcnn_mobilenet_v3_large_320_fpn``, ``ssdlite320_mobilenet_v3_large``: the CPU-friendly ones. Person is
  COCO label 1; the score is the model's class score. Unset thresholds take the model's own defaults.
* ``yolov3_spp``: ``models.darknet`` with AlphaPose's settings (``detector/yolo_api.py``, ``detector/yolo_cfg.py``):
  letterbox 608, objectness > 0.1, argmax class = person, +1-pixel NMS at IoU 0.6; score = objectness.
* ``yolo``: an Ultralytics YOLOv8/YOLO11 checkpoint (``.pt``; detect or pose) run by ``models.ultralytics``
  (plain PyTorch, the file read by a restricted unpickler that executes nothing) with Ultralytics' predict
  semantics: letterbox 640 (pad 114), score = best class probability > 0.25 with best class = person (0), NMS IoU
  0.7, at most 300 before our filters. Pose checkpoints (``yolo11n-pose.pt``) also give per-person COCO-17
  keypoints (``FrameDetections.keypoints``). Ultralytics' weights are AGPL-3.0: using them is the user's choice.
* ``precomputed``: boxes from a COCO detection JSON or Parquet file (``models.detections_io``), looked up by frame
  key instead of computed from pixels. It lives in ``models.person_boxes`` with ``FrameDetections`` and the common
  ``PersonDetector`` base, all torch-free and re-exported here; the networks derive ``NetworkPersonDetector``.

Weights: ``weights`` is a local path or fsspec URL of a checkpoint (``.pth`` state dict for torchvision models,
darknet ``.weights`` for YOLOv3-SPP, an Ultralytics ``.pt`` for ``yolo``, the detections file for ``precomputed``),
or ``"torchvision"`` for the arch's official COCO weights (``<Arch>_Weights.DEFAULT``), fetched once into torch's
hub cache when online. Every file is hashed (sha256, reported as ``weights_id``) and unpickled with
``torch.load(..., weights_only=True)``, except Ultralytics files, which pickle whole modules and are read by
``models.safe_unpickle`` (records instead of objects; nothing is called). Nothing is downloaded otherwise. Without
weights a detector is built only with ``random_weights=True``; its outputs carry ``weights_id == "random"``; random
weights are drawn under a fixed seed (0), so they are the same in every process.

Example::

    >>> import numpy as np
    >>> from models.detectors import build_detector
    >>> det = build_detector("ssdlite320_mobilenet_v3_large", random_weights=True, score_threshold=0.5)
    >>> out = det([np.zeros((120, 160, 3), np.uint8)])
    >>> out[0].frame_size_wh, out[0].boxes_xyxy.dtype, out[0].weights_id
    ((160, 120), dtype('float32'), 'random')
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models import ultralytics
from models.darknet import (
    Darknet,
    Letterbox,
    letterbox,
    letterbox_to_image,
    parse_darknet_cfg,
    read_darknet_cfg,
    read_darknet_weights,
    yolo_person_boxes,
    yolov3_spp_cfg,
)
from models.names import DETECTOR_ARCH_NAMES
from models.person_boxes import (
    RANDOM_WEIGHTS_ID,
    FrameDetections,
    PersonDetector,
    PrecomputedPersonDetector,
    _log_built,
    _no_extra,
    _validate,
    check_frame,
    precomputed,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RANDOM_WEIGHTS_ID",
    "FrameDetections",
    "check_frame",
    "PersonDetector",
    "NetworkPersonDetector",
    "TorchvisionPersonDetector",
    "YoloPersonDetector",
    "UltralyticsPersonDetector",
    "PrecomputedPersonDetector",
    *DETECTOR_ARCH_NAMES,  # one builder per name, each called as its arch (models.names)
    "DETECTOR_ARCHS",
    "TORCHVISION_ARCHS",
    "build_detector",
    "torchvision_weights_url",
]


class NetworkPersonDetector(PersonDetector):
    """A detector that runs a torch network: ``_detect`` runs in ``torch.inference_mode()``."""

    def _inference_context(self) -> contextlib.AbstractContextManager:
        return torch.inference_mode()


def _frame_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` tensor on ``device``; read-only inputs (Ray's zero-copy views) are copied, never written."""
    if not frame.flags.writeable or not frame.flags.c_contiguous:
        frame = np.array(frame, order="C", copy=True)
    return torch.from_numpy(frame).to(device)


# ------------------------------------------------------------------------------------------------ torchvision


class TorchvisionPersonDetector(NetworkPersonDetector):
    """A torchvision detection model (eval mode) whose person detections (label ``person_label``) are kept.

    ``prepare(frames)`` builds the model's own input (float ``[3, H, W]`` tensors in [0, 1] on the device) and
    ``forward_model(inputs)`` is the model's own forward; the benchmark times both against ``__call__``.
    """

    def __init__(self, model: nn.Module, *, person_label: int = 1, **common: Any) -> None:
        super().__init__(**common)
        self.model = model.to(self.device).eval()
        self.person_label = person_label

    def prepare(self, frames: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [_frame_tensor(f, self.device).permute(2, 0, 1).float().div_(255.0) for f in frames]

    def forward_model(self, inputs: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(inputs)

    def _detect(self, frames, keys):
        out = []
        for pred in self.forward_model(self.prepare(frames)):
            person = pred["labels"] == self.person_label
            out.append((pred["boxes"][person].float().cpu().numpy(), pred["scores"][person].float().cpu().numpy()))
        return out


@dataclass(frozen=True)
class _TorchvisionArch:
    """How torchvision builds one detector, and its inference defaults (read from torchvision 0.29 builders)."""

    builder: Callable[..., nn.Module]
    weights_enum: Any  # the <Arch>_Weights enum class
    family: Literal["rcnn", "dense", "ssd"]  # which keyword names its thresholds take
    score_threshold: float
    nms_iou: float
    detections_per_img: int
    min_size: int | None  # None: fixed input size (SSDlite 320×320)
    max_size: int | None
    rpn_pre_nms: int | None
    # torchvision builds the COCO-trained model with FrozenBatchNorm2d (eps 1e-5) in the backbone; building the
    # same module tree here makes official state dicts load strictly and compute identically (MobileNet's own
    # BatchNorm uses eps 1e-3).
    frozen_bn: bool


def _torchvision_archs() -> dict[str, _TorchvisionArch]:
    from torchvision.models import detection as d

    return {
        "fasterrcnn_resnet50_fpn_v2": _TorchvisionArch(
            d.fasterrcnn_resnet50_fpn_v2,
            d.FasterRCNN_ResNet50_FPN_V2_Weights,
            "rcnn",
            0.05,
            0.5,
            100,
            800,
            1333,
            1000,
            False,
        ),
        "retinanet_resnet50_fpn_v2": _TorchvisionArch(
            d.retinanet_resnet50_fpn_v2,
            d.RetinaNet_ResNet50_FPN_V2_Weights,
            "dense",
            0.05,
            0.5,
            300,
            800,
            1333,
            None,
            False,
        ),
        "fcos_resnet50_fpn": _TorchvisionArch(
            d.fcos_resnet50_fpn, d.FCOS_ResNet50_FPN_Weights, "dense", 0.2, 0.6, 100, 800, 1333, None, True
        ),
        "fasterrcnn_mobilenet_v3_large_fpn": _TorchvisionArch(
            d.fasterrcnn_mobilenet_v3_large_fpn,
            d.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
            "rcnn",
            0.05,
            0.5,
            100,
            800,
            1333,
            1000,
            True,
        ),
        "fasterrcnn_mobilenet_v3_large_320_fpn": _TorchvisionArch(
            d.fasterrcnn_mobilenet_v3_large_320_fpn,
            d.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
            "rcnn",
            0.05,
            0.5,
            100,
            320,
            640,
            150,
            True,
        ),
        "ssdlite320_mobilenet_v3_large": _TorchvisionArch(
            d.ssdlite320_mobilenet_v3_large,
            d.SSDLite320_MobileNet_V3_Large_Weights,
            "ssd",
            0.001,
            0.55,
            300,
            None,
            None,
            None,
            False,
        ),
    }


def torchvision_weights_url(arch: str) -> str:
    """URL of ``arch``'s official COCO weights (``<Arch>_Weights.DEFAULT``); its file name ends in a sha256 prefix."""
    archs = _torchvision_archs()
    if arch not in archs:
        raise ValueError(f"{arch!r} has no torchvision weights; torchvision archs: {', '.join(archs)}")
    return archs[arch].weights_enum.DEFAULT.url


_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def _torchvision_cached_file(url: str) -> str:
    """The official file in torch's hub cache (``$TORCH_HOME/hub/checkpoints``), downloaded there if absent.

    Only bytes are fetched (``torch.hub.download_url_to_file``, which verifies the sha256 prefix); unpickling
    happens later, weights-only.
    """
    cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    name = url.rsplit("/", 1)[-1]
    path = os.path.join(cache_dir, name)
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        m = _HASH_IN_NAME.search(name)
        logger.info("downloading %s to %s", url, path)
        torch.hub.download_url_to_file(url, path, hash_prefix=m.group(1) if m else None, progress=False)
    return path


@contextlib.contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    """Build under a fixed seed without touching the caller's RNG: random weights are the same in every actor
    and every run, so smoke runs are reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _freeze_batch_norm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` by torchvision's ``FrozenBatchNorm2d`` (eps 1e-5), keeping its values."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child)


def _torchvision_detector(
    arch: str,
    *,
    weights: str | None,
    random_weights: bool,
    device: str,
    score_threshold: float | None,
    nms_iou: float | None,
    min_box_area: float,
    min_box_side: float,
    max_persons: int | None,
    input_size: int | None,
    rpn_proposals: int | None,
) -> TorchvisionPersonDetector:
    spec = _torchvision_archs()[arch]
    score = spec.score_threshold if score_threshold is None else score_threshold
    iou = spec.nms_iou if nms_iou is None else nms_iou
    # The model's cap counts all 91 classes before the person filter; never let it cut below max_persons.
    per_img = max(spec.detections_per_img, max_persons or 0)
    kwargs: dict[str, Any]
    if spec.family == "rcnn":
        kwargs = {"box_score_thresh": score, "box_nms_thresh": iou, "box_detections_per_img": per_img}
    else:
        kwargs = {"score_thresh": score, "nms_thresh": iou, "detections_per_img": per_img}
    if input_size is not None:
        if spec.min_size is None:
            raise ValueError(f"{arch} has a fixed 320×320 input; input_size must be None")
        kwargs["min_size"] = input_size
        kwargs["max_size"] = int(round(input_size * spec.max_size / spec.min_size))
    if rpn_proposals is not None:
        if spec.family != "rcnn":
            raise ValueError(f"rpn_proposals applies to Faster R-CNN archs only, not {arch}")
        kwargs["rpn_post_nms_top_n_test"] = rpn_proposals
        kwargs["rpn_pre_nms_top_n_test"] = max(spec.rpn_pre_nms, rpn_proposals)
    # weights=None, weights_backbone=None: torchvision downloads nothing; official weights are loaded below,
    # weights-only, into the same module tree.
    with _seeded():
        model = spec.builder(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    if spec.frozen_bn:
        _freeze_batch_norm(model)
    weights_id = RANDOM_WEIGHTS_ID
    if weights is not None:
        from models.checkpoints import CheckpointError, load_state_dict_strict, read_state_dict, redact_uri

        path = _torchvision_cached_file(torchvision_weights_url(arch)) if weights == "torchvision" else weights
        state, weights_id = read_state_dict(path)
        if weights == "torchvision":
            m = _HASH_IN_NAME.search(os.path.basename(path))
            if m and not weights_id.startswith(m.group(1)):
                raise CheckpointError(
                    f"{path}: sha256 {weights_id[:16]}… does not start with {m.group(1)}, the hash in the official "
                    f"file name: the cached file is corrupt or replaced; delete it to download it again"
                )
        load_state_dict_strict(model, state, redact_uri(path))
    return TorchvisionPersonDetector(
        model,
        arch=arch,
        weights_id=weights_id,
        device=device,
        score_threshold=score,
        min_box_area=min_box_area,
        min_box_side=min_box_side,
        max_persons=max_persons,
    )


# ---------------------------------------------------------------------------------------------------- YOLOv3


class YoloPersonDetector(NetworkPersonDetector):
    """A ``Darknet`` YOLO network with AlphaPose's letterbox and person filter (``YOLODetector``).

    ``prepare(frames)`` letterboxes to float ``[B, 3, S, S]`` RGB in [0, 1]; ``forward_model(x)`` is the network's
    own forward (decoded rows ``[B, R, 5 + C]``).
    """

    def __init__(self, model: Darknet, *, input_size: int, nms_iou: float, **common: Any) -> None:
        super().__init__(**common)
        self.model = model.to(self.device).eval()
        self.input_size = input_size
        self.nms_iou = nms_iou

    def prepare(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[Letterbox]]:
        canvases, geos = zip(*(letterbox(f, self.input_size) for f in frames))
        x = torch.from_numpy(np.stack(canvases)).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0), list(geos)

    def forward_model(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _detect(self, frames, keys):
        x, geos = self.prepare(frames)
        rows = self.forward_model(x)
        out = []
        for i, geo in enumerate(geos):
            # Deviation from AlphaPose (YOLODetector): NMS runs per image at a fixed IoU; AlphaPose lowers it to 0.55
            # for the whole batch once the batch holds > 100 detections (dynamic_write_results; see
            # yolo_person_boxes).
            boxes, scores = yolo_person_boxes(rows[i], confidence=self.score_threshold, nms_iou=self.nms_iou)
            out.append((letterbox_to_image(boxes, geo), scores))
        return out


# ------------------------------------------------------------------------------------ Ultralytics YOLOv8/YOLO11


class UltralyticsPersonDetector(NetworkPersonDetector):
    """An Ultralytics YOLOv8/YOLO11 network (``models.ultralytics.YoloNet``) with Ultralytics' predict semantics.

    ``prepare(frames)`` letterboxes every frame to ``input_size`` × ``input_size`` (``LetterBox(auto=False)``: pad
    114, centred, ``cv2.INTER_LINEAR``) and returns float ``[B, 3, S, S]`` RGB in [0, 1] with the geometries;
    ``forward_model(x)`` is the network (``YoloOutput``, network-input pixels). Per frame, Ultralytics'
    ``non_max_suppression`` keeps anchors whose best class is ``person_class`` with probability > the score
    threshold, NMS at ``nms_iou``, at most ``max_det``; boxes and keypoints are mapped back (``scale_boxes``,
    ``scale_coords``) and clipped to the frame. The box score is the person class probability.

    ``keypoint_set`` is ``"coco17"`` for pose checkpoints with 17 keypoints (Ultralytics' COCO order) and None for
    detection checkpoints. The network may be cast (``dtype`` float16/bfloat16); decoding and NMS stay float32.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: int,
        nms_iou: float,
        max_det: int,
        person_class: int,
        keypoint_set: str | None,
        dtype: torch.dtype = torch.float32,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.input_size = input_size
        self.nms_iou = nms_iou
        self.max_det = max_det
        self.person_class = person_class
        self.keypoint_set = keypoint_set
        self.dtype = dtype

    def prepare(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[ultralytics.LetterboxGeometry]]:
        geos = [ultralytics.letterbox_geometry((int(f.shape[1]), int(f.shape[0])), self.input_size) for f in frames]
        canvases = np.stack([ultralytics.letterbox(f, g) for f, g in zip(frames, geos)])
        x = torch.from_numpy(canvases).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return x, geos

    def forward_model(self, x: torch.Tensor) -> ultralytics.YoloOutput:
        return self.model(x)

    def _detect(self, frames, keys):
        x, geos = self.prepare(frames)
        pred = self.forward_model(x)
        out = []
        for i, geo in enumerate(geos):
            idx, score, _ = ultralytics.non_max_suppression(
                pred.boxes_xyxy[i],
                pred.scores[i],
                conf=self.score_threshold,
                iou=self.nms_iou,
                max_det=self.max_det,
                classes=[self.person_class],
            )
            boxes = ultralytics.boxes_to_frame(pred.boxes_xyxy[i][idx], geo).cpu().numpy()
            if self.keypoint_set is None:
                out.append((boxes, score.cpu().numpy()))
            else:
                kps = ultralytics.keypoints_to_frame(pred.keypoints[i][idx], geo).cpu().numpy()
                out.append((boxes, score.cpu().numpy(), kps, pred.keypoint_scores[i][idx].float().cpu().numpy()))
        return out


# ------------------------------------------------------------------------------------------------- builders


def _torchvision_builder(arch: str) -> Callable[..., TorchvisionPersonDetector]:
    def build(
        *,
        weights: str | None = None,
        random_weights: bool = False,
        device: str = "cpu",
        score_threshold: float | None = None,
        nms_iou: float | None = None,
        min_box_area: float = 0.0,
        min_box_side: float = 2.0,
        max_persons: int | None = None,
        input_size: int | None = None,
        rpn_proposals: int | None = None,
        darknet_cfg: str | None = None,
    ) -> TorchvisionPersonDetector:
        _validate(
            arch,
            weights,
            random_weights,
            score_threshold,
            nms_iou,
            min_box_area,
            max_persons,
            input_size,
            device,
            min_box_side=min_box_side,
        )
        _no_extra(arch, darknet_cfg=darknet_cfg)
        det = _torchvision_detector(
            arch,
            weights=weights,
            random_weights=random_weights,
            device=device,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            min_box_area=min_box_area,
            min_box_side=min_box_side,
            max_persons=max_persons,
            input_size=input_size,
            rpn_proposals=rpn_proposals,
        )
        _log_built(det)
        return det

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = (
        f"torchvision's ``{arch}`` as a person detector (see the module docstring for the arguments).\n\n"
        "``input_size`` sets the model's ``min_size`` (``max_size`` scales with it); ``rpn_proposals`` the "
        "proposals kept per image at test time (Faster R-CNN only)."
    )
    return build


fasterrcnn_resnet50_fpn_v2 = _torchvision_builder("fasterrcnn_resnet50_fpn_v2")
retinanet_resnet50_fpn_v2 = _torchvision_builder("retinanet_resnet50_fpn_v2")
fcos_resnet50_fpn = _torchvision_builder("fcos_resnet50_fpn")
fasterrcnn_mobilenet_v3_large_fpn = _torchvision_builder("fasterrcnn_mobilenet_v3_large_fpn")
fasterrcnn_mobilenet_v3_large_320_fpn = _torchvision_builder("fasterrcnn_mobilenet_v3_large_320_fpn")
ssdlite320_mobilenet_v3_large = _torchvision_builder("ssdlite320_mobilenet_v3_large")


def yolov3_spp(
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    score_threshold: float | None = None,
    nms_iou: float | None = None,
    min_box_area: float = 0.0,
    min_box_side: float = 2.0,
    max_persons: int | None = None,
    input_size: int | None = None,
    rpn_proposals: int | None = None,
    darknet_cfg: str | None = None,
    maxpool_padding: Literal["zeros", "darknet"] = "zeros",
) -> YoloPersonDetector:
    """YOLOv3-SPP with AlphaPose's settings (``detector/yolo_cfg.py``): input 608, confidence 0.1, NMS IoU 0.6.

    Args:
        weights: darknet ``.weights`` file (AlphaPose's ``yolov3-spp.weights`` works unchanged).
        input_size: letterbox side, a multiple of 32 (default 608).
        darknet_cfg: path/URL of a ``.cfg``; default the standard ``yolov3_spp_cfg()`` layer list.
        maxpool_padding: SPP padding, ``"zeros"`` as AlphaPose (default) or ``"darknet"`` (−inf).
        Others: see the module docstring. ``score_threshold`` is the objectness confidence (strict >).
    """
    arch = "yolov3_spp"
    _validate(
        arch,
        weights,
        random_weights,
        score_threshold,
        nms_iou,
        min_box_area,
        max_persons,
        input_size,
        device,
        min_box_side=min_box_side,
    )
    _no_extra(arch, rpn_proposals=rpn_proposals)
    size = 608 if input_size is None else input_size
    if size % 32:
        raise ValueError(f"yolov3_spp input_size must be a multiple of 32, got {size}")
    spec = (
        read_darknet_cfg(darknet_cfg)
        if darknet_cfg is not None
        else parse_darknet_cfg(yolov3_spp_cfg(), "yolov3_spp_cfg()")
    )
    with _seeded():
        model = Darknet(spec, maxpool_padding=maxpool_padding)
    weights_id = RANDOM_WEIGHTS_ID if weights is None else read_darknet_weights(model, weights).sha256
    det = YoloPersonDetector(
        model,
        arch=arch,
        weights_id=weights_id,
        device=device,
        input_size=size,
        nms_iou=0.6 if nms_iou is None else nms_iou,
        score_threshold=0.1 if score_threshold is None else score_threshold,
        min_box_area=min_box_area,
        min_box_side=min_box_side,
        max_persons=max_persons,
    )
    _log_built(det)
    return det


_YOLO_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def yolo(
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    score_threshold: float | None = None,
    nms_iou: float | None = None,
    min_box_area: float = 0.0,
    min_box_side: float = 2.0,
    max_persons: int | None = None,
    input_size: int | None = None,
    rpn_proposals: int | None = None,
    darknet_cfg: str | None = None,
    dtype: Literal["float32", "float16", "bfloat16"] = "float32",
    max_det: int = 300,
) -> UltralyticsPersonDetector:
    """An Ultralytics YOLOv8/YOLO11 detect or pose checkpoint with Ultralytics' predict defaults.

    Args:
        weights: an Ultralytics ``.pt`` (e.g. ``yolo11n-pose.pt``), read without executing its pickle
            (``models.ultralytics.read_ultralytics_checkpoint``); ``weights_id`` is the file's sha256. Ultralytics'
            weights are AGPL-3.0 (using them is the user's choice).
        random_weights: build YOLO11n-pose (``models.ultralytics.yolo11n_pose_yaml``) under seed 0 instead.
        score_threshold: person probability, strict > (default 0.25, Ultralytics ``conf``).
        nms_iou: default 0.7 (Ultralytics ``iou``).
        input_size: letterbox side, a multiple of 32 (default 640, Ultralytics ``imgsz``).
        dtype: the network's dtype (``"float16"``/``"bfloat16"`` for half-precision inference; decoding stays float32).
        max_det: detections kept by NMS before ``max_persons`` (Ultralytics ``max_det``, 300).
        Others: see the module docstring.
    """
    arch = "yolo"
    _validate(
        arch,
        weights,
        random_weights,
        score_threshold,
        nms_iou,
        min_box_area,
        max_persons,
        input_size,
        device,
        min_box_side=min_box_side,
    )
    _no_extra(arch, rpn_proposals=rpn_proposals, darknet_cfg=darknet_cfg)
    size = 640 if input_size is None else input_size
    if size % 32:
        raise ValueError(f"yolo input_size must be a multiple of 32, got {size}")
    if dtype not in _YOLO_DTYPES:
        raise ValueError(f"yolo dtype must be one of {', '.join(_YOLO_DTYPES)}, got {dtype!r}")
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det}")
    score = 0.25 if score_threshold is None else score_threshold
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"yolo score_threshold must be in [0, 1], got {score}")
    if weights is None:
        with _seeded():
            net = ultralytics.YoloNet(ultralytics.parse_yolo_yaml(ultralytics.yolo11n_pose_yaml()))
            _init_yolo_head_biases(net)
        weights_id, person_class, kpt_shape = RANDOM_WEIGHTS_ID, 0, net.arch.kpt_shape
    else:
        from models.checkpoints import load_state_dict_strict

        ckpt = ultralytics.read_ultralytics_checkpoint(weights)
        net = ultralytics.YoloNet(ckpt.arch(), bn_eps=ckpt.bn_eps)
        load_state_dict_strict(net, ckpt.state_dict, ckpt.source)
        if ckpt.names and ckpt.names[0] != "person":
            raise ultralytics.UltralyticsCheckpointError(
                f"{ckpt.source}: class 0 is {ckpt.names[0]!r}, not 'person' (classes: {', '.join(ckpt.names[:10])}"
                f"{' …' if len(ckpt.names) > 10 else ''})"
            )
        weights_id, person_class, kpt_shape = ckpt.sha256, 0, ckpt.kpt_shape
        logger.info(
            "yolo: %s (Ultralytics %s, %s; license: %s)",
            ckpt.source,
            ckpt.ultralytics_version,
            ckpt.class_path.rsplit(".", 1)[1],
            ckpt.license,
        )
    keypoint_set = None
    if kpt_shape is not None:
        if kpt_shape[0] != 17:
            raise ValueError(f"yolo: pose checkpoints with {kpt_shape[0]} keypoints are not supported (COCO-17 only)")
        keypoint_set = "coco17"
    det = UltralyticsPersonDetector(
        net,
        arch=arch,
        weights_id=weights_id,
        device=device,
        input_size=size,
        nms_iou=0.7 if nms_iou is None else nms_iou,
        max_det=max_det,
        person_class=person_class,
        keypoint_set=keypoint_set,
        dtype=_YOLO_DTYPES[dtype],
        score_threshold=score,
        min_box_area=min_box_area,
        min_box_side=min_box_side,
        max_persons=max_persons,
    )
    _log_built(det)
    return det


def _init_yolo_head_biases(net: nn.Module) -> None:
    """Ultralytics' ``Detect.bias_init`` for random builds: box bins 1.0, class logits ``log(5 / nc / (640 / s)²)``
    (about 0.01 objects per image at 640), so random-weight runs produce a few boxes rather than thousands."""
    head = net.model[-1]
    with torch.no_grad():
        for box, cls, s in zip(head.cv2, head.cv3, head.strides):
            box[-1].bias.fill_(1.0)
            cls[-1].bias.fill_(math.log(5 / head.nc / (640 / s) ** 2))


#: Architecture name → builder. Every builder takes the same keyword arguments (see ``build_detector``).
DETECTOR_ARCHS: dict[str, Callable[..., PersonDetector]] = {
    "fasterrcnn_resnet50_fpn_v2": fasterrcnn_resnet50_fpn_v2,
    "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2,
    "fcos_resnet50_fpn": fcos_resnet50_fpn,
    "fasterrcnn_mobilenet_v3_large_fpn": fasterrcnn_mobilenet_v3_large_fpn,
    "fasterrcnn_mobilenet_v3_large_320_fpn": fasterrcnn_mobilenet_v3_large_320_fpn,
    "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large,
    "yolov3_spp": yolov3_spp,
    "yolo": yolo,
    "precomputed": precomputed,
}

#: The torchvision family (builders taking ``weights="torchvision"``).
TORCHVISION_ARCHS = tuple(a for a in DETECTOR_ARCHS if a not in ("yolov3_spp", "yolo", "precomputed"))


def build_detector(
    arch: str,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    score_threshold: float | None = None,
    nms_iou: float | None = None,
    min_box_area: float = 0.0,
    min_box_side: float = 2.0,
    max_persons: int | None = None,
    input_size: int | None = None,
    rpn_proposals: int | None = None,
    darknet_cfg: str | None = None,
    dtype: str | None = None,
) -> PersonDetector:
    """Build a person detector by name.

    Args:
        arch: a key of ``DETECTOR_ARCHS``.
        weights: checkpoint path/URL (an Ultralytics ``.pt`` for ``yolo``), ``"torchvision"`` (official COCO
            weights, torchvision archs), or the detections file for ``precomputed``. Required unless
            ``random_weights``.
        random_weights: build without weights (tests, smoke runs); outputs are marked ``weights_id="random"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
        score_threshold: keep score > this; None takes the arch's default (YOLOv3-SPP 0.1 on objectness, yolo 0.25
            on the person probability, torchvision the model's own, precomputed none).
        nms_iou: NMS IoU; None takes the arch's default (YOLOv3-SPP 0.6, yolo 0.7, torchvision the model's own).
        min_box_area: keep boxes with area ≥ this (frame pixels², after clamping).
        min_box_side: keep boxes whose width and height are both ≥ this (frame pixels, after clamping; default 2):
            drops boxes clamped to nothing (outside the frame) and slivers, which no pose network can read.
        max_persons: keep at most this many boxes per frame (highest scores); None for no limit.
        input_size: YOLOv3-SPP / yolo letterbox side (multiple of 32, default 608 / 640); torchvision ``min_size``.
        rpn_proposals: Faster R-CNN proposals per image at test time (torchvision default 1000; 150 for 320).
        darknet_cfg: a darknet ``.cfg`` for ``yolov3_spp`` (default: the standard layer list).
        dtype: ``yolo`` only: the network's dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); None = float32.
    Returns:
        A ``PersonDetector``; call it on a list of frames.
    Raises:
        ValueError: unknown arch (the message lists them), no weights without ``random_weights``, an option the
            arch does not use, or a value out of range — all before any model is built.
    """
    builder = DETECTOR_ARCHS.get(arch)
    if builder is None:
        raise ValueError(f"unknown detector arch {arch!r}; choose one of: {', '.join(DETECTOR_ARCHS)}")
    extra = {}
    if dtype is not None and dtype != "float32":
        if arch != "yolo":
            raise ValueError(f"{arch}: dtype {dtype!r} is supported by the yolo detector only")
        extra["dtype"] = dtype
    return builder(
        weights=weights,
        random_weights=random_weights,
        device=device,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        min_box_area=min_box_area,
        min_box_side=min_box_side,
        max_persons=max_persons,
        input_size=input_size,
        rpn_proposals=rpn_proposals,
        darknet_cfg=darknet_cfg,
        **extra,
    )
