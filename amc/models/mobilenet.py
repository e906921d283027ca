"""MobileNet-V1 and MobileNet-V2, small-input variants (stride-1 stem, as for CIFAR)."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out), act(inplace=True)
    )


def _scale(channels: int, width_mult: float, divisor: int = 8) -> int:
    return max(divisor, int(channels * width_mult + divisor / 2) // divisor * divisor)


# (out_channels, stride) of the 13 depthwise-separable blocks; strides reduced for small inputs.
MOBILENET_V1_CFG: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 1), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class MobileNetV1(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> None:
        super().__init__()
        c = _scale(32, width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 1)]
        for out, stride in MOBILENET_V1_CFG:
            out = _scale(out, width_mult)
            layers += [_conv_bn(c, c, 3, stride, groups=c), _conv_bn(c, out, 1, 1)]
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(c_in, hidden, 1, 1, act=nn.ReLU6))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


# (expand, out_channels, repeats, stride); the CIFAR variant keeps stride 1 in the stem and second stage.
MOBILENET_V2_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> None:
        super().__init__()
        c = _scale(32, width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 1, act=nn.ReLU6)]
        for expand, out, repeats, stride in MOBILENET_V2_CFG:
            out = _scale(out, width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(c, out, stride if i == 0 else 1, expand))
                c = out
        last = _scale(1280, max(1.0, width_mult))
        layers.append(_conv_bn(c, last, 1, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenet_v1(in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> MobileNetV1:
    return MobileNetV1(in_channels, num_classes, width_mult)


def mobilenet_v2(in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes, width_mult)
