"""Uniform pruning: the single keep ratio for all groups that meets a MACs target."""

from __future__ import annotations

from amc.pruning.groups import PrunableNetwork


def smallest_macs_ratio(net: PrunableNetwork, lbound: float = 0.0) -> float:
    """MACs ratio of the network with every group at ``lbound`` (or one channel / round_to when 0)."""
    counts = net.channel_counts([max(lbound, 1e-9)] * net.num_groups)
    return net.predict_macs(counts) / net.original_macs


def uniform_keep_ratio(net: PrunableNetwork, target_macs_ratio: float, *, iterations: int = 40) -> float:
    """Largest uniform keep ratio whose rounded channel counts give MACs <= target * original MACs."""
    if not 0.0 < target_macs_ratio <= 1.0:
        raise ValueError(f"target_macs_ratio must be in (0, 1], got {target_macs_ratio}")
    floor = smallest_macs_ratio(net)
    if floor > target_macs_ratio:
        raise ValueError(
            f"target_macs_ratio {target_macs_ratio} is unreachable for this model: keeping one channel per group "
            f"(round_to={net.round_to}) still leaves {floor:.4f} of the MACs (unprunable layers)"
        )
    lo, hi = 1e-9, 1.0
    if net.predict_macs(net.channel_counts([hi] * net.num_groups)) <= target_macs_ratio * net.original_macs:
        return hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if net.predict_macs(net.channel_counts([mid] * net.num_groups)) <= target_macs_ratio * net.original_macs:
            lo = mid
        else:
            hi = mid
    return lo
