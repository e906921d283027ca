"""The search methods that need no agent, played through the same env (same wall, same evaluation) as the agent:
random search on one env, EagleEye-style random search with adaptive BN, the heuristics (uniform / deep / shallow)
and the sensitivity search."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from amc.pruning.heuristics import solve_heuristic
from amc.pruning.sensitivity import monotone_scores, probe_widths, solve_threshold
from amc.runs.episodes import run_episode
from amc.runs.search_log import EpisodeLog
from amc.runs.setup import Setup

log = logging.getLogger(__name__)


def random_policies(rng: np.random.Generator, *, done: int, steps: int) -> np.random.Generator:
    """Advance ``rng`` past the ``done`` policies a resumed search already drew, so it goes on with new ones."""
    rng.uniform(-1, 1, (done, steps))
    return rng


def run_random(setup: Setup, episode_log: EpisodeLog, *, episodes: int, seed: int) -> None:
    """Best of ``episodes`` uniformly random policies on ``setup.env`` (the draws continue a resumed log's)."""
    steps = setup.net.num_groups
    rng = random_policies(np.random.default_rng(seed), done=episode_log.episode, steps=steps)
    for _ in range(episode_log.episode, episodes):
        episode_log.record(run_episode(setup.env, rng.uniform(-1, 1, steps).tolist(), seed=seed))


def run_eagleeye(setup: Setup, episode_log: EpisodeLog, *, episodes: int, seed: int, bn_batches: int) -> None:
    """EagleEye (Li et al., ECCV 2020) in this harness: random budget-meeting policies (the draws of random search,
    through the same wall), each scored after adaptive BatchNorm (its BN statistics re-estimated on ``bn_batches``
    training batches, no gradients) instead of with the unpruned model's statistics; the best is kept."""
    engine = setup.engine
    before = engine.bn_batches
    engine.bn_batches = max(before, bn_batches)
    try:
        run_random(setup, episode_log, episodes=episodes, seed=seed)
    finally:
        engine.bn_batches = before


def run_heuristic(setup: Setup, episode_log: EpisodeLog, *, family: str, target: float, lbound: float,
                  rbound: float, seed: int) -> None:
    """The weakest policy of ``family`` that meets the budget (MACs at ``target`` when no wall), the budget rounding
    left filled group by group as the agent's episodes fill it at the wall (``solve_heuristic(fill=True)``)."""
    cost, limit = setup.budget_cost(target)
    policy = solve_heuristic(setup.net, family, cost=cost, limit=limit, lbound=lbound, rbound=rbound, fill=True)
    episode_log.record(setup.env.play_counts(policy.counts, seed=seed))  # exact counts, same wall and evaluation


def run_sensitivity(setup: Setup, episode_log: EpisodeLog, *, target: float, points: int, lbound: float, seed: int,
                    probes_path: Path) -> None:
    """ModelOpt FastNAS / AIMET style: every group scored alone at ``points`` widths (the others unpruned, no wall),
    then the smallest global score-drop threshold that meets the budget; its policy is played through the env like
    any baseline's. The probes go to ``probes_path`` (JSON lines); their count is the method's cost."""
    net, env = setup.net, setup.env
    full = [g.channels for g in net.groups]
    base = env.play_counts(full, seed=seed, wall=False)["reward"]
    scores, evaluations = [], 1
    with probes_path.open("w", encoding="utf-8") as f:
        for i, g in enumerate(net.groups):
            group = {g.channels: base}
            for width in probe_widths(g.channels, g.step, lbound, points):
                info = env.play_counts([*full[:i], width, *full[i + 1:]], seed=seed, wall=False)
                group[width], evaluations = info["reward"], evaluations + 1
                f.write(json.dumps({"group": i, "root": g.root, "channels": width, "reward": info["reward"]}) + "\n")
                f.flush()  # a probe costs seconds: the file shows the progress
            scores.append(monotone_scores(group))
            log.info("sensitivity: group %d/%d (%s) scored at %d widths", i + 1, net.num_groups, g.root, len(group) - 1)
    cost, limit = setup.budget_cost(target)
    policy = solve_threshold(scores, full, base, cost=cost, limit=limit)
    info: dict[str, Any] = env.play_counts(policy.counts, seed=seed)
    episode_log.record({**info, "evaluations": evaluations + 1, "threshold": policy.threshold})
