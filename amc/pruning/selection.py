"""Which channels of a group to keep: AMC's consumer L1 norm, producer filter L1 norm, or BN scale."""

from __future__ import annotations

import torch
from torch import nn

from amc.pruning.groups import ChannelGroup, PrunableNetwork, spread_over_groups

CRITERIA = ("consumer_l1", "producer_l1", "bn_scale")


def channel_scores(net: PrunableNetwork, group: ChannelGroup, criterion: str = "consumer_l1") -> torch.Tensor:
    """Importance of each root channel of ``group`` (higher = keep)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown channel selection criterion {criterion!r}; expected one of {CRITERIA}")
    scores = torch.zeros(group.channels, dtype=torch.float64)
    found = False
    for m in group.members:
        module = net.modules[m.layer]
        weight = getattr(module, "weight", None)
        if weight is None:
            continue
        w = weight.detach().abs().double()
        idxs, roots = torch.tensor(m.idxs), torch.tensor(m.root_idxs)
        if criterion == "consumer_l1" and m.dim == "in" and isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and module.groups > 1:
                continue
            per_channel = w.sum(dim=0)
            per_channel = per_channel.flatten(1).sum(1) if per_channel.dim() > 1 else per_channel
        elif criterion == "producer_l1" and m.dim == "out" and isinstance(module, (nn.Conv2d, nn.Linear)):
            per_channel = w.flatten(1).sum(1)
        elif criterion == "bn_scale" and isinstance(module, nn.modules.batchnorm._BatchNorm):
            per_channel = w
        else:
            continue
        scores.index_add_(0, roots, per_channel[idxs])
        found = True
    if not found:
        fallback = {"consumer_l1": "producer_l1", "bn_scale": "producer_l1"}.get(criterion)
        if fallback is None:
            raise ValueError(f"group {group.index} (root {group.root}) has no weights for criterion {criterion!r}")
        return channel_scores(net, group, fallback)
    return scores


def select_channels(net: PrunableNetwork, counts: list[int], criterion: str = "consumer_l1") -> list[torch.Tensor]:
    """Sorted root indices of the ``counts[i]`` highest-scoring channels of each group. A group of a grouped
    convolution (``channel_groups`` > 1) keeps the same positions in every group: those of the highest mean score."""
    kept = []
    for group, n in zip(net.groups, counts):
        if n >= group.channels:
            kept.append(torch.arange(group.channels))
        elif group.channel_groups > 1:
            size = group.channels // group.channel_groups
            positions = channel_scores(net, group, criterion).view(group.channel_groups, size).mean(0)
            kept.append(spread_over_groups(positions.topk(n // group.channel_groups).indices, group.channel_groups, size))
        else:
            kept.append(channel_scores(net, group, criterion).topk(n).indices.sort().values)
    return kept
