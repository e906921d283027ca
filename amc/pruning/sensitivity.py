"""Sensitivity search, the non-RL way practitioners choose per-layer widths (NVIDIA ModelOpt FastNAS, AIMET).

Each group is scored alone at a few widths (every other group unpruned); a group's scores are made non-decreasing in
its width; then one global threshold on the score drop is searched: every group takes its narrowest scored width whose
drop from the unpruned score is within the threshold, and the smallest threshold whose policy meets the budget wins.
No layer interactions are modelled: that is the difference from a search over whole policies.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from amc.pruning.budget import channel_candidates
from amc.pruning.groups import round_channels


@dataclass(frozen=True)
class SensitivityPolicy:
    """The solved policy: channel counts per group and the score drop it allows each group."""

    counts: list[int]
    threshold: float


def probe_widths(channels: int, round_to: int, lbound: float, points: int) -> list[int]:
    """The counts below all channels at which a group of ``channels`` is scored: the grid's counts from the lbound
    count up, at most ``points`` of them evenly spread (the smallest always)."""
    if points < 1:
        raise ValueError(f"points must be >= 1 (widths scored per group), got {points}")
    smallest = round_channels(lbound, channels, round_to)
    below = [c for c in channel_candidates(channels, round_to) if smallest <= c < channels]
    if len(below) <= points:
        return below
    picks = np.unique(np.round(np.linspace(0, len(below) - 1, points)).astype(int))
    return [below[i] for i in picks]


def monotone_scores(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores per width made non-decreasing in the width (a wider group never scores lower than a narrower one)."""
    out, best = {}, float("-inf")
    for width in sorted(scores):
        best = max(best, float(scores[width]))
        out[width] = best
    return out


def solve_threshold(
    scores: Sequence[Mapping[int, float]], full: Sequence[int], base: float, *,
    cost: Callable[[list[int]], float], limit: float, fill: bool = True,
) -> SensitivityPolicy:
    """The policy of the smallest global score-drop threshold whose cost is within ``limit``.

    ``scores[i]`` maps group i's scored widths (monotone, see ``monotone_scores``) to its score; ``base`` is the
    unpruned score. A threshold gives every group its narrowest width with ``base - score <= threshold`` (all channels
    when none); ``fill`` then spends what is left of the limit (``_fill``). Raises ValueError when even every group at its narrowest scored width exceeds the limit.
    """

    def counts_at(threshold: float) -> list[int]:
        return [min((w for w, s in group.items() if base - s <= threshold), default=n) for group, n in zip(scores, full)]

    thresholds = sorted({max(0.0, base - s) for group in scores for s in group.values()} | {0.0})
    if cost(counts_at(thresholds[-1])) > limit:
        raise ValueError(f"the sensitivity policy cannot meet the limit {limit:.6g} even with every group at its "
                         f"narrowest scored width (cost {cost(counts_at(thresholds[-1])):.6g})")
    # cost(counts_at(t)) does not grow with t: the first threshold that meets the limit, by bisection
    k = bisect.bisect_left(range(len(thresholds)), True, key=lambda i: cost(counts_at(thresholds[i])) <= limit)
    counts = counts_at(thresholds[k])
    if fill:
        counts = _fill(counts, scores, base, cost=cost, limit=limit)
    return SensitivityPolicy(counts, thresholds[k])


def _fill(counts: list[int], scores: Sequence[Mapping[int, float]], base: float, *,
          cost: Callable[[list[int]], float], limit: float) -> list[int]:
    """Spend what the threshold left of the limit: repeatedly widen, to its next scored width, the group that loses
    most at its current width, while the cost stays within the limit (as the other methods fill their budget)."""
    counts = list(counts)
    while True:
        order = sorted(range(len(counts)), key=lambda i: base - scores[i].get(counts[i], base), reverse=True)
        for i in order:
            wider = min((w for w in scores[i] if w > counts[i]), default=None)
            if wider is not None and cost([*counts[:i], wider, *counts[i + 1:]]) <= limit:
                counts[i] = wider
                break
        else:
            return counts
