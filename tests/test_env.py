"""The channel-pruning env: gymnasium / SB3 API, determinism, observation, action mapping, budget and rewards."""

from __future__ import annotations

import math
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from amc.data.base import DataSplits
from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.measure.latency_table import LatencyTable
from amc.measure.macs import count_macs_params
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.runs.rewards import REWARDS, get_reward
from tests.helpers import halfway_latency_target

INPUT = (1, 3, 16, 16)


@pytest.fixture(scope="module")
def data() -> DataSplits:
    return synthetic(train_size=64, test_size=16, reward_val_size=128)


def _net(name: str) -> PrunableNetwork:
    torch.manual_seed(0)
    return PrunableNetwork(build_model(name, in_channels=3, num_classes=4).eval(), INPUT)


@pytest.fixture(scope="module")
def resnet20() -> PrunableNetwork:
    return _net("resnet20")


def _env(net: PrunableNetwork, data: DataSplits, **kwargs: object) -> ChannelPruningEnv:
    return ChannelPruningEnv(net, PruningEngine(net), data, **kwargs)  # type: ignore[arg-type]


def _episode(env: ChannelPruningEnv, actions: np.ndarray, seed: int | None = None) -> tuple[list[np.ndarray], float, dict]:
    obs, info = env.reset(seed=seed)
    observations, terminated, t = [obs], False, 0
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(actions[t])
        assert isinstance(reward, float) and isinstance(terminated, bool) and truncated is False
        observations.append(obs)
        t += 1
    assert t == env.num_groups
    return observations, reward, info


def _random_actions(env: ChannelPruningEnv, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (env.num_groups, 1)).astype(np.float32)


def test_gymnasium_and_sb3_checkers_pass_without_warnings(resnet20: PrunableNetwork, data: DataSplits) -> None:
    env = _env(resnet20, data, budget=ResourceBudget(resnet20, "macs", 0.5, 0.2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)  # no render modes
        sb3_check_env(env, warn=True)
    assert not [str(w.message) for w in caught]


def test_same_seed_and_actions_give_same_episode(resnet20: PrunableNetwork, data: DataSplits) -> None:
    before = {k: v.clone() for k, v in resnet20.model.state_dict().items()}
    env = _env(resnet20, data, budget=ResourceBudget(resnet20, "macs", 0.5, 0.2))
    actions = _random_actions(env, 0)
    obs_a, reward_a, info_a = _episode(env, actions, seed=3)
    _episode(env, _random_actions(env, 1), seed=4)  # something else in between
    obs_b, reward_b, info_b = _episode(env, actions, seed=3)
    assert reward_a == reward_b
    assert {k: v for k, v in info_a.items() if k != "seconds"} == {k: v for k, v in info_b.items() if k != "seconds"}
    assert all(np.array_equal(a, b) for a, b in zip(obs_a, obs_b))
    assert set(info_a["seconds"]) >= {"select", "surgery", "evaluate"}
    after = resnet20.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert not resnet20.model.training


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_observation_width_and_range(name: str, data: DataSplits) -> None:
    net = _net(name)
    env = _env(net, data, eval_images=32)
    assert env.observation_space.shape == (11,) and env.observation_space.dtype == np.float32
    observations, _, _ = _episode(env, _random_actions(env, 0), seed=0)
    for obs in observations:
        assert obs.shape == (11,) and obs.dtype == np.float32
        assert env.observation_space.contains(obs)
    first = observations[0]
    assert first[0] == 0.0 and first[8] == 0.0 and first[10] == 1.0  # t = 0, nothing reduced, a_{-1} = 1
    assert [round(float(o[0]), 5) for o in observations[:-1]] == [round(t / (net.num_groups - 1), 5)
                                                                   for t in range(net.num_groups)]
    reduced = [float(o[8]) for o in observations]
    assert reduced == sorted(reduced)  # MACs removed so far only grow
    rest = [float(o[9]) for o in observations[:-1]]
    assert rest == sorted(rest, reverse=True) and rest[-1] == 0.0


def test_keep_ratios_follow_the_action_bounds(resnet20: PrunableNetwork, data: DataSplits) -> None:
    env = _env(resnet20, data, lbound=0.3, rbound=0.8)
    assert env.action_to_keep(-1.0) == pytest.approx(0.3) and env.action_to_keep(1.0) == pytest.approx(0.8)
    assert env.action_to_keep(5.0) == pytest.approx(0.8) and env.action_to_keep(-7.0) == pytest.approx(0.3)
    assert env.action_to_keep(0.0) == pytest.approx(0.55)
    for seed in range(3):
        observations, _, info = _episode(env, _random_actions(env, seed) * 1.5, seed=seed)  # some out of range
        for k, g in zip(info["keep_ratios"], resnet20.groups):
            assert 0.3 - 1 / g.channels <= k <= 0.8 + 1 / g.channels
        assert all(0.3 <= k <= 0.8 for k in info["requested_keep_ratios"])
        prev = [float(o[10]) for o in observations[1:]]
        assert prev == pytest.approx(info["keep_ratios"])  # a_{t-1} is the realised ratio


@pytest.mark.parametrize("resource", ["macs", "params"])
def test_budget_met_every_episode(resnet20: PrunableNetwork, data: DataSplits, resource: str) -> None:
    budget = ResourceBudget(resnet20, resource, 0.4, 0.2)
    env = _env(resnet20, data, budget=budget, eval_images=32)
    engine = PruningEngine(resnet20)
    for seed in range(6):
        actions = np.ones((env.num_groups, 1), np.float32) if seed == 0 else _random_actions(env, seed)
        _, reward, info = _episode(env, actions, seed=seed)
        assert info["episode_end"] is True and reward == info["reward"] == info["accuracy"]
        assert info[resource] <= budget.limit
        assert info["budget_ratio"] <= 0.4 and info[f"{resource}_ratio"] <= 0.4
        result = engine.prune(info["keep_ratios"])
        assert result.channels == info["channels"]
        assert count_macs_params(result.model, INPUT) == (info["macs"], info["params"])
    assert info["requested_keep_ratios"] != info["keep_ratios"]


def test_accuracy_guaranteed_protocol_reward(resnet20: PrunableNetwork, data: DataSplits) -> None:
    for name, cost in (("neg_error_log_macs", "macs"), ("neg_error_log_params", "params"), ("neg_error", None)):
        env = _env(resnet20, data, reward=name)
        _, reward, info = _episode(env, _random_actions(env, 5), seed=0)
        expected = -(1 - info["accuracy"]) * (math.log(info[cost]) if cost else 1.0)
        assert reward == pytest.approx(expected) and info["reward"] == reward
        assert "budget_ratio" not in info


def test_latency_in_info(resnet20: PrunableNetwork, data: DataSplits) -> None:
    table = LatencyTable.measure(resnet20, warmup=1, repeats=2, max_points=3)
    budget = ResourceBudget(resnet20, "latency", halfway_latency_target(resnet20, table), 0.2, latency_table=table)
    env = _env(resnet20, data, budget=budget, latency_table=table, eval_images=16)
    _, _, info = _episode(env, np.ones((env.num_groups, 1), np.float32))
    assert info["predicted_latency_ms"] == pytest.approx(table.predict(info["channels"]) * 1e3)
    assert info["predicted_latency_ms"] <= budget.limit * 1e3 * (1 + 1e-9)


def test_validation_errors(resnet20: PrunableNetwork, data: DataSplits) -> None:
    for lbound, rbound in ((0.0, 1.0), (-0.1, 1.0), (0.6, 0.5), (0.2, 1.5)):
        with pytest.raises(ValueError, match=rf"lbound={lbound}, rbound={rbound}"):
            _env(resnet20, data, lbound=lbound, rbound=rbound)
    with pytest.raises(ValueError, match=r"'top5'.*'accuracy'"):
        _env(resnet20, data, reward="top5")
    with pytest.raises(ValueError, match="'val'"):
        _env(resnet20, data, eval_split="val")
    with pytest.raises(ValueError, match="lbound=0.3"):
        _env(resnet20, data, budget=ResourceBudget(resnet20, "macs", 0.5, 0.2), lbound=0.3)
    with pytest.raises(ValueError, match="target_ratio.*1.5"):
        ResourceBudget(resnet20, "macs", 1.5, 0.2)
    with pytest.raises(ValueError, match="'bops'"):
        ResourceBudget(resnet20, "bops", 0.5, 0.2)
    env = _env(resnet20, data, eval_images=16)
    _episode(env, _random_actions(env, 0))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.float32))


def test_rewards_registry() -> None:
    assert set(REWARDS) == {"accuracy", "neg_error", "neg_error_log_macs", "neg_error_log_params"}
    assert get_reward("accuracy")(0.9, 100, 10) == 0.9
    assert get_reward("neg_error")(0.9, 100, 10) == pytest.approx(-0.1)
    assert get_reward("neg_error_log_macs")(0.9, 100, 10) == pytest.approx(-0.1 * math.log(100))
    assert get_reward("neg_error_log_params")(0.9, 100, 10) == pytest.approx(-0.1 * math.log(10))
    with pytest.raises(ValueError, match="neg_error_log_macs"):
        get_reward("flops")


def test_gymnasium_make(resnet20: PrunableNetwork, data: DataSplits) -> None:
    import amc.envs

    env = gymnasium.make("amc/ChannelPruning-v0", net=resnet20, engine=PruningEngine(resnet20), data=data,
                         eval_images=16)
    assert isinstance(env.unwrapped, ChannelPruningEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (11,)
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert info["episode_end"] and 0.0 <= reward <= 1.0
    import importlib

    importlib.reload(amc.envs)  # registering twice is harmless
    assert "amc/ChannelPruning-v0" in gymnasium.registry
