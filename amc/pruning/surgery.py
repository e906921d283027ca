"""Physically remove channels from a deep copy of the model with torch-pruning's pruning functions."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from amc.pruning.groups import ChannelGroup, PrunableNetwork, layer_cuts, remove_channels


def pruned_layer_idxs(net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> dict[tuple[str, str], list[int]]:
    """For every (layer, 'in'|'out') dimension, the channel indices removed by the kept root indices (sorted)."""
    return layer_cuts(_drops(net, kept))


def _drops(net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> list[tuple[ChannelGroup, set[int]]]:
    """(group, root channels it loses) for every group: all but ``kept``."""
    return [(group, set(range(group.channels)) - set(keep.tolist())) for group, keep in zip(net.groups, kept)]


def prune_copy(net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> nn.Module:
    """A deep copy of ``net.model`` keeping only the given root channels of each group."""
    if len(kept) != net.num_groups:
        raise ValueError(f"got kept channels for {len(kept)} groups, the model has {net.num_groups}")
    model = copy.deepcopy(net.model)
    modules = dict(model.named_modules())
    for group, keep in zip(net.groups, kept):
        if len(keep) == 0:
            raise ValueError(f"group {group.index} ({group.root}) would lose all its channels; keep at least one")
    remove_channels(modules, _drops(net, kept))
    check_runs(model.eval(), net, kept)
    return model


class PrunedModelError(ValueError):
    """A pruned model does not run or gives outputs of another shape than the original."""


def check_runs(model: nn.Module, net: PrunableNetwork, kept: Sequence[torch.Tensor]) -> None:
    """One forward pass of a zero image: the pruned model must run and give the original's output shape."""
    changed = [f"{g.root} {len(k)}/{g.channels}" for g, k in zip(net.groups, kept) if len(k) < g.channels]
    try:
        with torch.no_grad():
            shape = tuple(model(torch.zeros(net.input_shape, device=next(model.parameters()).device)).shape)
    except RuntimeError as e:
        raise PrunedModelError(f"the pruned {type(model).__name__} does not run ({str(e).splitlines()[0]}); pruned "
                               f"groups: {', '.join(changed)}. Exclude the layers of the group that breaks it "
                               f"(env.exclude / exclude)") from e
    if shape != net.output_shape:
        raise PrunedModelError(f"the pruned {type(model).__name__} outputs {shape}, the original {net.output_shape}; "
                               f"pruned groups: {', '.join(changed)}")
