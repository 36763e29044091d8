"""HarDNet-68 and HarDNet-85 pose networks, checkpoint-compatible with AlphaPose's ``HarDNetPose``.

Paper: P. Chao, C.-Y. Kao, Y.-S. Ruan, C.-H. Huang, Y.-L. Lin, "HarDNet: A Low Memory Traffic Network", ICCV 2019.
Architecture and state-dict layout as AlphaPose's ``alphapose/models/hardnet.py`` (classes ``HarDNetPose``,
``HarDNetBase``, ``HarDBlock``, ``ConvLayer``; commits 0ec9756 and 9665cc4, whose only difference is a
``norm_layer`` argument defaulting to ``nn.BatchNorm2d``), as built by the configs
``configs/coco/hardnet/256x192_hard68_lr1e-3_1x.yaml``, ``configs/coco/hardnet/256x192_hard85_lr1e-3_1x.yaml`` and
``configs/halpe_136/hardnet/256x192_hard68_lr1e-3_1x.yaml``.

Harmonic dense block (``HarDBlock``): layer k (1-based) reads the concatenation of layers k−1, k−2, k−4, …, k−2^n
(every 2^n dividing k; layer 0 is the block input), in that order; its width is growth_rate × grmul^n (n = number of
such links minus one) rounded to an even integer. The block outputs the concatenation of the odd layers and the last
one (not its input). Every layer is a 3×3 conv (no bias) + BN + ReLU (``ConvLayer``: keys ``conv.*``, ``norm.*``).

The pose network (a CenterNet/FC-HarDNet-style encoder–decoder):

* ``base``: AlphaPose's ``HarDNetBase(arch).base`` list as is, parameter-free AvgPool2d entries included (they fix
  the indices in the keys): 3×3/2 conv, 3×3 conv, avg-pool 3×3/2, then per stage a HarDBlock, a 1×1 transition
  conv (none after the last) and average pools after stage 0 (ceil mode) and after stage i ∉ {1, 3, last}. No
  ImageNet classifier head is built, so there are no pretraining-only parameters.
* skip outputs at ``base`` indices (1, 3, 8, 11) (HarDNet-68; 64, 124, 328, 654 channels) or (1, 3, 8, 13)
  (HarDNet-85; 96, 214, 458, 784 channels), at strides 2, 4, 8, 16;
* ``last_proj`` (1×1 conv) → ``last_pool`` (2×2 average, stride 32) → [x, avg9×9(x), x / (Σ_hw x + 0.1)] →
  ``last_blk``;
* three up steps: bilinear (align_corners=True) resize to the skip, concatenation with the skip (the first two
  steps for HarDNet-68, all three for HarDNet-85), ``conv1x1_up[i]``, the last ``SC[i]`` channels split off as a
  shortcut, [x, avg9×9(x), x / (Σ_hw x + 0.1)] → ``denseBlocksUp[i]``;
* the shortcuts resized to the final map, concatenated as [sc1, sc0, x], then ``conv_out``: 3×3 conv (bias) to
  max(128, 4K) channels → ReLU → 1×1 conv (``FINAL_CONV_KERNEL: 1``, bias) to K heatmaps.

AlphaPose's parameter-free ``transUpBlocks`` (``TransitionUp``) are plain resizes here; they have no keys. The YAMLs'
``DOWN_RATIO: 4`` (only feeding an unused ``scales`` list) and ``TRT: False`` (only read by ``v2_transform``, a
speed-only re-parameterisation not applied at load time) do not change the network.

With a [N, 3, 256, 192] input (normalised as ``models.transforms.normalize_crops``) both nets return heatmaps
[N, K, 64, 48] (the stride-4 resolution of the second skip, ``HEATMAP_SIZE`` of the YAMLs).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvLayer",
    "HarDBlock",
    "HarDNetSpec",
    "HarDNetPose",
    "HARDNET68",
    "HARDNET85",
    "hardblock_layer",
    "hardnet68",
    "hardnet85",
]

#: BatchNorm momentum of AlphaPose's hardnet.py (``BN_MOMENTUM = 0.1``, also PyTorch's default).
BN_MOMENTUM = 0.1


class ConvLayer(nn.Sequential):
    """conv (no bias, 'same' padding) → BN → ReLU; keys ``conv.weight``, ``norm.*`` (AlphaPose's ``ConvLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.add_module(
            "conv", nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
        )
        self.add_module("norm", nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM))
        self.add_module("relu", nn.ReLU(inplace=True))


@cache
def hardblock_layer(layer: int, base_ch: int, growth_rate: int, grmul: float) -> tuple[int, int, tuple[int, ...]]:
    """(out_channels, in_channels, links) of layer ``layer`` of a harmonic dense block (AlphaPose's
    ``HarDBlock.get_link``).

    Layer 0 is the block input (``base_ch`` channels). Layer k links to k − 2^i for every 2^i dividing k (i < 10),
    nearest first; its width is growth_rate multiplied by grmul once per link beyond the first (left to right, in
    floating point, as AlphaPose), then ``int(int(w + 1) / 2) * 2``.
    """
    if layer == 0:
        return base_ch, 0, ()
    links = tuple(layer - 2**i for i in range(10) if layer % 2**i == 0)
    width = growth_rate
    for _ in links[1:]:
        width = width * grmul
    out_ch = int(int(width + 1) / 2) * 2
    in_ch = sum(hardblock_layer(k, base_ch, growth_rate, grmul)[0] for k in links)
    return out_ch, in_ch, links


class HarDBlock(nn.Module):
    """Harmonic dense block (Chao et al., ICCV 2019, Sec. 3; AlphaPose's ``HarDBlock`` with ``keepBase=False``,
    ``dwconv=False``): ``layers.{j}`` are ``ConvLayer`` 3×3s; the output concatenates layers 1, 3, 5, … and the last.
    """

    def __init__(self, in_channels: int, growth_rate: int, grmul: float, n_layers: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.links: list[tuple[int, ...]] = []
        layers = []
        self.out_channels = 0
        for k in range(1, n_layers + 1):
            out_ch, in_ch, links = hardblock_layer(k, in_channels, growth_rate, grmul)
            self.links.append(links)
            layers.append(ConvLayer(in_ch, out_ch))
            if k % 2 == 1 or k == n_layers:
                self.out_channels += out_ch
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for links, layer in zip(self.links, self.layers):
            inp = outs[links[0]] if len(links) == 1 else torch.cat([outs[k] for k in links], 1)
            outs.append(layer(inp))
        last = len(outs) - 1
        return torch.cat([t for k, t in enumerate(outs) if k % 2 == 1 or k == last], 1)


@dataclass(frozen=True)
class HarDNetSpec:
    """The per-depth constants of AlphaPose's ``HarDNetBase.__init__`` and ``HarDNetPose.__init__``."""

    # encoder (HarDNetBase)
    first_ch: tuple[int, int]
    ch_list: tuple[int, ...]  # 1×1 transition widths after each block but the last
    grmul: float
    gr: tuple[int, ...]
    n_layers: tuple[int, ...]
    # decoder (HarDNetPose)
    last_proj: tuple[int, int]  # (in, out) of the 1×1 projection of the last encoder output
    last_blk: tuple[int, int, int]  # (in_channels, growth_rate, n_layers), grmul 1.7
    skip_nodes: tuple[int, int, int, int]  # indices into ``base`` whose outputs are kept
    skip_channels: tuple[int, int, int, int]  # AlphaPose's ``channels``: widths of those outputs
    sc: tuple[int, int, int]  # channels split off after each ``conv1x1_up``
    up_gr: tuple[int, int, int]
    up_layers: tuple[int, int, int]
    up_widths: tuple[int, int, int]  # AlphaPose's ``ch_list2`` (SC included)
    skip_lv: int  # the first ``skip_lv`` up steps concatenate their skip


#: AlphaPose hardnet.py, ``HarDNetBase`` ``arch == 68`` and ``HarDNetPose`` ``cfg['NUM_LAYERS'] == 68``.
HARDNET68 = HarDNetSpec(
    first_ch=(32, 64),
    ch_list=(128, 256, 320, 640),
    grmul=1.7,
    gr=(14, 16, 20, 40),
    n_layers=(8, 16, 16, 16),
    last_proj=(654, 192),
    last_blk=(576, 72, 8),
    skip_nodes=(1, 3, 8, 11),
    skip_channels=(64, 124, 328, 654),
    sc=(32, 32, 0),
    up_gr=(48, 32, 20),
    up_layers=(8, 8, 4),
    up_widths=(224 + 32, 96 + 32, 64 + 0),
    skip_lv=2,
)

#: AlphaPose hardnet.py, ``HarDNetBase`` ``arch == 85`` and ``HarDNetPose`` ``cfg['NUM_LAYERS'] == 85``.
HARDNET85 = HarDNetSpec(
    first_ch=(48, 96),
    ch_list=(192, 256, 320, 480, 720),
    grmul=1.7,
    gr=(24, 24, 28, 36, 48),
    n_layers=(8, 16, 16, 16, 16),
    last_proj=(784, 256),
    last_blk=(768, 80, 8),
    skip_nodes=(1, 3, 8, 13),
    skip_channels=(96, 214, 458, 784),
    sc=(32, 32, 0),
    up_gr=(64, 48, 28),
    up_layers=(8, 8, 4),
    up_widths=(224 + 32, 160 + 32, 96 + 0),
    skip_lv=3,
)

_ARCHS = {68: HARDNET68, 85: HARDNET85}


def _hardnet_base(spec: HarDNetSpec) -> nn.ModuleList:
    """AlphaPose's ``HarDNetBase(arch).base`` (``depth_wise=False``), pools included so indices match."""
    base = nn.ModuleList()
    base.append(ConvLayer(3, spec.first_ch[0], kernel=3, stride=2))
    base.append(ConvLayer(spec.first_ch[0], spec.first_ch[1], kernel=3))
    base.append(nn.AvgPool2d(kernel_size=3, stride=2, padding=1))
    ch = spec.first_ch[1]
    last = len(spec.n_layers) - 1
    for i, (gr, n) in enumerate(zip(spec.gr, spec.n_layers)):
        blk = HarDBlock(ch, gr, spec.grmul, n)
        base.append(blk)
        ch = blk.out_channels
        if i != last:
            base.append(ConvLayer(ch, spec.ch_list[i], kernel=1))
            ch = spec.ch_list[i]
        if i == 0:
            base.append(nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True))
        elif i not in (1, 3, last):
            base.append(nn.AvgPool2d(kernel_size=2, stride=2))
    return base


class HarDNetPose(nn.Module):
    """HarDNet encoder–decoder for heatmaps (AlphaPose's ``HarDNetPose``; Chao et al., ICCV 2019).

    Args:
        arch: 68 or 85 (``MODEL.NUM_LAYERS``).
        num_joints: K, heatmap channels (``DATA_PRESET.NUM_JOINTS``); ``conv_out`` is max(128, 4K) wide.
        final_conv_kernel: ``MODEL.FINAL_CONV_KERNEL`` (odd).
    """

    def __init__(self, *, arch: int, num_joints: int, final_conv_kernel: int) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"HarDNet arch must be one of {sorted(_ARCHS)}, got {arch}")
        if num_joints < 1:
            raise ValueError(f"num_joints must be positive, got {num_joints}")
        if final_conv_kernel % 2 != 1:
            raise ValueError(f"final_conv_kernel must be odd, got {final_conv_kernel}")
        spec = _ARCHS[arch]
        self.arch = arch
        self.num_joints = num_joints
        self.skip_nodes = spec.skip_nodes
        self.SC = spec.sc
        self.skip_lv = spec.skip_lv

        self.base = _hardnet_base(spec)
        self.last_pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.last_proj = ConvLayer(*spec.last_proj, kernel=1)
        self.last_blk = HarDBlock(spec.last_blk[0], spec.last_blk[1], 1.7, spec.last_blk[2])
        self.avg9x9 = nn.AvgPool2d(kernel_size=9, stride=1, padding=4)  # count_include_pad=True, as AlphaPose

        self.conv1x1_up = nn.ModuleList()
        self.denseBlocksUp = nn.ModuleList()
        prev_ch = self.last_blk.out_channels
        for i in range(3):
            cur_ch = prev_ch + spec.skip_channels[3 - i] if i < spec.skip_lv else prev_ch
            self.conv1x1_up.append(ConvLayer(cur_ch, spec.up_widths[i], kernel=1))
            blk = HarDBlock((spec.up_widths[i] - spec.sc[i]) * 3, spec.up_gr[i], 1.7, spec.up_layers[i])
            self.denseBlocksUp.append(blk)
            prev_ch = blk.out_channels
        prev_ch += sum(spec.sc)

        head = max(128, 4 * num_joints)
        self.conv_out = nn.Sequential(
            nn.Conv2d(prev_ch, head, kernel_size=3, padding=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(head, num_joints, kernel_size=final_conv_kernel, padding=final_conv_kernel // 2, bias=True),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """AlphaPose's constructor-time init: decoder convs and ``conv_out`` Kaiming-uniform (ReLU gain), biases 0,
        the heatmap bias −2.19; the encoder keeps PyTorch's defaults."""
        for part in (self.denseBlocksUp, self.conv1x1_up, self.last_blk, self.last_proj, self.conv_out):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.constant_(self.conv_out[-1].bias, -2.19)

    def _context(self, x: torch.Tensor) -> torch.Tensor:
        """[x, 9×9 local mean, x normalised by its spatial sum + 0.1] along channels."""
        return torch.cat([x, self.avg9x9(x), x / (x.sum((2, 3), keepdim=True) + 0.1)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, layer in enumerate(self.base):
            x = layer(x)
            if i in self.skip_nodes:
                skips.append(x)
        x = self.last_blk(self._context(self.last_pool(self.last_proj(x))))

        shortcuts = []
        for i in range(3):
            skip = skips[3 - i]
            x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
            if i < self.skip_lv:
                x = torch.cat([x, skip], 1)
            x = self.conv1x1_up[i](x)
            sc = self.SC[i]
            if sc > 0:
                shortcuts.append(x[:, -sc:])
                x = x[:, :-sc]
            x = self.denseBlocksUp[i](self._context(x))

        size = x.shape[2:]
        resized = [F.interpolate(s, size=size, mode="bilinear", align_corners=True) for s in shortcuts]
        x = torch.cat([*reversed(resized), x], 1)
        return self.conv_out(x)


def hardnet68(*, num_joints: int = 17) -> HarDNetPose:
    """HarDNet-68 pose net as ``configs/coco/hardnet/256x192_hard68_lr1e-3_1x.yaml`` builds it (with
    ``num_joints=136``, ``configs/halpe_136/hardnet/256x192_hard68_lr1e-3_1x.yaml``: only ``conv_out`` changes).

    [N, 3, 256, 192] → [N, num_joints, 64, 48]. 20,241,145 parameters with 17 joints (20,920,016 with 136).
    """
    return HarDNetPose(
        arch=68,  # MODEL.NUM_LAYERS: 68 (line 40); DOWN_RATIO: 4 (41) and TRT: False (42) change no layer
        num_joints=num_joints,  # DATA_PRESET.NUM_JOINTS: 17 (line 27; 136 in the halpe_136 YAML, line 27)
        final_conv_kernel=1,  # MODEL.FINAL_CONV_KERNEL: 1 (line 39)
    )


def hardnet85(*, num_joints: int = 17) -> HarDNetPose:
    """HarDNet-85 pose net as ``configs/coco/hardnet/256x192_hard85_lr1e-3_1x.yaml`` builds it.

    [N, 3, 256, 192] → [N, num_joints, 64, 48]. 36,674,665 parameters with 17 joints.
    """
    return HarDNetPose(
        arch=85,  # MODEL.NUM_LAYERS: 85 (line 40); DOWN_RATIO: 4 (41) and TRT: False (42) change no layer
        num_joints=num_joints,  # DATA_PRESET.NUM_JOINTS: 17 (line 27)
        final_conv_kernel=1,  # MODEL.FINAL_CONV_KERNEL: 1 (line 39)
    )
