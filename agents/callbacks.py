"""``AMCCallback``: per-episode records, TensorBoard curves, best policy, progress bar, checkpoints, stopping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam, Image

from amc.agents.noise import TruncatedNormalNoise
from amc.agents.state import save_resume_state
from amc.search_log import SCALARS, EpisodeLog, jsonable

TB_ONLY = ("stdout", "log", "json", "csv")  # images and hparams only make sense in TensorBoard


class AMCCallback(BaseCallback):
    """Logs every finished episode (an env ``info`` with ``episode_end``) and stops after ``total_episodes``.

    Per episode: one line in ``run_dir/episodes.jsonl``, ``amc/*`` scalars dumped at step = episode number, a
    keep-ratio bar chart when the reward is a new best (and ``on_best(record)``), a tqdm bar. Every
    ``checkpoint_every`` episodes and at the end: :func:`save_resume_state` (done at the start of the next rollout,
    after SB3 stored the episode and trained on it); at the end also ``run_dir/agent.zip``. To continue a run pass
    ``start_episode`` and ``best`` from :func:`load_resume_state` (lines of episodes.jsonl past ``start_episode``,
    run after the last checkpoint, are dropped). Give ``learn()`` exactly ``remaining_episodes * episode_length``
    timesteps: stopping early from a callback makes SB3 skip storing and training on the last step's episode.
    """

    def __init__(self, total_episodes: int, run_dir: Path, on_best: Callable[[dict[str, Any]], None] | None = None,
                 checkpoint_every: int = 10, progress: bool = True, hparams: dict[str, Any] | None = None,
                 group_names: list[str] | None = None, *, start_episode: int = 0,
                 best: dict[str, Any] | None = None, episode_log: EpisodeLog | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.total_episodes = int(total_episodes)
        self.run_dir = Path(run_dir)
        self.on_best = on_best
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.hparams = dict(hparams or {})
        self._owns_log = episode_log is None
        self.log = episode_log or EpisodeLog(self.run_dir, method="amc", total=self.total_episodes, progress=progress,
                                             tensorboard=False, group_names=group_names)
        self.log.restore(int(start_episode), best)
        self._checkpoint_due = False
        self._saved_episode = -1

    @property
    def episode(self) -> int:
        return self.log.episode

    @property
    def best(self) -> dict[str, Any] | None:
        return self.log.best

    @property
    def best_reward(self) -> float:
        return self.log.best_reward

    def _on_training_start(self) -> None:
        if self.episode == 0:  # once per run, not again on resume (same TensorBoard dir)
            self.logger.record("hparams", HParam(self._hparam_dict(), {"amc/best_reward": 0}), exclude=TB_ONLY)

    def _hparam_dict(self) -> dict[str, bool | str | float | int]:
        m = self.model
        derived: dict[str, Any] = {
            "algo": type(m).__name__, "critic_lr": m.learning_rate if isinstance(m.learning_rate, float) else str(m.learning_rate),
            "actor_lr_scale": getattr(m.policy, "actor_lr_scale", 1.0), "batch_size": m.batch_size, "tau": m.tau,
            "gamma": m.gamma, "buffer_size": m.buffer_size, "learning_starts": m.learning_starts,
            "total_episodes": self.total_episodes, "seed": m.seed,
        }
        if isinstance(m.action_noise, TruncatedNormalNoise):
            derived.update(sigma=m.action_noise.sigma0, sigma_decay=m.action_noise.decay)
        out = {}
        for k, v in {**derived, **self.hparams}.items():
            v = jsonable(v)
            out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
        return out

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        rewards = self.locals.get("rewards")
        for i, info in enumerate(infos):
            if info.get("episode_end"):
                fallback = float(rewards[i]) if rewards is not None else float("nan")
                self._record_episode(info, fallback)
        if self.episode < self.total_episodes:
            return True
        # Stopping here makes SB3 skip storing this step's transition and training on the episode. When learn()
        # ends by itself after this episode anyway (total_timesteps reached), let it finish cleanly instead.
        dones = self.locals.get("dones")
        ends_by_itself = dones is not None and bool(np.all(dones)) and \
            self.model.num_timesteps >= self.model._total_timesteps
        return ends_by_itself

    def _record_episode(self, info: dict[str, Any], fallback_reward: float) -> None:
        row, new_best = self.log.record({"reward": fallback_reward, **info})
        for key, tag in SCALARS.items():
            if isinstance(row.get(key), (int, float)):
                self.logger.record(tag, row[key])
        self.logger.record("amc/best_reward", self.best_reward)
        if isinstance(self.model.action_noise, TruncatedNormalNoise):
            self.logger.record("amc/noise_sigma", self.model.action_noise.sigma)
        if new_best:
            if self.on_best is not None:
                self.on_best(dict(row))
            if row.get("keep_ratios"):
                self.logger.record("amc/best_keep_ratios", Image(self.log.best_image(), "HWC"), exclude=TB_ONLY)
        self.logger.dump(step=self.episode)
        if self.episode % self.checkpoint_every == 0:
            self._checkpoint_due = True

    def _on_rollout_start(self) -> None:
        # The previous rollout (one episode) is stored and trained on by now: a consistent point to checkpoint.
        if self._checkpoint_due:
            self._checkpoint()

    def _checkpoint(self) -> None:
        save_resume_state(self.model, self.run_dir, episode=self.episode, best=self.best)
        self._checkpoint_due = False
        self._saved_episode = self.episode

    def _on_training_end(self) -> None:
        if self._saved_episode != self.episode:
            self._checkpoint()
        self.model.save(self.run_dir / "agent.zip")
        if self._owns_log:
            self.log.close()
