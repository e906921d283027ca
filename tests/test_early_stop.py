"""Adaptive evaluation: stop an episode's evaluation once its accuracy clearly falls short of the best."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from amc.data.base import DataSplits, ImageTensors
from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.measure.accuracy import EarlyStop, evaluate_accuracy, evaluate_accuracy_adaptive, wilson_upper
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork


class ConstantClass(nn.Module):
    """Predicts class 0 for every image: its accuracy is the share of label 0, in the split's order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 4)
        logits[:, 0] = 1.0
        return logits


def _data(labels: list[int]) -> DataSplits:
    images = torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8)
    split = ImageTensors(images, torch.tensor(labels))
    return DataSplits(split, split, split, mean=(0.5,), std=(0.25,), num_classes=4)


def _labels(accuracy: float, n: int = 2000) -> list[int]:
    """Label 0 (correct) spread evenly so that exactly ``accuracy`` of every prefix of 100 images is correct."""
    return [0 if (i % 100) < round(100 * accuracy) else 1 for i in range(n)]


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 0, 3.0) == 1.0
    assert wilson_upper(50, 100, 3.0) > 0.5 > wilson_upper(50, 100, 3.0) - 0.3
    assert wilson_upper(500, 1000, 3.0) < wilson_upper(50, 100, 3.0)  # more images, tighter bound
    assert wilson_upper(100, 100, 3.0) == pytest.approx(1.0)


def test_a_clearly_worse_episode_stops_after_min_images() -> None:
    data = _data(_labels(0.5))
    accuracy, seen = evaluate_accuracy_adaptive(ConstantClass(), data, batch_size=100,
                                                stop=EarlyStop(below=0.85, z=3.0, min_images=300))
    assert seen == 300 and accuracy == pytest.approx(0.5)


@pytest.mark.parametrize("accuracy", [0.85, 0.9, 0.95, 1.0])
def test_never_stops_an_episode_within_the_margin_of_the_best_or_better(accuracy: float) -> None:
    data = _data(_labels(accuracy))
    best, margin = 0.9, 0.05  # stops only below 0.85: none of these episodes may be cut short
    result, seen = evaluate_accuracy_adaptive(ConstantClass(), data, batch_size=100,
                                              stop=EarlyStop(below=best - margin, z=3.0, min_images=100))
    assert seen == 2000 and result == pytest.approx(accuracy)
    assert result == evaluate_accuracy(ConstantClass(), data)


def test_env_stops_early_only_against_a_fully_evaluated_best() -> None:
    torch.manual_seed(0)
    net = PrunableNetwork(build_model("resnet20", in_channels=3, num_classes=4).eval(), (1, 3, 16, 16))
    data = synthetic(train_size=64, test_size=16, reward_val_size=600)
    env = ChannelPruningEnv(net, PruningEngine(net), data, budget=ResourceBudget(net, "macs", 0.5, 0.2),
                            eval_batch_size=100, early_stop_margin=0.05, early_stop_min_images=100)

    def episode() -> dict:
        env.reset(seed=0)
        terminated, info = False, {}
        while not terminated:
            _, _, terminated, _, info = env.step(np.zeros(1, dtype=np.float32))
        return info

    first = episode()  # no reference yet: evaluated in full, and it sets the best
    assert not first["stopped_early"] and first["eval_images"] == 600 and env.best_accuracy == first["accuracy"]
    env.best_accuracy = 1.0  # a best this policy cannot come near: the next evaluation stops early
    second = episode()
    assert second["stopped_early"] and 100 <= second["eval_images"] < 600
    assert second["reward"] == pytest.approx(second["accuracy"]) and env.best_accuracy == 1.0


def test_early_stop_is_refused_where_accuracies_do_not_rank_episodes() -> None:
    torch.manual_seed(0)
    net = PrunableNetwork(build_model("resnet20", in_channels=3, num_classes=4).eval(), (1, 3, 16, 16))
    data = synthetic(train_size=64, test_size=16, reward_val_size=32)
    with pytest.raises(ValueError, match="needs reward 'accuracy'"):
        ChannelPruningEnv(net, PruningEngine(net), data, reward="neg_error_log_macs", early_stop_margin=0.05)
    with pytest.raises(ValueError, match="target_range"):
        ChannelPruningEnv(net, PruningEngine(net), data, budget=ResourceBudget(net, "macs", 0.5, 0.2),
                          target_range=(0.3, 0.7), early_stop_margin=0.05)
