"""AMC's channel-pruning environment: one step per dependency group, in forward order.

The action is the group's keep ratio (a symmetric [-1, 1] Box rescaled to [lbound, rbound] here); an optional
budget wall caps it so the resource budget stays reachable. The reward comes at the last step only: the
network is pruned to the realised channel counts (on a copy) and evaluated on held-out training images.
Baselines with exact channel counts play an episode through the same path with ``play_counts``.

A budget-conditioned agent (one agent for every budget): ``target_range=(lo, hi)`` draws each episode's target ratio
from the env's RNG (the wall and the reward use it) and ``budget_in_state=True`` appends it to the observation.
``state_extras`` adds fields that mean the same in every network (:mod:`amc.envs.state_fields`) after AMC's 11.
``reward_baseline="uniform"`` returns the reward minus the uniform policy's at the episode's budget (evaluated once per
budget, or at ``baseline_points`` budgets across ``target_range`` and interpolated): an agent trained across networks
and budgets learns from what it gains over uniform, not from how prunable each network is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from amc.data.base import DataSplits
from amc.envs.state_fields import extra_fields, static_extras
from amc.measure.accuracy import EarlyStop, evaluate_accuracy_adaptive
from amc.measure.fast_paths import check_fast_paths
from amc.measure.latency_table import LatencyTable
from amc.measure.memory import release_memory
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.fold import conv_bn_pairs, fold_bn
from amc.pruning.groups import PrunableNetwork, round_channels
from amc.pruning.heuristics import solve_heuristic
from amc.runs.rewards import get_reward

OBS_FIELDS = ("t", "n", "c", "h", "w", "stride", "kernel", "macs", "reduced", "rest", "a_prev")
OBS_DIM = len(OBS_FIELDS)
REWARD_BASELINES = ("none", "uniform")
TARGET_FIELD = "target"  # the episode's budget (target ratio), last in the observation with budget_in_state

log = logging.getLogger(__name__)


def observation_fields(budget_in_state: bool, state_extras: Sequence[str] = ()) -> tuple[str, ...]:
    """The observation layout: AMC's 11 fields, the extras' fields, and the episode's target ratio when it is in the
    state."""
    return (*OBS_FIELDS, *extra_fields(state_extras), *((TARGET_FIELD,) if budget_in_state else ()))


def _minmax(column: np.ndarray) -> np.ndarray:
    span = column.max() - column.min()
    return np.zeros_like(column) if span == 0 else (column - column.min()) / span


class ChannelPruningEnv(gym.Env):
    """Choose a keep ratio per channel group; the episode's reward is a function of the pruned model's accuracy."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        net: PrunableNetwork,
        engine: PruningEngine,
        data: DataSplits,
        *,
        reward: str = "accuracy",
        budget: ResourceBudget | None = None,
        lbound: float = 0.2,
        rbound: float = 1.0,
        eval_split: str = "reward_val",
        eval_images: int | None = None,
        eval_batch_size: int = 250,
        device: torch.device | str = "cpu",
        latency_table: LatencyTable | None = None,
        release_memory_per_episode: bool = True,
        budget_in_state: bool = False,
        target_range: tuple[float, float] | None = None,
        early_stop_margin: float | None = None,
        early_stop_z: float = 3.0,
        early_stop_min_images: int = 500,
        fold_bn: bool = False,
        channels_last: bool = False,
        state_extras: Sequence[str] = (),
        reward_baseline: str = "none",
        baseline_points: int = 5,
    ) -> None:
        """``early_stop_margin``: stop evaluating an episode once the upper confidence bound (``early_stop_z``) of
        its accuracy, after at least ``early_stop_min_images``, is more than the margin below the best accuracy of
        the episodes evaluated in full (None: every episode sees all ``eval_images``). ``fold_bn``: fold BatchNorm
        into the preceding conv of each evaluated copy (after any BN recalibration; exact up to float rounding).
        ``channels_last``: evaluate each copy in the channels-last memory format (faster convolutions on CPU).
        ``state_extras``: names of :data:`~amc.envs.state_fields.STATE_EXTRAS` added to the observation.
        ``reward_baseline``: ``"uniform"`` subtracts the uniform policy's reward at the episode's budget (``info``
        keeps the raw one as ``raw_reward``); with ``target_range`` it is evaluated at ``baseline_points`` evenly
        spaced budgets now and interpolated, else once per budget when first needed."""
        if not 0.0 < float(lbound) <= float(rbound) <= 1.0:
            raise ValueError(f"keep-ratio bounds must satisfy 0 < lbound <= rbound <= 1, got lbound={lbound}, rbound={rbound}")
        if engine.net is not net:
            raise ValueError("engine was built for a different PrunableNetwork than net")
        if budget is not None:
            if budget.net is not net:
                raise ValueError("budget was built for a different PrunableNetwork than net")
            if not np.isclose(budget.lbound, lbound):
                raise ValueError(f"budget lbound={budget.lbound} differs from the env's lbound={lbound}")
        if eval_images is not None and eval_images < 1:
            raise ValueError(f"eval_images must be >= 1 or None (all), got {eval_images}")
        if target_range is not None and budget is None:
            raise ValueError("target_range needs a resource budget (the accuracy-guaranteed protocol has none)")
        if early_stop_margin is not None:
            if early_stop_margin < 0:
                raise ValueError(f"early_stop_margin must be >= 0 or None, got {early_stop_margin}")
            if reward not in ("accuracy", "neg_error"):
                raise ValueError(f"early stopping compares accuracies, so it needs reward 'accuracy' or 'neg_error' "
                                 f"(a reward that trades accuracy for cost can win with a lower accuracy); got {reward!r}")
            if target_range is not None:
                raise ValueError("early stopping compares accuracies across episodes, which a per-episode target "
                                 "(target_range) makes incomparable")
            EarlyStop(0.0, early_stop_z, early_stop_min_images)  # validates z and min_images
        if reward_baseline not in REWARD_BASELINES:
            raise ValueError(f"unknown reward_baseline {reward_baseline!r}; expected one of {REWARD_BASELINES}")
        if reward_baseline != "none" and budget is None:
            raise ValueError(f"reward_baseline={reward_baseline!r} needs a resource budget (protocol=macs, params or "
                             "latency): the accuracy-guaranteed protocol has no budget to prune uniformly to")
        if target_range is not None and reward_baseline != "none" and int(baseline_points) < 2:
            raise ValueError(f"baseline_points must be >= 2 to interpolate across target_range, got {baseline_points}")
        data.split(eval_split)  # validates the split name
        self.reward_fn = get_reward(reward)
        self.net, self.engine, self.data = net, engine, data
        self.reward_name, self.budget = reward, budget
        self.lbound, self.rbound = float(lbound), float(rbound)
        self.eval_split, self.eval_images, self.eval_batch_size = eval_split, eval_images, eval_batch_size
        self.device, self.latency_table = device, latency_table
        self.release_memory_per_episode = release_memory_per_episode
        self.early_stop_margin, self.early_stop_z = early_stop_margin, early_stop_z
        self.early_stop_min_images = early_stop_min_images
        # (conv, bn) names folded in each evaluated copy, and its memory format: only where the model runs identically
        images = next(data.batches(eval_split, batch_size=min(8, eval_batch_size)))[0].to(device)
        self.fold_pairs, self.channels_last = check_fast_paths(
            net.model, images, fold_pairs=conv_bn_pairs(net.model) if fold_bn else [], channels_last=bool(channels_last))
        self.best_accuracy: float | None = None  # of the episodes evaluated in full: the early stop's reference
        split_size = len(data.split(eval_split))
        self._eval_total = split_size if eval_images is None else min(eval_images, split_size)  # a full evaluation
        self.render_mode = None
        self._fixed_budget = budget
        self.target_range: tuple[float, float] | None = None
        if target_range is not None:
            assert budget is not None
            lo, hi = (float(x) for x in target_range)
            if not 0.0 < lo < hi <= 1.0:
                raise ValueError(f"target_range must be [lo, hi] with 0 < lo < hi <= 1, got {list(target_range)}")
            budget.with_target(lo)  # the smallest target must be reachable: a clear error now, not mid-search
            self.target_range = (lo, hi)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

        groups = net.groups
        self.num_groups = len(groups)
        static = np.array([[g.channels, g.in_channels, g.feature_hw[0], g.feature_hw[1], g.stride, g.kernel, g.macs]
                           for g in groups], dtype=np.float64)
        self._static = np.stack([_minmax(static[:, j]) for j in range(static.shape[1])], axis=1)
        self.set_observation(budget_in_state=budget_in_state, state_extras=state_extras)
        touched = [set(g.producers) | set(g.consumers) for g in groups]
        self._rest = np.zeros(self.num_groups)
        for t in range(self.num_groups):
            seen = set().union(*touched[: t + 1])
            later = set().union(*touched[t + 1 :]) - seen
            self._rest[t] = sum(net.costs[n].macs for n in later if n in net.costs) / net.original_macs
        self._full = [g.channels for g in groups]
        self._reset_state()
        self.reward_baseline = reward_baseline
        self._baselines: dict[float, float] = {}  # budget target ratio -> the uniform policy's reward there
        self._baseline_grid: tuple[np.ndarray, np.ndarray] | None = None  # (budgets, rewards) across target_range
        if reward_baseline != "none" and self.target_range is not None:
            targets = np.linspace(*self.target_range, int(baseline_points))
            self._baseline_grid = (targets, np.array([self._uniform_reward(float(t)) for t in targets]))

    def set_observation(self, *, budget_in_state: bool = False, state_extras: Sequence[str] = ()) -> None:
        """Observe with this layout from the next observation on (``amc.apply`` with several agents, each trained
        with its own state); the fields' values do not depend on the layout."""
        if budget_in_state and self._fixed_budget is None:
            raise ValueError("budget_in_state needs a resource budget (the accuracy-guaranteed protocol has none)")
        if "budget_left" in state_extras and self._fixed_budget is None:
            raise ValueError("the state field 'budget_left' needs a resource budget (protocol=macs, params or "
                             "latency); the accuracy-guaranteed protocol has none")
        self.obs_fields = observation_fields(budget_in_state, state_extras)
        self._budget_left = "budget_left" in state_extras
        self._extras = static_extras(self.net, state_extras)
        self.observation_space = spaces.Box(0.0, 1.0, (len(self.obs_fields),), np.float32)

    # -- gymnasium API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; with ``target_range`` its target is drawn from the env's RNG (``options={'target': x}``
        sets it instead)."""
        super().reset(seed=seed)
        target = (options or {}).get("target")
        if target is None and self.target_range is not None:
            target = float(self.np_random.uniform(*self.target_range))
        if target is not None:
            assert self._fixed_budget is not None
            self.budget = self._fixed_budget.with_target(float(target))
        self._reset_state()
        return self._observation(), {}

    def fix_target(self, target: float) -> None:
        """Every later episode at budget ``target`` (ends the per-episode draws of ``target_range``)."""
        if self._fixed_budget is None:
            raise ValueError("fix_target needs a resource budget")
        self.target_range = None
        self._fixed_budget = self.budget = self._fixed_budget.with_target(float(target))

    @property
    def target(self) -> float | None:
        """The current episode's budget as a ratio of the original resource (None without a budget)."""
        return None if self.budget is None else self.budget.target_ratio

    def step(self, action: np.ndarray | float) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._t >= self.num_groups:
            raise RuntimeError("the episode is over: call reset() before step()")
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if np.isnan(a):
            raise ValueError("action is NaN")
        requested = self.action_to_keep(a)
        group = self.net.groups[self._t]
        return self._decide(round_channels(requested, group.channels, group.step), requested)

    def play_counts(self, counts: Sequence[int], *, seed: int | None = None, wall: bool = True) -> dict[str, Any]:
        """Play a whole episode with exact channel counts (a baseline's policy) and return its final info.

        Same path as ``step`` after the action is rounded: the budget wall caps each count, the network is pruned
        and evaluated the same way, and the info has the same keys (``requested_keep_ratios`` are ``counts``'
        ratios). Each count must lie within the counts the action bounds allow (``count_bounds``). ``wall=False``
        scores the counts as they are, over budget or not (a sensitivity probe: one group pruned alone).
        """
        counts = self.engine.check_counts(counts)
        for i, (n, (lo, hi)) in enumerate(zip(counts, self.count_bounds())):
            if not lo <= n <= hi:
                raise ValueError(f"channel count of group {i} ({self.net.groups[i].root}) is {n}; the action bounds "
                                 f"lbound={self.lbound}, rbound={self.rbound} allow [{lo}, {hi}]")
        self.reset(seed=seed)
        info: dict[str, Any] = {}
        budget, self.budget = self.budget, (self.budget if wall else None)
        try:
            for n, g in zip(counts, self.net.groups):
                _, _, _, _, info = self._decide(n, n / g.channels)
        finally:
            self.budget = budget
        return info

    def count_bounds(self) -> list[tuple[int, int]]:
        """Per group, the smallest and largest channel count an action can ask for (lbound and rbound rounded)."""
        return [(round_channels(self.lbound, g.channels, g.step), round_channels(self.rbound, g.channels, g.step))
                for g in self.net.groups]

    def _decide(self, n: int, requested: float) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Give the current group ``n`` channels (capped by the budget wall); the episode ends after the last group."""
        group = self.net.groups[self._t]
        if self.budget is not None:
            n = self.budget.cap(self._counts, n)
        self._requested.append(requested)
        self._counts.append(n)
        self._t += 1
        if self._t < self.num_groups:
            info = {"episode_end": False, "keep_ratio": n / group.channels, "requested_keep_ratio": requested}
            return self._observation(), 0.0, False, False, info
        reward, info = self._finish()
        return self._observation(), reward, True, False, info

    # -- helpers -----------------------------------------------------------------------------------------
    def action_to_keep(self, action: float) -> float:
        """Map an action in [-1, 1] (clipped) to a keep ratio in [lbound, rbound]."""
        a = min(1.0, max(-1.0, float(action)))
        return self.lbound + (a + 1.0) / 2.0 * (self.rbound - self.lbound)

    @property
    def keep_ratios(self) -> list[float]:
        """Realised keep ratios of the groups decided so far."""
        return [n / g.channels for n, g in zip(self._counts, self.net.groups)]

    def _reset_state(self) -> None:
        self._t = 0
        self._counts: list[int] = []
        self._requested: list[float] = []

    def _observation(self) -> np.ndarray:
        t = min(self._t, self.num_groups - 1)
        counts = [*self._counts, *self._full[len(self._counts) :]]
        reduced = (self.net.original_macs - self.net.predict_macs(counts)) / self.net.original_macs
        a_prev = self._counts[-1] / self.net.groups[len(self._counts) - 1].channels if self._counts else 1.0
        position = t / (self.num_groups - 1) if self.num_groups > 1 else 0.0
        extra = [self.budget.target_ratio] if TARGET_FIELD in self.obs_fields and self.budget is not None else []
        left = [self._budget_still_needed()] if self._budget_left else []
        obs = np.concatenate([[position], self._static[t], [reduced, self._rest[t], a_prev], self._extras[t], left,
                              extra])
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    def _budget_still_needed(self) -> float:
        """The share of what the undecided groups can still remove that the budget requires them to remove."""
        assert self.budget is not None
        decided = self._counts
        full = self.budget.ratio([*decided, *self._full[len(decided):]])
        least = self.budget.ratio([*decided, *self.budget.min_counts[len(decided):]])
        removable = full - least
        return 0.0 if removable <= 0 else float(np.clip((full - self.budget.target_ratio) / removable, 0.0, 1.0))

    def baseline_reward(self, target: float) -> float:
        """The uniform policy's reward at budget ``target``: interpolated between the budgets evaluated at construction
        while ``target_range`` draws the budgets, else evaluated once per budget."""
        if self.target_range is not None and self._baseline_grid is not None:
            return float(np.interp(target, *self._baseline_grid))
        if target not in self._baselines:
            self._baselines[target] = self._uniform_reward(target)
        return self._baselines[target]

    def _uniform_reward(self, target: float) -> float:
        """Evaluate the uniform policy at budget ``target`` like an episode (its weakest member within the budget, the
        rounding left filled as the wall fills an episode's)."""
        assert self._fixed_budget is not None
        budget = self._fixed_budget.with_target(target)
        policy = solve_heuristic(self.net, "uniform", cost=budget.cost, limit=budget.limit, lbound=self.lbound,
                                 rbound=self.rbound, fill=True)
        start = time.perf_counter()
        result, accuracy, _, _ = self._evaluate(policy.counts, stop=None)
        log.info("reward baseline: uniform at %.3f of the %s, accuracy %.4f (%.1f s)", target, budget.resource,
                 accuracy, time.perf_counter() - start)
        return float(self.reward_fn(accuracy, result.macs, result.params))

    def _evaluate(self, counts: Sequence[int], stop: EarlyStop | None) -> tuple[Any, float, int, float]:
        """Prune a copy to ``counts`` and evaluate it on the reward split: (prune result, accuracy, images seen,
        seconds of the evaluation)."""
        result = self.engine.prune_counts(counts)  # the counts as decided: no ratio round trip
        start = time.perf_counter()
        if self.fold_pairs:
            fold_bn(result.model, self.fold_pairs)  # this copy is only evaluated
        if self.channels_last:
            result.model.to(memory_format=torch.channels_last)
        accuracy, seen = evaluate_accuracy_adaptive(result.model, self.data, split=self.eval_split,
                                                    limit=self.eval_images, batch_size=self.eval_batch_size,
                                                    device=self.device, stop=stop)
        return result, accuracy, seen, time.perf_counter() - start

    def _finish(self) -> tuple[float, dict[str, Any]]:
        stop = None
        if self.early_stop_margin is not None and self.best_accuracy is not None:
            stop = EarlyStop(self.best_accuracy - self.early_stop_margin, self.early_stop_z, self.early_stop_min_images)
        result, accuracy, seen, evaluate_seconds = self._evaluate(self._counts, stop)
        full = self._eval_total
        if seen == full and (self.best_accuracy is None or accuracy > self.best_accuracy):
            self.best_accuracy = accuracy
        seconds = {**result.seconds, "evaluate": evaluate_seconds}
        reward = float(self.reward_fn(accuracy, result.macs, result.params))
        raw_reward = reward
        if self.reward_baseline != "none":
            assert self.budget is not None
            reward -= self.baseline_reward(self.budget.target_ratio)
        info: dict[str, Any] = {
            "episode_end": True,
            "accuracy": accuracy,
            "reward": reward,
            **({"raw_reward": raw_reward} if self.reward_baseline != "none" else {}),
            "macs": result.macs,
            "params": result.params,
            "macs_ratio": result.macs / self.net.original_macs,
            "params_ratio": result.params / self.net.original_params,
            "keep_ratios": list(result.keep_ratios),
            "requested_keep_ratios": list(self._requested),
            "channels": list(result.channels),
            "seconds": seconds,
            "eval_images": seen,
            "stopped_early": seen < full,
        }
        if self.budget is not None:
            info["budget_ratio"] = self.budget.ratio(self._counts)
            info["target"] = self.budget.target_ratio
        if self.latency_table is not None:
            info["predicted_latency_ms"] = self.latency_table.predict_layers(self.net.layer_channels(self._counts)) * 1e3
        if self.release_memory_per_episode:  # flat memory, at some cost in speed (see conf/env/default.yaml)
            release_memory()  # hand the allocator's freed blocks of earlier episodes' model copies back to the OS
        return reward, info
