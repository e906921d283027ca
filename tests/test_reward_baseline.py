"""``reward_baseline='uniform'``: the reward is what a policy gains over uniform pruning at the episode's budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.heuristics import solve_heuristic
from tests.helpers import random_bn_stats

INPUT = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def net() -> PrunableNetwork:
    torch.manual_seed(0)  # BN statistics away from identity, so that pruning changes the predictions
    return PrunableNetwork(random_bn_stats(build_model("resnet20", in_channels=3, num_classes=4)), INPUT)


def _env(net: PrunableNetwork, **kwargs: object) -> ChannelPruningEnv:
    data = synthetic(train_size=64, test_size=16, reward_val_size=200)
    return ChannelPruningEnv(net, PruningEngine(net), data, budget=ResourceBudget(net, "macs", 0.5, 0.2),
                             **kwargs)  # type: ignore[arg-type]


def _uniform_counts(env: ChannelPruningEnv, target: float) -> list[int]:
    budget = env.budget.with_target(target)  # type: ignore[union-attr]
    return solve_heuristic(env.net, "uniform", cost=budget.cost, limit=budget.limit, lbound=env.lbound,
                           rbound=env.rbound, fill=True).counts


def _play(env: ChannelPruningEnv, actions: list[float], target: float | None = None) -> dict:
    env.reset(seed=0, options=None if target is None else {"target": target})
    for a in actions:
        _, reward, terminated, _, info = env.step(np.array([a], dtype=np.float32))
    assert terminated and reward == info["reward"]
    return info


def test_uniform_scores_zero_and_a_policy_its_gain_over_uniform(net: PrunableNetwork) -> None:
    plain, relative = _env(net), _env(net, reward_baseline="uniform")
    uniform = relative.play_counts(_uniform_counts(relative, 0.5), seed=0)
    assert uniform["reward"] == 0.0 and uniform["raw_reward"] == uniform["accuracy"]
    actions = list(np.random.default_rng(1).uniform(-1, 1, net.num_groups))
    raw, gain = _play(plain, actions), _play(relative, actions)
    assert "raw_reward" not in raw and gain["raw_reward"] == raw["reward"] == raw["accuracy"]
    assert gain["reward"] == pytest.approx(raw["accuracy"] - uniform["accuracy"])
    assert gain["channels"] == raw["channels"]


def test_across_a_target_range_uniform_is_evaluated_at_set_up_and_interpolated(net: PrunableNetwork) -> None:
    # a reward of MACs too: uniform's reward differs between budgets even where an untrained model's accuracy does not
    kw = {"reward_baseline": "uniform", "reward": "neg_error_log_macs"}
    env = _env(net, target_range=(0.3, 0.7), baseline_points=3, budget_in_state=True, **kw)
    fixed = {t: _env(net, **kw).baseline_reward(t) for t in (0.3, 0.5, 0.7)}
    assert len(set(fixed.values())) == 3
    for t, reward in fixed.items():
        assert env.baseline_reward(t) == pytest.approx(reward)
    assert env.baseline_reward(0.4) == pytest.approx((fixed[0.3] + fixed[0.5]) / 2)
    info = _play(env, [0.0] * net.num_groups, target=0.4)
    assert info["target"] == pytest.approx(0.4)
    assert info["reward"] == pytest.approx(info["raw_reward"] - (fixed[0.3] + fixed[0.5]) / 2)
    env.fix_target(0.45)  # a fixed budget off the grid is evaluated, not interpolated
    off_grid = _env(net, **kw).baseline_reward(0.45)
    assert off_grid != pytest.approx(np.interp(0.45, [0.3, 0.5, 0.7], list(fixed.values())))
    assert env.baseline_reward(0.45) == pytest.approx(off_grid)


def test_bad_reward_baselines_are_refused(net: PrunableNetwork) -> None:
    data = synthetic(train_size=64, test_size=16, reward_val_size=32)
    with pytest.raises(ValueError, match="unknown reward_baseline 'median'.*'none', 'uniform'"):
        _env(net, reward_baseline="median")
    with pytest.raises(ValueError, match="needs a resource budget"):
        ChannelPruningEnv(net, PruningEngine(net), data, reward="neg_error_log_macs", reward_baseline="uniform")
    with pytest.raises(ValueError, match="baseline_points must be >= 2"):
        _env(net, reward_baseline="uniform", target_range=(0.3, 0.7), baseline_points=1)
