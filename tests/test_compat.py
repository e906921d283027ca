"""amc.compat against the installed stable-baselines3 and torch-pruning: every internal amc reads must be there.

A release that renames or drops one fails here, with the attribute and the version in the message.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from packaging.requirements import Requirement
from packaging.version import Version
from stable_baselines3 import DDPG, SAC, TD3
from torch import nn

from amc import compat
from amc.agents import AMCSACPolicy, AMCTD3Policy

REPO = Path(__file__).resolve().parents[1]


class OneStepEnv(gym.Env):
    """Episodes of two steps with a reward at the end."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return np.full(2, self.t / 2, np.float32), -float(action[0] ** 2), self.t == 2, False, {}


def _install_requires() -> dict[str, Requirement]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    reqs = [Requirement(line) for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    return {r.name: r for r in reqs}


@pytest.mark.parametrize("dist", [compat.SB3, compat.TORCH_PRUNING])
def test_installed_version_is_in_the_bounded_range_of_setup_cfg(dist: str) -> None:
    req = _install_requires()[dist]
    assert str(req.specifier) == str(Requirement(f"{dist}{compat.SUPPORTED[dist]}").specifier), \
        f"setup.cfg has {req}, amc.compat.SUPPORTED says {compat.SUPPORTED[dist]}: keep them in step"
    assert any(s.operator == "<" for s in req.specifier), f"{req}: needs an upper bound (amc.compat reads internals)"
    installed = compat.installed_version(dist)
    assert Version(installed) in req.specifier, f"installed {dist} {installed} is outside setup.cfg's {req}"


@pytest.mark.parametrize("algo", [DDPG, TD3, SAC])
def test_sb3_internals_exist_and_behave(algo: type) -> None:
    policy = AMCSACPolicy if algo is SAC else AMCTD3Policy
    model = algo(policy, OneStepEnv(), learning_starts=2, batch_size=4, train_freq=(1, "episode"), gradient_steps=1,
                 policy_kwargs={"net_arch": [8]}, seed=0)
    problems = compat.sb3_problems(model, policy_classes=[AMCTD3Policy, AMCSACPolicy])
    assert not problems, "\n".join(problems)
    model.learn(6)  # three episodes, one gradient step after each from the second on
    assert compat.episode_count(model) == 3 and compat.total_timesteps(model) == 6
    assert compat.update_count(model) >= 1
    assert isinstance(compat.last_obs(model), np.ndarray) and compat.last_obs(model).shape == (1, 2)
    compat.set_episode_count(model, 7)
    compat.set_update_count(model, 11)
    compat.set_last_obs(model, None)
    assert (compat.episode_count(model), compat.update_count(model), compat.last_obs(model)) == (7, 11, None)
    model.learn(2, reset_num_timesteps=False)  # None as the last observation: learn() starts a fresh episode
    assert compat.episode_count(model) == 8
    compat.dump_logs(model)  # SB3's own records and a dump, without error


def test_a_missing_sb3_attribute_is_a_clear_error_naming_it_and_the_version() -> None:
    version = compat.installed_version(compat.SB3)
    with pytest.raises(compat.CompatError, match=rf"stable-baselines3 {version}: object has no '_episode_num'.*<2\.10"):
        compat.episode_count(object())
    with pytest.raises(compat.CompatError, match="'_last_obs'"):
        compat.set_last_obs(object(), None)
    with pytest.raises(compat.CompatError, match="'dump_logs'"):
        compat.dump_logs(object())
    problems = compat.sb3_problems(object(), policy_classes=[nn.Module])
    assert any("'_n_updates'" in p for p in problems) and any("Module has no '_build'" in p for p in problems)


def test_torch_pruning_internals_exist_and_behave() -> None:
    problems = compat.torch_pruning_problems()
    assert not problems, "\n".join(problems)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    groups = compat.dependency_groups(model, torch.randn(1, 3, 5, 5), ignored_layers=[model[7]],
                                      root_module_types=(nn.Conv2d, nn.Linear))
    by_root = {id(g[0].module): g for g in groups}
    assert set(by_root) == {id(model[0]), id(model[3])}
    layers = {id(m) for m in model}
    first = [i for i in by_root[id(model[0])] if id(i.module) in layers]  # without functional ops (relu)
    assert [(i.module, i.prunes_out_channels) for i in first] == [(model[0], True), (model[1], True), (model[3], False)]
    assert all(i.idxs == i.root_idxs == tuple(range(6)) for i in first)
    for item in first:  # the handlers prune: drop channel 2 of the first group
        item.handler(item.module, [2])
    assert model(torch.randn(1, 3, 5, 5)).shape == (1, 2) and model[0].out_channels == 5
