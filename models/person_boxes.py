"""What every person detector returns, and the one that computes nothing: boxes looked up in a detections file.

Torch-free. ``FrameDetections``, the input checks and the box filtering of ``PersonDetector`` are shared by every
detector (``models.detectors`` builds the networks on this base and re-exports everything here). ``precomputed``
(AlphaPose's ``--detfile``, ``alphapose/utils/file_detector.py``) only reads boxes from a COCO detection JSON or
Parquet file (``models.detections_io``), so the detection stage of a job with precomputed boxes never imports torch
(1.0–1.9 s per process on a 2-core machine, issue 13); its crops are cut by OpenCV
(``models.crops.crop_images``).

Example::

    >>> import json, pathlib, tempfile
    >>> import numpy as np
    >>> from models.person_boxes import precomputed
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "dets.json"
    >>> box = {"image_id": "a.jpg", "category_id": 1, "score": 0.9, "bbox": [10, 20, 30, 60]}
    >>> _ = path.write_text(json.dumps([box]))
    >>> det = precomputed(weights=str(path))
    >>> out = det([np.zeros((120, 160, 3), np.uint8)], keys=["a.jpg"])
    >>> out[0].boxes_xyxy.tolist(), out[0].weights_id == det.weights_id, det.device_type
    ([[10.0, 20.0, 40.0, 80.0]], True, 'cpu')
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.detections_io import DetectionsTable, load_detections

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "RANDOM_WEIGHTS_ID",
    "FrameDetections",
    "check_frame",
    "PersonDetector",
    "PrecomputedPersonDetector",
    "precomputed",
]

#: ``weights_id`` of every output computed with random weights (instead of a sha256).
RANDOM_WEIGHTS_ID = "random"


@dataclass(frozen=True, eq=False)
class FrameDetections:
    """One frame's persons.

    Attributes:
        boxes_xyxy: float32 ``[n, 4]`` in frame pixels, inside ``[0, W] × [0, H]`` (the reported boxes).
        scores: float32 ``[n]``, descending.
        frame_size_wh: ``(W, H)`` of the frame.
        weights_id: sha256 of the weights (or detections) file, or ``"random"``.
        keypoints: float32 ``[n, K, 2]`` (x, y) frame pixels inside ``[0, W] × [0, H]``, row ``i`` belonging to box
            ``i``, from detectors that predict keypoints (``PersonDetector.keypoint_set`` not None; ``[0, K, 2]``
            for a frame without persons); None from the others.
        keypoint_scores: float32 ``[n, K]`` (visibility probabilities in [0, 1]), aligned likewise; or None.
        boxes_raw_xyxy: float32 ``[n, 4]``, row ``i`` being box ``i`` as the detector produced it, before clamping
            to the frame (finite; may cross the frame's edges). The SPPE crop is cut from it, as AlphaPose's
            ``_box_to_center_scale`` is fed the detector's boxes: with ``--detfile`` (``precomputed``) they are
            unclamped, so a box crossing the edge gives AlphaPose's crop only from the raw box. The network
            detectors clamp in their own post-processing (AlphaPose's YOLO ``images_detection``, torchvision's
            ``clip_boxes_to_image``, Ultralytics' ``clip_boxes``), so there it equals ``boxes_xyxy``. None when a
            ``FrameDetections`` is built by hand: use ``boxes_xyxy`` then (``crop_source_boxes``).
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    frame_size_wh: tuple[int, int]
    weights_id: str
    keypoints: np.ndarray | None = None
    keypoint_scores: np.ndarray | None = None
    boxes_raw_xyxy: np.ndarray | None = None

    @property
    def crop_source_boxes(self) -> np.ndarray:
        """The boxes crops are cut from: ``boxes_raw_xyxy`` (unclamped, AlphaPose's), else ``boxes_xyxy``."""
        return self.boxes_raw_xyxy if self.boxes_raw_xyxy is not None else self.boxes_xyxy

    @property
    def random_weights(self) -> bool:
        """True when these boxes came from a network with random weights (not detections)."""
        return self.weights_id == RANDOM_WEIGHTS_ID

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def check_frame(frame: object) -> None:
    """Raise ``TypeError``/``ValueError`` describing why ``frame`` is not a uint8 ``[H, W, 3]`` array (H, W ≥ 1)."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise TypeError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must be [H, W, 3] with H, W >= 1, got shape {tuple(frame.shape)}")


class PersonDetector:
    """Common part of every detector: input checks, thresholds, clamping, and marking of the outputs.

    Subclasses implement ``_detect(frames, keys)`` returning per-frame ``(boxes_xyxy, scores)`` in frame pixels, or
    ``(boxes_xyxy, scores, keypoints, keypoint_scores)`` when ``keypoint_set`` is set (``[n, K, 2]``, ``[n, K]``,
    rows aligned with the boxes; they are filtered and ordered with them). Network detectors run ``_detect`` in
    ``_inference_context()`` (``torch.inference_mode`` in ``models.detectors``); this base needs no torch.
    """

    #: ``models.keypoints`` name of the per-person keypoints this detector predicts, or None (boxes only).
    keypoint_set: str | None = None

    def __init__(
        self,
        *,
        arch: str,
        weights_id: str,
        device: torch.device | str,
        score_threshold: float,
        min_box_area: float,
        max_persons: int | None,
        min_box_side: float = 2.0,
    ) -> None:
        self.arch = arch
        self.weights_id = weights_id
        self.device_name = str(device)  # "cpu", "cuda", "cuda:1" (a torch.device gives its name)
        self.score_threshold = float(score_threshold)
        self.min_box_area = float(min_box_area)
        self.min_box_side = float(min_box_side)
        self.max_persons = max_persons

    @property
    def random_weights(self) -> bool:
        return self.weights_id == RANDOM_WEIGHTS_ID

    @property
    def device_type(self) -> str:
        """``"cpu"`` or ``"cuda"`` (``device_name`` without its index), without importing torch."""
        return self.device_name.split(":")[0]

    @property
    def device(self) -> torch.device:
        """The ``torch.device`` this detector runs on (imports torch: use ``device_type`` where that is all)."""
        import torch

        return torch.device(self.device_name)

    def _inference_context(self) -> contextlib.AbstractContextManager:
        """The context ``_detect`` runs in: none here; ``torch.inference_mode()`` for networks."""
        return contextlib.nullcontext()

    def __call__(self, frames: Sequence[np.ndarray], keys: Sequence[object] | None = None) -> list[FrameDetections]:
        """Detect persons in a batch of frames.

        Args:
            frames: uint8 ``[H_i, W_i, 3]`` RGB arrays (sizes may differ); never modified.
            keys: per-frame identifiers (image id or file name); required by ``precomputed``, ignored otherwise.
        Returns:
            One ``FrameDetections`` per frame, in input order.
        Raises:
            TypeError, ValueError: a frame is not uint8 ``[H, W, 3]`` (see ``check_frame``), or keys are missing
                or of the wrong length.
        """
        for i, f in enumerate(frames):
            try:
                check_frame(f)
            except (TypeError, ValueError) as e:
                raise type(e)(f"frame {i}: {e}") from None
        if keys is not None and len(keys) != len(frames):
            raise ValueError(f"{len(keys)} keys for {len(frames)} frames")
        if not frames:
            return []
        with self._inference_context():
            raw = self._detect(frames, keys)
        return [self._finalize(*r, frame_wh=(int(f.shape[1]), int(f.shape[0]))) for r, f in zip(raw, frames)]

    def _detect(self, frames: Sequence[np.ndarray], keys: Sequence[object] | None) -> list[tuple[np.ndarray, ...]]:
        raise NotImplementedError

    def _finalize(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        keypoints: np.ndarray | None = None,
        keypoint_scores: np.ndarray | None = None,
        *,
        frame_wh: tuple[int, int],
    ) -> FrameDetections:
        w, h = frame_wh
        raw = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        b = raw.copy()
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
        bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        # Degenerate boxes are no persons: a box outside the frame is clamped to zero width or height, and a
        # random-weight network on a tiny frame produces slivers; neither may reach the pose network. Non-finite
        # boxes (NaN or inf from a diverging network) are dropped too: the crop is cut from the raw box.
        keep = (
            (s > self.score_threshold)
            & (bw * bh >= self.min_box_area)
            & (bw >= self.min_box_side)
            & (bh >= self.min_box_side)
            & np.isfinite(raw).all(axis=1)
        )
        order = np.flatnonzero(keep)[np.argsort(-s[keep], kind="stable")][: self.max_persons]
        kp = kp_s = None
        if keypoints is not None:
            kp = np.asarray(keypoints, dtype=np.float32)
            kp_s = np.asarray(keypoint_scores, dtype=np.float32)
            if kp.ndim != 3 or kp.shape[0] != len(s) or kp.shape[2] != 2 or kp_s.shape != kp.shape[:2]:
                raise ValueError(f"{self.arch}: keypoints {kp.shape} / scores {kp_s.shape} do not fit {len(s)} boxes")
            kp, kp_s = np.ascontiguousarray(kp[order]), np.ascontiguousarray(kp_s[order])
        return FrameDetections(
            boxes_xyxy=np.ascontiguousarray(b[order]),
            scores=np.ascontiguousarray(s[order]),
            frame_size_wh=(w, h),
            weights_id=self.weights_id,
            keypoints=kp,
            keypoint_scores=kp_s,
            boxes_raw_xyxy=np.ascontiguousarray(raw[order]),
        )


# ------------------------------------------------------------------------------------------------ precomputed


class PrecomputedPersonDetector(PersonDetector):
    """Boxes from a ``DetectionsTable``, looked up by frame key; the frames only give their sizes.

    AlphaPose's ``--detfile`` (``alphapose/utils/file_detector.py``) passes the file's boxes on unclamped and cuts
    crops from them; here the reported ``boxes_xyxy`` are clamped to ``[0, W] × [0, H]`` like every detector's
    output, and the crops are cut from ``boxes_raw_xyxy`` (the file's boxes), so the SPPE sees AlphaPose's crops.
    In ``test_coco_det_AP_H_56.json`` 2 of 118 boxes end 0.68 px past the right edge. A box clamped to less than
    ``min_box_side`` (e.g. one entirely outside the frame) is dropped. ``DetectionsTable.lookup`` returns the
    file's boxes unchanged.
    """

    def __init__(self, table: DetectionsTable, **common: Any) -> None:
        super().__init__(**common)
        self.table = table

    def _detect(self, frames, keys):
        if keys is None:
            raise ValueError(
                f"precomputed detections ({self.table.source}) need a key (image id or file name) per frame"
            )
        return [self.table.lookup(k) for k in keys]


def _validate(
    arch: str,
    weights: str | None,
    random_weights: bool,
    score_threshold: float | None,
    nms_iou: float | None,
    min_box_area: float,
    max_persons: int | None,
    input_size: int | None,
    device: str,
    min_box_side: float = 2.0,
) -> None:
    if weights is None and not random_weights:
        raise ValueError(
            f"{arch}: no weights given. Pass weights=PATH (or 'torchvision' for the official COCO weights), or "
            f"random_weights=True for smoke tests; outputs with random weights are marked 'random' and are not "
            f"detections"
        )
    if weights is not None and random_weights:
        raise ValueError(f"{arch}: weights={weights!r} and random_weights=True contradict each other; choose one")
    if score_threshold is not None and math.isnan(score_threshold):
        raise ValueError("score_threshold must be a number, got nan")
    if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
        raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
    if not min_box_area >= 0.0:
        raise ValueError(f"min_box_area must be >= 0, got {min_box_area}")
    if not min_box_side >= 0.0:
        raise ValueError(f"min_box_side must be >= 0, got {min_box_side}")
    if max_persons is not None and max_persons < 1:
        raise ValueError(f"max_persons must be >= 1 or None (no limit), got {max_persons}")
    if input_size is not None and input_size < 32:
        raise ValueError(f"input_size must be >= 32, got {input_size}")
    if str(device).startswith("cuda") and not _cuda_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")


def _cuda_available() -> bool:
    import torch  # only asked for a CUDA device, where the detector needs torch anyway

    return torch.cuda.is_available()


def _log_built(det: PersonDetector) -> None:
    if det.random_weights:
        logger.warning("%s built with RANDOM WEIGHTS on %s: its boxes are not detections", det.arch, det.device_name)
    else:
        logger.info("%s built on %s, weights sha256 %s", det.arch, det.device_name, det.weights_id)


def _no_extra(arch: str, **unused: object) -> None:
    set_ = [k for k, v in unused.items() if v is not None]
    if set_:
        raise ValueError(f"{arch} does not use {', '.join(set_)}; leave it None")


def precomputed(
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
) -> PrecomputedPersonDetector:
    """Detections read from ``weights``, a COCO detection JSON or Parquet file (``models.detections_io``).

    ``score_threshold`` defaults to none (every box in the file is kept); ``weights_id`` is the file's sha256.
    """
    arch = "precomputed"
    if random_weights:
        raise ValueError("precomputed detections have no weights to randomise; pass weights=PATH to the file")
    if weights is None:
        raise ValueError("precomputed needs weights=PATH of a COCO detection JSON or Parquet file")
    _validate(
        arch, weights, False, score_threshold, None, min_box_area, max_persons, None, device, min_box_side=min_box_side
    )
    _no_extra(arch, nms_iou=nms_iou, input_size=input_size, rpn_proposals=rpn_proposals, darknet_cfg=darknet_cfg)
    table = load_detections(weights)
    det = PrecomputedPersonDetector(
        table,
        arch=arch,
        weights_id=table.sha256,
        device=device,
        score_threshold=-math.inf if score_threshold is None else score_threshold,
        min_box_area=min_box_area,
        min_box_side=min_box_side,
        max_persons=max_persons,
    )
    _log_built(det)
    return det
