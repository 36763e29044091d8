"""HRNet-W32 pose network, checkpoint-compatible with AlphaPose's ``PoseHighResolutionNet``.

Paper: K. Sun, B. Xiao, D. Liu, J. Wang, "Deep High-Resolution Representation Learning for Human Pose Estimation",
CVPR 2019. Architecture and state-dict layout as AlphaPose's ``alphapose/models/hrnet.py`` (class
``PoseHighResolutionNet``, with ``HighResolutionModule``, ``BasicBlock`` and ``Bottleneck``; commit ef2a060) built
from ``configs/coco/hrnet/256x192_w32_lr1e-3.yaml``:

* stem: two 3×3 stride-2 convs (3→64→64, each + BN + ReLU), then ``layer1``: four Bottlenecks at 64 planes
  (256 channels out, a 1×1 projection shortcut in block 0), at 1/4 of the input resolution;
* stages 2, 3, 4 with 2, 3, 4 parallel branches of 32, 64, 128, 256 channels (BasicBlocks, 4 per branch per
  module; 1, 4, 3 modules), each branch at half the resolution of the one before it;
* ``transitionN``: a 3×3 conv + BN + ReLU where a branch's width changes (only 256→32 into stage 2), and a stride-2
  3×3 conv + BN + ReLU from the lowest-resolution branch to start each new branch;
* fusion after every module: branch j into branch i by a 1×1 conv + BN + nearest upsampling ×2^(j−i) (j > i), or
  by i−j stride-2 3×3 convs + BN (ReLU between them, none after the last) (j < i); summed, then ReLU. The last
  module of stage 4 fuses into the highest-resolution branch only;
* ``final_layer``: a 1×1 conv (``FINAL_CONV_KERNEL: 1``, with bias) from the 32-channel branch to K heatmaps.

With a [N, 3, 256, 192] input the heatmaps are [N, K, 64, 48] (the stride-4 branch; ``HEATMAP_SIZE`` of the YAML).
Input is normalised as ``models.transforms.normalize_crops`` (/255 minus AlphaPose's per-channel means).

The attribute names (``conv1``, ``bn1``, ``layer1``, ``transition1..3``, ``stage2..4``, ``branches``,
``fuse_layers``, ``final_layer`` and the Sequential indices inside them) are the state-dict keys of AlphaPose's
checkpoints; keep them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "HighResolutionModule",
    "HRStage",
    "PoseHighResolutionNet",
    "hrnet_w32",
]

#: BatchNorm momentum of AlphaPose's hrnet.py (``BN_MOMENTUM = 0.1``, also PyTorch's default).
BN_MOMENTUM = 0.1


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """1×1 conv + BN shortcut (keys ``downsample.0.weight``, ``downsample.1.*``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM),
    )


class BasicBlock(nn.Module):
    """Residual block of two 3×3 convs (AlphaPose hrnet.py ``BasicBlock``)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 residual block with expansion 4 (AlphaPose hrnet.py ``Bottleneck``)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def _res_layer(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """``blocks`` residual blocks at stride 1; a projection shortcut in block 0 when the width changes."""
    out_ch = planes * block.expansion
    downsample = _projection(inplanes, out_ch, 1) if inplanes != out_ch else None
    layers = [block(inplanes, planes, 1, downsample)]
    layers += [block(out_ch, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """One HRNet module: a residual chain per branch, then multi-resolution fusion (AlphaPose hrnet.py
    ``HighResolutionModule``, ``FUSE_METHOD: 'SUM'``).

    Args:
        block: residual block class of every branch.
        num_blocks: blocks per branch.
        in_channels: channels entering each branch.
        channels: planes of each branch (its output width is ``planes * block.expansion``).
        multi_scale_output: fuse into every branch (True) or into branch 0 only (the last module of the last stage).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, ...],
        in_channels: tuple[int, ...],
        channels: tuple[int, ...],
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        if not len(num_blocks) == len(in_channels) == len(channels):
            raise ValueError(
                f"branch counts differ: num_blocks {num_blocks}, in_channels {in_channels}, channels {channels}"
            )
        self.num_branches = len(channels)
        self.out_channels = tuple(c * block.expansion for c in channels)
        self.branches = nn.ModuleList(
            _res_layer(block, cin, c, n) for cin, c, n in zip(in_channels, channels, num_blocks)
        )
        self.fuse_layers = self._make_fuse_layers(multi_scale_output) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def _make_fuse_layers(self, multi_scale_output: bool) -> nn.ModuleList:
        ch = self.out_channels
        targets = range(self.num_branches) if multi_scale_output else range(1)
        fuse = nn.ModuleList()
        for i in targets:
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:  # lower resolution → 1×1 conv, BN (default momentum), nearest upsampling
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(ch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)  # identity; AlphaPose stores None here (no keys)
                else:  # higher resolution → (i−j) stride-2 3×3 convs; width ch[j] until the last, ReLU between
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out = ch[i] if last else ch[j]
                        mods: list[nn.Module] = [nn.Conv2d(ch[j], out, 3, 2, 1, bias=False), nn.BatchNorm2d(out)]
                        if not last:
                            mods.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*mods))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        return fuse

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            # summed in branch order 0, 1, 2, … as AlphaPose (same floating-point rounding)
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_branches):
                y = y + (xs[j] if j == i else row[j](xs[j]))
            fused.append(self.relu(y))
        return fused


@dataclass(frozen=True)
class HRStage:
    """One stage of the YAML's ``MODEL.STAGEn`` (``NUM_BRANCHES`` is ``len(num_channels)``; ``FUSE_METHOD`` SUM)."""

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    block: str = "BASIC"


def _transition(pre: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """AlphaPose's ``_make_transition_layer``: keep, re-width (3×3 conv, BN, ReLU) or create branches (stride-2 3×3
    convs from the last branch; only the last of them changes the width)."""
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(pre):
            if c != pre[i]:
                layers.append(
                    nn.Sequential(nn.Conv2d(pre[i], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
                )
            else:
                layers.append(None)  # pass-through; no keys
        else:
            steps = []
            n_new = i + 1 - len(pre)
            for k in range(n_new):
                out = c if k == n_new - 1 else pre[-1]
                steps.append(
                    nn.Sequential(
                        nn.Conv2d(pre[-1], out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)
                    )
                )
            layers.append(nn.Sequential(*steps))
    return layers


class PoseHighResolutionNet(nn.Module):
    """HRNet for top-down pose (AlphaPose's ``PoseHighResolutionNet``; Sun et al., CVPR 2019).

    Args:
        num_joints: K, heatmap channels (``DATA_PRESET.NUM_JOINTS``).
        stages: stages 2, 3 and 4 (``MODEL.STAGE2..4``).
        final_conv_kernel: ``MODEL.FINAL_CONV_KERNEL`` (1 or 3).
    """

    def __init__(self, *, num_joints: int, stages: tuple[HRStage, HRStage, HRStage], final_conv_kernel: int) -> None:
        super().__init__()
        if num_joints < 1:
            raise ValueError(f"num_joints must be positive, got {num_joints}")
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"final_conv_kernel must be 1 or 3, got {final_conv_kernel}")
        self.num_joints = num_joints
        # stem: two stride-2 3×3 convs, then four Bottlenecks at 64 planes (256 channels)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _res_layer(Bottleneck, 64, 64, 4)

        pre: tuple[int, ...] = (64 * Bottleneck.expansion,)
        for n, spec in enumerate(stages, start=2):
            block = _BLOCKS[spec.block]
            cur = tuple(c * block.expansion for c in spec.num_channels)
            setattr(self, f"transition{n - 1}", _transition(pre, cur))
            modules = []
            in_ch = cur
            for m in range(spec.num_modules):
                multi_scale = n != 4 or m != spec.num_modules - 1
                mod = HighResolutionModule(block, spec.num_blocks, in_ch, spec.num_channels, multi_scale)
                in_ch = mod.out_channels
                modules.append(mod)
            setattr(self, f"stage{n}", nn.Sequential(*modules))
            pre = in_ch
        self.final_layer = nn.Conv2d(
            pre[0], num_joints, kernel_size=final_conv_kernel, stride=1, padding=final_conv_kernel // 2
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """AlphaPose's ``_initialize`` without a pretrained file: conv weights N(0, 0.001), biases 0, BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _enter(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = []
        for i, layer in enumerate(transition):
            if i < len(ys):
                xs.append(ys[i] if layer is None else layer(ys[i]))
            else:  # a new branch grows from the lowest-resolution one
                xs.append(layer(ys[-1]))
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        ys = self.stage2(self._enter(self.transition1, ys))
        ys = self.stage3(self._enter(self.transition2, ys))
        ys = self.stage4(self._enter(self.transition3, ys))
        return self.final_layer(ys[0])


def hrnet_w32(*, num_joints: int = 17) -> PoseHighResolutionNet:
    """HRNet-W32 at 256×192 as AlphaPose's ``configs/coco/hrnet/256x192_w32_lr1e-3.yaml`` builds it.

    [N, 3, 256, 192] → [N, num_joints, 64, 48]. 28,536,113 parameters with 17 joints (the paper, Table 1: 28.5M).
    """
    return PoseHighResolutionNet(
        num_joints=num_joints,  # DATA_PRESET.NUM_JOINTS: 17 (line 27)
        final_conv_kernel=1,  # MODEL.FINAL_CONV_KERNEL: 1 (line 39)
        stages=(
            # STAGE2 (lines 41-47): NUM_MODULES 1, NUM_BRANCHES 2, NUM_BLOCKS [4, 4], NUM_CHANNELS [32, 64], BASIC
            HRStage(num_modules=1, num_blocks=(4, 4), num_channels=(32, 64), block="BASIC"),
            # STAGE3 (lines 48-54): NUM_MODULES 4, NUM_BRANCHES 3, NUM_BLOCKS [4, 4, 4], NUM_CHANNELS [32, 64, 128]
            HRStage(num_modules=4, num_blocks=(4, 4, 4), num_channels=(32, 64, 128), block="BASIC"),
            # STAGE4 (lines 55-61): NUM_MODULES 3, NUM_BRANCHES 4, NUM_BLOCKS [4]*4, NUM_CHANNELS [32, 64, 128, 256]
            HRStage(num_modules=3, num_blocks=(4, 4, 4, 4), num_channels=(32, 64, 128, 256), block="BASIC"),
        ),
    )
