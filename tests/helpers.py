"""Small models and files shared by the tests."""

from __future__ import annotations

import torch
from torch import nn

from amc.artifacts.checkpoint import save_checkpoint
from amc.measure.latency_table import LatencyTable
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.groups import PrunableNetwork
from tests.families import LambdaLayer, channel_shuffle


def halfway_latency_target(net: PrunableNetwork, table: LatencyTable, lbound: float = 0.2) -> float:
    """A latency target halfway between the budget's floor (every group at ``lbound``) and the full model: what a
    small model can reach depends on the machine's load, so a fixed target fails on some machines."""
    reach = ResourceBudget(net, "latency", 1.0, lbound, latency_table=table)
    return min(1.0, (1 + reach.cost(reach.min_counts) / reach.original) / 2)


def resnet20_checkpoint(path, num_classes: int = 4):
    """A seeded, untrained zoo ResNet-20 (3 input channels) saved as our safetensors checkpoint at ``path``."""
    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=3, num_classes=num_classes)
    spec = {"target": "resnet20", "in_channels": 3, "num_classes": num_classes, "kwargs": {}}
    return save_checkpoint(model, path, model_spec=spec)


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


# -- models as users bring them: no in_channels / num_classes arguments, structures torch-pruning cannot see through --
class _BlockA(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            pad = (cout - cin) // 2
            self.shortcut = LambdaLayer(lambda x: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad)))

    def forward(self, x):
        out = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class OptionANet(nn.Module):
    """A 3-stage ResNet with option-A (zero-padding lambda) shortcuts, for 3-channel images and 4 classes."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        w = width
        self.conv = nn.Conv2d(3, w, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(w)
        self.layers = nn.Sequential(_BlockA(w, w, 1), _BlockA(w, 2 * w, 2), _BlockA(2 * w, 4 * w, 2))
        self.fc = nn.Linear(4 * w, 4)

    def forward(self, x):
        x = self.layers(nn.functional.relu(self.bn(self.conv(x))))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class NoIONet(nn.Module):
    """A user's class that takes neither in_channels nor num_classes (3 channels and 4 classes fixed)."""

    def __init__(self, width: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class GroupedNet(nn.Module):
    """A RegNetX-style block: a grouped 3x3 conv (groups=2) between two 1x1 convs."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.reduce = nn.Conv2d(width, width, 1)
        self.grouped = nn.Conv2d(width, width, 3, padding=1, groups=2)
        self.expand = nn.Conv2d(width, 2 * width, 1)
        self.fc = nn.Linear(2 * width, 4)

    def forward(self, x):
        x = nn.functional.relu(self.stem(x))
        x = nn.functional.relu(self.grouped(nn.functional.relu(self.reduce(x))))
        return self.fc(nn.functional.relu(self.expand(x)).mean((2, 3)))


class _ShuffleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        h = channels // 2
        self.branch = nn.Sequential(nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                                    nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                    nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU())

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([a, self.branch(b)], 1), 2)


class ShuffleNet(nn.Module):
    """ShuffleNet-V2 style units: channel split (chunk), a branch, concat and channel shuffle."""

    def __init__(self, units: int = 2, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.units = nn.Sequential(*[_ShuffleUnit(width) for _ in range(units)])
        self.head = nn.Conv2d(width, 2 * width, 1)
        self.fc = nn.Linear(2 * width, 4)

    def forward(self, x):
        return self.fc(self.head(self.units(self.stem(x))).mean((2, 3)))


class CumMax(nn.Module):
    """A layer onnx cannot export (no symbolic for aten::cummax at opset 17)."""

    def forward(self, x):
        return torch.cummax(x, 1)[0]


def cummax_net(in_channels: int = 3, num_classes: int = 4) -> nn.Module:
    """``tiny_net`` with a layer the ONNX exporter cannot convert: ``tests.helpers.cummax_net``."""
    net = tiny_net(in_channels, num_classes, width=8)
    net[2] = nn.Sequential(nn.ReLU(), CumMax())
    return net


class ViewLeNet(nn.Module):
    """Classic LeNet-style code: flattens with ``out.view(out.size(0), -1)`` (needs a contiguous NCHW activation)."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x):
        out = nn.functional.max_pool2d(nn.functional.relu(self.bn1(self.conv1(x))), 2)
        out = nn.functional.max_pool2d(nn.functional.relu(self.bn2(self.conv2(out))), 2)
        return self.fc(out.view(out.size(0), -1))


def random_bn_stats(model: nn.Module, seed: int = 1) -> nn.Module:
    """``model`` in eval mode with random BN statistics and affine parameters (a trained model's are not 0 / 1)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()
