"""Uniform pruning at a MACs target: thin wrappers over the one heuristic solver (``amc.pruning.heuristics``)."""

from __future__ import annotations

from amc.pruning.groups import PrunableNetwork
from amc.pruning.heuristics import HeuristicPolicy, solve_heuristic


def smallest_macs_ratio(net: PrunableNetwork, lbound: float = 0.0) -> float:
    """MACs ratio of the network with every group at ``lbound`` (or one channel / round_to when 0)."""
    counts = net.channel_counts([max(lbound, 1e-9)] * net.num_groups)
    return net.predict_macs(counts) / net.original_macs


def solve_uniform(net: PrunableNetwork, target_macs_ratio: float, *, lbound: float = 0.0) -> HeuristicPolicy:
    """The uniform policy with the largest keep ratio whose rounded channel counts give MACs <= target * original."""
    if not 0.0 < target_macs_ratio <= 1.0:
        raise ValueError(f"target_macs_ratio must be in (0, 1], got {target_macs_ratio}")
    floor = smallest_macs_ratio(net, lbound)
    if floor > target_macs_ratio:
        at = f"lbound={lbound}" if lbound > 0 else f"one channel per group (round_to={net.round_to})"
        raise ValueError(
            f"target_macs_ratio {target_macs_ratio} is unreachable for this model: keeping {at} still leaves "
            f"{floor:.4f} of the MACs (unprunable layers"
            + (", or a channel grid too coarse for this model: try round_to=1)" if net.round_to > 1 else ")")
        )
    return solve_heuristic(net, "uniform", cost=net.predict_macs, limit=target_macs_ratio * net.original_macs,
                           lbound=lbound)


def check_uniform_reachable(net: PrunableNetwork, target_macs_ratio: float, *, lbound: float) -> None:
    """Refuse a MACs target that uniform pruning meets only by keeping less than ``lbound`` of every group (a
    silent cliff: e.g. a network whose prunable groups hold little of its MACs), naming the share of MACs prunable,
    the keep ratio the target needs and the smallest ratio reachable at ``lbound``."""
    if lbound <= 0:
        return
    needed = solve_uniform(net, target_macs_ratio).keep_ratios[0]
    if needed >= lbound:
        return
    frozen = f"; {len(net.frozen)} group(s) frozen: {', '.join(f.root for f in net.frozen[:4])}" if net.frozen else ""
    raise ValueError(
        f"target_macs_ratio={target_macs_ratio} needs every prunable group at keep ratio {needed:.3f}, below "
        f"lbound={lbound}: pruning can remove at most {100 * net.prunable_macs_share:.0f}% of the MACs{frozen}. At "
        f"lbound={lbound} the smallest reachable MACs ratio is {smallest_macs_ratio(net, lbound):.3f}: raise the "
        f"target, or pass lbound=0 to prune that far anyway")


def uniform_keep_ratio(net: PrunableNetwork, target_macs_ratio: float) -> float:
    """Largest uniform keep ratio whose rounded channel counts give MACs <= target * original MACs."""
    return solve_uniform(net, target_macs_ratio).keep_ratios[0]
