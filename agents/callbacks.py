"""SB3 callbacks of an AMC search, one role each, joined by :class:`AMCCallback` (an SB3 ``CallbackList``).

- :class:`EpisodeLogCallback`: finished episodes -> the :class:`~amc.runs.search_log.EpisodeLog` (episodes.jsonl, best so
  far, progress bar or log lines, shared with the baselines); stops after ``total_episodes``.
- :class:`TensorBoardCallback`: the ``amc/*`` curves (the baselines' code path and keys) and SB3's own ``train/*``,
  ``rollout/*`` and ``time/*``, all on one axis: the episode number.
- :class:`BestPolicyCallback`: a new best policy -> its keep-ratio chart in TensorBoard and ``on_best(row)``.
- :class:`ResumeCheckpointCallback`: ``run_dir/resume/`` every N episodes and at the end.
- :class:`SaveAgentCallback`: ``run_dir/agent.zip`` and the pickle-free actor (``actor.safetensors`` + ``actor.json``).

The role callbacks hear about episodes from the shared ``EpisodeLog`` (its listeners), fed by ``EpisodeLogCallback``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import HParam, Image, Logger

from amc import compat
from amc.agents.actor_io import save_actor
from amc.agents.noise import TruncatedNormalNoise
from amc.agents.state import save_resume_state
from amc.runs.search_log import EpisodeLog, jsonable, write_best_image, write_episode_scalars

TB_ONLY = ("stdout", "log", "json", "csv")  # images and hparams only make sense in TensorBoard


def _active(callback: BaseCallback) -> bool:
    """Whether the callback belongs to a running learn() (the shared log may also record without it)."""
    return getattr(callback, "model", None) is not None


class EpisodeAxisLogger(Logger):
    """SB3's logger that writes every dump at the episode number, whatever step its caller passes.

    SB3 dumps at ``num_timesteps``; AMC's curves are per episode. With this logger (installed by
    :class:`TensorBoardCallback`) a run has one x axis, also when SB3 dumps by itself (``learn(log_interval=...)``).
    """

    def __init__(self, base: Logger, episode: Callable[[], int]) -> None:
        super().__init__(folder=base.get_dir(), output_formats=base.output_formats)
        self.level = base.level
        self.name_to_value.update(base.name_to_value)
        self.name_to_count.update(base.name_to_count)
        self.name_to_excluded.update(base.name_to_excluded)
        self.episode = episode

    def dump(self, step: int = 0) -> None:
        super().dump(step=self.episode())


class SB3LoggerSink:
    """A :class:`~amc.runs.search_log.ScalarSink` on SB3's logger (images go to TensorBoard only)."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def scalar(self, tag: str, value: float) -> None:
        self.logger.record(tag, value)

    def image(self, tag: str, hwc: np.ndarray) -> None:
        self.logger.record(tag, Image(hwc, "HWC"), exclude=TB_ONLY)


class EpisodeLogCallback(BaseCallback):
    """Records every finished episode (an env ``info`` with ``episode_end``) and stops after ``total_episodes``.

    Give ``learn()`` exactly ``remaining_episodes * episode_length`` timesteps: stopping early from a callback makes
    SB3 skip storing and training on the last step's episode, so this only stops a ``learn()`` given more.
    """

    def __init__(self, episode_log: EpisodeLog, total_episodes: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.log = episode_log
        self.total_episodes = int(total_episodes)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        rewards = self.locals.get("rewards")
        for i, info in enumerate(infos):
            if info.get("episode_end"):
                fallback = float(rewards[i]) if rewards is not None else float("nan")
                self.log.record({"reward": fallback, **info})
        if self.log.episode < self.total_episodes:
            return True
        # Stopping here makes SB3 skip storing this step's transition and training on the episode. When learn()
        # ends by itself after this episode anyway (total_timesteps reached), let it finish cleanly instead.
        dones = self.locals.get("dones")
        return dones is not None and bool(np.all(dones)) and self.model.num_timesteps >= compat.total_timesteps(self.model)


class TensorBoardCallback(BaseCallback):
    """Per-episode TensorBoard records on the episode axis: ``amc/*`` and SB3's ``train/*``, ``rollout/*``, ``time/*``.

    At an episode end it records the same ``amc/*`` scalars as the baselines (:func:`write_episode_scalars`) plus
    ``amc/noise_sigma``; at the start of the next rollout (after SB3 trained on the episode) and at the end of
    training it has SB3 add its own records and dump them all (SB3's ``dump_logs``) at step = episode number. The
    run's hyperparameters go in once, at the start of a new run. Pass ``learn(log_interval=None)``: SB3's own
    periodic dumps are redundant (they land on the episode axis too).
    """

    def __init__(self, episode_log: EpisodeLog, *, hparams: dict[str, Any] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.log = episode_log
        self.hparams = dict(hparams or {})
        self._pending = False
        episode_log.add_listener(self._on_episode)

    def _init_callback(self) -> None:
        logger = self.model.logger
        if isinstance(logger, EpisodeAxisLogger):
            logger.episode = self._episode
        else:
            self.model.set_logger(EpisodeAxisLogger(logger, self._episode))

    def _episode(self) -> int:
        return self.log.episode

    def _on_training_start(self) -> None:
        if self.log.episode == 0:  # once per run, not again on resume (same TensorBoard dir)
            self.logger.record("hparams", HParam(self._hparam_dict(), {"amc/best_reward": 0}), exclude=TB_ONLY)

    def _hparam_dict(self) -> dict[str, bool | str | float | int]:
        m = self.model
        derived: dict[str, Any] = {
            "algo": type(m).__name__, "critic_lr": m.learning_rate if isinstance(m.learning_rate, float) else str(m.learning_rate),
            "actor_lr_scale": getattr(m.policy, "actor_lr_scale", 1.0), "batch_size": m.batch_size, "tau": m.tau,
            "gamma": m.gamma, "buffer_size": m.buffer_size, "learning_starts": m.learning_starts,
            "total_episodes": self.log.total, "seed": m.seed,
        }
        if isinstance(m.action_noise, TruncatedNormalNoise):
            derived.update(sigma=m.action_noise.sigma0, sigma_decay=m.action_noise.decay)
        out = {}
        for k, v in {**derived, **self.hparams}.items():
            v = jsonable(v)
            out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
        return out

    def _on_episode(self, row: dict[str, Any], new_best: bool) -> None:
        if not _active(self):
            return
        write_episode_scalars(SB3LoggerSink(self.logger), row, self.log.best_reward)
        if isinstance(self.model.action_noise, TruncatedNormalNoise):
            self.logger.record("amc/noise_sigma", self.model.action_noise.sigma)
        self._pending = True

    def _dump(self) -> None:
        if self._pending:
            compat.dump_logs(self.model)  # SB3's time/* and rollout/*, then one dump of everything recorded
            self._pending = False

    def _on_rollout_start(self) -> None:
        self._dump()

    def _on_training_end(self) -> None:
        self._dump()

    def _on_step(self) -> bool:
        return True


class BestPolicyCallback(BaseCallback):
    """On a new best episode: ``on_best(row)`` and the keep-ratio chart (``amc/best_keep_ratios``, TensorBoard).

    The chart is recorded in SB3's logger; :class:`TensorBoardCallback` dumps it with the episode's scalars.
    """

    def __init__(self, episode_log: EpisodeLog, on_best: Callable[[dict[str, Any]], None] | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.log = episode_log
        self.on_best = on_best
        episode_log.add_listener(self._on_episode)

    def _on_episode(self, row: dict[str, Any], new_best: bool) -> None:
        if not (new_best and _active(self)):
            return
        if self.on_best is not None:
            self.on_best(dict(row))
        write_best_image(SB3LoggerSink(self.logger), self.log)

    def _on_step(self) -> bool:
        return True


class ResumeCheckpointCallback(BaseCallback):
    """:func:`save_resume_state` every ``every`` episodes and at the end of training.

    A periodic save happens at the start of the next rollout: by then SB3 has stored the episode and trained on it,
    a consistent point to resume from.
    """

    def __init__(self, run_dir: str | Path, episode_log: EpisodeLog, every: int = 10, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.run_dir = Path(run_dir)
        self.log = episode_log
        self.every = max(1, int(every))
        self._due = False
        self._saved_episode = -1
        self._mark = 0  # episode at the last multiple of `every` seen (or at the start of training)
        episode_log.add_listener(self._on_episode)

    def _on_episode(self, row: dict[str, Any], new_best: bool) -> None:
        # a multiple of `every` passed (parallel envs finish several episodes per round)
        if _active(self) and self.log.episode // self.every > self._mark // self.every:
            self._due = True
            self._mark = self.log.episode

    def _on_training_start(self) -> None:
        self._mark = self.log.episode

    def _save(self) -> None:
        save_resume_state(self.model, self.run_dir, episode=self.log.episode, best=self.log.best)
        self._due = False
        self._saved_episode = self.log.episode

    def _on_rollout_start(self) -> None:
        if self._due:
            self._save()

    def _on_training_end(self) -> None:
        if self._saved_episode != self.log.episode:
            self._save()

    def _on_step(self) -> bool:
        return True


class SaveAgentCallback(BaseCallback):
    """At the end of training: ``run_dir/agent.zip`` (SB3's format) and ``actor.safetensors`` + ``actor.json``.

    ``obs_fields`` and ``keep_ratio_bounds`` go to :func:`~amc.agents.actor_io.save_actor` (bounds default to the
    env's ``lbound``/``rbound``).
    """

    def __init__(self, run_dir: str | Path, *, obs_fields: Sequence[str] | None = None,
                 keep_ratio_bounds: tuple[float, float] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.run_dir = Path(run_dir)
        self.obs_fields = obs_fields
        self.keep_ratio_bounds = keep_ratio_bounds

    def _on_training_end(self) -> None:
        self.model.save(self.run_dir / "agent.zip")
        save_actor(self.model, self.run_dir, obs_fields=self.obs_fields, keep_ratio_bounds=self.keep_ratio_bounds)

    def _on_step(self) -> bool:
        return True


class AMCCallback(CallbackList):
    """The callbacks of an AMC search in one ``CallbackList``: log, TensorBoard, best policy, checkpoints, saving.

    Per episode: one line in ``run_dir/episodes.jsonl`` (plus the progress bar or log lines), the ``amc/*`` curves
    at step = episode number, the keep-ratio chart and ``on_best(record)`` on a new best. Every
    ``checkpoint_every`` episodes and at the end: the resume state; at the end also ``agent.zip`` and the actor. To
    continue a run pass ``start_episode`` and ``best`` from :func:`load_resume_state` (lines of episodes.jsonl past
    ``start_episode``, run after the last checkpoint, are dropped). Give ``learn()`` exactly
    ``remaining_episodes * episode_length`` timesteps and ``log_interval=None``.
    """

    def __init__(self, total_episodes: int, run_dir: Path, on_best: Callable[[dict[str, Any]], None] | None = None,
                 checkpoint_every: int = 10, progress: bool = True, hparams: dict[str, Any] | None = None,
                 group_names: list[str] | None = None, *, start_episode: int = 0,
                 best: dict[str, Any] | None = None, episode_log: EpisodeLog | None = None,
                 obs_fields: Sequence[str] | None = None, keep_ratio_bounds: tuple[float, float] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.total_episodes = int(total_episodes)
        self._owns_log = episode_log is None
        self.log = episode_log or EpisodeLog(self.run_dir, method="amc", total=self.total_episodes, progress=progress,
                                             tensorboard=False, group_names=group_names)
        self.log.restore(int(start_episode), best)
        super().__init__([
            EpisodeLogCallback(self.log, self.total_episodes),
            TensorBoardCallback(self.log, hparams=hparams),
            BestPolicyCallback(self.log, on_best),
            ResumeCheckpointCallback(self.run_dir, self.log, every=checkpoint_every),
            SaveAgentCallback(self.run_dir, obs_fields=obs_fields, keep_ratio_bounds=keep_ratio_bounds),
        ])

    @property
    def episode(self) -> int:
        return self.log.episode

    @property
    def best(self) -> dict[str, Any] | None:
        return self.log.best

    @property
    def best_reward(self) -> float:
        return self.log.best_reward

    def _on_training_end(self) -> None:
        super()._on_training_end()
        if self._owns_log:
            self.log.close()
