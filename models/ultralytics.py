"""Ultralytics YOLOv8 / YOLO11 detection and pose networks in plain PyTorch, loaded from Ultralytics ``.pt`` files
without running Ultralytics (or anything else) from the file.

What is here, in pipeline order:

* ``read_ultralytics_checkpoint(path)``: reads an Ultralytics ``.pt`` with ``models.safe_unpickle`` (nothing in the
  pickle runs), and returns an ``UltralyticsCheckpoint``: the recorded architecture (the model's ``yaml`` dict),
  ``nc``, ``kpt_shape``, class names, BatchNorm eps, and the state dict (``model.N.…`` keys) walked out of the
  recorded module tree.
* ``parse_yolo_yaml(yaml, nc=…, kpt_shape=…)`` → ``YoloArch``: the layer list with every constructor argument
  resolved (channels scaled by the width multiple and capped at ``max_channels``, repeats by the depth multiple),
  following ``parse_model`` in Ultralytics' ``ultralytics/nn/tasks.py``. Only the module names of
  ``_LAYER_BUILDERS`` are understood (YOLOv8/YOLO11 detect and pose); others fail naming them.
* ``YoloNet(arch, bn_eps=…)``: the network, whose parameter names are Ultralytics' (``model.2.m.0.cv1.conv.weight``,
  ``model.23.dfl.conv.weight`` …) so state dicts load strictly. Blocks follow ``ultralytics/nn/modules/conv.py``
  (``Conv``, ``DWConv``, ``Concat``), ``block.py`` (``Bottleneck``, ``C2f``, ``C3``, ``C3k``, ``C3k2``, ``SPPF``,
  ``Attention``, ``PSABlock``, ``C2PSA``, ``DFL``) and ``head.py`` (``Detect``, ``Pose``). Its ``forward`` returns
  decoded ``YoloOutput`` in network-input pixels, as Ultralytics' inference head does: DFL box decoding over
  ``reg_max = 16`` bins, anchors at cell centres of the stride-8/16/32 grids, class sigmoid, keypoints
  ``x = (2·raw_x + anchor_x − 0.5)·stride`` (same for y), visibility ``sigmoid(raw_v)``.
* ``letterbox_geometry``/``letterbox``, ``non_max_suppression``, ``boxes_to_frame``/``keypoints_to_frame``:
  Ultralytics' predict pre- and post-processing (``ultralytics/data/augment.py`` ``LetterBox``,
  ``ultralytics/utils/nms.py`` ``non_max_suppression``, ``ultralytics/utils/ops.py`` ``scale_boxes``,
  ``scale_coords``, ``clip_boxes``, ``clip_coords``; read at ultralytics 8.4.190).
* ``yolo11n_pose_yaml()``: the YOLO11n-pose layer list (``ultralytics/cfg/models/11/yolo11-pose.yaml``, scale n) for
  random-weight builds without a file.

The person detector around this (``models.detectors.yolo``) runs letterbox → ``YoloNet`` → NMS → scale back.

Weights: Ultralytics' YOLO11 and YOLOv8 checkpoints are licensed AGPL-3.0 (the license string is recorded in each
file and kept in ``UltralyticsCheckpoint.license``); using them is the user's choice. This module contains no
Ultralytics code; architecture facts and formulas were read from Ultralytics' documentation (docs.ultralytics.com:
``models/yolo11`` (YOLO11, released with ultralytics 8.3.0 in September 2024; ``yolo11n-pose.pt`` records
8.2.100, 2024-09-25), ``models/yolov8``, ``modes/predict`` (``conf=0.25``, ``iou=0.7``, ``imgsz=640``,
``max_det=300``)) and from the source files named above (``ultralytics/nn/tasks.py`` ``parse_model`` for the
layer lists).

Pixel convention: all coordinates are continuous (x, y) pixels, with Ultralytics' letterbox inverse
``x_frame = (x_input − pad_x) / gain_x``; this ignores the half-pixel centre offset of ``cv2.resize`` (up to
``0.5·|1/gain − 1|`` px), kept as is for parity with Ultralytics' outputs.

Example::

    >>> import torch
    >>> from models.ultralytics import YoloNet, parse_yolo_yaml, yolo11n_pose_yaml
    >>> net = YoloNet(parse_yolo_yaml(yolo11n_pose_yaml(), nc=1, kpt_shape=(17, 3))).eval()
    >>> out = net(torch.zeros(1, 3, 64, 96))
    >>> tuple(out.boxes_xyxy.shape), tuple(out.keypoints.shape), net.arch.strides
    ((1, 126, 4), (1, 126, 17, 2), (8, 16, 32))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.safe_unpickle import PickledObject, UnsafeCheckpointError, iter_pickled_objects, load_torch_pickle

logger = logging.getLogger(__name__)

__all__ = [
    "UltralyticsCheckpointError",
    "LayerSpec",
    "YoloArch",
    "parse_yolo_yaml",
    "yolo11n_pose_yaml",
    "Conv",
    "DWConv",
    "Concat",
    "Bottleneck",
    "C2f",
    "C3",
    "C3k",
    "C3k2",
    "SPPF",
    "Attention",
    "PSABlock",
    "C2PSA",
    "DFL",
    "Detect",
    "Pose",
    "YoloOutput",
    "YoloNet",
    "UltralyticsCheckpoint",
    "read_ultralytics_checkpoint",
    "extract_state_dict",
    "LetterboxGeometry",
    "letterbox_geometry",
    "letterbox",
    "non_max_suppression",
    "boxes_to_frame",
    "keypoints_to_frame",
]


class UltralyticsCheckpointError(ValueError):
    """An Ultralytics checkpoint or layer list is unreadable or uses something this module does not implement; the
    message names the file (or the layer)."""


# ------------------------------------------------------------------------------------------------- blocks
# Attribute names (conv, bn, cv1, cv2, m, attn, ffn, qkv, proj, pe, dfl, cv3, cv4) are Ultralytics' state-dict keys.


def _autopad(k: int, p: int | None = None, d: int = 1) -> int:
    """'same' padding for an odd kernel (Ultralytics ``autopad``)."""
    if d > 1:
        k = d * (k - 1) + 1
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) → BatchNorm2d → SiLU (or identity with ``act=False``); ``conv.py`` ``Conv``."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, _autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Depth-wise ``Conv``: groups = gcd(c1, c2); ``conv.py`` ``DWConv``."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension`` (channels)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, self.d)


class Bottleneck(nn.Module):
    """Two convs (kernels ``k``, hidden ``int(c2·e)``) with a residual when ``shortcut`` and c1 == c2."""

    def __init__(
        self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (3, 3), e: float = 0.5
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convs: split ``cv1``'s output in halves, chain ``n`` bottlenecks on the second half, and
    fuse every intermediate with ``cv2`` (YOLOv8)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """CSP bottleneck with three convs: ``cv3(cat(m(cv1(x)), cv2(x)))``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k(C3):
    """``C3`` whose bottlenecks use ``k×k`` kernels in both convs (YOLO11)."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


class C3k2(C2f):
    """``C2f`` whose inner blocks are ``C3k`` (two bottlenecks each) when ``c3k``, else half-width bottlenecks
    (YOLO11)."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, g: int = 1, shortcut: bool = True
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2, shortcut, g) if c3k else Bottleneck(self.c, self.c, shortcut, g) for _ in range(n)
        )


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained ``k×k`` stride-1 max-pools, concatenated with their input."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    """Multi-head self-attention over all ``H·W`` positions with a depth-wise positional conv on the values.

    Per head: ``key_dim = int(head_dim · attn_ratio)`` for queries and keys, ``head_dim = dim // num_heads`` for
    values; softmax over keys of ``qᵀk · key_dim^-0.5``; output ``proj(v·attnᵀ + pe(v))``.
    """

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        q, k, v = (
            self.qkv(x)
            .view(b, self.num_heads, 2 * self.key_dim + self.head_dim, n)
            .split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        )
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)  # [b, heads, n, n]
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)


class PSABlock(nn.Module):
    """``x + attn(x)`` then ``x + ffn(x)`` (two 1×1 convs, 2× expansion, the second without activation)."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    """``cv1`` split in halves; ``n`` ``PSABlock``s (``c // 64`` heads) on the second; ``cv2`` fuses (YOLO11)."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        if c1 != c2:
            raise UltralyticsCheckpointError(f"C2PSA needs equal in/out channels, got {c1} → {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class DFL(nn.Module):
    """Distribution focal loss decoding: per box side, the expectation of a softmax over ``c1`` bins.

    ``conv`` is a fixed 1×1 conv whose weight is ``arange(c1)`` (stored in checkpoints as ``dfl.conv.weight``).
    Input float ``[B, 4·c1, A]``; output ``[B, 4, A]`` distances in grid cells.
    """

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1))
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        p = x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)  # [B, c1, 4, A]
        return F.conv2d(p, self.conv.weight.to(p.dtype)).view(b, 4, a)


class YoloOutput(NamedTuple):
    """Decoded predictions for every anchor, float32, in network-input pixels (continuous x, y).

    Attributes:
        boxes_xyxy: ``[B, A, 4]``.
        scores: ``[B, A, nc]`` class probabilities (sigmoid).
        keypoints: ``[B, A, K, 2]`` (x, y), or None for a detection head.
        keypoint_scores: ``[B, A, K]`` visibility (sigmoid), or None (detection head, or ``kpt_shape[1] == 2``).
    """

    boxes_xyxy: torch.Tensor
    scores: torch.Tensor
    keypoints: torch.Tensor | None
    keypoint_scores: torch.Tensor | None


class Detect(nn.Module):
    """YOLOv8/YOLO11 anchor-free detection head (``head.py`` ``Detect``, inference path).

    Per level: ``cv2`` predicts ``4·reg_max`` box-distance bins, ``cv3`` ``nc`` class logits. ``legacy`` (YOLOv8)
    uses two 3×3 ``Conv`` in ``cv3``; YOLO11 (``legacy=False``) uses depth-wise 3×3 + point-wise pairs.

    The decode runs in float32 whatever the module's dtype (half/bfloat16 convs, float32 boxes): bfloat16 cannot
    even represent 640-pixel coordinates to the pixel.
    """

    def __init__(self, nc: int, ch: Sequence[int], strides: Sequence[int], *, legacy: bool, reg_max: int = 16) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        self.strides = tuple(int(s) for s in strides)
        c2 = max(16, ch[0] // 4, reg_max * 4)
        c3 = max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch
        )
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()

    def anchors(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres ``[A, 2]`` (x + 0.5, y + 0.5, grid units, levels in order, row-major) and strides ``[A, 1]``,
        float32 (Ultralytics ``utils/tal.py`` ``make_anchors`` with offset 0.5)."""
        points, strides = [], []
        dev = feats[0].device
        for f, s in zip(feats, self.strides):
            h, w = f.shape[2:]
            sy, sx = torch.meshgrid(
                torch.arange(h, device=dev, dtype=torch.float32) + 0.5,
                torch.arange(w, device=dev, dtype=torch.float32) + 0.5,
                indexing="ij",
            )
            points.append(torch.stack((sx, sy), -1).view(-1, 2))
            strides.append(torch.full((h * w, 1), float(s), device=dev))
        return torch.cat(points), torch.cat(strides)

    def _flat(self, heads: nn.ModuleList, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        b = xs[0].shape[0]
        return torch.cat([head(x).view(b, -1, x.shape[2] * x.shape[3]) for head, x in zip(heads, xs)], 2).float()

    def forward(self, xs: list[torch.Tensor]) -> YoloOutput:
        return self._decode_boxes(xs, *self.anchors(xs))

    def _decode_boxes(self, xs: list[torch.Tensor], anchors: torch.Tensor, strides: torch.Tensor) -> YoloOutput:
        box = self._flat(self.cv2, xs)  # [B, 4·reg_max, A]
        cls = self._flat(self.cv3, xs)  # [B, nc, A]
        dist = self.dfl(box)  # [B, 4, A]: (left, top, right, bottom) distances in grid cells
        pts = anchors.t().unsqueeze(0)  # [1, 2, A]
        s = strides.t().unsqueeze(0)  # [1, 1, A]
        xyxy = torch.cat((pts - dist[:, :2], pts + dist[:, 2:]), 1) * s
        return YoloOutput(xyxy.transpose(1, 2), cls.sigmoid().transpose(1, 2), None, None)


class Pose(Detect):
    """``Detect`` plus a keypoint branch ``cv4`` (two 3×3 ``Conv`` + 1×1 to ``K·ndim`` channels); ``head.py``
    ``Pose``. Keypoint ``k`` of an anchor at cell centre ``(ax, ay)`` and stride ``s``:
    ``x = (2·raw_x + ax − 0.5)·s``, ``y = (2·raw_y + ay − 0.5)·s``, score ``sigmoid(raw_v)``
    (``kpts_decode``)."""

    def __init__(
        self,
        nc: int,
        kpt_shape: tuple[int, int],
        ch: Sequence[int],
        strides: Sequence[int],
        *,
        legacy: bool,
        reg_max: int = 16,
    ) -> None:
        super().__init__(nc, ch, strides, legacy=legacy, reg_max=reg_max)
        if kpt_shape[1] not in (2, 3):
            raise UltralyticsCheckpointError(f"kpt_shape must be (K, 2) or (K, 3), got {kpt_shape}")
        self.kpt_shape = (int(kpt_shape[0]), int(kpt_shape[1]))
        self.nk = self.kpt_shape[0] * self.kpt_shape[1]
        c4 = max(ch[0] // 4, self.nk)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, self.nk, 1)) for x in ch)

    def forward(self, xs: list[torch.Tensor]) -> YoloOutput:
        anchors, strides = self.anchors(xs)
        det = self._decode_boxes(xs, anchors, strides)
        raw = self._flat(self.cv4, xs)  # [B, K·ndim, A]
        b, a = raw.shape[0], raw.shape[2]
        k, ndim = self.kpt_shape
        raw = raw.view(b, k, ndim, a)
        xy = (raw[:, :, :2] * 2.0 + (anchors.t() - 0.5).view(1, 1, 2, a)) * strides.view(1, 1, 1, a)
        vis = raw[:, :, 2].sigmoid().transpose(1, 2) if ndim == 3 else None
        return det._replace(keypoints=xy.permute(0, 3, 1, 2), keypoint_scores=vis)


# ---------------------------------------------------------------------------------------------- layer list


@dataclass(frozen=True)
class LayerSpec:
    """One resolved layer: ``module`` (a ``_LAYER_BUILDERS`` key) built as ``module(*args)``, ``repeats`` times in
    an ``nn.Sequential`` when > 1; ``source`` the input layer index(es) (−1: previous); ``channels`` and ``stride``
    of its output (stride relative to the network input)."""

    index: int
    source: int | tuple[int, ...]
    module: str
    args: tuple
    repeats: int
    channels: int
    stride: int


@dataclass(frozen=True)
class YoloArch:
    """A resolved Ultralytics layer list (``parse_yolo_yaml``).

    ``task`` is ``"pose"`` or ``"detect"`` (the last layer's head); ``strides`` the head's input strides.
    """

    layers: tuple[LayerSpec, ...]
    nc: int
    kpt_shape: tuple[int, int] | None
    scale: str | None
    depth_multiple: float
    width_multiple: float
    max_channels: int | float
    legacy_head: bool
    strides: tuple[int, ...]
    in_channels: int

    @property
    def task(self) -> str:
        return "pose" if self.layers[-1].module == "Pose" else "detect"


# Channel-changing modules whose first yaml argument is c2 (Ultralytics' ``base_modules`` subset implemented here),
# and those that take the repeat count as their third argument (``repeat_modules``). ``C3k``, ``PSABlock`` and
# ``Attention`` exist only inside ``C3k2``/``C2PSA`` (Ultralytics does not resolve them as top-level layers either).
_CHANNEL_MODULES = ("Conv", "DWConv", "Bottleneck", "C2f", "C3", "C3k2", "SPPF", "C2PSA")
_REPEAT_INSIDE = ("C2f", "C3", "C3k2", "C2PSA")


def _make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


def _upsample(size: Any = None, scale_factor: Any = 2, mode: Any = "nearest") -> nn.Upsample:
    if size not in (None, "None") or mode != "nearest" or scale_factor != int(scale_factor):
        raise UltralyticsCheckpointError(
            f"nn.Upsample({size!r}, {scale_factor!r}, {mode!r}): only integer nearest upsampling is implemented"
        )
    return nn.Upsample(None, int(scale_factor), "nearest")


#: Module names of Ultralytics' layer lists this module builds (a literal dict: no lookups by string elsewhere).
_LAYER_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "Conv": Conv,
    "DWConv": DWConv,
    "Concat": Concat,
    "Bottleneck": Bottleneck,
    "C2f": C2f,
    "C3": C3,
    "C3k2": C3k2,
    "SPPF": SPPF,
    "C2PSA": C2PSA,
    "nn.Upsample": _upsample,
    "Detect": Detect,
    "Pose": Pose,
}


def _literal(a: Any, nc: int, kpt_shape: tuple[int, int] | None, where: str) -> Any:
    """A yaml argument: the names ``nc``/``kpt_shape``/``None`` resolved, everything else kept as written."""
    if a == "nc":
        return nc
    if a == "kpt_shape":
        if kpt_shape is None:
            raise UltralyticsCheckpointError(f"{where}: uses kpt_shape but the model has none")
        return kpt_shape
    if a == "None":
        return None
    if isinstance(a, (bool, int, float, str)) or a is None:
        return a
    if isinstance(a, (list, tuple)) and all(isinstance(v, (bool, int, float)) for v in a):
        return tuple(a)
    raise UltralyticsCheckpointError(f"{where}: unsupported argument {a!r:.60}")


def parse_yolo_yaml(
    yaml: Mapping[str, Any], *, nc: int | None = None, kpt_shape: Sequence[int] | None = None, scale: str | None = None
) -> YoloArch:
    """Resolve an Ultralytics model description into constructor arguments (Ultralytics ``tasks.py``
    ``parse_model``, for the modules of ``_LAYER_BUILDERS``).

    Args:
        yaml: the model's ``yaml`` dict: ``backbone``/``head`` lists of ``[from, repeats, module, args]``, ``nc``,
            ``kpt_shape`` (pose), ``scales`` (``{scale: [depth, width, max_channels]}``) and ``scale``, or
            ``depth_multiple``/``width_multiple``.
        nc: class count overriding ``yaml["nc"]`` (Ultralytics stores the trained count on the model, e.g. 1 for
            person-only pose models, while the yaml may still say 80).
        kpt_shape: ``(K, ndim)`` overriding ``yaml["kpt_shape"]``.
        scale: overrides ``yaml["scale"]`` (default: the yaml's, else the first of ``scales``, as Ultralytics).
    Returns:
        ``YoloArch``.
    Raises:
        UltralyticsCheckpointError: a module name outside ``_LAYER_BUILDERS`` (named with its layer index), a
            custom ``activation``, malformed entries, or a head that is not last.
    """
    if yaml.get("activation") not in (None, "nn.SiLU()"):
        raise UltralyticsCheckpointError(f"activation {yaml['activation']!r} is not implemented (SiLU only)")
    nc = int(yaml.get("nc", 80) if nc is None else nc)
    ks = yaml.get("kpt_shape") if kpt_shape is None else kpt_shape
    kpt = (int(ks[0]), int(ks[1])) if ks is not None else None
    scales = yaml.get("scales")
    depth, width = float(yaml.get("depth_multiple", 1.0)), float(yaml.get("width_multiple", 1.0))
    max_channels: int | float = math.inf
    scale = scale if scale is not None else yaml.get("scale")
    if scales:
        if not scale:
            scale = next(iter(scales))
        if scale not in scales:
            raise UltralyticsCheckpointError(f"scale {scale!r} not in the yaml's scales {sorted(scales)}")
        depth, width, max_channels = scales[scale]
    in_ch = int(yaml.get("ch", yaml.get("channels", 3)))
    entries = list(yaml.get("backbone", [])) + list(yaml.get("head", []))
    if not entries:
        raise UltralyticsCheckpointError("the yaml has no backbone/head layers")
    ch: list[int] = []
    st: list[int] = []
    layers: list[LayerSpec] = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 4):
            raise UltralyticsCheckpointError(f"layer {i}: expected [from, repeats, module, args], got {entry!r:.80}")
        f, n, name, raw_args = entry
        where = f"layer {i} ({name})"
        if type(n) is not int or n < 1 or not isinstance(raw_args, (list, tuple)):
            raise UltralyticsCheckpointError(f"{where}: repeats must be an int >= 1 and args a list, got {entry!r:.80}")
        if not isinstance(name, str) or name not in _LAYER_BUILDERS:
            raise UltralyticsCheckpointError(
                f"{where}: module {name!r} is not implemented; known: {', '.join(_LAYER_BUILDERS)}"
            )
        src = tuple(int(x) for x in f) if isinstance(f, (list, tuple)) else int(f)
        srcs = src if isinstance(src, tuple) else (src,)
        if any(not (s == -1 or -i <= s < i) for s in srcs):
            raise UltralyticsCheckpointError(f"{where}: input {src} does not exist")
        c_in = [in_ch if (i == 0 and s == -1) else ch[s] for s in srcs]
        s_in = [1 if (i == 0 and s == -1) else st[s] for s in srcs]
        args = [_literal(a, nc, kpt, where) for a in raw_args]
        n = max(round(n * depth), 1) if n > 1 else int(n)
        stride = s_in[0]
        if name in _CHANNEL_MODULES:
            c1, c2 = c_in[0], int(args[0])
            if c2 != nc:
                c2 = _make_divisible(min(c2, max_channels) * width, 8)
            args = [c1, c2, *args[1:]]
            if name in _REPEAT_INSIDE:
                args.insert(2, n)
                n = 1
            if name == "C3k2" and scale in ("m", "l", "x"):
                args[3:4] = [True]  # Ultralytics forces C3k inner blocks for the M/L/X sizes
            if name in ("Conv", "DWConv"):
                stride *= int(args[3]) if len(args) > 3 else 1
        elif name == "Concat":
            c2 = sum(c_in)
            if len(set(s_in)) != 1:
                raise UltralyticsCheckpointError(f"{where}: inputs of different strides {s_in}")
        elif name == "nn.Upsample":
            c2 = c_in[0]
            factor = args[1] if len(args) > 1 else 2
            if stride % int(factor):
                raise UltralyticsCheckpointError(f"{where}: upsampling by {factor} below stride 1")
            stride //= int(factor)
        else:  # Detect / Pose: must be last
            if i != len(entries) - 1:
                raise UltralyticsCheckpointError(f"{where}: the head must be the last layer")
            if name == "Pose" and kpt is None:
                raise UltralyticsCheckpointError(f"{where}: a Pose head needs kpt_shape")
            c2 = 0
            head_nc = int(args[0])
            args = [head_nc, kpt, tuple(c_in), tuple(s_in)] if name == "Pose" else [head_nc, tuple(c_in), tuple(s_in)]
            stride = 0
        layers.append(
            LayerSpec(index=i, source=src, module=name, args=tuple(args), repeats=int(n), channels=c2, stride=stride)
        )
        ch.append(c2)
        st.append(stride)
    head = layers[-1]
    legacy = not any(layer.module == "C3k2" for layer in layers)  # any C3k2: the YOLO11 (DWConv) cv3 head
    if head.module not in ("Detect", "Pose"):
        raise UltralyticsCheckpointError(f"the last layer is {head.module}, not a Detect/Pose head")
    return YoloArch(
        layers=tuple(layers),
        nc=int(head.args[0]),
        kpt_shape=kpt if head.module == "Pose" else None,
        scale=scale,
        depth_multiple=float(depth),
        width_multiple=float(width),
        max_channels=max_channels,
        legacy_head=legacy,
        strides=tuple(head.args[-1]),
        in_channels=in_ch,
    )


def yolo11n_pose_yaml() -> dict[str, Any]:
    """The YOLO11-pose layer list (Ultralytics ``ultralytics/cfg/models/11/yolo11-pose.yaml``) at scale ``n``, as
    recorded in ``yolo11n-pose.pt``; ``nc`` is 1 (person), the class count of the released pose weights."""
    return {
        "nc": 1,
        "kpt_shape": [17, 3],
        "scale": "n",
        "scales": {
            "n": [0.50, 0.25, 1024],
            "s": [0.50, 0.50, 1024],
            "m": [0.50, 1.00, 512],
            "l": [1.00, 1.00, 512],
            "x": [1.00, 1.50, 512],
        },
        "backbone": [
            [-1, 1, "Conv", [64, 3, 2]],  # 0-P1/2
            [-1, 1, "Conv", [128, 3, 2]],  # 1-P2/4
            [-1, 2, "C3k2", [256, False, 0.25]],
            [-1, 1, "Conv", [256, 3, 2]],  # 3-P3/8
            [-1, 2, "C3k2", [512, False, 0.25]],
            [-1, 1, "Conv", [512, 3, 2]],  # 5-P4/16
            [-1, 2, "C3k2", [512, True]],
            [-1, 1, "Conv", [1024, 3, 2]],  # 7-P5/32
            [-1, 2, "C3k2", [1024, True]],
            [-1, 1, "SPPF", [1024, 5]],  # 9
            [-1, 2, "C2PSA", [1024]],  # 10
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 6], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, False]],  # 13
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 4], 1, "Concat", [1]],
            [-1, 2, "C3k2", [256, False]],  # 16 (P3/8)
            [-1, 1, "Conv", [256, 3, 2]],
            [[-1, 13], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, False]],  # 19 (P4/16)
            [-1, 1, "Conv", [512, 3, 2]],
            [[-1, 10], 1, "Concat", [1]],
            [-1, 2, "C3k2", [1024, True]],  # 22 (P5/32)
            [[16, 19, 22], 1, "Pose", ["nc", "kpt_shape"]],
        ],
    }


# -------------------------------------------------------------------------------------------------- network


class YoloNet(nn.Module):
    """An Ultralytics YOLOv8/YOLO11 detection or pose network built from a ``YoloArch``.

    ``model`` is an ``nn.ModuleList`` with one entry per layer (``model.N``), so state-dict keys are Ultralytics'.
    Input float ``[B, 3, H, W]`` RGB in [0, 1], H and W multiples of the largest stride (32); any dtype the
    module was cast to (``net.to(torch.bfloat16)``): the input is cast to the weights' dtype, the head decodes in
    float32. Output: ``YoloOutput`` (float32, network-input pixels) for all ``A = Σ H·W / stride²`` anchors.

    Args:
        arch: from ``parse_yolo_yaml``.
        bn_eps: BatchNorm eps (Ultralytics' ``initialize_weights`` sets 1e-3 and momentum 0.03 on every BatchNorm;
            ``read_ultralytics_checkpoint`` reads the value off the file's BatchNorm records).
        bn_momentum: BatchNorm momentum (training only).
    """

    def __init__(self, arch: YoloArch, *, bn_eps: float = 1e-3, bn_momentum: float = 0.03) -> None:
        super().__init__()
        self.arch = arch
        layers = []
        for spec in arch.layers:
            args = list(spec.args)
            if spec.module in ("Detect", "Pose"):
                layer = _LAYER_BUILDERS[spec.module](*args, legacy=arch.legacy_head)
            else:
                make = _LAYER_BUILDERS[spec.module]
                layer = nn.Sequential(*(make(*args) for _ in range(spec.repeats))) if spec.repeats > 1 else make(*args)
            layers.append(layer)
        self.model = nn.ModuleList(layers)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = bn_eps, bn_momentum
        self._sources = [spec.source for spec in arch.layers]
        # Outputs that a later layer reads by index (Ultralytics' ``save`` list); the others are dropped at once.
        self._keep = {
            i + s if s < 0 else s
            for i, spec in enumerate(arch.layers)
            for s in (spec.source if isinstance(spec.source, tuple) else (spec.source,))
            if s != -1
        }

    @property
    def max_stride(self) -> int:
        return max(self.arch.strides)

    def forward(self, x: torch.Tensor) -> YoloOutput:
        if x.ndim != 4 or x.shape[1] != self.arch.in_channels:
            raise ValueError(f"input must be [B, {self.arch.in_channels}, H, W], got {tuple(x.shape)}")
        s = self.max_stride
        if x.shape[2] % s or x.shape[3] % s:
            raise ValueError(f"input height and width must be multiples of {s}, got {tuple(x.shape[2:])}")
        x = x.to(self.model[0].conv.weight.dtype)
        outs: dict[int, torch.Tensor] = {}
        for i, (layer, src) in enumerate(zip(self.model, self._sources)):
            if isinstance(src, tuple):
                inp = [x if j == -1 else outs[i + j if j < 0 else j] for j in src]
            else:
                inp = x if src == -1 else outs[i + src if src < 0 else src]
            x = layer(inp)
            if i in self._keep:
                outs[i] = x
        return x


# ----------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, eq=False)
class UltralyticsCheckpoint:
    """What ``read_ultralytics_checkpoint`` found in an Ultralytics ``.pt`` file.

    Attributes:
        source: the file (credentials removed).
        sha256: of the file's bytes.
        class_path: the pickled model's class (``ultralytics.nn.tasks.PoseModel`` / ``DetectionModel``).
        yaml: the recorded architecture dict (plain data).
        nc: class count of the trained head; names: class names in index order.
        kpt_shape: ``(K, ndim)`` for pose models, else None.
        bn_eps: the (single) BatchNorm eps of the recorded modules.
        state_dict: ``model.N.…`` → tensor, in the file's dtypes (Ultralytics saves float16).
        ultralytics_version, license, date: the file's metadata (``license`` is Ultralytics' AGPL-3.0 notice).
        which: ``"ema"`` or ``"model"``, the entry the weights came from (Ultralytics prefers ``ema``).
    """

    source: str
    sha256: str
    class_path: str
    yaml: dict
    nc: int
    names: tuple[str, ...]
    kpt_shape: tuple[int, int] | None
    bn_eps: float
    state_dict: dict[str, torch.Tensor]
    ultralytics_version: str | None
    license: str | None
    date: str | None
    which: str

    def arch(self) -> YoloArch:
        """The resolved architecture (``parse_yolo_yaml`` with the trained ``nc`` and ``kpt_shape``)."""
        return parse_yolo_yaml(self.yaml, nc=self.nc, kpt_shape=self.kpt_shape)


_MODEL_CLASSES = ("ultralytics.nn.tasks.PoseModel", "ultralytics.nn.tasks.DetectionModel")
_ACTIVATIONS_OK = ("torch.nn.modules.activation.SiLU", "torch.nn.modules.linear.Identity")


def extract_state_dict(module: PickledObject, *, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state dict of a recorded ``nn.Module`` (a ``PickledObject`` whose state is the module's ``__dict__``).

    Walks ``_modules`` depth-first, collecting ``_parameters`` and ``_buffers`` (minus
    ``_non_persistent_buffers_set``) under dotted names, in the order ``nn.Module.state_dict`` would.

    Raises:
        UltralyticsCheckpointError: a module record without that structure, or a non-tensor value (named).
    """
    out: dict[str, torch.Tensor] = {}
    stack: list[tuple[str, Any]] = [("", module)]
    while stack:
        prefix, mod = stack.pop()
        if not isinstance(mod, PickledObject) or not isinstance(mod.state, dict):
            raise UltralyticsCheckpointError(f"{source}: {prefix or 'root'} is not a recorded nn.Module")
        skip = mod.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, t in (mod.get(group) or {}).items():
                if t is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(t, torch.Tensor):
                    raise UltralyticsCheckpointError(f"{source}: {prefix}{name} is a {type(t).__name__}, not a tensor")
                out[prefix + name] = t
        children = mod.get("_modules") or {}
        for name, child in reversed(list(children.items())):
            if child is not None:
                stack.append((f"{prefix}{name}.", child))
    return out


def read_ultralytics_checkpoint(path: str) -> UltralyticsCheckpoint:
    """Read an Ultralytics ``.pt`` (YOLOv8/YOLO11 detect or pose) as data; nothing from the file is executed.

    Args:
        path: local path or fsspec URL.
    Returns:
        ``UltralyticsCheckpoint``.
    Raises:
        UltralyticsCheckpointError: unreadable or unsafe pickle (``models.safe_unpickle``), no model entry, a model
            class other than ``PoseModel``/``DetectionModel``, activations other than SiLU, mixed BatchNorm eps.
    """
    try:
        root, sha = load_torch_pickle(path)
    except UnsafeCheckpointError as e:
        raise UltralyticsCheckpointError(str(e)) from None
    from models.checkpoints import redact_uri

    source = redact_uri(path)
    if not isinstance(root, dict):
        raise UltralyticsCheckpointError(f"{source}: not an Ultralytics checkpoint (root is {type(root).__name__})")
    which = "ema" if isinstance(root.get("ema"), PickledObject) else "model"
    model = root.get(which)
    if not isinstance(model, PickledObject) or model.class_path not in _MODEL_CLASSES:
        got = model.class_path if isinstance(model, PickledObject) else type(model).__name__
        raise UltralyticsCheckpointError(
            f"{source}: expected an Ultralytics {' or '.join(c.rsplit('.', 1)[1] for c in _MODEL_CLASSES)} under "
            f"'{which}', got {got}"
        )
    yaml = model.get("yaml")
    if not isinstance(yaml, dict):
        raise UltralyticsCheckpointError(f"{source}: the model records no yaml architecture dict")
    records = list(iter_pickled_objects(model))
    acts = {r.class_path for r in records if r.class_path.startswith("torch.nn.modules.activation.")}
    bad = sorted(acts - set(_ACTIVATIONS_OK))
    if bad:
        raise UltralyticsCheckpointError(f"{source}: activations {bad} are not implemented (SiLU only)")
    eps = {float(r.get("eps")) for r in records if r.class_path == "torch.nn.modules.batchnorm.BatchNorm2d"}
    if len(eps) > 1:
        raise UltralyticsCheckpointError(f"{source}: BatchNorm layers use different eps {sorted(eps)}")
    nc = model.get("nc", yaml.get("nc"))
    kpt = model.get("kpt_shape", yaml.get("kpt_shape"))
    names = model.get("names") or {}
    names_t = tuple(str(names[k]) for k in sorted(names)) if isinstance(names, dict) else tuple(map(str, names))
    is_pose = model.class_path.endswith("PoseModel")
    return UltralyticsCheckpoint(
        source=source,
        sha256=sha,
        class_path=model.class_path,
        yaml=yaml,
        nc=int(nc),
        names=names_t,
        kpt_shape=(int(kpt[0]), int(kpt[1])) if is_pose and kpt is not None else None,
        bn_eps=eps.pop() if eps else 1e-3,
        state_dict=extract_state_dict(model, source=source),
        ultralytics_version=root.get("version"),
        license=root.get("license"),
        date=root.get("date"),
        which=which,
    )


# ------------------------------------------------------------------------------------------ pre/post-process


@dataclass(frozen=True)
class LetterboxGeometry:
    """How a ``(W, H)`` frame sits in the network input (Ultralytics ``LetterBox``, ``center=True``).

    ``new_w × new_h`` is the resized content, pasted at ``(left, top)`` in an ``input_w × input_h`` canvas; the
    inverse maps ``x_frame = (x_input − left) / gain_x`` with ``gain_x = new_w / W`` (``gain_y`` likewise).
    """

    frame_wh: tuple[int, int]
    input_wh: tuple[int, int]
    new_wh: tuple[int, int]
    left: int
    top: int

    @property
    def gain_xy(self) -> tuple[float, float]:
        return self.new_wh[0] / self.frame_wh[0], self.new_wh[1] / self.frame_wh[1]


def letterbox_geometry(
    frame_wh: tuple[int, int],
    size: int | tuple[int, int] = 640,
    *,
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
) -> LetterboxGeometry:
    """Ultralytics ``LetterBox.get_params`` for a ``(W, H)`` frame.

    ``r = min(S_h/H, S_w/W)`` (capped at 1 without ``scaleup``), ``new = (round(W·r), round(H·r))`` (at least 1),
    the padding split as ``left = round(dw/2 − 0.1)``, ``right = round(dw/2 + 0.1)`` (Python rounding). With
    ``auto`` the padding is reduced modulo ``stride`` (Ultralytics' single-image ``rect`` mode); the detector uses
    ``auto=False``: every frame becomes ``size × size``, so frames of any sizes batch together.
    """
    w, h = int(frame_wh[0]), int(frame_wh[1])
    sh, sw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    r = min(sh / h, sw / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = sw - new_w, sh - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    left, right = round(dw - 0.1), round(dw + 0.1)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    return LetterboxGeometry(
        frame_wh=(w, h),
        input_wh=(new_w + left + right, new_h + top + bottom),
        new_wh=(new_w, new_h),
        left=left,
        top=top,
    )


def letterbox(frame: np.ndarray, geo: LetterboxGeometry, pad_value: int = 114) -> np.ndarray:
    """Resize (``cv2.INTER_LINEAR``, skipped when the size is unchanged) and pad with ``pad_value`` (114).

    Args:
        frame: uint8 ``[H, W, 3]``, any channel order (kept); never modified.
        geo: from ``letterbox_geometry`` for this frame's size.
    Returns:
        uint8 ``[input_h, input_w, 3]``.
    """
    import cv2

    w, h = geo.frame_wh
    if frame.shape[:2] != (h, w):
        raise ValueError(f"frame {frame.shape[1]}×{frame.shape[0]} does not match the geometry's {w}×{h}")
    img = np.ascontiguousarray(frame)
    if (w, h) != geo.new_wh:
        img = cv2.resize(img, geo.new_wh, interpolation=cv2.INTER_LINEAR)
    out = np.full((geo.input_wh[1], geo.input_wh[0], 3), pad_value, dtype=np.uint8)
    out[geo.top : geo.top + geo.new_wh[1], geo.left : geo.left + geo.new_wh[0]] = img
    return out


def non_max_suppression(
    boxes_xyxy: torch.Tensor,
    scores: torch.Tensor,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    max_nms: int = 30000,
    max_wh: float = 7680.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ultralytics' ``non_max_suppression`` (best class per box, class-aware) for one image.

    Each anchor takes its best class ``j`` with score ``s``; kept when ``s > conf`` (strict) and ``j`` is in
    ``classes`` (all when None); at most ``max_nms`` highest-scoring go to ``torchvision.ops.nms`` with boxes offset
    by ``j · max_wh`` (NMS within classes) at IoU ``iou``; the first ``max_det`` survivors are returned.

    Args:
        boxes_xyxy: float ``[A, 4]``; scores: float ``[A, nc]``.
    Returns:
        ``(index, score, label)``: int64 ``[n]`` anchor indices, float ``[n]``, int64 ``[n]``, by descending score
        (``n = 0`` gives empty tensors).
    """
    import torchvision

    best, label = scores.max(1)
    keep = best > conf
    if classes is not None:
        keep &= torch.isin(label, torch.as_tensor(list(classes), device=label.device))
    idx = keep.nonzero().view(-1)
    if idx.numel() > max_nms:
        idx = idx[best[idx].argsort(descending=True)[:max_nms]]
    if idx.numel() == 0:
        return idx, best[idx], label[idx]
    b = boxes_xyxy[idx].float() + label[idx, None].float() * max_wh
    kept = torchvision.ops.nms(b, best[idx].float(), iou)[:max_det]
    idx = idx[kept]
    return idx, best[idx], label[idx]


def boxes_to_frame(boxes_xyxy: torch.Tensor, geo: LetterboxGeometry) -> torch.Tensor:
    """Network-input boxes → frame pixels, clipped to ``[0, W] × [0, H]`` (Ultralytics ``scale_boxes`` +
    ``clip_boxes``). Float ``[n, 4]`` in, float32 ``[n, 4]`` out (a new tensor)."""
    b = boxes_xyxy.float().clone()
    gx, gy = geo.gain_xy
    b[:, [0, 2]] -= geo.left
    b[:, [1, 3]] -= geo.top
    b[:, [0, 2]] /= gx
    b[:, [1, 3]] /= gy
    w, h = geo.frame_wh
    b[:, [0, 2]] = b[:, [0, 2]].clamp(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clamp(0, h)
    return b


def keypoints_to_frame(keypoints_xy: torch.Tensor, geo: LetterboxGeometry) -> torch.Tensor:
    """Network-input keypoints → frame pixels, clipped to ``[0, W] × [0, H]`` (Ultralytics ``scale_coords`` +
    ``clip_coords``; every keypoint is clipped, whatever its score). Float ``[n, K, 2]`` in, float32 out."""
    k = keypoints_xy.float().clone()
    gx, gy = geo.gain_xy
    k[..., 0] = ((k[..., 0] - geo.left) / gx).clamp(0, geo.frame_wh[0])
    k[..., 1] = ((k[..., 1] - geo.top) / gy).clamp(0, geo.frame_wh[1])
    return k
