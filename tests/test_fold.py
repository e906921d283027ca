"""BatchNorm folding (``env.fold_bn``) and channels-last evaluation: the plain model's logits and rewards."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from amc.data import synthetic
from amc.envs import ChannelPruningEnv
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.fold import conv_bn_pairs, fold_bn
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from tests.helpers import random_bn_stats


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "vgg16"])
def test_folded_model_gives_the_same_logits(name: str) -> None:
    torch.manual_seed(0)
    model = random_bn_stats(build_model(name, in_channels=3, num_classes=10))
    pairs = conv_bn_pairs(model)
    assert len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BN follows a conv
    folded = fold_bn(copy.deepcopy(model), pairs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        plain, out = model(x), folded(x)
    assert torch.allclose(out, plain, rtol=1e-4, atol=1e-4 * float(plain.abs().max()))


class TwoUsers(nn.Module):
    """A conv whose output feeds a BN and a skip: folding the BN would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.bn(self.conv(x))
        return self.bn(self.conv(-x))


def test_only_convs_feeding_nothing_but_their_bn_are_folded() -> None:
    assert conv_bn_pairs(TwoUsers()) == []
    assert conv_bn_pairs(Untraceable()) == []  # nothing folded, no error


def test_folding_needs_eval_mode() -> None:
    model = build_model("resnet20", in_channels=3, num_classes=10)
    with pytest.raises(ValueError, match="eval-mode"):
        fold_bn(model.train(), conv_bn_pairs(model))


def test_env_with_folded_bn_and_channels_last_gives_the_same_rewards() -> None:
    data = synthetic(train_size=256, test_size=64)
    torch.manual_seed(0)
    model = random_bn_stats(build_model("resnet20", in_channels=3, num_classes=4))
    net = PrunableNetwork(model, (1, 3, 16, 16))
    engine = PruningEngine(net, reconstructor=Reconstructor.calibrate(net, data, num_images=64))
    rewards = {}
    for fold, channels_last in ((False, False), (True, False), (True, True)):
        env = ChannelPruningEnv(net, engine, data, budget=ResourceBudget(net, "macs", 0.5, 0.2), fold_bn=fold,
                                channels_last=channels_last)
        assert len(env.fold_pairs) == (21 if fold else 0)
        rng = np.random.default_rng(0)
        key = (fold, channels_last)
        rewards[key] = []
        for _ in range(3):
            env.reset(seed=0)
            done, info = False, {}
            while not done:
                _, _, done, _, info = env.step(np.array([rng.uniform(-1, 1)], dtype=np.float32))
            rewards[key].append(info["accuracy"])
    assert rewards[(True, False)] == rewards[(False, False)] == rewards[(True, True)]


class _ViewNet(nn.Module):
    """Classic code: BN after the conv, then ``.view``, which fails on a channels-last activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        return self.fc(out.view(out.size(0), -1))


def test_fast_paths_are_kept_only_where_the_model_runs_identically(caplog: pytest.LogCaptureFixture) -> None:
    from amc.measure.fast_paths import check_fast_paths

    images = torch.randn(4, 3, 8, 8)
    model = random_bn_stats(_ViewNet())
    pairs = conv_bn_pairs(model)
    assert pairs == [("conv", "bn")]
    kept_pairs, channels_last = check_fast_paths(model, images, fold_pairs=pairs, channels_last=True)
    assert kept_pairs == pairs and channels_last is False  # folding is exact here; .view fails channels-last
    assert "channels_last off" in caplog.text and "view" in caplog.text
    resnet = random_bn_stats(build_model("resnet20", in_channels=3, num_classes=4))
    resnet_pairs = conv_bn_pairs(resnet)
    assert check_fast_paths(resnet, images, fold_pairs=resnet_pairs, channels_last=True) == (resnet_pairs, True)
