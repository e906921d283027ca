"""The budget wall of AMC's resource-constrained protocol, in channel counts.

Before group t takes its channel count, the wall assumes every later group is pruned to ``lbound`` and caps the
count so the total cost can still meet ``target_ratio * original``. Because it works on rounded counts and
re-checks the exact cost model, the final plan always meets the budget (the reference code's rounding could
overshoot it).
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from amc.pruning.groups import PrunableNetwork, round_channels

if TYPE_CHECKING:
    from amc.measure.latency_table import LatencyTable

log = logging.getLogger(__name__)

RESOURCES = ("macs", "params", "latency")


def channel_candidates(channels: int, round_to: int) -> list[int]:
    """Every count ``round_channels`` can produce for a group of ``channels``, ascending."""
    if channels <= round_to:
        return [channels]
    values = list(range(round_to, channels + 1, round_to))
    return values if values[-1] == channels else [*values, channels]


def grid_points(channels: int, round_to: int, max_points: int) -> list[int]:
    """The channel counts a table times for a dimension of ``channels``: the counts on the grid of ``round_to`` (and
    all channels), at most ``max_points`` of them, evenly spread, always the smallest and all."""
    values = channel_candidates(channels, round_to)
    if len(values) <= max_points:
        return values
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, max_points)).astype(int))
    return [values[i] for i in picks]


class ResourceBudget:
    """Cost of per-group channel counts in one resource, the limit, and the cap that keeps it reachable."""

    def __init__(
        self,
        net: PrunableNetwork,
        resource: str,
        target_ratio: float,
        lbound: float,
        latency_table: LatencyTable | None = None,
    ) -> None:
        if resource not in RESOURCES:
            raise ValueError(f"unknown budget resource {resource!r}; expected one of {list(RESOURCES)}")
        if not 0.0 < float(target_ratio) <= 1.0:
            raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio}")
        if not 0.0 < float(lbound) <= 1.0:
            raise ValueError(f"lbound must be in (0, 1], got {lbound}")
        if resource == "latency" and latency_table is None:
            raise ValueError("a latency budget needs a latency_table (LatencyTable.measure(net))")
        self.net, self.resource = net, resource
        self.target_ratio, self.lbound = float(target_ratio), float(lbound)
        self.latency_table = latency_table
        self._candidates = [channel_candidates(g.channels, g.step) for g in net.groups]
        self.min_counts = [round_channels(self.lbound, g.channels, g.step) for g in net.groups]
        self.full_counts = [g.channels for g in net.groups]
        self.original = self.cost(self.full_counts)
        self.limit = self.target_ratio * self.original
        self._floor = self.cost(self.min_counts)
        self._check_reachable()

    def _check_reachable(self) -> None:
        floor = self._floor
        if floor > self.limit:
            smallest = math.ceil(floor / self.original * 1e4) / 1e4  # rounded up, so it is itself reachable
            speedup = f" (a speedup of at most {1 / smallest:.2f}x)" if self.resource == "latency" else ""
            finer = f", or a finer channel grid than round_to={self.net.round_to}" if self.net.round_to > 1 else ""
            frozen = f" ({len(self.net.frozen)} group(s) frozen)" if self.net.frozen else ""
            raise ValueError(
                f"budget unreachable: target_ratio={self.target_ratio} of {self.resource}, but with every group at "
                f"lbound the smallest reachable ratio is {smallest:.4f}{speedup} (lbound={self.lbound}, "
                f"round_to={self.net.round_to}); pruning can remove "
                f"{100 * self.net.prunable_macs_share:.0f}% of the MACs at most{frozen}; raise the target or lower "
                f"lbound{finer}"
            )

    def with_target(self, target_ratio: float) -> ResourceBudget:
        """The same budget at another target ratio (shares the cost model; checks that it is reachable)."""
        other = copy.copy(self)
        if not 0.0 < float(target_ratio) <= 1.0:
            raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio}")
        other.target_ratio = float(target_ratio)
        other.limit = other.target_ratio * other.original
        other._check_reachable()
        return other

    def cost(self, counts: Sequence[int]) -> float:
        """The resource used by the network pruned to ``counts`` channels per group."""
        if self.resource == "macs":
            return float(self.net.predict_macs(counts))
        if self.resource == "params":
            return float(self.net.predict_params(counts))
        assert self.latency_table is not None
        return self.latency_table.predict_layers(self.net.layer_channels(counts))

    def ratio(self, counts: Sequence[int]) -> float:
        """Cost of ``counts`` as a fraction of the unpruned network's."""
        return self.cost(counts) / self.original

    def cap(self, decided: Sequence[int], n_request: int) -> int:
        """Largest count <= ``n_request`` (and >= the lbound count) for the next group that keeps the budget reachable.

        Later groups are assumed at their lbound counts; a request below the lbound count gets the lbound count.
        """
        t = len(decided)
        if t >= self.net.num_groups:
            raise ValueError(f"all {self.net.num_groups} groups are already decided")
        lo_count, tail = self.min_counts[t], self.min_counts[t + 1 :]
        candidates = self._candidates[t]
        lo = bisect.bisect_left(candidates, lo_count)
        hi = bisect.bisect_right(candidates, max(int(n_request), lo_count)) - 1
        prefix = list(decided)

        def fits(i: int) -> bool:
            return self.cost([*prefix, candidates[i], *tail]) <= self.limit

        if fits(hi):
            return candidates[hi]
        # invariant: candidates[lo] fits (the decided prefix was capped the same way), candidates[hi] does not
        if not fits(lo):
            log.warning("budget wall: group %d does not fit even at its lbound count (decided counts were not capped)", t)
            return candidates[lo]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return candidates[lo]
