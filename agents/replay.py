"""AMC's replay buffer: every transition of an episode carries the episode's final reward, minus a moving baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_PENDING = ("obs", "next_obs", "action", "done", "timeout")


class EpisodeRewardReplayBuffer(ReplayBuffer):
    """Holds an episode's transitions until it ends, then stores them all with its final reward.

    :meth:`sample` subtracts a baseline from the sampled rewards: an exponential moving average (``baseline_alpha``,
    AMC: 0.5) of the minibatch mean rewards, updated at every sample and started at the first minibatch mean, as in
    AMC's critic update. With ``n_envs`` parallel environments (``env.n_envs``) each env's episode carries its own
    final reward; the episodes must end together (AMC's have one step per group, so they do).
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: th.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, baseline_alpha: float = 0.5) -> None:
        if optimize_memory_usage:
            raise ValueError("EpisodeRewardReplayBuffer does not support optimize_memory_usage")
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         optimize_memory_usage=False, handle_timeout_termination=handle_timeout_termination)
        self.baseline_alpha = float(baseline_alpha)
        self.baseline: float | None = None
        self.pending: list[dict[str, np.ndarray]] = []  # transitions of the running episode, not yet stored

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray, done: np.ndarray,
            infos: list[dict[str, Any]]) -> None:
        """Queue one transition; when the episode ends, store the whole episode with its final reward."""
        timeout = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=np.float32)
        self.pending.append({"obs": np.array(obs), "next_obs": np.array(next_obs),
                             "action": np.array(action).reshape(self.n_envs, self.action_dim),
                             "done": np.array(done, dtype=np.float32).reshape(self.n_envs), "timeout": timeout})
        done = np.asarray(done).reshape(self.n_envs)
        if done.any():
            if not done.all():
                raise ValueError(f"episodes of the {self.n_envs} environments ended at different steps (dones "
                                 f"{done.tolist()}); EpisodeRewardReplayBuffer needs episodes of equal length")
            self._flush(np.asarray(reward, dtype=np.float32).reshape(self.n_envs))

    def _flush(self, final_reward: np.ndarray) -> None:
        for t in self.pending:
            infos = [{"TimeLimit.truncated": bool(timeout)} for timeout in t["timeout"]]
            super().add(t["obs"], t["next_obs"], t["action"], final_reward, t["done"], infos)
        self.pending = []

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """A uniform minibatch whose rewards have the updated moving-average baseline subtracted."""
        samples = super().sample(batch_size, env=env)
        batch_mean = float(samples.rewards.mean())
        if self.baseline is None:
            self.baseline = batch_mean
        else:
            self.baseline += self.baseline_alpha * (batch_mean - self.baseline)
        return samples._replace(rewards=samples.rewards - self.baseline)

    def save_npz(self, path: str | Path) -> None:
        """Arrays, position, baseline and the running episode's transitions, as a pickle-free .npz."""
        data: dict[str, np.ndarray] = {name: getattr(self, name) for name in _ARRAYS}
        data.update(pos=np.array(self.pos), full=np.array(self.full), baseline_alpha=np.array(self.baseline_alpha),
                    has_baseline=np.array(self.baseline is not None),
                    baseline=np.array(np.nan if self.baseline is None else self.baseline),
                    n_pending=np.array(len(self.pending)))
        for key in _PENDING:
            data[f"pending_{key}"] = (np.stack([t[key] for t in self.pending]) if self.pending
                                      else np.zeros((0, *self._pending_shape(key)), dtype=np.float32))
        with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path without it
            np.savez(f, **data)

    def load_npz(self, path: str | Path) -> None:
        """Restore what :meth:`save_npz` wrote (shapes must match this buffer's)."""
        with np.load(path, allow_pickle=False) as data:
            for name in _ARRAYS:
                current = getattr(self, name)
                if data[name].shape != current.shape:
                    raise ValueError(f"replay buffer {name}: saved shape {data[name].shape} != {current.shape}")
                setattr(self, name, data[name].astype(current.dtype))
            self.pos, self.full = int(data["pos"]), bool(data["full"])
            self.baseline_alpha = float(data["baseline_alpha"])
            self.baseline = float(data["baseline"]) if bool(data["has_baseline"]) else None
            n = int(data["n_pending"])
            self.pending = [{key: data[f"pending_{key}"][i] for key in _PENDING} for i in range(n)]

    def _pending_shape(self, key: str) -> tuple[int, ...]:
        per_env = {"obs": self.obs_shape, "next_obs": self.obs_shape, "action": (self.action_dim,)}.get(key, ())
        return (self.n_envs, *per_env)
