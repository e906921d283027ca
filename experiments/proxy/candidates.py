"""The policies a proxy study scores: random search's budget-meeting draws, the hand-made heuristics, AMC's best.

Random candidates are random search's episodes (``amc.runs.methods.run_random``): with the same seed, candidate i
draws the same actions as random search's episode i (``numpy.random.default_rng(seed).uniform(-1, 1, groups)``) and
passes them through the env's path (action -> keep ratio in [lbound, rbound] -> channel count on the grid -> budget
wall), replayed here without pruning or evaluating (``wall_counts``; ``tests/test_proxy_study.py`` checks that it
gives the env's channel counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from amc.artifacts.checkpoint import file_checksum
from amc.artifacts.plan import PruningPlan, check_plan, model_checksum
from amc.pruning.budget import ResourceBudget
from amc.pruning.groups import PrunableNetwork, round_channels
from amc.pruning.heuristics import HEURISTICS, solve_heuristic

PLAN_FILE = "best_plan.json"


@dataclass(frozen=True)
class Candidate:
    """One policy: ``counts`` channels per group, or ``error`` when it could not be made at this budget."""

    id: str
    kind: str  # "random", "uniform", "deep", "shallow" or "amc"
    counts: list[int] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def action_to_keep(action: float, lbound: float, rbound: float) -> float:
    """The env's map of an action (clipped to [-1, 1]) to a keep ratio in [lbound, rbound]."""
    a = min(1.0, max(-1.0, float(action)))
    return lbound + (a + 1.0) / 2.0 * (rbound - lbound)


def wall_counts(net: PrunableNetwork, budget: ResourceBudget, actions: list[float], *, lbound: float,
                rbound: float) -> list[int]:
    """The channel counts an env episode of ``actions`` ends with: each action as the agent's float32, rescaled,
    rounded to the group's grid and capped by the budget wall (``ChannelPruningEnv.step``)."""
    counts: list[int] = []
    for action, group in zip(actions, net.groups, strict=True):
        keep = action_to_keep(float(np.float32(action)), lbound, rbound)
        counts.append(budget.cap(counts, round_channels(keep, group.channels, group.step)))
    return counts


def through_wall(budget: ResourceBudget, counts: list[int]) -> list[int]:
    """Exact counts played through the wall, as ``ChannelPruningEnv.play_counts`` does for a baseline's policy."""
    capped: list[int] = []
    for n in counts:
        capped.append(budget.cap(capped, n))
    return capped


def random_candidates(net: PrunableNetwork, budget: ResourceBudget, *, count: int, seed: int, lbound: float,
                      rbound: float) -> list[Candidate]:
    """Random search's first ``count`` policies at ``seed``."""
    rng = np.random.default_rng(seed)
    result = []
    for i in range(count):
        actions = rng.uniform(-1, 1, net.num_groups).tolist()
        counts = wall_counts(net, budget, actions, lbound=lbound, rbound=rbound)
        result.append(Candidate(f"random_{i:03d}", "random", counts, {"episode": i, "actions": actions}))
    return result


def heuristic_candidates(net: PrunableNetwork, budget: ResourceBudget, *, lbound: float,
                         rbound: float) -> list[Candidate]:
    """Uniform, deep and shallow at the budget, filled as the search's baselines are (``run_heuristic``); a family
    that cannot meet the budget becomes a candidate with its error."""
    result = []
    for kind in HEURISTICS:
        try:
            policy = solve_heuristic(net, kind, cost=budget.cost, limit=budget.limit, lbound=lbound, rbound=rbound,
                                     fill=True)
        except ValueError as e:
            result.append(Candidate(kind, kind, error=str(e)))
            continue
        result.append(Candidate(kind, kind, through_wall(budget, policy.counts),
                                {"strength": policy.strength, "raised": policy.raised}))
    return result


def amc_plan_path(path: str | Path) -> Path:
    """``best_plan.json`` of a search run dir, or the plan file itself."""
    path = Path(path)
    return path / PLAN_FILE if path.is_dir() else path


def amc_candidate(path: str | Path, net: PrunableNetwork, base: nn.Module, *, target: float) -> Candidate:
    """AMC's best policy: the channel counts of a search's ``best_plan.json``. Raises ValueError when the plan was
    made for another base model, another network structure or another budget (a wrong ``--amc-run``)."""
    plan_path = amc_plan_path(path)
    plan = PruningPlan.load(plan_path)
    check_plan(plan, net, model_checksum(base))
    protocol = plan.settings.get("protocol") or {}
    if protocol.get("resource", "macs") != "macs" or not np.isclose(protocol.get("target", target), target):
        raise ValueError(f"{plan_path} was searched at {protocol.get('resource')} {protocol.get('target')}, this study's "
                         f"budget is macs {target}")
    counts = [int(g["kept_channels"]) for g in plan.groups]
    return Candidate("amc", "amc", counts, {"plan": str(plan_path), "plan_sha256": file_checksum(plan_path),
                                            "accuracy": plan.accuracy})


def plan_identity(path: str | Path) -> dict[str, str]:
    """What identifies an ``--amc-run`` in the study's settings: the plan file's checksum."""
    plan_path = amc_plan_path(path)
    if not plan_path.is_file():
        raise ValueError(f"--amc-run {path}: no plan file {plan_path} (a search run dir holds {PLAN_FILE})")
    return {"plan_sha256": file_checksum(plan_path)}

