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
are then each joint's current candidate (slot 0), as AlphaPose's ``getMultiPeakPrediction`` gives them.

Error rows from earlier stages pass through with empty person arrays.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.common import is_error, pick_device, ragged, rows_of
from actors.pose_nms import candidate_columns
from models.blazepose import BLAZEPOSE_CROP, BLAZEPOSE_KEYPOINT_SETS, BlazePoseSPPE
from models.checkpoints import load_checkpoint
from models.crowdpose import CandidateParams, JointCandidates, joint_candidates
from models.heatmaps import (
    DECODE_METHODS,
    combined_integral_channels,
    flip_test,
    heatmaps_to_keypoints,
    output_kind,
)
from models.keypoints import get_keypoint_set
from models.precision import resolve_precision
from models.sppe import SPPE_ARCHS, build_sppe, cast_for_inference, fold_batchnorm
from models.streams import ChunkStreams
from models.transforms import ALPHAPOSE_CROP, CropSpec, normalize_crops

logger = logging.getLogger(__name__)

__all__ = [
    "SPPEConfig",
    "SPPE",
    "POSE_ARCHS",
    "PRECISIONS",
    "PRECISION_CHOICES",
    "CANDIDATE_DECODES",
    "inference_form",
    "load_blazepose",
]

#: Heatmap SPPEs (``models.sppe``), BlazePose, and "the detector's own keypoints".
POSE_ARCHS = tuple(SPPE_ARCHS) + ("blazepose_full", "detector")
#: Precision name → the dtype the network's input is cast to. ``int8`` (heatmap SPPEs on CPU) takes float32 inputs
#: and gives float32 heatmaps; inside it is an int8 network (``models.quantize``).
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
#: ``precision`` values: the above, and ``auto`` (``models.precision.resolve_precision``: bf16 on CPUs with native bf16,
#: else fp32), the default.
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: Architectures int8 is offered for: their int8 heatmaps stayed within 0.8% of fp32 (relative L2, seeded weights,
#: benchmarks/sppe.py). HRNet-W32 (100%: its outputs collapse) and HarDNet (concatenations of tensors with different
#: quantization ranges) are left out.
INT8_ARCHS = tuple(a for a in SPPE_ARCHS if a.startswith(("fastpose_", "simplepose_")))
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
        if self.checkpoint is None and not self.random_weights and self.arch in SPPE_ARCHS:
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
        offers = self.arch in SPPE_ARCHS
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
    if cfg.arch in SPPE_ARCHS:
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
        self.device = pick_device(cfg.device)
        cfg = cfg.resolved(gpu=self.device.type != "cpu")  # the job resolves "auto" on its driver; others here
        self.cfg = cfg
        if candidates is not None and (cfg.arch not in SPPE_ARCHS or cfg.decode not in CANDIDATE_DECODES):
            raise ValueError(
                f"joint candidates need heatmaps: a heatmap SPPE ({', '.join(SPPE_ARCHS)}) with sppe.decode in "
                f"{', '.join(CANDIDATE_DECODES)}, not arch={cfg.arch} decode={cfg.decode}"
            )
        self.candidates = candidates
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
        self.dtype = PRECISIONS[cfg.precision]
        if cfg.arch == "blazepose_full":
            graph, self.sha256 = load_blazepose(cfg.weights_path())
            self.model = BlazePoseSPPE(graph, keypoint_set=cfg.keypoint_set, flip_test=cfg.flip_test)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # random weights are the same in every actor, so reruns are identical
                self.model = self._build(cfg)
            if cfg.checkpoint is not None:
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
                self.model = fold_batchnorm(self.model)
            if form.get("memory_format") == "channels_last":
                self.model = self.model.to(memory_format=torch.channels_last)
            self.model.to(device=self.device)
            if cfg.arch in SPPE_ARCHS:
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
        from models.quantize import calibration_inputs, heatmap_agreement, quantize_int8

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
        with torch.inference_mode():
            chunk = torch.as_tensor(np.ascontiguousarray(crops)).to(self.device)
            boxes = torch.as_tensor(np.ascontiguousarray(crop_boxes_xyxy, np.float64))
            if isinstance(self.model, BlazePoseSPPE):
                kp, sc = self.model(chunk, boxes.to(self.device))
                return kp.cpu().numpy(), sc.cpu().numpy(), None
            x = normalize_crops(chunk, dtype=self.dtype)
            hm = flip_test(self.model, x, self.flip_pairs) if self.cfg.flip_test else self.model(x)
            with self._kind_lock:
                if not self._kind_checked:
                    self._check_output_kind(hm)
            if self.candidates is not None:
                c = joint_candidates(
                    hm.float(), boxes, input_size_hw=self.cfg.crop.output_size_hw, params=self.candidates
                )
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
