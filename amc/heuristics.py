"""Hand-made pruning policies for comparison: uniform, 'deep' and 'shallow' (He et al. 2018, Table 1).

Each policy is a one-parameter family of per-group keep ratios; the parameter is solved by bisection so that
the policy just meets a budget (the largest keep ratios whose cost is within the limit).
"""

from __future__ import annotations

from collections.abc import Callable

HEURISTICS = ("uniform", "deep", "shallow")


def heuristic_keep_ratios(kind: str, strength: float, num_groups: int, lbound: float) -> list[float]:
    """Keep ratios at pruning ``strength`` >= 0: 0 keeps everything; uniform reaches lbound at 1, the others at
    ``num_groups / 2``.

    uniform: the same ratio everywhere; deep: deeper groups pruned more (linear in depth); shallow: the reverse.
    """
    if kind not in HEURISTICS:
        raise ValueError(f"unknown heuristic {kind!r}; expected one of {HEURISTICS}")
    span = 1.0 - lbound
    ratios = []
    for t in range(num_groups):
        depth = (t + 1) / num_groups if kind == "deep" else (num_groups - t) / num_groups
        weight = 1.0 if kind == "uniform" else depth
        ratios.append(max(lbound, 1.0 - strength * span * weight * (1 if kind == "uniform" else 2)))
    return ratios


def solve_heuristic(
    kind: str, num_groups: int, lbound: float, cost: Callable[[list[float]], float], limit: float, iterations: int = 40
) -> list[float]:
    """The weakest pruning of family ``kind`` whose cost(keep_ratios) <= limit."""
    if cost(heuristic_keep_ratios(kind, 0.0, num_groups, lbound)) <= limit:
        return heuristic_keep_ratios(kind, 0.0, num_groups, lbound)
    hi_strength = 1.0 if kind == "uniform" else float(num_groups)
    if cost(heuristic_keep_ratios(kind, hi_strength, num_groups, lbound)) > limit:
        raise ValueError(f"the {kind} policy cannot meet the budget even at lbound={lbound}")
    lo, hi = 0.0, hi_strength
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if cost(heuristic_keep_ratios(kind, mid, num_groups, lbound)) <= limit:
            hi = mid
        else:
            lo = mid
    return heuristic_keep_ratios(kind, hi, num_groups, lbound)
