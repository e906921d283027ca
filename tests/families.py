"""Small models of the families people download as CIFAR model files, written the way those files are written.

Each class takes only ``num_classes=10`` (3 input channels are hard-coded, CIFAR style; no ``in_channels``), so they
stand for a user's own ``MyNet()`` with a plain ``torch.save(model.state_dict(), ...)`` checkpoint. Widths and depths
are reduced (a forward pass on 32x32 takes milliseconds) but each keeps its family's characteristic structure:

- ``MobileNetV1``: depthwise separable blocks (3x3 depthwise conv + 1x1 pointwise conv), no residuals.
- ``MobileNetV2``: inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 project), identity skip when the shape
  is kept, a 1x1-conv skip when only the width changes at stride 1.
- ``PreActResNet18``: pre-activation basic blocks (BN-ReLU-conv twice), 2 blocks in each of 4 stages, 1x1-conv
  shortcuts taken from the pre-activated input.
- ``SEResNet18``: basic blocks whose output is multiplied by a squeeze-excitation channel gate
  (global pool, Linear-ReLU-Linear-sigmoid) before the residual add, 2 blocks in each of 4 stages.
- ``DenseNet``: DenseNet-BC, bottleneck layers whose output is concatenated onto their input (growth), 1x1-conv +
  average-pool transitions that halve the width.
- ``EfficientNetB0``: EfficientNet-B0-style MBConv blocks (expand, depthwise 3x3/5x5, squeeze-excitation with 1x1
  convs, project) with SiLU, identity skips, a 1x1 head conv.
- ``RegNetX``: RegNetX-style bottleneck blocks whose 3x3 conv is grouped (group width 8), bottleneck ratio 1.
- ``ShuffleNetV2``: units that split the channels with ``chunk``, transform one half, concatenate and shuffle the
  channels (view / transpose / reshape); downsampling units with two branches; 3 stages of 4, 3, 3 units.
- ``ShuffleNetV2Slice``: the same network with the split written as slicing (``x[:, :c]``, ``x[:, c:]``), as other
  widely copied ShuffleNet-V2 files do. torch-pruning 1.6 fails differently on the two spellings: ``chunk`` makes
  building the graph raise ZeroDivisionError at once; slicing makes ``get_all_groups`` run for a time that grows
  steeply with the units per stage (on a loaded 2-core machine: 2,2,2 units 0.2 s, 3,3,3 units about 100 s), so
  4,3,3 units stand for the hang (many minutes).
- ``ResNet20OptionA``: the widely used CIFAR ResNet-20 (3 stages x 3 basic blocks, widths 16/32/64) whose
  downsampling shortcut is option A: a ``LambdaLayer`` that subsamples and zero-pads the channels.

``FAMILIES`` maps a short name to each class, those of ``tests/families_more.py`` (concatenations, grouped
convolutions, dual paths, NAS cells) included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tests.families_more import DPN, DLATree, Inception, PNASNet, ResNeXt


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


# -- MobileNet (V1) ------------------------------------------------------------------------------------------------
class DepthwiseSeparable(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, in_planes, 3, stride, 1, groups=in_planes, bias=False)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv2 = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))


class MobileNetV1(nn.Module):
    cfg = (16, (32, 2), 32, (64, 2), 64, (128, 2))  # width, or (width, stride)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for c in self.cfg:
            out_planes, stride = c if isinstance(c, tuple) else (c, 1)
            layers.append(DepthwiseSeparable(in_planes, out_planes, stride))
            in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- MobileNet-V2 --------------------------------------------------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        hidden = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(*_conv_bn(in_planes, out_planes, kernel=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    cfg = ((1, 8, 1, 1), (6, 12, 2, 1), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 1, 1))  # expansion, out, blocks, stride

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for expansion, out_planes, blocks, stride in self.cfg:
            for s in [stride] + [1] * (blocks - 1):
                layers.append(InvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.linear = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- PreAct-ResNet-18 ----------------------------------------------------------------------------------------------
class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 8
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(8, 2, 1)
        self.layer2 = self._make_layer(16, 2, 2)
        self.layer3 = self._make_layer(32, 2, 2)
        self.layer4 = self._make_layer(64, 2, 2)
        self.bn = nn.BatchNorm2d(64)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- SE-ResNet-18 --------------------------------------------------------------------------------------------------
class SEBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, reduction: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.fc1 = nn.Linear(planes, planes // reduction)
        self.fc2 = nn.Linear(planes // reduction, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(*_conv_bn(in_planes, planes, kernel=1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        w = F.adaptive_avg_pool2d(out, 1).flatten(1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        out = out * w[:, :, None, None]  # the channel gate
        return F.relu(out + self.shortcut(x))


class SEResNet18(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 8
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = self._make_layer(8, 2, 1)
        self.layer2 = self._make_layer(16, 2, 2)
        self.layer3 = self._make_layer(32, 2, 2)
        self.layer4 = self._make_layer(64, 2, 2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(SEBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- DenseNet (BC) -------------------------------------------------------------------------------------------------
class DenseBottleneck(nn.Module):
    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    growth_rate, blocks = 8, (3, 3, 3)  # layers per dense block

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        growth_rate, blocks = self.growth_rate, self.blocks
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, planes, 3, 1, 1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                stages.append(DenseBottleneck(planes, growth_rate))
                planes += growth_rate
            if i < len(blocks) - 1:
                stages.append(Transition(planes, planes // 2))
                planes //= 2
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- EfficientNet-B0 style -----------------------------------------------------------------------------------------
class MBConv(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, kernel: int, stride: int,
                 se_ratio: float = 0.25) -> None:
        super().__init__()
        self.expansion = expansion
        self.skip = stride == 1 and in_planes == out_planes
        hidden = expansion * in_planes
        if expansion != 1:
            self.conv1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        squeezed = max(1, int(in_planes * se_ratio))
        self.se1 = nn.Conv2d(hidden, squeezed, 1)
        self.se2 = nn.Conv2d(squeezed, hidden, 1)
        self.conv3 = nn.Conv2d(hidden, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expansion == 1 else F.silu(self.bn1(self.conv1(x)))
        out = F.silu(self.bn2(self.conv2(out)))
        w = torch.sigmoid(self.se2(F.silu(self.se1(F.adaptive_avg_pool2d(out, 1)))))
        out = self.bn3(self.conv3(out * w))
        return out + x if self.skip else out


class EfficientNetB0(nn.Module):
    # expansion, out, blocks, kernel, stride (B0's first stages, narrowed)
    cfg = ((1, 8, 1, 3, 1), (6, 12, 2, 3, 2), (6, 20, 2, 5, 2), (6, 40, 2, 3, 2), (6, 48, 1, 5, 1))

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for expansion, out_planes, blocks, kernel, stride in self.cfg:
            for s in [stride] + [1] * (blocks - 1):
                layers.append(MBConv(in_planes, out_planes, expansion, kernel, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*layers)
        self.conv2 = nn.Conv2d(in_planes, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.dropout = nn.Dropout(0.2)
        self.linear = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.silu(self.bn1(self.conv1(x))))
        out = F.silu(self.bn2(self.conv2(out)))
        return self.linear(self.dropout(F.adaptive_avg_pool2d(out, 1).flatten(1)))


# -- RegNetX style -------------------------------------------------------------------------------------------------
class RegNetXBlock(nn.Module):
    def __init__(self, w_in: int, w_out: int, stride: int, group_width: int, bottleneck_ratio: float = 1.0) -> None:
        super().__init__()
        w_b = int(round(w_out * bottleneck_ratio))
        self.conv1 = nn.Conv2d(w_in, w_b, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w_b)
        self.conv2 = nn.Conv2d(w_b, w_b, 3, stride, 1, groups=w_b // group_width, bias=False)
        self.bn2 = nn.BatchNorm2d(w_b)
        self.conv3 = nn.Conv2d(w_b, w_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(w_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or w_in != w_out:
            self.shortcut = nn.Sequential(*_conv_bn(w_in, w_out, kernel=1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class RegNetX(nn.Module):
    depths, widths, strides, group_width = (1, 2, 2), (16, 32, 64), (1, 2, 2), 8

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, w_in = [], 16
        for depth, w_out, stride in zip(self.depths, self.widths, self.strides):
            for s in [stride] + [1] * (depth - 1):
                layers.append(RegNetXBlock(w_in, w_out, s, self.group_width))
                w_in = w_out
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- ShuffleNet-V2 -------------------------------------------------------------------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """Stride 1: split the channels in two halves, transform one, concatenate, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([x1, out], 1))


class ShuffleSliceUnit(ShuffleUnit):
    """A :class:`ShuffleUnit` that splits by slicing instead of ``chunk``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1) // 2
        x1, x2 = x[:, :c, :, :], x[:, c:, :, :]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([x1, out], 1))


class ShuffleDownUnit(nn.Module):
    """Stride 2: both branches see the whole input and halve the resolution; concatenated and shuffled."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False)  # left branch
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, half, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(in_channels, half, 1, bias=False)  # right branch
        self.bn3 = nn.BatchNorm2d(half)
        self.conv4 = nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False)
        self.bn4 = nn.BatchNorm2d(half)
        self.conv5 = nn.Conv2d(half, half, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return channel_shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    widths, units = (24, 48, 96), (4, 3, 3)  # per stage: one down unit, then split-and-shuffle units
    unit: type[ShuffleUnit] = ShuffleUnit

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_channels = [], 16
        for width, units in zip(self.widths, self.units):
            stages.append(nn.Sequential(ShuffleDownUnit(in_channels, width), *(self.unit(width) for _ in range(units - 1))))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        self.conv2 = nn.Conv2d(in_channels, 128, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.linear = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ShuffleNetV2Slice(ShuffleNetV2):
    unit = ShuffleSliceUnit


# -- ResNet-20 with option-A shortcuts -----------------------------------------------------------------------------
class LambdaLayer(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class OptionABlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # option A: subsample, zero-pad the new channels (no parameters)
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20OptionA(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 3, 1)
        self.layer2 = self._make_layer(32, 3, 2)
        self.layer3 = self._make_layer(64, 3, 2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(OptionABlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


FAMILIES: dict[str, type[nn.Module]] = {
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v2": MobileNetV2,
    "preact_resnet18": PreActResNet18,
    "se_resnet18": SEResNet18,
    "densenet": DenseNet,
    "efficientnet_b0": EfficientNetB0,
    "regnetx": RegNetX,
    "shufflenet_v2": ShuffleNetV2,
    "shufflenet_v2_slice": ShuffleNetV2Slice,
    "resnet20_option_a": ResNet20OptionA,
    "inception": Inception,
    "dla_tree": DLATree,
    "resnext": ResNeXt,
    "dpn": DPN,
    "pnasnet": PNASNet,
}
