"""Parallel environments (``env.n_envs``): SB3's ``SubprocVecEnv``, one worker process per environment.

Every worker holds its own copy of the pruning env and evaluates its episode's pruned network while the others
evaluate theirs; the agent (in the main process) trains between rounds of ``n_envs`` episodes. Each worker gets its
share of the threads (``threads_per_env``). On CPU the workers are forked from the process that built the env, so
they start at once and share its calibration; with ``start_method="spawn"`` (needed for CUDA, where a forked child
cannot use the GPU) ``make_env`` must be picklable and builds the env again in each worker.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv

START_METHODS = ("fork", "spawn", "forkserver")


def default_start_method(device: torch.device | str) -> str:
    """``fork`` on CPU where the platform has it (fast, no pickling), else ``spawn`` (CUDA, macOS, Windows)."""
    if torch.device(device).type == "cpu" and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def threads_per_env(n_envs: int, total: int | None = None) -> int:
    """Each worker's share of the threads (``total``: torch's thread count in this process)."""
    total = torch.get_num_threads() if total is None else total
    return max(1, total // max(1, n_envs))


class WorkerEnvFn:
    """The callable a worker runs to get its env: sets the worker's torch threads, wraps the env in SB3's Monitor
    (the ``rollout/*`` records). Picklable when ``make_env`` is (needed by spawn / forkserver only)."""

    def __init__(self, make_env: Callable[[], gym.Env], threads: int) -> None:
        self.make_env = make_env
        self.threads = int(threads)

    def __call__(self) -> gym.Env:
        torch.set_num_threads(self.threads)
        return Monitor(self.make_env())


def make_vec_env(make_env: Callable[[], gym.Env], n_envs: int, *, start_method: str | None = None,
                 device: torch.device | str = "cpu", threads: int | None = None) -> VecEnv:
    """``n_envs`` worker processes, each running the env ``make_env()`` returns, with ``threads`` torch threads each
    (default: this process's threads shared out). ``start_method`` None: :func:`default_start_method`."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    method = start_method or default_start_method(device)
    if method not in START_METHODS or method not in multiprocessing.get_all_start_methods():
        raise ValueError(f"start_method {method!r} is not available here; choose one of "
                         f"{[m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]}")
    if method == "fork" and torch.device(device).type == "cuda":
        raise ValueError("start_method 'fork' cannot be used with CUDA (a forked process cannot re-initialise it); "
                         "use env.start_method=spawn")
    fn = WorkerEnvFn(make_env, threads_per_env(n_envs) if threads is None else threads)
    return SubprocVecEnv([fn] * n_envs, start_method=method)


def play_policies(venv: VecEnv, actions: np.ndarray) -> list[dict[str, Any]]:
    """Play one episode per worker, worker i taking ``actions[i, t]`` at step t (all in [-1, 1]); returns the final
    info of each worker's episode, in worker order. ``actions`` has one row per worker and one column per step."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[0] != venv.num_envs:
        raise ValueError(f"actions must have shape (n_envs={venv.num_envs}, steps), got {actions.shape}")
    venv.reset()
    finals: list[dict[str, Any] | None] = [None] * venv.num_envs
    for t in range(actions.shape[1]):
        _, _, dones, infos = venv.step(actions[:, t : t + 1])
        for i, done in enumerate(dones):
            if done and finals[i] is None:
                finals[i] = infos[i]
        if all(f is not None for f in finals):
            break
    if any(f is None for f in finals):
        raise RuntimeError(f"an episode did not end within {actions.shape[1]} steps")
    return [f for f in finals if f is not None]
