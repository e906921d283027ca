"""CIFAR-style ResNets (He et al. 2016, option B projection shortcuts) and the Plain-20 variant."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convs; a 1x1 projection shortcut when the shape changes (none in plain nets)."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or in_planes != planes):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return torch.relu(out)


class CifarResNet(nn.Module):
    """Three stages of ``depth // 6 - ... `` basic blocks with 16/32/64 channels (width-scalable)."""

    def __init__(
        self, depth: int, in_channels: int = 3, num_classes: int = 10, width: int = 16, residual: bool = True
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride, residual))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet20(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> CifarResNet:
    return CifarResNet(20, in_channels, num_classes, width=width)


def resnet32(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> CifarResNet:
    return CifarResNet(32, in_channels, num_classes, width=width)


def resnet56(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> CifarResNet:
    return CifarResNet(56, in_channels, num_classes, width=width)


def plain20(in_channels: int = 3, num_classes: int = 10, width: int = 16) -> CifarResNet:
    """ResNet-20 without shortcuts (the paper's Plain-20)."""
    return CifarResNet(20, in_channels, num_classes, width=width, residual=False)
