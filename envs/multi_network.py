"""One agent, several networks: each episode prunes one network of a set, so a single policy learns to prune all of
them (and, with a state that carries across networks, others it has never seen).

Every network keeps its own :class:`ChannelPruningEnv` (its own groups, calibration statistics, reward-val evaluation
and budget wall), built once; an episode is played entirely in one of them, chosen from this env's RNG (``random``)
or in turn (``round_robin``). ``info['network']`` names it at every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from amc.envs.channel_pruning import ChannelPruningEnv

ORDERS = ("random", "round_robin")


class MultiNetworkEnv(gym.Env):
    """Episodes over several :class:`ChannelPruningEnv` (same observation layout and action bounds)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, envs: Mapping[str, ChannelPruningEnv], *, order: str = "random") -> None:
        if not envs:
            raise ValueError("MultiNetworkEnv needs at least one network")
        if order not in ORDERS:
            raise ValueError(f"unknown network order {order!r}; expected one of {ORDERS}")
        self.envs = dict(envs)
        self.names = list(self.envs)
        first = self.envs[self.names[0]]
        for name, env in self.envs.items():
            if env.obs_fields != first.obs_fields or (env.lbound, env.rbound) != (first.lbound, first.rbound):
                raise ValueError(f"network {name!r}: observation fields {env.obs_fields} and keep-ratio bounds "
                                 f"({env.lbound}, {env.rbound}) differ from {self.names[0]!r}'s {first.obs_fields}, "
                                 f"({first.lbound}, {first.rbound}): one agent needs one layout")
        self.order = order
        self.observation_space, self.action_space = first.observation_space, first.action_space
        self.obs_fields, self.lbound, self.rbound = first.obs_fields, first.lbound, first.rbound
        self.render_mode = None
        self.current = self.names[0]
        self._turn = 0

    @property
    def max_steps(self) -> int:
        """The longest episode (the network with the most prunable groups)."""
        return max(env.num_groups for env in self.envs.values())

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:  # every network's own draws (e.g. a target_range budget) are seeded too
            for i, env in enumerate(self.envs.values()):
                env.reset(seed=seed + i)
        if self.order == "random":
            self.current = self.names[int(self.np_random.integers(len(self.names)))]
        else:
            self.current = self.names[self._turn % len(self.names)]
            self._turn += 1
        obs, info = self.envs[self.current].reset(options=options)
        return obs, {**info, "network": self.current}

    def step(self, action: np.ndarray | float) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.envs[self.current].step(action)
        return obs, reward, terminated, truncated, {**info, "network": self.current}
