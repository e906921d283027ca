"""Physically remove channels from a deep copy of the model with torch-pruning's pruning functions."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from amc.pruning.groups import PrunableNetwork


def pruned_layer_idxs(net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> dict[tuple[str, str], list[int]]:
    """For every (layer, 'in'|'out') dimension, the channel indices removed by the kept root indices."""
    removed: dict[tuple[str, str], list[int]] = {}
    for group, keep in zip(net.groups, kept):
        drop = set(range(group.channels)) - set(keep.tolist())
        if not drop:
            continue
        for m in group.members:
            removed.setdefault((m.layer, m.dim), []).extend(group.layer_idxs(m, drop))
    return removed


def prune_copy(net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> nn.Module:
    """A deep copy of ``net.model`` keeping only the given root channels of each group."""
    if len(kept) != net.num_groups:
        raise ValueError(f"got kept channels for {len(kept)} groups, the model has {net.num_groups}")
    model = copy.deepcopy(net.model)
    modules = dict(model.named_modules())
    for group, keep in zip(net.groups, kept):
        if len(keep) == 0:
            raise ValueError(f"group {group.index} ({group.root}) would lose all its channels; keep at least one")
        drop = set(range(group.channels)) - set(keep.tolist())
        if not drop:
            continue
        for m in group.members:
            m.handler(modules[m.layer], group.layer_idxs(m, drop))
    return model.eval()
