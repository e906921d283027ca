"""VGG-16 with BatchNorm, CIFAR variant (one 512-unit classifier layer)."""

from __future__ import annotations

import torch
from torch import nn

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)


class VGG(nn.Module):
    def __init__(self, cfg: tuple[int | str, ...], in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg16(in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> VGG:
    """VGG-16; ``width_mult`` scales every conv's channels (0.5: a quarter of the MACs and parameters)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    cfg = tuple(v if v == "M" else max(1, round(int(v) * width_mult)) for v in VGG16_CFG)
    return VGG(cfg, in_channels, num_classes)
