"""Small models and files shared by the tests."""

from __future__ import annotations

from torch import nn


def tiny_net(in_channels: int = 3, num_classes: int = 10, width: int = 4) -> nn.Module:
    """A two-conv net that runs on any input size; importable as ``tests.helpers.tiny_net``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )
