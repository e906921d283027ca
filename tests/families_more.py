"""More families of ``tests/families.py`` (same conventions: ``num_classes=10``, 3 input channels, CIFAR 32x32,
reduced widths and depths, each keeping its family's characteristic structure):

- ``Inception``: GoogLeNet-style modules: parallel 1x1 / 1x1-3x3 / 1x1-5x5 / maxpool-1x1 branches joined by
  ``torch.cat``, two modules and a max-pool between them.
- ``DLATree``: DLA-style trees: two blocks whose outputs a root 1x1 conv takes as ``torch.cat`` (tree levels 1 and 2).
- ``ResNeXt``: ResNeXt-29-style bottleneck blocks, 1x1 -> grouped 3x3 (cardinality 2) -> 1x1 expansion, residual.
- ``DPN``: dual-path blocks: the block output's first channels are added to the residual path, the rest concatenated
  onto the dense path (``torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]])``), as DPN-26/92 files do.
- ``PNASNet``: PNASNet-style cells: separable convolutions (depthwise + pointwise) on the cell input summed with a
  max-pool or identity branch, the branches joined by ``torch.cat`` and a 1x1 conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


# -- Inception (GoogLeNet style) -----------------------------------------------------------------------------------
class InceptionModule(nn.Module):
    def __init__(self, c_in: int, n1: int, n3r: int, n3: int, n5r: int, n5: int, pool: int) -> None:
        super().__init__()
        self.b1 = _cbr(c_in, n1, 1)
        self.b2 = nn.Sequential(_cbr(c_in, n3r, 1), _cbr(n3r, n3, 3))
        self.b3 = nn.Sequential(_cbr(c_in, n5r, 1), _cbr(n5r, n5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(c_in, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class Inception(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.pre = _cbr(3, 32)
        self.a3 = InceptionModule(32, 16, 24, 32, 4, 8, 8)  # 64 out
        self.b3 = InceptionModule(64, 32, 32, 48, 8, 24, 16)  # 120 out
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.a4 = InceptionModule(120, 48, 24, 52, 4, 12, 16)  # 128 out
        self.linear = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.a4(self.pool(self.b3(self.a3(self.pre(x)))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- DLA (tree aggregation) ----------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Root(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return F.relu(self.bn(self.conv(torch.cat(xs, 1))))


class Tree(nn.Module):
    def __init__(self, c_in: int, c_out: int, level: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.level = level
        if level == 1:
            self.root = Root(2 * c_out, c_out)
            self.left_node = BasicBlock(c_in, c_out, stride)
            self.right_node = BasicBlock(c_out, c_out, 1)
        else:
            self.root = Root((level + 1) * c_out, c_out)  # prev_root, the left and the right tree
            self.prev_root = BasicBlock(c_in, c_out, stride)
            self.left_tree = Tree(c_in, c_out, level - 1, stride)
            self.right_tree = Tree(c_out, c_out, level - 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.level == 1:
            out1 = self.left_node(x)
            return self.root([out1, self.right_node(out1)])
        xs = [self.prev_root(x)]
        out1 = self.left_tree(x)
        out2 = self.right_tree(out1)
        return self.root([*xs, out1, out2])


class DLATree(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.base = _cbr(3, 16)
        self.layer1 = Tree(16, 32, level=1, stride=1)
        self.layer2 = Tree(32, 64, level=2, stride=2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer2(self.layer1(self.base(x)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- ResNeXt -------------------------------------------------------------------------------------------------------
class ResNeXtBlock(nn.Module):
    def __init__(self, c_in: int, cardinality: int, group_width: int, stride: int = 1, expansion: int = 2) -> None:
        super().__init__()
        width = cardinality * group_width
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, expansion * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(expansion * width)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != expansion * width:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, expansion * width, 1, stride, bias=False),
                                          nn.BatchNorm2d(expansion * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNeXt(nn.Module):
    cardinality, group_width, blocks = 2, 16, (1, 1, 1)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, c_in, width = [], 32, self.group_width
        for stage, n in enumerate(self.blocks):
            for i in range(n):
                layers.append(ResNeXtBlock(c_in, self.cardinality, width, 2 if stage and not i else 1))
                c_in = 2 * self.cardinality * width
            width *= 2
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- DPN (dual path) -----------------------------------------------------------------------------------------------
class DualPathBlock(nn.Module):
    def __init__(self, c_in: int, c_mid: int, out_planes: int, dense_depth: int, stride: int, first: bool) -> None:
        super().__init__()
        self.out_planes, self.dense_depth = out_planes, dense_depth
        self.conv1 = nn.Conv2d(c_in, c_mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_mid)
        self.conv2 = nn.Conv2d(c_mid, c_mid, 3, stride, 1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_mid)
        self.conv3 = nn.Conv2d(c_mid, out_planes + dense_depth, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes + dense_depth)
        self.shortcut = nn.Sequential()
        if first:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, out_planes + dense_depth, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_planes + dense_depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        x = self.shortcut(x)
        d = self.out_planes
        out = torch.cat([x[:, :d] + out[:, :d], x[:, d:], out[:, d:]], 1)
        return F.relu(out)


class DPN(nn.Module):
    in_planes, out_planes, num_blocks, dense_depth = (32, 64), (64, 128), (2, 2), (8, 16)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        layers, last = [], 32
        for stage in range(2):
            for i in range(self.num_blocks[stage]):
                layers.append(DualPathBlock(last, self.in_planes[stage], self.out_planes[stage],
                                            self.dense_depth[stage], 2 if stage and not i else 1, i == 0))
                last = self.out_planes[stage] + (i + 2) * self.dense_depth[stage]
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# -- PNASNet (NAS cells) -------------------------------------------------------------------------------------------
class SepConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride, kernel // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class CellB(nn.Module):
    """PNASNet cell B: (sep 7x7 + max-pool), (sep 3x3 + max-pool) and (sep 5x5) concatenated, then a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.sep1 = SepConv(c_in, c_out, 7, stride)
        self.sep2 = SepConv(c_in, c_out, 3, stride)
        self.sep3 = SepConv(c_in, c_out, 5, stride)
        if stride == 2:
            self.reduce = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.conv = nn.Conv2d(2 * c_out, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, 3, self.stride, 1)
        if self.stride == 2:
            pooled = self.reduce(pooled)
        y1 = F.relu(self.sep1(x) + pooled)
        y2 = F.relu(self.sep2(x) + pooled)
        y3 = F.relu(self.sep3(x))
        return F.relu(self.bn(self.conv(torch.cat([y1 + y2, y3], 1))))


class PNASNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(3, 24)
        self.cells = nn.Sequential(CellB(24, 24), CellB(24, 48, stride=2), CellB(48, 48))
        self.linear = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(self.cells(self.stem(x)), 1).flatten(1))
