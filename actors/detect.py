"""The detection stage's Ray Data callable: frames in, person crops and boxes out, never whole frames.

``Detector(cfg)`` builds the person detector once (``models.detectors.build_detector``); each call maps a batch
``dict[str, np.ndarray]`` holding a frame column (uint8 ``[H, W, 3]`` RGB, as one ``[B, H, W, 3]`` array or an
object array of differently sized frames) and any identity columns (``video_id``, ``frame_index``, ``path`` …).
For every detected person it cuts the SPPE input crop (AlphaPose's box → centre/scale → 256×192 affine,
``models.transforms``; OpenCV on the CPU, ``grid_sample`` on the detector's device otherwise) and the enlarged crop
box that maps heatmaps back (``models.heatmaps.heatmaps_to_keypoints(heatmaps, crop_box_xyxy)``), so the object
store carries a 256 × 192 × 3 byte crop (~147 KB) per person instead of the frame (~6 MB at 1080p). As in
AlphaPose, both come from the detector's box *before* clamping to the frame (``FrameDetections.boxes_raw_xyxy``;
``boxes_xyxy`` reports the clamped box); boxes narrower or lower than ``min_box_side`` after clamping are no persons.

One row per input frame (persons as per-frame arrays, so a frame without persons keeps its row). Columns:

* identity columns: every input column except the frame column (and ``cfg.drop_columns``), passed through as given;
* ``crops`` uint8 ``[n, 256, 192, 3]``, ``crop_boxes_xyxy`` float64 ``[n, 4]``, ``boxes_xyxy`` float32 ``[n, 4]``
  (frame pixels), ``box_scores`` float32 ``[n]`` (object columns, ``n`` may be 0; what ``actors.sppe.SPPE``
  reads), ``n_persons`` int32;
* ``frame_width``, ``frame_height`` int32; ``detector`` (arch), ``detector_weights`` (sha256 or ``"random"``),
  ``random_weights`` bool;
* ``error`` (empty when fine) and ``stage`` (``"detect"`` on error rows, empty otherwise).

A frame that is not uint8 ``[H, W, 3]`` keeps its row with no persons and ``error`` set; any other exception is a
bug and propagates.

Example (no Ray needed)::

    >>> import numpy as np
    >>> from actors.detect import Detector, DetectorConfig
    >>> det = Detector(DetectorConfig(arch="ssdlite320_mobilenet_v3_large", random_weights=True))
    >>> out = det({"frame": np.zeros((1, 90, 160, 3), np.uint8), "frame_index": np.array([7])})
    >>> out["frame_index"].tolist(), out["detector_weights"].tolist()
    ([7], ['random'])
"""

from __future__ import annotations

import logging
import time

import numpy as np

from actors.common import pick_device_name
from actors.configs import DETECTOR_DTYPES, FRAME_OUTPUT_COLUMNS, DetectorConfig
from models.crops import ALPHAPOSE_CROP, CropSpec, crop_images
from models.keypoints import get_keypoint_set
from models.person_boxes import PersonDetector, check_frame, precomputed

logger = logging.getLogger(__name__)

__all__ = ["DetectorConfig", "Detector", "FRAME_OUTPUT_COLUMNS", "build_detector_from_config"]

STAGE = "detect"


def build_detector_from_config(cfg: DetectorConfig) -> PersonDetector:
    """Unpack ``cfg``'s model fields into ``models.detectors.build_detector`` (models/ never sees a config).

    ``precomputed`` is built from ``models.person_boxes`` directly (the same builder ``build_detector`` calls for
    it): a file lookup needs no network, so this process then never imports torch unless its crops are cut on a GPU.
    """
    kwargs = dict(
        weights=cfg.weights,
        random_weights=cfg.random_weights,
        device=pick_device_name(cfg.device),
        score_threshold=cfg.score_threshold,
        nms_iou=cfg.nms_iou,
        min_box_area=cfg.min_box_area,
        min_box_side=cfg.min_box_side,
        max_persons=cfg.max_persons,
        input_size=cfg.input_size,
        rpn_proposals=cfg.rpn_proposals,
        darknet_cfg=cfg.darknet_cfg,
    )
    if cfg.arch == "precomputed":  # DetectorConfig allows it fp32 only
        return precomputed(**kwargs)
    from models.detectors import build_detector

    return build_detector(cfg.arch, dtype=DETECTOR_DTYPES[cfg.precision], **kwargs)


class Detector:
    """Ray Data callable class: ``ds.map_batches(Detector, fn_constructor_kwargs={"cfg": cfg}, ...)``.

    ``crop`` is the pose network's crop convention (``SPPEConfig.crop``: AlphaPose's 256×192 by default, square
    256×256 for BlazePose), handed over by the pipeline so one convention travels with each network; ``None`` cuts
    no crops (the pose stage is the detector itself). ``keypoints=True`` adds the detector's own per-person
    keypoints (``keypoints`` ``[n, K, 2]``, ``keypoint_scores`` ``[n, K]``; a YOLO pose checkpoint) to each frame
    row, so ``sppe.arch: detector`` needs no second network.
    """

    def __init__(
        self,
        cfg: DetectorConfig,
        crop: CropSpec | None = ALPHAPOSE_CROP,
        keypoints: bool = False,
        threads: int | None = None,
    ) -> None:
        """``threads``: torch intra-op threads (``resources.detect.threads``) of a network detector or of crops cut
        by torch; None keeps Ray's ``OMP_NUM_THREADS``. A ``precomputed`` detector whose crops OpenCV cuts loads
        no torch at all."""
        self.cfg = cfg
        self.crop = crop
        self.keypoints = keypoints
        self.detector = build_detector_from_config(cfg)
        if keypoints and getattr(self.detector, "keypoint_set", None) is None:
            raise ValueError(
                f"Detector: {cfg.arch} with weights {cfg.weights} predicts no keypoints; "
                "sppe.arch=detector needs a pose checkpoint (e.g. detector.arch=yolo with yolo11n-pose.pt)"
            )
        backend = cfg.crop_backend
        if backend == "auto":
            backend = "opencv" if self.detector.device_type == "cpu" else "torch"
        self.crop_backend = backend
        if threads and (cfg.arch != "precomputed" or backend == "torch"):
            import torch

            torch.set_num_threads(threads)  # on a GPU only the pre/post-processing uses them
        if self.detector.random_weights:
            logger.warning(
                "Detector: %s with RANDOM WEIGHTS on %s (outputs marked detector_weights='random')",
                cfg.arch,
                self.detector.device_name,
            )
        else:
            logger.info(
                "Detector: %s, weights sha256 %s, device %s, crops via %s",
                cfg.arch,
                self.detector.weights_id,
                self.detector.device_name,
                backend,
            )

    def _crops(self, frame: np.ndarray, crop_boxes: np.ndarray) -> np.ndarray:
        index = np.zeros(len(crop_boxes), dtype=np.int64)
        size = self.crop.output_size_hw
        if self.crop_backend == "opencv":
            return crop_images([frame], index, crop_boxes, size)
        import torch

        from models.transforms import crop_images_torch

        dev = self.detector.device
        with torch.inference_mode():
            image = torch.from_numpy(np.array(frame, copy=True)).to(dev)[None]  # copy: inputs may be read-only views
            return (
                crop_images_torch(image, torch.from_numpy(index).to(dev), torch.from_numpy(crop_boxes).to(dev), size)
                .cpu()
                .numpy()
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cfg = self.cfg
        if cfg.frame_column not in batch:
            raise ValueError(f"batch has no frame column {cfg.frame_column!r}; columns: {', '.join(batch)}")
        if cfg.key_column is not None and cfg.key_column not in batch:
            raise ValueError(f"batch has no key column {cfg.key_column!r}; columns: {', '.join(batch)}")
        t0 = time.perf_counter()
        # An earlier stage's error row (columns ``error``/``stage`` set) passes through with no persons.
        upstream = {
            i: (str(e), str(st)) for i, (e, st) in enumerate(zip(batch.get("error", ()), batch.get("stage", ()))) if e
        }
        identity = [
            c for c in batch if c != cfg.frame_column and c not in cfg.drop_columns and c not in ("error", "stage")
        ]
        clash = [c for c in identity if c in FRAME_OUTPUT_COLUMNS]
        if clash:
            raise ValueError(f"input column(s) {', '.join(clash)} collide with detector output columns")
        frames = batch[cfg.frame_column]
        n_frames = len(frames)

        errors: dict[int, str] = {i: e for i, (e, _) in upstream.items()}
        for i in range(n_frames):
            if i in errors:
                continue
            try:
                check_frame(frames[i])
            except (TypeError, ValueError) as e:
                errors[i] = f"bad frame: {e}"
        good = [i for i in range(n_frames) if i not in errors]
        keys = [batch[cfg.key_column][i] for i in good] if cfg.key_column is not None else None
        dets = dict(zip(good, self.detector([frames[i] for i in good], keys)))
        crops: list[np.ndarray] = []
        crop_boxes: list[np.ndarray] = []
        for i in range(n_frames if self.crop is not None else 0):
            d = dets.get(i)
            # AlphaPose cuts the crop from the detector's box before clamping (boxes_xyxy is clamped).
            boxes = d.crop_source_boxes if d is not None else np.zeros((0, 4), np.float32)
            c_boxes = self.crop.crop_boxes(boxes)
            crop_boxes.append(c_boxes)
            crops.append(
                self._crops(frames[i], c_boxes) if len(boxes) else np.zeros((0, *self.crop.output_size_hw, 3), np.uint8)
            )

        n = np.asarray([len(dets[i]) if i in dets else 0 for i in range(n_frames)], np.int32)
        sizes = np.asarray([dets[i].frame_size_wh if i in dets else (0, 0) for i in range(n_frames)], np.int32).reshape(
            n_frames, 2
        )
        err = [errors.get(i, "") for i in range(n_frames)]
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        boxes = [dets[i].boxes_xyxy if i in dets else empty[0] for i in range(n_frames)]
        scores = [dets[i].scores if i in dets else empty[1] for i in range(n_frames)]
        out = {c: batch[c] for c in identity}
        if self.crop is not None:
            out.update(crops=_ragged(crops), crop_boxes_xyxy=_ragged(crop_boxes))
        if self.keypoints:
            out.update(self._keypoint_columns(dets, n_frames))
        out.update(boxes_xyxy=_ragged(boxes), box_scores=_ragged(scores), n_persons=n)
        out.update(
            frame_width=sizes[:, 0],
            frame_height=sizes[:, 1],
            detector=np.full(n_frames, cfg.arch, dtype=object),
            detector_weights=np.full(n_frames, self.detector.weights_id, dtype=object),
            random_weights=np.full(n_frames, self.detector.random_weights, dtype=bool),
            error=_strings(err),
            stage=_strings([upstream[i][1] if i in upstream else (STAGE if err[i] else "") for i in range(n_frames)]),
            t_detect=np.full(n_frames, (time.perf_counter() - t0) / max(n_frames, 1)),
        )
        # Internal invariant (a bug of ours if it fails, never a bad input): one value per row in every column.
        assert all(len(v) == n_frames for v in out.values()), {k: len(v) for k, v in out.items()}
        return out

    def _keypoint_columns(self, dets: dict, n_frames: int) -> dict[str, np.ndarray]:
        """The detector's own keypoints per frame (``[n, K, 2]`` frame pixels, ``[n, K]`` scores), aligned with the
        boxes; frames without a detection (errors) get ``[0, K, …]``."""
        k = get_keypoint_set(self.detector.keypoint_set).num_keypoints
        kps, kp_scores = [], []
        for i in range(n_frames):
            d = dets.get(i)
            kps.append(np.asarray(d.keypoints, np.float32) if d is not None else np.zeros((0, k, 2), np.float32))
            kp_scores.append(
                np.asarray(d.keypoint_scores, np.float32) if d is not None else np.zeros((0, k), np.float32)
            )
        return {"keypoints": _ragged(kps), "keypoint_scores": _ragged(kp_scores)}


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """Object array holding one array per frame (Ray Data's variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def _strings(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
