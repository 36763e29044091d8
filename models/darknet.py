"""YOLOv3-SPP as AlphaPose runs it: darknet ``.cfg`` parsing, the network, darknet ``.weights`` files, the letterbox,
the YOLO decode, and AlphaPose's person filter and +1-pixel NMS.

The detection stage (``models.detectors.build_detector("yolov3_spp", ...)``) uses this module so that AlphaPose
users' ``yolov3-spp.cfg`` and ``yolov3-spp.weights`` work unchanged. Every number follows AlphaPose's YOLO
detector at commit c60106d (``detector/yolo_api.py`` ``YOLODetector``, ``detector/yolo/``, ``detector/nms/``):

* Letterbox (``detector/yolo/preprocess.py`` ``letterbox_image``): ``r = min(S/W, S/H)``, floor sizes,
  ``cv2.INTER_CUBIC``, pad value 128, integer offsets ``((S − new_w)//2, (S − new_h)//2)``; RGB scaled to [0, 1], no
  mean. The inverse (``YOLODetector.images_detection``) uses *float32* offsets ``(S − scale·W)/2`` with
  ``scale = S/W`` computed in float32 (up to 0.5 letterbox px from the forward offsets) and clamps to
  ``[0, W] × [0, H]``.
* Decode (``detector/yolo/util.py`` ``predict_transform``): ``x = (σ(tx) + cx)·stride``, ``w = exp(tw)·anchor_w``,
  objectness ``σ(to)``, class probabilities ``σ(tc)`` not multiplied by objectness; rows ordered (cell row, cell
  column, anchor), heads in cfg order.
* Network (``detector/yolo/darknet.py``): LeakyReLU 0.1, nearest ×2 upsampling, PyTorch BatchNorm (eps 1e-5), SPP
  max-pools with stride 1.
* Filter and NMS (``YOLODetector.write_results``, ``detector/nms/src/nms_cpu.cpp``): objectness > confidence
  (strict), person = argmax class is 0, box score = objectness, NMS in letterbox coordinates with +1-pixel areas
  suppressing at IoU ≥ threshold, objectness-descending output.

Darknet ``.weights`` layout: int32 major, minor, revision; ``seen`` as int64 when ``major·10 + minor ≥ 2`` (else
int32); then, per convolutional layer in cfg order, float32 arrays: with batch norm ``bn.bias, bn.weight,
bn.running_mean, bn.running_var, conv.weight``, without ``conv.bias, conv.weight``.

Example::

    >>> from models.darknet import Darknet, YoloLayer, parse_darknet_cfg, yolov3_spp_cfg
    >>> net = Darknet(parse_darknet_cfg(yolov3_spp_cfg())).eval()
    >>> len(net.spec.layers), [i for i, l in enumerate(net.spec.layers) if isinstance(l, YoloLayer)]
    (114, [89, 101, 113])
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "DarknetCfgError",
    "DarknetWeightsError",
    "NetInfo",
    "ConvLayer",
    "ShortcutLayer",
    "RouteLayer",
    "MaxPoolLayer",
    "UpsampleLayer",
    "YoloLayer",
    "DarknetSpec",
    "parse_darknet_cfg",
    "read_darknet_cfg",
    "yolov3_spp_cfg",
    "YOLOV3_ANCHORS",
    "Darknet",
    "decode_yolo",
    "LoadedDarknetWeights",
    "read_darknet_weights",
    "write_darknet_weights",
    "Letterbox",
    "letterbox",
    "letterbox_to_image",
    "nms_plus_one",
    "yolo_person_boxes",
]


class DarknetCfgError(ValueError):
    """A darknet ``.cfg`` is malformed or uses a layer this module does not implement; the message names the line."""


class DarknetWeightsError(ValueError):
    """A darknet ``.weights`` file is unreadable or does not fit the network; the message names the file."""


# --------------------------------------------------------------------------------------------------- cfg parsing


@dataclass(frozen=True)
class NetInfo:
    """The ``[net]`` section: the input size the cfg was written for (AlphaPose's ``detector/yolo_cfg.py`` overrides
    it to 608)."""

    width: int
    height: int
    channels: int


@dataclass(frozen=True)
class ConvLayer:
    """``[convolutional]``: conv (bias only without BN) → BN → activation; ``padding`` in pixels per side."""

    filters: int
    size: int
    stride: int
    padding: int
    batch_normalize: bool
    activation: Literal["leaky", "linear"]


@dataclass(frozen=True)
class ShortcutLayer:
    """``[shortcut]``: previous output + output of layer ``source`` (absolute index), linear activation."""

    source: int


@dataclass(frozen=True)
class RouteLayer:
    """``[route]``: channel concatenation of the outputs of ``sources`` (absolute indices, cfg order)."""

    sources: tuple[int, ...]


@dataclass(frozen=True)
class MaxPoolLayer:
    """``[maxpool]``: darknet pads ``size − 1`` in total (left/top ``(size − 1)//2``), so stride 1 keeps the size."""

    size: int
    stride: int


@dataclass(frozen=True)
class UpsampleLayer:
    """``[upsample]``: nearest-neighbour ×stride."""

    stride: int


@dataclass(frozen=True)
class YoloLayer:
    """``[yolo]``: decodes the previous conv's output with ``anchors`` (pixels of the network input, ``(w, h)``)."""

    anchors: tuple[tuple[float, float], ...]  # the anchors this head uses (``mask`` applied)
    mask: tuple[int, ...]
    classes: int


LayerSpec = ConvLayer | ShortcutLayer | RouteLayer | MaxPoolLayer | UpsampleLayer | YoloLayer


@dataclass(frozen=True)
class DarknetSpec:
    """A parsed cfg: the ``[net]`` section, the layer list (index = darknet layer index) and where it came from."""

    net: NetInfo
    layers: tuple[LayerSpec, ...]
    source: str = "<cfg>"


_SUPPORTED = ("net", "convolutional", "shortcut", "route", "maxpool", "upsample", "yolo")


def _sections(text: str, source: str) -> list[tuple[str, dict[str, str], int]]:
    sections: list[tuple[str, dict[str, str], int]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise DarknetCfgError(f"{source}:{lineno}: unterminated section header {raw.strip()!r}")
            sections.append((line[1:-1].strip().lower(), {}, lineno))
        elif "=" in line:
            if not sections:
                raise DarknetCfgError(f"{source}:{lineno}: option {line!r} before any [section]")
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise DarknetCfgError(f"{source}:{lineno}: expected '[section]' or 'key=value', found {raw.strip()!r}")
    return sections


def _int(opts: dict[str, str], key: str, where: str, default: int | None = None) -> int:
    if key not in opts:
        if default is None:
            raise DarknetCfgError(f"{where}: missing '{key}='")
        return default
    try:
        return int(opts[key])
    except ValueError:
        raise DarknetCfgError(f"{where}: '{key}={opts[key]}' is not an integer") from None


def _ints(value: str, where: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise DarknetCfgError(f"{where}: expected a comma-separated list of integers, found {value!r}") from None


def _index(ref: int, i: int, where: str) -> int:
    """Darknet layer references: negative is relative to the current layer, non-negative is absolute."""
    j = i + ref if ref < 0 else ref
    if not 0 <= j < i:
        raise DarknetCfgError(f"{where}: reference {ref} points to layer {j}, outside 0..{i - 1}")
    return j


def parse_darknet_cfg(text: str, source: str = "<cfg>") -> DarknetSpec:
    """Parse darknet ``.cfg`` text into a typed layer list.

    Comments (``#``, ``;``), blank lines, spaces around ``=`` and training-only options (``jitter``,
    ``ignore_thresh``, learning rates, …) are accepted and ignored.

    Args:
        text: the cfg file's content.
        source: name used in error messages (the path).
    Returns:
        ``DarknetSpec``; ``layers[i]`` is darknet layer ``i`` (the ``[net]`` section is not a layer), route and
        shortcut references resolved to absolute indices.
    Raises:
        DarknetCfgError: malformed lines, a missing or non-integer option, a reference outside the earlier layers,
            an unsupported section type or activation (the message lists the supported ones).
    """
    sections = _sections(text, source)
    if not sections or sections[0][0] not in ("net", "network"):
        raise DarknetCfgError(f"{source}: the first section must be [net]")
    name, opts, lineno = sections[0]
    where = f"{source}:{lineno} [net]"
    net = NetInfo(
        width=_int(opts, "width", where, 416),
        height=_int(opts, "height", where, 416),
        channels=_int(opts, "channels", where, 3),
    )
    layers: list[LayerSpec] = []
    for i, (name, opts, lineno) in enumerate(sections[1:]):
        where = f"{source}:{lineno} layer {i} [{name}]"
        if name in ("convolutional", "conv"):
            size = _int(opts, "size", where, 1)
            # darknet: 'pad=1' means size//2 pixels per side unless 'padding=' gives them explicitly.
            padding = _int(opts, "padding", where, size // 2 if _int(opts, "pad", where, 0) else 0)
            activation = opts.get("activation", "logistic")
            if activation not in ("leaky", "linear"):
                raise DarknetCfgError(f"{where}: activation {activation!r} is not supported (leaky, linear)")
            layers.append(
                ConvLayer(
                    filters=_int(opts, "filters", where, 1),
                    size=size,
                    stride=_int(opts, "stride", where, 1),
                    padding=padding,
                    batch_normalize=bool(_int(opts, "batch_normalize", where, 0)),
                    activation=activation,
                )
            )  # type: ignore[arg-type]
        elif name == "shortcut":
            if opts.get("activation", "linear") != "linear":
                raise DarknetCfgError(f"{where}: shortcut activation {opts['activation']!r} is not supported (linear)")
            if "from" not in opts:
                raise DarknetCfgError(f"{where}: missing 'from='")
            refs = _ints(opts["from"], where)
            if len(refs) != 1:
                raise DarknetCfgError(f"{where}: shortcut from exactly one layer is supported, found {refs}")
            layers.append(ShortcutLayer(source=_index(refs[0], i, where)))
        elif name == "route":
            if "layers" not in opts:
                raise DarknetCfgError(f"{where}: missing 'layers='")
            refs = _ints(opts["layers"], where)
            if not refs:
                raise DarknetCfgError(f"{where}: empty 'layers='")
            layers.append(RouteLayer(sources=tuple(_index(r, i, where) for r in refs)))
        elif name == "maxpool":
            size = _int(opts, "size", where, 2)
            layers.append(MaxPoolLayer(size=size, stride=_int(opts, "stride", where, size)))
        elif name == "upsample":
            layers.append(UpsampleLayer(stride=_int(opts, "stride", where, 2)))
        elif name == "yolo":
            anchors_flat = [float(v) for v in opts.get("anchors", "").split(",") if v.strip()]
            if not anchors_flat or len(anchors_flat) % 2:
                raise DarknetCfgError(f"{where}: 'anchors=' must hold an even, non-zero count of numbers")
            pairs = [(anchors_flat[k], anchors_flat[k + 1]) for k in range(0, len(anchors_flat), 2)]
            mask = _ints(opts["mask"], where) if "mask" in opts else list(range(len(pairs)))
            if any(not 0 <= m < len(pairs) for m in mask):
                raise DarknetCfgError(f"{where}: mask {mask} indexes outside the {len(pairs)} anchors")
            layers.append(
                YoloLayer(
                    anchors=tuple(pairs[m] for m in mask), mask=tuple(mask), classes=_int(opts, "classes", where, 80)
                )
            )
        else:
            raise DarknetCfgError(
                f"{where}: section type [{name}] is not supported; supported: {', '.join(_SUPPORTED)}"
            )
    return DarknetSpec(net=net, layers=tuple(layers), source=source)


def read_darknet_cfg(path_or_url: str) -> DarknetSpec:
    """Read and parse a ``.cfg`` from a local path or fsspec URL (``s3://…``)."""
    import fsspec

    from models.checkpoints import redact_uri

    source = redact_uri(path_or_url)
    try:
        with fsspec.open(str(path_or_url), "r", encoding="utf-8") as f:
            text = f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise DarknetCfgError(f"darknet cfg not found: {source}") from None
    return parse_darknet_cfg(text, source)


#: YOLOv3's nine COCO anchors ``(w, h)`` in network-input pixels (darknet's ``yolov3-spp.cfg``); masks 6–8, 3–5,
#: 0–2 for strides 32, 16, 8.
YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))


def yolov3_spp_cfg(num_classes: int = 80, input_size: int = 608) -> str:
    """The standard darknet ``yolov3-spp.cfg`` layer list as cfg text (AlphaPose's
    ``detector/yolo/cfg/yolov3-spp.cfg``).

    Darknet-53 (layers 0–74: convs with stride-2 downsampling and residual ``shortcut from=-3`` pairs), an SPP
    block after three head convs (max-pools 5, 9, 13 at stride 1 and a route concatenating them with their input),
    and three YOLO heads at strides 32, 16 and 8 whose upsampling branches route back to layers 61 and 36. 114
    layers; YOLO layers 89, 101, 113. Training options are omitted. AlphaPose users can pass their own file instead
    (``read_darknet_cfg``); it parses to the same layer list.
    """
    out: list[str] = [f"[net]\nwidth={input_size}\nheight={input_size}\nchannels=3\n"]

    def conv(filters: int, size: int, stride: int = 1, bn: bool = True) -> None:
        out.append(
            "[convolutional]\n"
            + ("batch_normalize=1\n" if bn else "")
            + f"filters={filters}\nsize={size}\nstride={stride}\npad=1\n"
            + f"activation={'leaky' if bn else 'linear'}\n"
        )

    def residual(filters: int) -> None:
        conv(filters // 2, 1)
        conv(filters, 3)
        out.append("[shortcut]\nfrom=-3\nactivation=linear\n")

    def yolo(mask: str) -> None:
        anchors = ",  ".join(f"{w},{h}" for w, h in YOLOV3_ANCHORS)
        out.append(f"[yolo]\nmask = {mask}\nanchors = {anchors}\nclasses={num_classes}\nnum=9\n")

    head = 3 * (num_classes + 5)
    conv(32, 3)
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):  # darknet-53 stages
        conv(filters, 3, stride=2)
        for _ in range(blocks):
            residual(filters)
    conv(512, 1)
    conv(1024, 3)
    conv(512, 1)
    out.append("[maxpool]\nstride=1\nsize=5\n")  # SPP
    out.append("[route]\nlayers=-2\n")
    out.append("[maxpool]\nstride=1\nsize=9\n")
    out.append("[route]\nlayers=-4\n")
    out.append("[maxpool]\nstride=1\nsize=13\n")
    out.append("[route]\nlayers=-1,-3,-5,-6\n")
    for filters in (512, 1024, 512, 1024):
        conv(filters, 1 if filters == 512 else 3)
    conv(head, 1, bn=False)
    yolo("6,7,8")
    for filters, skip, mask in ((256, 61, "3,4,5"), (128, 36, "0,1,2")):
        out.append("[route]\nlayers = -4\n")
        conv(filters, 1)
        out.append("[upsample]\nstride=2\n")
        out.append(f"[route]\nlayers = -1, {skip}\n")
        for k in range(6):
            conv(filters if k % 2 == 0 else 2 * filters, 1 if k % 2 == 0 else 3)
        conv(head, 1, bn=False)
        yolo(mask)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------ network


def decode_yolo(raw: torch.Tensor, anchors_wh: torch.Tensor, stride_xy: tuple[float, float]) -> torch.Tensor:
    """Decode one YOLO head's conv output (AlphaPose's ``detector/yolo/util.py`` ``predict_transform``).

    Args:
        raw: float ``[B, A·(5 + C), G_h, G_w]``; channels grouped by anchor (darknet layout).
        anchors_wh: float ``[A, 2]`` anchor sizes in network-input pixels.
        stride_xy: network-input pixels per cell along x and y.
    Returns:
        float ``[B, G_h·G_w·A, 5 + C]`` rows ``(cx, cy, w, h, objectness, class probabilities…)``: centre and size
        in network-input pixels, objectness and class probabilities sigmoids (not multiplied). Row order is
        (cell row, cell column, anchor), as AlphaPose's ``predict_transform``.
    """
    b, ch, gh, gw = raw.shape
    a = anchors_wh.shape[0]
    attrs = ch // a
    p = raw.view(b, a, attrs, gh, gw).permute(0, 3, 4, 1, 2)  # [B, G_h, G_w, A, 5 + C]
    gy = torch.arange(gh, device=raw.device, dtype=raw.dtype).view(1, gh, 1, 1)
    gx = torch.arange(gw, device=raw.device, dtype=raw.dtype).view(1, 1, gw, 1)
    anchors = anchors_wh.to(device=raw.device, dtype=raw.dtype)
    cx = (torch.sigmoid(p[..., 0]) + gx) * stride_xy[0]
    cy = (torch.sigmoid(p[..., 1]) + gy) * stride_xy[1]
    w = torch.exp(p[..., 2]) * anchors[:, 0]
    h = torch.exp(p[..., 3]) * anchors[:, 1]
    out = torch.cat([torch.stack([cx, cy, w, h], dim=-1), torch.sigmoid(p[..., 4:])], dim=-1)
    return out.reshape(b, gh * gw * a, attrs)


class _ConvBlock(nn.Module):
    def __init__(self, in_channels: int, spec: ConvLayer) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            spec.filters,
            spec.size,
            stride=spec.stride,
            padding=spec.padding,
            bias=not spec.batch_normalize,
        )
        self.bn = nn.BatchNorm2d(spec.filters) if spec.batch_normalize else None
        # Darknet's leaky slope is 0.1, not PyTorch's default 0.01 (AlphaPose's ``create_modules``).
        self.act = nn.LeakyReLU(0.1) if spec.activation == "leaky" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class _MaxPool(nn.Module):
    def __init__(self, spec: MaxPoolLayer, padding_mode: Literal["zeros", "darknet"]) -> None:
        super().__init__()
        self.size, self.stride = spec.size, spec.stride
        total = spec.size - 1  # darknet's default padding: size − 1 in total, the smaller half before
        self.pad = (total // 2, total - total // 2, total // 2, total - total // 2)
        # "zeros": AlphaPose pads with zeros before MaxPool2d (``MaxPoolStride1``); "darknet": −inf, as darknet
        # itself (which trained the official weights) effectively does. They differ only where every value in a
        # border window is negative (LeakyReLU outputs can be).
        self.fill = 0.0 if padding_mode == "zeros" else float("-inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, self.pad, value=self.fill), self.size, self.stride)


class Darknet(nn.Module):
    """A darknet network built from a ``DarknetSpec``; ``forward`` returns all YOLO heads' decoded rows.

    Args:
        spec: from ``parse_darknet_cfg`` / ``read_darknet_cfg``.
        maxpool_padding: ``"zeros"`` (default, AlphaPose's SPP) or ``"darknet"`` (−inf padding, darknet's own).

    ``forward(x)`` takes float ``[B, 3, H, W]`` RGB in [0, 1] with H and W multiples of the largest stride (32 for
    YOLOv3) and returns float ``[B, R, 5 + C]`` (``decode_yolo`` rows of every head, concatenated in cfg order;
    R = 22,743 for a 608×608 input). ``layers[i]`` is darknet layer ``i``; parameters of convolutional layer ``i``
    are ``layers.i.conv.*`` and ``layers.i.bn.*``.
    """

    def __init__(self, spec: DarknetSpec, *, maxpool_padding: Literal["zeros", "darknet"] = "zeros") -> None:
        super().__init__()
        if maxpool_padding not in ("zeros", "darknet"):
            raise ValueError(f"maxpool_padding must be 'zeros' or 'darknet', got {maxpool_padding!r}")
        self.spec = spec
        self.layers = nn.ModuleList()
        channels: list[int] = []
        prev = spec.net.channels
        for i, layer in enumerate(spec.layers):
            if isinstance(layer, ConvLayer):
                self.layers.append(_ConvBlock(prev, layer))
                prev = layer.filters
            elif isinstance(layer, MaxPoolLayer):
                self.layers.append(_MaxPool(layer, maxpool_padding))
            elif isinstance(layer, RouteLayer):
                self.layers.append(nn.Identity())
                prev = sum(channels[j] for j in layer.sources)
            elif isinstance(layer, ShortcutLayer):
                if channels[layer.source] != prev:
                    raise DarknetCfgError(
                        f"{spec.source}: layer {i} shortcut adds {channels[layer.source]} to {prev} channels"
                    )
                self.layers.append(nn.Identity())
            elif isinstance(layer, YoloLayer):
                if prev != len(layer.anchors) * (5 + layer.classes):
                    raise DarknetCfgError(
                        f"{spec.source}: layer {i} yolo with {len(layer.anchors)} anchors and {layer.classes} "
                        f"classes needs {len(layer.anchors) * (5 + layer.classes)} input channels, found {prev}"
                    )
                self.layers.append(nn.Identity())
                self.register_buffer(f"anchors_{i}", torch.tensor(layer.anchors, dtype=torch.float32), persistent=False)
            else:  # UpsampleLayer: no parameters
                self.layers.append(nn.Identity())
            channels.append(prev)
        self.num_classes = next((l.classes for l in spec.layers if isinstance(l, YoloLayer)), 0)
        # Only outputs that a later route/shortcut reads are kept during forward: holding all 114 layer outputs
        # of a 608×608 batch would cost gigabytes.
        self._keep = frozenset(
            j
            for l in spec.layers
            for j in (l.sources if isinstance(l, RouteLayer) else (l.source,) if isinstance(l, ShortcutLayer) else ())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_h, in_w = x.shape[-2:]
        kept: dict[int, torch.Tensor] = {}
        heads: list[torch.Tensor] = []
        for i, (layer, module) in enumerate(zip(self.spec.layers, self.layers)):
            if isinstance(layer, RouteLayer):
                x = torch.cat([kept[j] for j in layer.sources], dim=1)
            elif isinstance(layer, ShortcutLayer):
                x = x + kept[layer.source]
            elif isinstance(layer, UpsampleLayer):
                x = F.interpolate(x, scale_factor=layer.stride, mode="nearest")
            elif isinstance(layer, YoloLayer):
                gh, gw = x.shape[-2:]
                heads.append(decode_yolo(x, getattr(self, f"anchors_{i}"), (in_w // gw, in_h // gh)))
            else:
                x = module(x)
            if i in self._keep:
                kept[i] = x
        return torch.cat(heads, dim=1)

    def conv_blocks(self) -> list[tuple[int, nn.Conv2d, nn.BatchNorm2d | None]]:
        """``(layer index, conv, bn or None)`` for every convolutional layer, in the order of the weights file."""
        return [(i, m.conv, m.bn) for i, m in enumerate(self.layers) if isinstance(m, _ConvBlock)]


# ------------------------------------------------------------------------------------------------ .weights files


@dataclass(frozen=True)
class LoadedDarknetWeights:
    """What ``read_darknet_weights`` loaded: source (credentials stripped), sha256 of the bytes, header fields."""

    source: str
    sha256: str
    version: tuple[int, int, int]
    seen: int
    num_floats: int


def _weight_tensors(model: Darknet) -> list[torch.Tensor]:
    """The tensors a darknet file stores, in file order (as AlphaPose's ``Darknet.load_weights`` reads them: bn
    bias, weight, mean, var, then conv)."""
    tensors: list[torch.Tensor] = []
    for _, conv, bn in model.conv_blocks():
        if bn is not None:
            tensors += [bn.bias, bn.weight, bn.running_mean, bn.running_var]
        else:
            tensors.append(conv.bias)
        tensors.append(conv.weight)
    return tensors


def read_darknet_weights(model: Darknet, path_or_url: str) -> LoadedDarknetWeights:
    """Load a darknet ``.weights`` file into ``model`` (in place).

    Args:
        model: a ``Darknet`` built from the cfg the file was trained with.
        path_or_url: local path or fsspec URL.
    Returns:
        ``LoadedDarknetWeights`` with the sha256 of the file's bytes.
    Raises:
        DarknetWeightsError: missing file, a header shorter than its version requires, or a float count that
            differs from what the cfg's convolutional layers need (the usual sign of a cfg/weights mismatch).
    """
    import fsspec

    from models.checkpoints import redact_uri

    source = redact_uri(path_or_url)
    try:
        with fsspec.open(str(path_or_url), "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise DarknetWeightsError(f"darknet weights not found: {source}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) < 12:
        raise DarknetWeightsError(f"{source}: {len(data)} bytes, too short for a darknet header")
    major, minor, revision = (int(v) for v in np.frombuffer(data, dtype="<i4", count=3))
    wide_seen = major * 10 + minor >= 2
    header = 20 if wide_seen else 16
    if len(data) < header:
        raise DarknetWeightsError(f"{source}: {len(data)} bytes, too short for a version {major}.{minor} header")
    seen = int(np.frombuffer(data, dtype="<i8" if wide_seen else "<i4", count=1, offset=12)[0])
    if (len(data) - header) % 4:
        raise DarknetWeightsError(f"{source}: {len(data) - header} bytes after the header, not whole float32s")
    floats = np.frombuffer(data, dtype="<f4", offset=header)
    tensors = _weight_tensors(model)
    needed = sum(t.numel() for t in tensors)
    if floats.size != needed:
        raise DarknetWeightsError(
            f"{source}: holds {floats.size} float32 values after the header but the cfg "
            f"({model.spec.source}) needs {needed}: the weights belong to a different cfg"
        )
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(torch.from_numpy(floats[offset : offset + n].copy()).view_as(t))
            offset += n
    logger.info(
        "loaded darknet weights %s (v%d.%d.%d, sha256 %s) into %s",
        source,
        major,
        minor,
        revision,
        digest[:12],
        model.spec.source,
    )
    return LoadedDarknetWeights(
        source=source, sha256=digest, version=(major, minor, revision), seen=seen, num_floats=int(floats.size)
    )


def write_darknet_weights(
    model: Darknet, path_or_file: str | BinaryIO, *, version: tuple[int, int, int] = (0, 2, 0), seen: int = 0
) -> str:
    """Write ``model``'s weights in darknet's binary format (the inverse of ``read_darknet_weights``).

    Args:
        model: the network.
        path_or_file: local path, fsspec URL, or a binary file object.
        version: header ``(major, minor, revision)``; ``seen`` is written as int64 when ``major·10 + minor ≥ 2``.
        seen: images seen in training (header field, unused at inference).
    Returns:
        sha256 of the bytes written.
    """
    buf = io.BytesIO()
    buf.write(np.asarray(version, dtype="<i4").tobytes())
    wide = version[0] * 10 + version[1] >= 2
    buf.write(np.asarray([seen], dtype="<i8" if wide else "<i4").tobytes())
    for t in _weight_tensors(model):
        buf.write(t.detach().cpu().numpy().astype("<f4", copy=False).tobytes())
    data = buf.getvalue()
    if isinstance(path_or_file, (str, bytes)) or hasattr(path_or_file, "__fspath__"):
        import fsspec

        with fsspec.open(str(path_or_file), "wb") as f:
            f.write(data)
    else:
        path_or_file.write(data)
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- letterbox and NMS


@dataclass(frozen=True)
class Letterbox:
    """Where a frame went in the square network input: forward (integer) placement and inverse (float32) mapping.

    ``content_xywh`` is the pasted region ``(x0, y0, new_w, new_h)`` (integers, as ``letterbox_image``); ``scale``
    and ``offset_xy`` are the float32 inverse parameters of AlphaPose's ``YOLODetector.images_detection``:
    ``image = (letterbox − offset) / scale``.
    """

    size: int
    frame_wh: tuple[int, int]
    content_xywh: tuple[int, int, int, int]
    scale: float
    offset_xy: tuple[float, float]


def _letterbox_geometry(frame_wh: tuple[int, int], size: int) -> Letterbox:
    w, h = frame_wh
    r = min(size / w, size / h)
    new_w, new_h = int(w * r), int(h * r)  # floor, as AlphaPose
    x0, y0 = (size - new_w) // 2, (size - new_h) // 2
    # AlphaPose maps back with float32 tensors: ``608 / im_dim`` (which PyTorch evaluates as reciprocal × 608, one
    # rounding each: 1.2160001 for W = 500, hence AlphaPose's x offset of −3e−5 for a 500×375 frame), offsets
    # (S − scale·W)/2 in float32.
    s = min(np.float32(1) / np.float32(w) * np.float32(size), np.float32(1) / np.float32(h) * np.float32(size))
    ox = (np.float32(size) - s * np.float32(w)) / np.float32(2)
    oy = (np.float32(size) - s * np.float32(h)) / np.float32(2)
    return Letterbox(
        size=size,
        frame_wh=(w, h),
        content_xywh=(x0, y0, new_w, new_h),
        scale=float(s),
        offset_xy=(float(ox), float(oy)),
    )


def letterbox(frame_rgb: np.ndarray, size: int = 608) -> tuple[np.ndarray, Letterbox]:
    """AlphaPose's letterbox (``detector/yolo/preprocess.py`` ``letterbox_image``): cubic resize to fit, paste
    centred on a 128-grey square.

    Args:
        frame_rgb: uint8 ``[H, W, 3]`` (channel order is kept; resizing is per channel).
        size: network input side (608 in AlphaPose; a multiple of 32).
    Returns:
        ``(canvas, geometry)``: uint8 ``[size, size, 3]`` and the ``Letterbox`` to map boxes back.
    """
    import cv2

    h, w = frame_rgb.shape[:2]
    geo = _letterbox_geometry((w, h), size)
    x0, y0, new_w, new_h = geo.content_xywh
    canvas = np.full((size, size, 3), 128, dtype=np.uint8)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = cv2.resize(
        np.ascontiguousarray(frame_rgb), (new_w, new_h), interpolation=cv2.INTER_CUBIC
    )
    return canvas, geo


def letterbox_to_image(boxes_xyxy: np.ndarray, geo: Letterbox) -> np.ndarray:
    """Letterbox-pixel boxes → frame pixels (as AlphaPose's ``YOLODetector.images_detection``), clamped to
    ``[0, W] × [0, H]``.

    Args:
        boxes_xyxy: float ``[N, 4]`` in network-input pixels.
        geo: the frame's ``Letterbox``.
    Returns:
        float32 ``[N, 4]`` in frame pixels (N = 0 gives ``[0, 4]``).
    """
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
    off = np.asarray(geo.offset_xy * 2, dtype=np.float32)  # (ox, oy, ox, oy)
    b = (b - off) / np.float32(geo.scale)
    w, h = geo.frame_wh
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b.astype(np.float32, copy=False)


def nms_plus_one(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS with AlphaPose's +1-pixel areas (``detector/nms/src/nms_cpu.cpp``), computed in float32 on the CPU.

    ``area = (x2 − x1 + 1)·(y2 − y1 + 1)``, intersection ``max(0, xx2 − xx1 + 1)·max(0, yy2 − yy1 + 1)``; a box is
    suppressed by a higher-scored kept box when ``IoU ≥ iou_threshold`` (≥, not torchvision's >). Equal scores
    keep input order (stable sort). Memory is O(N): each kept box is compared with the boxes after it.

    Args:
        boxes_xyxy: float ``[N, 4]``.
        scores: float ``[N]``.
        iou_threshold: suppression threshold.
    Returns:
        int64 ``[K]`` indices into the input, in descending score order (empty for N = 0).
    """
    b = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = np.argsort(-s, kind="stable")
    b = b[order]
    one = np.float32(1)
    areas = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    thr = np.float32(iou_threshold)
    suppressed = np.zeros(len(b), dtype=bool)
    keep: list[int] = []
    for i in range(len(b)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.arange(i + 1, len(b))[~suppressed[i + 1 :]]
        if rest.size == 0:
            break
        iw = np.maximum(np.float32(0), np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]) + one)
        ih = np.maximum(np.float32(0), np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]) + one)
        inter = iw * ih
        with np.errstate(invalid="ignore"):  # inf − inf from exp-overflowing random-weight boxes: never suppress
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou >= thr]] = True
    return order[np.asarray(keep, dtype=np.int64)].astype(np.int64)


def yolo_person_boxes(
    rows: torch.Tensor, *, confidence: float = 0.1, nms_iou: float = 0.6, person_class: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One image's decoded YOLO rows → person boxes in letterbox pixels (AlphaPose's ``YOLODetector.write_results``).

    Keeps rows with objectness > ``confidence`` (strict) whose argmax class is ``person_class``, then NMS
    (``nms_plus_one``) in objectness order. The score is the objectness alone (``dets[:, 5:6]`` in AlphaPose's
    ``alphapose/utils/detector.py``).

    Deviation from AlphaPose: the NMS threshold is always ``nms_iou``. AlphaPose re-runs NMS at ``nms_iou − 0.05``
    for every image of a detection batch when the batch holds more than 100 detections
    (``YOLODetector.dynamic_write_results``), so an image's boxes depend on which frames share its batch (and on
    padding copies). Ray Data batches are arbitrary, so raypose processes every image on its own; results are
    reproducible per frame.

    Args:
        rows: float ``[R, 5 + C]`` from ``Darknet.forward`` for one image (``cx, cy, w, h`` in letterbox pixels).
        confidence: objectness threshold (AlphaPose 0.1; 0.3 when tracking).
        nms_iou: suppression IoU (AlphaPose 0.6).
        person_class: index of "person" among the classes (0 in COCO-80).
    Returns:
        ``boxes_xyxy`` float32 ``[N, 4]`` (letterbox pixels, unclamped) and ``scores`` float32 ``[N]``, objectness
        descending.
    """
    obj = rows[:, 4]
    rows = rows[obj > confidence]
    if rows.shape[0]:
        # torch.max returns the first maximal index, as AlphaPose's argmax over σ(class logits) (``write_results``).
        cls = rows[:, 5:].max(dim=1).indices
        rows = rows[cls == person_class]
    r = rows[:, :5].float().cpu().numpy()
    half_w, half_h = r[:, 2] / 2, r[:, 3] / 2
    boxes = np.stack([r[:, 0] - half_w, r[:, 1] - half_h, r[:, 0] + half_w, r[:, 1] + half_h], axis=1)
    scores = r[:, 4]
    keep = nms_plus_one(boxes, scores, nms_iou)  # AlphaPose runs this NMS on the CPU too (``nms_wrapper.nms``)
    return boxes[keep].astype(np.float32).reshape(-1, 4), scores[keep].astype(np.float32)
