"""``make_agent``: an SB3 DDPG / TD3 / SAC agent with AMC's reference settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from amc.agents.noise import TruncatedNormalNoise
from amc.agents.policies import AMCSACPolicy, AMCTD3Policy
from amc.agents.replay import EpisodeRewardReplayBuffer

ALGOS: dict[str, type[OffPolicyAlgorithm]] = {"ddpg": DDPG, "td3": TD3, "sac": SAC}


def explores_with_noise(algo: str) -> bool:
    """Whether ``algo`` explores with AMC's truncated-normal noise (``sigma``, ``sigma_decay``): DDPG and TD3 do,
    SAC explores with its own stochastic policy."""
    return algo.lower() != "sac"


def make_agent(algo: str, env: gym.Env | VecEnv, *, actor_lr: float = 1e-4, critic_lr: float = 1e-3,
               net_arch: Sequence[int] = (300, 300), tau: float = 0.01, gamma: float = 1.0, batch_size: int = 64,
               replay_episodes: int = 100, warmup_episodes: int = 100, episode_length: int, sigma: float = 0.5,
               sigma_decay: float = 0.99, seed: int = 0, device: str | th.device = "cpu", tensorboard_log: str | None = None,
               verbose: int = 0, algo_kwargs: dict[str, Any] | None = None) -> OffPolicyAlgorithm:
    """Build the agent for fixed-length episodes of ``episode_length`` steps (one per prunable group).

    Replay holds ``replay_episodes`` episodes, the first ``warmup_episodes`` use SB3's uniform random actions, then
    one gradient step per collected transition after each episode. DDPG/TD3 explore with AMC's truncated normal
    noise (``sigma`` in keep-ratio units, decayed by ``sigma_decay`` per episode); SAC explores with its own policy
    (``sigma``/``sigma_decay`` unused). ``algo_kwargs`` go to the SB3 constructor as they are (e.g. SAC's
    ``ent_coef``). Train with ``model.learn(total_timesteps=episodes * episode_length, ...)``.

    ``env`` may be a VecEnv of N parallel envs (:func:`~amc.agents.vec.make_vec_env`): then the agent trains after
    every round of N episodes (one gradient step per collected transition, as with one env), warm-up and noise
    decay still count episodes, and ``warmup_episodes`` and the episodes given to ``learn()`` must be multiples of N.
    """
    algo = algo.lower()
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {sorted(ALGOS)}")
    if episode_length < 1 or critic_lr <= 0 or actor_lr <= 0:
        raise ValueError(f"need episode_length >= 1 and positive lrs; got {episode_length}, {actor_lr}, {critic_lr}")
    arch = [int(n) for n in net_arch]  # hydra hands a ListConfig; SB3 checks isinstance(net_arch, list)
    policy_kwargs: dict[str, Any] = {"net_arch": {"pi": list(arch), "qf": list(arch)},
                                     "actor_lr_scale": actor_lr / critic_lr}
    n_envs = env.num_envs if isinstance(env, VecEnv) else 1
    if warmup_episodes % n_envs:
        raise ValueError(f"warmup_episodes={warmup_episodes} must be a multiple of the {n_envs} parallel envs "
                         f"(episodes run in rounds of {n_envs})")
    noise = None
    if explores_with_noise(algo):
        noise = TruncatedNormalNoise(sigma=sigma, decay=sigma_decay, warmup_episodes=warmup_episodes, seed=seed)
    model = ALGOS[algo](
        AMCSACPolicy if algo == "sac" else AMCTD3Policy,
        env,
        learning_rate=critic_lr,  # SB3's single lr is the critic's; the actor's optimizer scales it
        buffer_size=replay_episodes * episode_length,
        learning_starts=warmup_episodes * episode_length,
        batch_size=batch_size,
        tau=tau,
        gamma=gamma,
        # after every episode; with parallel envs (SB3: step units only) after every round, all episodes being
        # episode_length steps long
        train_freq=(1, "episode") if n_envs == 1 else (episode_length, "step"),
        gradient_steps=-1,
        action_noise=noise,
        replay_buffer_class=EpisodeRewardReplayBuffer,
        policy_kwargs=policy_kwargs,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        seed=seed,
        device=device,
        **(algo_kwargs or {}),
    )
    if noise is not None:
        noise.bind(model)
    return model
