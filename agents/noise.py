"""AMC's exploration: a normal around the actor's own action, truncated to the action bounds, decayed per episode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.noise import ActionNoise, VectorizedActionNoise

from amc import compat

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

LOW, HIGH = -1.0, 1.0  # SB3 adds noise in the scaled action space, always [-1, 1]


class TruncatedNormalNoise(VectorizedActionNoise):
    """x ~ TruncNormal(mu, 2 * sigma, -1, 1) around the actor action mu; SB3 adds the returned ``x - mu`` to mu.

    ``sigma`` is in AMC's [0, 1] keep-ratio units (reference code: 0.5), hence ``2 * sigma`` in SB3's [-1, 1] action
    units. It stays at ``sigma0`` for the first policy episode after ``warmup_episodes`` and then shrinks by ``decay``
    per episode: ``sigma0 * decay ** max(0, episode - warmup_episodes)``. SB3 only adds the returned noise to the
    actor's action, so the noise computes that action itself: call :meth:`bind` with the model first. During SB3's
    warm-up (uniform random actions, ``num_timesteps < learning_starts``) it returns zeros, since SB3 also adds the
    noise to the random warm-up actions.

    It serves every parallel environment itself (one row per env, one schedule counting every finished episode), so
    it is a ``VectorizedActionNoise``: SB3 would otherwise wrap copies of it, unbound, one per env.
    """

    def __init__(self, sigma: float = 0.5, decay: float = 0.99, warmup_episodes: int = 100, seed: int | None = None,
                 max_rejection_rounds: int = 1000) -> None:
        ActionNoise.__init__(self)  # not VectorizedActionNoise's: no per-env copies
        if sigma < 0 or not 0 < decay <= 1 or warmup_episodes < 0:
            raise ValueError(f"need sigma >= 0, 0 < decay <= 1, warmup_episodes >= 0; got {sigma}, {decay}, {warmup_episodes}")
        self.sigma0 = float(sigma)
        self.decay = float(decay)
        self.warmup_episodes = int(warmup_episodes)
        self.max_rejection_rounds = max_rejection_rounds
        self.episode = 0  # finished episodes = index of the current one (SB3 calls reset() at every episode end)
        self.rng = np.random.default_rng(seed)
        self._model: OffPolicyAlgorithm | None = None
        self._seen_episode_num = 0

    def bind(self, model: OffPolicyAlgorithm) -> TruncatedNormalNoise:
        """Attach the model whose actor gives the mean; returns self. Call again after changing its counters."""
        self._model = model
        self._seen_episode_num = compat.episode_count(model)
        return self

    @property
    def sigma(self) -> float:
        """Current sigma in [0, 1] keep-ratio units."""
        return self.sigma0 * self.decay ** max(0, self.episode - self.warmup_episodes)

    @property
    def scaled_sigma(self) -> float:
        """Current sigma in SB3's [-1, 1] action units."""
        return 2.0 * self.sigma

    def sample(self, mean: np.ndarray) -> np.ndarray:
        """Draw x ~ TruncNormal(mean, scaled_sigma, -1, 1) elementwise (vectorised rejection sampling)."""
        mean = np.clip(np.asarray(mean, dtype=np.float64), LOW, HIGH)
        scale = self.scaled_sigma
        if scale == 0.0:
            return mean.copy()
        x = mean + scale * self.rng.standard_normal(mean.shape)
        bad = (x < LOW) | (x > HIGH)
        # Acceptance is at least ~1/2 per round (mean inside the bounds), so this ends after a few rounds.
        for _ in range(self.max_rejection_rounds):
            if not bad.any():
                break
            x[bad] = mean[bad] + scale * self.rng.standard_normal(int(bad.sum()))
            bad = (x < LOW) | (x > HIGH)
        return np.clip(x, LOW, HIGH)

    def __call__(self) -> np.ndarray:
        model = self._model
        if model is None:
            raise RuntimeError("TruncatedNormalNoise needs the model: call noise.bind(model) before training")
        self._seen_episode_num = compat.episode_count(model)  # see reset()
        if model.num_timesteps < model.learning_starts:  # SB3's warm-up: its action is uniform random, leave it be
            return np.zeros((model.n_envs, *model.action_space.shape), dtype=np.float32)
        action, _ = model.policy.predict(compat.last_obs(model), deterministic=True)
        mu = np.clip(model.policy.scale_action(action), LOW, HIGH)
        return (self.sample(mu) - mu).astype(np.float32)

    @property
    def n_envs(self) -> int:  # type: ignore[override]
        """Parallel environments of the bound model (1 before :meth:`bind`)."""
        return 1 if self._model is None else int(self._model.n_envs)

    def reset(self, indices: Any = None) -> None:
        """Advance the decay schedule at an episode end (``indices``: the envs whose episode ended; SB3 passes
        them with parallel envs).

        SB3 calls this at every episode end *and* at the start of every ``learn()``. When bound, the model's episode
        counter tells them apart: SB3 increments it just before the episode-end call, and it is unchanged since the
        last step (or episode end) at a ``learn()`` start.
        """
        if self._model is not None:
            episodes = compat.episode_count(self._model)
            if episodes == self._seen_episode_num:
                return  # learn() start, not an episode end
            self.episode += episodes - self._seen_episode_num
            self._seen_episode_num = episodes
            return
        self.episode += 1 if indices is None else len(list(indices))

    def get_state(self) -> dict[str, Any]:
        """JSON-able state (schedule, counter and RNG) for resuming."""
        return {"episode": self.episode, "sigma0": self.sigma0, "decay": self.decay,
                "warmup_episodes": self.warmup_episodes, "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`get_state`."""
        self.episode = int(state["episode"])
        self.sigma0, self.decay = float(state["sigma0"]), float(state["decay"])
        self.warmup_episodes = int(state["warmup_episodes"])
        self.rng.bit_generator.state = state["rng"]

    def __getstate__(self) -> dict[str, Any]:
        # SB3's model.save() pickles the action noise: never drag the bound model (env, buffer) along.
        return {**self.__dict__, "_model": None}

    def __repr__(self) -> str:
        return (f"TruncatedNormalNoise(sigma={self.sigma:.4g}, sigma0={self.sigma0}, decay={self.decay}, "
                f"warmup_episodes={self.warmup_episodes}, episode={self.episode})")
