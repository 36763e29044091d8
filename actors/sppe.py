"""The SPPE stage: per-frame person crops in, per-frame keypoints out (a Ray Data callable class).

Two kinds of pose network sit behind one config (``SPPEConfig.arch``): AlphaPose's heatmap SPPEs
(``models.sppe``: FastPose …, AlphaPose checkpoints, 256×192 crops) and BlazePose (``blazepose_full``:
``models.blazepose``, MediaPipe's real weights fetched by ``make weights``, square 256×256 crops). A third value,
``detector``, means no second network: the detector's own keypoints (a YOLO pose checkpoint) are the poses and the
pipeline skips this stage. ``SPPEConfig.crop`` tells the detector stage which crops to cut.

Input rows are frames carrying ``crops`` (uint8 ``[n, H, W, 3]`` by the arch's crop spec) and ``crop_boxes_xyxy``
(``[n, 4]``) from the detector stage. All persons of a batch are pooled, run through the network in chunks of
``batch_size``, decoded (``models.heatmaps``) and split back into their frames as ``keypoints`` (``[n, K, 2]``,
image pixels) and ``keypoint_scores`` (``[n, K]``). The crops column is dropped here: after this stage rows are
small.

With ``candidates`` (``models.crowdpose.CandidateParams``; the pipeline passes it when
``pose_nms.method=crowd_association``) a heatmap SPPE also extracts CrowdPose's joint candidates from the same
heatmaps (after flip-test), AlphaPose's ``--matching`` path: the candidate columns of ``actors.pose_nms``
(``CANDIDATE_COLUMNS``: top-M positions, scores and counts per person and joint; never heatmaps), and the keypoints
are then each joint's current candidate (slot 0), as AlphaPose's ``getMultiPeakPrediction`` gives them. On a GPU
the peak search runs there (``joint_candidates_torch``: only the candidates are copied to the host), on the CPU in
NumPy (``joint_candidates``); both give the same candidates.

Error rows from earlier stages pass through with empty person arrays.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from actors.common import is_error, pick_device, ragged, rows_of
from actors.configs import (
    CANDIDATE_DECODES,
    POSE_ARCHS,
    PRECISION_CHOICES,
    SPPEConfig,
    inference_form,
)
from actors.pose_nms import candidate_columns
from models.crops import ALPHAPOSE_CROP
from models.crowdpose import CandidateParams, JointCandidates, joint_candidates, joint_candidates_torch
from models.keypoints import get_keypoint_set
from models.names import SPPE_ARCH_NAMES, combined_integral_channels

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "SPPEConfig",
    "SPPE",
    "POSE_ARCHS",
    "PRECISION_DTYPES",
    "PRECISION_CHOICES",
    "CANDIDATE_DECODES",
    "inference_form",
    "load_blazepose",
]

#: Precision name → name of the torch dtype the network's input is cast to. ``int8`` (heatmap SPPEs on CPU) takes
#: float32 inputs and gives float32 heatmaps; inside it is an int8 network (``models.quantize``). Names, not dtypes:
#: this module imports no torch, so a job's driver, which only hands the ``SPPE`` class to Ray Data, never loads it
#: (1.1–1.5 CPU-s, which slowed Ray's start-up beside it by 0.6–1.5 s on a 2-core machine, issue 13); the actor
#: imports torch when it is built.
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}


def load_blazepose(path: str):
    """The BlazePose landmark graph from a converted weights-only file (or a raw ``.tflite``) and its sha256."""
    from models.tflite import TFLiteModule

    if path.endswith(".tflite"):
        graph = TFLiteModule.from_file(path)
    else:
        graph = TFLiteModule.load(path)
    return graph, graph.source_sha256


class SPPE:
    """``__init__`` builds and loads the network once per actor; ``__call__`` maps a batch of frame rows."""

    def __init__(
        self,
        cfg: SPPEConfig,
        threads: int | None = None,
        candidates: CandidateParams | None = None,
        streams: int = 1,
    ) -> None:
        """``threads``: torch intra-op threads on CPU (``resources.sppe.threads`` as ``plan_resources`` sized it);
        None keeps Ray's default, ``OMP_NUM_THREADS`` = the actor's CPU reservation, which is 1 for a fraction.
        ``candidates``: also emit CrowdPose joint candidates (heatmap SPPEs with a heatmap decoder only).
        ``streams``: on CPU, forward that many chunks at once, each on ``threads // streams`` torch threads
        (``models.streams``; ``resources.sppe.streams``); ignored on a GPU."""
        import torch

        from models.sppe import cast_for_inference, fold_batchnorm
        from models.streams import ChunkStreams

        self.device = pick_device(cfg.device)
        cfg = cfg.resolved(gpu=self.device.type != "cpu")  # the job resolves "auto" on its driver; others here
        self.cfg = cfg
        if candidates is not None and (cfg.arch not in SPPE_ARCH_NAMES or cfg.decode not in CANDIDATE_DECODES):
            raise ValueError(
                f"joint candidates need heatmaps: a heatmap SPPE ({', '.join(SPPE_ARCH_NAMES)}) with sppe.decode in "
                f"{', '.join(CANDIDATE_DECODES)}, not arch={cfg.arch} decode={cfg.decode}"
            )
        self.candidates = candidates
        # Where the peak search runs: on a GPU beside the heatmaps (only [n, K, M] candidates reach the host); on
        # the CPU in NumPy, 3× faster there than the torch version (64 persons × 17 joints × 64×48: ~22 vs ~70 ms).
        self.candidates_on_device = self.device.type != "cpu"
        if self.device.type != "cpu":
            streams = 1
        total = threads or torch.get_num_threads()  # without threads: Ray's OMP_NUM_THREADS
        if not 1 <= streams <= total:
            raise ValueError(f"SPPE streams must be between 1 and its threads ({total}), got {streams}")
        per_stream = max(1, total // streams)
        if threads and self.device.type == "cpu":
            torch.set_num_threads(per_stream)
        self.streams = ChunkStreams(streams, per_stream)
        self.batch_size = cfg.batch_size or (8 if self.device.type == "cpu" else 64)
        if cfg.arch == "detector":
            raise ValueError("sppe.arch=detector has no pose stage: the pipeline takes the detector's keypoints")
        self.dtype = getattr(torch, PRECISION_DTYPES[cfg.precision])
        self.blazepose = cfg.arch == "blazepose_full"
        if self.blazepose:
            from models.blazepose import BlazePoseSPPE

            graph, self.sha256 = load_blazepose(cfg.weights_path())
            self.model = BlazePoseSPPE(graph, keypoint_set=cfg.keypoint_set, flip_test=cfg.flip_test)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # random weights are the same in every actor, so reruns are identical
                self.model = self._build(cfg)
            if cfg.checkpoint is not None:
                from models.checkpoints import load_checkpoint

                self.sha256 = load_checkpoint(self.model, cfg.checkpoint).sha256
            else:
                self.sha256 = "random"
                logger.warning("SPPE %s has RANDOM WEIGHTS: its keypoints are not pose estimates", cfg.arch)
        self.model.eval()
        form = inference_form(cfg)
        if cfg.precision == "int8":
            self.model = self._quantized(self.model)
        else:
            if form.get("batchnorm_folded"):
                self.model = fold_batchnorm(self.model, inplace=True)  # the unfolded network is not kept
            if form.get("memory_format") == "channels_last":
                self.model = self.model.to(memory_format=torch.channels_last)
            self.model.to(device=self.device)
            if cfg.arch in SPPE_ARCH_NAMES:
                self.model = cast_for_inference(self.model, self.dtype)
            else:
                self.model.to(dtype=self.dtype)
        self.flip_pairs = get_keypoint_set(cfg.keypoint_set).flip_pairs
        self._kind_checked = False
        self._kind_lock = threading.Lock()  # streams run chunks concurrently; the check runs once
        logger.info(
            "SPPE %s (sha256 %s) on %s, %d persons per forward, %d stream(s) of %d torch threads",
            cfg.arch,
            self.sha256[:12],
            self.device,
            self.batch_size,
            self.streams.streams,
            self.streams.threads_per_stream,
        )

    @staticmethod
    def _build(cfg: SPPEConfig) -> torch.nn.Module:
        """The network of ``cfg.arch``, or exactly what ``cfg.alphapose_config`` describes (which must agree)."""
        if cfg.alphapose_config is None:
            from models.sppe import build_sppe

            return build_sppe(cfg.arch, cfg.num_joints)
        from models.alphapose_config import build_from_alphapose_config

        model, spec = build_from_alphapose_config(cfg.alphapose_config)
        got = (cfg.arch, cfg.num_joints, cfg.keypoint_set)
        if got != (spec.arch, spec.num_joints, spec.keypoint_set) or cfg.decode not in (spec.decode, "dark"):
            raise ValueError(
                f"sppe settings {got + (cfg.decode,)} disagree with {spec.source}, which builds "
                f"{(spec.arch, spec.num_joints, spec.keypoint_set, spec.decode)}"
            )
        return model

    def _check_output_kind(self, outputs: torch.Tensor) -> None:
        """Warn once when a real checkpoint's outputs contradict the decoder (AlphaPose's MODEL_ZOO pairs two
        checkpoints with a YAML of the other loss; their keys are identical, so loading cannot tell)."""
        self._kind_checked = True
        if self.sha256 == "random":
            return
        k = outputs.shape[1]
        if self.cfg.decode == "combined":
            cut = k - combined_integral_channels(k)
            expect = [(slice(0, cut), "heatmap"), (slice(cut, k), "logits")]
        else:
            expect = [(slice(0, k), "logits" if self.cfg.decode == "integral" else "heatmap")]
        from models.heatmaps import output_kind

        for channels, want in expect:
            got = output_kind(outputs, channels)
            if got not in (want, "unclear"):
                logger.warning(
                    "SPPE outputs (channels %d-%d) look like %s, but sppe.decode=%s decodes them as %s: is the "
                    "checkpoint paired with the right AlphaPose config (LOSS.TYPE)?",
                    channels.start,
                    channels.stop - 1,
                    "integral-regression logits" if got == "logits" else "MSE heatmaps",
                    self.cfg.decode,
                    "MSE heatmaps" if want == "heatmap" else "integral-regression logits",
                )

    def _quantized(self, model: torch.nn.Module) -> torch.nn.Module:
        """The int8 network (``models.quantize``), with how far its heatmaps are from fp32's logged."""
        import torch

        from models.quantize import calibration_inputs, heatmap_agreement, quantize_int8
        from models.sppe import fold_batchnorm

        if self.device.type != "cpu":
            raise ValueError(f"sppe.precision=int8 runs on the CPU, but this actor was given {self.device}")
        start = time.perf_counter()
        calibration = calibration_inputs(ALPHAPOSE_CROP).contiguous(memory_format=torch.channels_last)
        quantized = quantize_int8(model, calibration)
        agreement = heatmap_agreement(fold_batchnorm(model), quantized, calibration[:8])
        logger.info(
            "SPPE int8: quantized in %.1f s; on calibration crops vs fp32: heatmap error %.2f%%, keypoint shift "
            "median %.2f / p95 %.2f heatmap px",
            time.perf_counter() - start,
            100 * agreement["relative_heatmap_error"],
            agreement["keypoint_shift_median_px"],
            agreement["keypoint_shift_p95_px"],
        )
        return quantized

    def estimate(self, crops: np.ndarray, crop_boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops ``[P, H, W, 3]`` (``cfg.crop``) + crop boxes ``[P, 4]`` → keypoints ``[P, K, 2]``, scores
        ``[P, K]`` (with ``candidates``: each joint's current candidate)."""
        kps, scores, _ = self.estimate_with_candidates(crops, crop_boxes_xyxy)
        return kps, scores

    def estimate_with_candidates(
        self, crops: np.ndarray, crop_boxes_xyxy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, JointCandidates | None]:
        """``estimate`` plus the joint candidates of every person (None without ``candidates``)."""
        k = self.cfg.num_joints
        p = len(crops)
        if p == 0:
            kps, scores = np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
            if self.candidates is None:
                return kps, scores, None
            empty = joint_candidates(np.zeros((0, k, 1, 1), np.float32), np.zeros((0, 4)), params=self.candidates)
            return kps, scores, empty
        parts = self.streams.map(lambda s, e: self._chunk(crops[s:e], crop_boxes_xyxy[s:e]), p, self.batch_size)
        kps = np.concatenate([kp for kp, _, _ in parts])
        scores = np.concatenate([sc for _, sc, _ in parts])
        if self.candidates is None:
            return kps, scores, None
        merged = JointCandidates(
            *(np.concatenate([getattr(c, f) for _, _, c in parts]) for f in ("xy", "scores", "valid", "count"))
        )
        return kps, scores, merged

    def _chunk(
        self, crops: np.ndarray, crop_boxes_xyxy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, JointCandidates | None]:
        """One forward of at most ``batch_size`` persons (on a stream's thread: inference mode is thread-local)."""
        import torch

        from models.heatmaps import flip_test, heatmaps_to_keypoints
        from models.transforms import normalize_crops

        with torch.inference_mode():
            chunk = torch.as_tensor(np.ascontiguousarray(crops)).to(self.device)
            boxes = torch.as_tensor(np.ascontiguousarray(crop_boxes_xyxy, np.float64))
            if self.blazepose:
                kp, sc = self.model(chunk, boxes.to(self.device))
                return kp.cpu().numpy(), sc.cpu().numpy(), None
            x = normalize_crops(chunk, dtype=self.dtype)
            hm = flip_test(self.model, x, self.flip_pairs) if self.cfg.flip_test else self.model(x)
            with self._kind_lock:
                if not self._kind_checked:
                    self._check_output_kind(hm)
            if self.candidates is not None:
                extract = joint_candidates_torch if self.candidates_on_device else joint_candidates
                c = extract(hm.float(), boxes, input_size_hw=self.cfg.crop.output_size_hw, params=self.candidates)
                # AlphaPose --matching: the keypoints are each joint's current candidate
                return c.xy[:, :, 0].astype(np.float32), c.scores[:, :, 0].astype(np.float32), c
            kp, sc = heatmaps_to_keypoints(hm.float(), boxes.to(self.device), method=self.cfg.decode)
            return kp.cpu().numpy(), sc.cpu().numpy(), None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        crops = rows_of(batch["crops"])
        boxes = rows_of(batch["crop_boxes_xyxy"])
        errors = is_error(batch)
        counts = [0 if err else len(c) for c, err in zip(crops, errors)]
        pooled = [c for c, err in zip(crops, errors) if not err and len(c)]
        pooled_boxes = [b for b, err, c in zip(boxes, errors, crops) if not err and len(c)]
        if pooled:
            kps, scores, cands = self.estimate_with_candidates(np.concatenate(pooled), np.concatenate(pooled_boxes))
        else:
            kps, scores, cands = self.estimate_with_candidates(np.zeros((0, 256, 192, 3), np.uint8), np.zeros((0, 4)))
        splits = np.cumsum(counts)[:-1]
        out = {k: v for k, v in batch.items() if k != "crops"}
        out["keypoints"] = ragged(np.split(kps, splits))
        out["keypoint_scores"] = ragged(np.split(scores, splits))
        if cands is not None:
            out.update(candidate_columns(cands, counts))
        out["t_sppe"] = np.full(len(counts), (time.perf_counter() - t0) / max(len(counts), 1))
        return out
