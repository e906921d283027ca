"""Hand-made pruning policies: uniform, 'deep' and 'shallow' (He et al. 2018, Table 1), and the one solver for them.

Each policy is a one-parameter family of per-group keep ratios in [lbound, rbound], rounded to channel counts by
``round_channels`` (the rounding the env and ``PrunableNetwork.channel_counts`` use). ``solve_heuristic`` bisects the
parameter so that the policy just meets a limit on a cost over channel counts (the weakest pruning of the family
whose cost is within the limit) and returns the counts, which go to the engine (``PruningEngine.prune_counts``) or
the env (``ChannelPruningEnv.play_counts``) as they are: no float action encoding, no second rounding. With
``fill=True`` it then spends what rounding left of the limit: group by group, first to last, each takes its count in
the next weaker member (one rounding step up) while the cost stays within the limit, as an agent's episode fills its
budget against the wall (ResNet-20 at 50% MACs: 0.4998 instead of 0.494).

``amc.prune`` (uniform at ``target_macs_ratio``, lbound 0: down to one channel, or ``round_to``, per group) and
``amc.search method=uniform`` (at the protocol's budget, lbound ``env.lbound``) both call this solver. For uniform,
lbound only decides which budgets are reachable: the family is "every keep ratio in [lbound, rbound]", so its
weakest member within the limit is the same for every lbound that can reach the limit. ``amc.prune`` gives that
member; the search's baselines fill, because they compete with the agent's episodes, which fill at the wall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from amc.pruning.groups import PrunableNetwork, round_channels

HEURISTICS = ("uniform", "deep", "shallow")


@dataclass(frozen=True)
class HeuristicPolicy:
    """A solved policy: its family, the bisected strength, the family's keep ratios at it, and the channel counts
    (the ratios rounded, ``raised`` of them one rounding step up to the next weaker member's count)."""

    kind: str
    strength: float
    keep_ratios: list[float]
    counts: list[int]
    raised: int = 0


def heuristic_keep_ratios(kind: str, strength: float, num_groups: int, lbound: float, rbound: float = 1.0) -> list[float]:
    """Keep ratios at pruning ``strength`` >= 0, clipped to [lbound, rbound]: 0 keeps everything; uniform reaches
    lbound at 1, the others at ``num_groups / 2``.

    uniform: the same ratio everywhere; deep: deeper groups pruned more (linear in depth); shallow: the reverse.
    """
    if kind not in HEURISTICS:
        raise ValueError(f"unknown heuristic {kind!r}; expected one of {HEURISTICS}")
    span = 1.0 - lbound
    ratios = []
    for t in range(num_groups):
        depth = (t + 1) / num_groups if kind == "deep" else (num_groups - t) / num_groups
        drop = strength * span if kind == "uniform" else strength * span * depth * 2
        ratios.append(min(rbound, max(lbound, 1.0 - drop)))
    return ratios


def heuristic_counts(net: PrunableNetwork, keep_ratios: Sequence[float]) -> list[int]:
    """Channel counts of a heuristic's keep ratios (a keep ratio of 0, i.e. lbound 0, gives the smallest count)."""
    return [round_channels(k, g.channels, g.step) for k, g in zip(keep_ratios, net.groups)]


def solve_heuristic(
    net: PrunableNetwork,
    kind: str,
    *,
    cost: Callable[[list[int]], float],
    limit: float,
    lbound: float = 0.0,
    rbound: float = 1.0,
    iterations: int = 60,
    fill: bool = False,
) -> HeuristicPolicy:
    """The weakest pruning of family ``kind`` whose ``cost(counts) <= limit``.

    ``fill``: spend what rounding left of the limit: the groups, first to last, each take their count in the next
    weaker member (the strongest one over the limit) while the cost stays within the limit; ``raised`` counts them.

    ``lbound`` in [0, rbound] (0: down to the smallest count per group), ``rbound`` in (0, 1]. Raises ValueError
    when even the strongest member (every group at lbound) exceeds the limit.
    """
    if kind not in HEURISTICS:
        raise ValueError(f"unknown heuristic {kind!r}; expected one of {HEURISTICS}")
    if not 0.0 <= lbound <= rbound <= 1.0 or rbound <= 0.0:
        raise ValueError(f"keep-ratio bounds must satisfy 0 <= lbound <= rbound <= 1, 0 < rbound; got lbound={lbound}, "
                         f"rbound={rbound}")

    def member(strength: float) -> HeuristicPolicy:
        ratios = heuristic_keep_ratios(kind, strength, net.num_groups, lbound, rbound)
        return HeuristicPolicy(kind, strength, ratios, heuristic_counts(net, ratios))

    weakest = member(0.0)
    if cost(weakest.counts) <= limit:
        return weakest
    lo, hi = 0.0, 1.0 if kind == "uniform" else net.num_groups / 2
    if cost(member(hi).counts) > limit:
        raise ValueError(f"the {kind} policy cannot meet the limit {limit:.6g} even with every group at "
                         f"lbound={lbound} (cost {cost(member(hi).counts):.6g})")
    for _ in range(iterations):  # invariant: member(lo) exceeds the limit, member(hi) meets it
        mid = (lo + hi) / 2
        if cost(member(mid).counts) <= limit:
            hi = mid
        else:
            lo = mid
    solved = member(hi)
    if not fill:
        return solved
    over, counts, raised = member(lo).counts, list(solved.counts), 0
    for i, n in enumerate(over):
        if n > counts[i] and cost([*counts[:i], n, *counts[i + 1:]]) <= limit:
            counts[i], raised = n, raised + 1
    return HeuristicPolicy(kind, hi, solved.keep_ratios, counts, raised)
