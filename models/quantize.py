"""Int8 inference for AlphaPose's SPPEs on CPU: static post-training quantization (PTQ) with torch.ao.

``quantize_int8(model, calibration)`` turns an eval-mode FastPose (``models.sppe``) into an int8 network:
batch norm folded first (``models.sppe.fold_batchnorm``), then torch.ao's FX graph mode (``prepare_fx`` →
calibration forwards → ``convert_fx``) on the ``x86`` engine (fbgemm kernels): weights int8 per output channel
(symmetric), activations uint8 per tensor with ranges from min/max observers; ops with fixed output ranges
(the SE layers' sigmoid) keep torch.ao's fixed quantization parameters. Input and output stay float: the network
quantizes its input and dequantizes its heatmaps, so decoding (``models.heatmaps``) is unchanged.

Why min/max observers: torch.ao's default ``x86`` mapping uses histogram observers, whose calibration took 14.3 s
for 32 crops of FastPose-res50 on 2 CPU threads against 3.2 s with min/max, for the same heatmap error (0.65% vs
0.66% relative to fp32, seeded random weights). ``reduce_range`` (7-bit activations) is kept as the engine's
default asks on CPUs without VNNI, where 8-bit activations can overflow its 16-bit accumulation.

Speed (FastPose-res50, batch 8, 2 threads, AMD EPYC AVX2, one run interleaved): fp32 folded channels-last
13.1–13.3 persons/s, int8 21.4–22.6 (1.65×; other work shared the machine).

Calibration is deterministic: ``calibration_crops(spec)`` cuts a fixed set of person crops (shifts, scales and a
mirror of the annotated person) from ``samples/images/000000000785.jpg`` (COCO val2017, CC BY 2.0, shipped with
its annotation), so every actor of every run quantizes a given checkpoint identically.

Accuracy: int8 changes outputs. ``heatmap_agreement`` measures the change against the fp32 network on the same
crops (relative heatmap error, and how far decoded keypoints move); the SPPE actor logs it. With random weights
these figures say nothing about pose accuracy, and no real AlphaPose checkpoint is available to this project's
tests: measure AP on your own data (``jobs.label`` + ``jobs.evaluate``, fp32 against int8) before relying on it.

torch.ao's FX quantization API is marked deprecated in favour of torchao's PT2E flow; in torch 2.14 it is still
the path that runs eager int8 fbgemm kernels without an Inductor compile (which costs tens of seconds per actor on
2 cores). Its deprecation warnings are silenced here, in this module only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.sppe import fold_batchnorm
from models.transforms import CropSpec, crop_images, normalize_crops

__all__ = [
    "CALIBRATION_IMAGE",
    "calibration_crops",
    "calibration_inputs",
    "quantize_int8",
    "heatmap_agreement",
    "int8_supported",
]

_SAMPLES = Path(__file__).resolve().parents[1] / "samples"
#: The shipped COCO photo (CC BY 2.0, ``samples/ATTRIBUTION.md``) whose annotated person calibrates int8 ranges.
CALIBRATION_IMAGE = _SAMPLES / "images" / "000000000785.jpg"
_CALIBRATION_GT = _SAMPLES / "000000000785_gt.json"
ENGINE = "x86"


def int8_supported() -> bool:
    """Whether this PyTorch build has the x86 (fbgemm) quantized engine that ``quantize_int8`` uses."""
    return ENGINE in torch.backends.quantized.supported_engines


def calibration_crops(spec: CropSpec, n: int = 32) -> np.ndarray:
    """A fixed set of ``n`` uint8 RGB person crops ``[n, H, W, 3]`` by ``spec``, for int8 calibration.

    The annotated person of ``samples/images/000000000785.jpg``: its box scaled by 0.8–1.4, shifted by up to ±15 %
    of its size, and every other crop mirrored; the same crops on every call (no randomness).
    """
    import cv2

    if n < 1:
        raise ValueError(f"calibration needs at least one crop, got n={n}")
    image = cv2.imread(str(CALIBRATION_IMAGE), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{CALIBRATION_IMAGE}: calibration image missing (it ships with raypose)")
    image = np.ascontiguousarray(image[..., ::-1])
    gt = json.loads(_CALIBRATION_GT.read_text())
    x, y, w, h = max(gt["annotations"], key=lambda a: a["area"])["bbox"]
    i = np.arange(n, dtype=np.float64)
    scale = 0.8 + 0.6 * ((i * 0.618034) % 1.0)  # golden-ratio steps: an even spread, no random generator
    dx = 0.3 * (((i * 0.754878) % 1.0) - 0.5) * w
    dy = 0.3 * (((i * 0.569840) % 1.0) - 0.5) * h
    cx, cy = x + w / 2 + dx, y + h / 2 + dy
    boxes = np.stack([cx - scale * w / 2, cy - scale * h / 2, cx + scale * w / 2, cy + scale * h / 2], 1)
    crops = crop_images([image], np.zeros(n, np.int64), spec.crop_boxes(boxes), spec.output_size_hw)
    crops[1::2] = crops[1::2, :, ::-1]
    return np.ascontiguousarray(crops)


def _qconfig_mapping():
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    qconfig = QConfig(
        activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    )
    # The default mapping's special cases (fixed-range ops such as sigmoid) stay; only the global choice changes.
    return get_default_qconfig_mapping(ENGINE).set_global(qconfig)


def quantize_int8(model: nn.Module, calibration: torch.Tensor, *, batch_size: int = 8) -> nn.Module:
    """An int8 copy of an eval-mode heatmap SPPE, calibrated on ``calibration`` (float ``[N, 3, H, W]`` network
    inputs, e.g. ``normalize_crops(calibration_crops(spec))``). The copy maps float inputs to float heatmaps on the
    CPU; ``model`` is left untouched. Raises ``RuntimeError`` where PyTorch lacks the x86 quantized engine."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not int8_supported():
        raise RuntimeError(
            f"int8 needs PyTorch's {ENGINE!r} quantized engine; this build has "
            f"{', '.join(torch.backends.quantized.supported_engines)}"
        )
    if len(calibration) == 0:
        raise ValueError("quantize_int8 needs at least one calibration input")
    torch.backends.quantized.engine = ENGINE  # process-wide: the quantized kernels are looked up by engine
    folded = fold_batchnorm(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\.quantization")
        warnings.filterwarnings("ignore", category=FutureWarning)
        prepared = prepare_fx(folded, _qconfig_mapping(), example_inputs=(calibration[:1],))
        with torch.inference_mode():
            for s in range(0, len(calibration), batch_size):
                prepared(calibration[s : s + batch_size])
        return convert_fx(prepared).eval()


@torch.inference_mode()
def heatmap_agreement(reference: nn.Module, candidate: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """How far ``candidate``'s heatmaps are from ``reference``'s on ``inputs``: the relative L2 error of the
    heatmaps, and the median / 95th percentile / maximum distance (heatmap pixels) between their argmax keypoints."""
    from models.heatmaps import decode_heatmaps

    ref = reference(inputs).float()
    out = candidate(inputs).float()
    rel = float((out - ref).norm() / ref.norm().clamp_min(1e-12))
    kr, _ = decode_heatmaps(ref)
    ko, _ = decode_heatmaps(out)
    d = (kr - ko).norm(dim=-1).flatten()
    return {
        "relative_heatmap_error": rel,
        "keypoint_shift_median_px": float(d.median()),
        "keypoint_shift_p95_px": float(torch.quantile(d, 0.95)),
        "keypoint_shift_max_px": float(d.max()),
    }


def calibration_inputs(spec: CropSpec, n: int = 32) -> torch.Tensor:
    """``calibration_crops`` as float network inputs (``models.transforms.normalize_crops``)."""
    return normalize_crops(calibration_crops(spec, n))
