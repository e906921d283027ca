"""Playing policies through the env: a list of actions, or an actor's deterministic episode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from amc.envs import ChannelPruningEnv


def run_episode(env: ChannelPruningEnv, actions: list[float], seed: int | None = None) -> dict[str, Any]:
    """One episode of ``actions`` (in [-1, 1]) through the env and its wall; returns the last step's info."""
    env.reset(seed=seed)
    info: dict[str, Any] = {}
    for a in actions:
        _, _, terminated, _, info = env.step(np.array([a], dtype=np.float32))
        if terminated:
            break
    return info


def run_actor(actor: torch.nn.Module, env: ChannelPruningEnv, seed: int) -> dict[str, Any]:
    """One deterministic episode of ``actor`` (observation -> action in [-1, 1]) through the env and its wall."""
    obs, _ = env.reset(seed=seed)
    info: dict[str, Any] = {}
    terminated = False
    with torch.no_grad():
        while not terminated:
            action = actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].cpu().numpy()
            obs, _, terminated, _, info = env.step(action)
    return info


def warmup_warning(*, best_episode: int, warmup_episodes: int, episodes: int, sigma_decay: float | None) -> str | None:
    """A warning when the search's best policy came from the agent's warm-up (uniformly random actions): the trained
    agent then found nothing better in every episode after it, and random search would have done as well.
    ``sigma_decay``: the decay of the exploration noise (DDPG, TD3), None for an agent without it (SAC)."""
    if episodes <= warmup_episodes or best_episode > warmup_episodes:
        return None
    advice = "More episodes (resume=<run dir> episodes=<more>) may help"
    if sigma_decay is not None and sigma_decay < 1:
        slower = 0.99 if sigma_decay < 0.99 else round(1 - (1 - sigma_decay) / 2, 6)  # strictly slower than now
        advice += (f", or at tight budgets a slower decay of the exploration noise than agent.sigma_decay={sigma_decay} "
                   f"per episode (agent.sigma_decay={slower})")
    return (f"the best policy is warm-up episode {best_episode} (random actions): in the {episodes - warmup_episodes} "
            f"episodes after the warm-up the agent found nothing better. {advice} (docs/budgets.md, 'Tight budgets')")
