"""Families whose channels meet again after branching (concatenations: Inception, DLA trees) or split into groups
(grouped convolutions: ResNeXt, RegNetX): pruned at uneven counts and real selections, the pruned model computes
exactly what the original computes with the removed channels silenced, and a plan rebuilds it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from amc.artifacts.checkpoint import save_checkpoint
from amc.artifacts.plan import load_pruned, make_plan, model_checksum, save_pruned
from amc.measure.macs import count_macs_params
from amc.pruning.groups import PrunableNetwork, remove_channels
from amc.pruning.selection import select_channels
from amc.pruning.surgery import prune_copy
from amc.pruning.uniform import solve_uniform
from tests.families import FAMILIES
from tests.helpers import random_bn_stats

INPUT = (1, 3, 32, 32)


def _model(name: str) -> nn.Module:
    """A family's model with random BN statistics, so a silenced channel is not silent by accident."""
    torch.manual_seed(0)
    return random_bn_stats(FAMILIES[name]())


def _uneven_counts(net: PrunableNetwork, seed: int) -> list[int]:
    """A random count per group (10-90% of its channels) on its step: every group cut differently."""
    rng = torch.Generator().manual_seed(seed)
    counts = []
    for g in net.groups:
        n = int((0.1 + 0.8 * torch.rand(1, generator=rng).item()) * g.channels) // g.step * g.step
        counts.append(min(g.channels, max(g.step, n)))
    return counts


def _silenced(net: PrunableNetwork, kept: list[torch.Tensor]) -> nn.Module:
    """The original model with every removed channel zeroed where it is produced (its BN scale and shift)."""
    model = copy.deepcopy(net.model)
    modules = dict(model.named_modules())
    for group, keep in zip(net.groups, kept):
        drop = set(range(group.channels)) - set(keep.tolist())
        for m in group.members:
            if m.dim == "out" and isinstance(modules[m.layer], nn.BatchNorm2d):
                idxs = group.layer_idxs(m, drop)
                modules[m.layer].weight.data[idxs] = 0.0
                modules[m.layer].bias.data[idxs] = 0.0
    return model


@pytest.mark.parametrize("name", ["inception", "dla_tree", "resnext", "regnetx"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_model_equals_the_silenced_original(name: str, seed: int) -> None:
    net = PrunableNetwork(_model(name), INPUT)
    assert net.frozen == [], [f.reason for f in net.frozen]
    counts = _uneven_counts(net, seed)
    kept = select_channels(net, counts, "producer_l1")
    pruned = prune_copy(net, kept)
    x = torch.randn(2, *INPUT[1:])
    with torch.no_grad():
        assert torch.allclose(pruned(x), _silenced(net, kept)(x), atol=1e-5)
    assert count_macs_params(pruned, INPUT)[0] == net.predict_macs(counts) < net.original_macs


def test_cutting_a_concatenation_in_one_pass_is_order_free() -> None:
    """Each layer dimension is cut once by the union of its groups' indices in the original layout: cutting the
    groups in another order gives the same model (group by group, a concatenation's offsets would shift)."""
    net = PrunableNetwork(_model("inception"), INPUT)
    drops = [(g, set(range(0, g.channels, 3))) for g in net.groups]
    models = []
    for order in (drops, drops[::-1]):
        model = copy.deepcopy(net.model)
        remove_channels(dict(model.named_modules()), order)
        models.append(model)
    x = torch.randn(1, *INPUT[1:])
    with torch.no_grad():
        assert torch.equal(models[0](x), models[1](x))


@pytest.mark.parametrize("name", ["resnext", "regnetx"])
def test_grouped_convolutions_keep_their_groups_and_lose_channels_evenly(name: str) -> None:
    net = PrunableNetwork(_model(name), INPUT, round_to=8)
    grouped = {n: m for n, m in net.modules.items() if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels}
    assert grouped and net.frozen == []
    policy = solve_uniform(net, 0.5)
    assert net.predict_macs(policy.counts) <= 0.5 * net.original_macs
    for g, n in zip(net.groups, policy.counts):
        assert n % g.channel_groups == 0 and (n % 8 == 0 or n == g.channels or g.step == g.channel_groups)
    kept = select_channels(net, policy.counts)
    pruned = dict(prune_copy(net, kept).named_modules())
    for name_, original in grouped.items():
        assert pruned[name_].groups == original.groups
        assert pruned[name_].in_channels < original.in_channels  # pruned, not frozen
    for g, keep in zip(net.groups, kept):  # the same positions in every group of a grouped conv
        if g.channel_groups > 1:
            size = g.channels // g.channel_groups
            per_group = keep.view(g.channel_groups, -1) % size
            assert (per_group == per_group[0]).all()


@pytest.mark.parametrize("name", ["inception", "resnext"])
def test_a_plan_rebuilds_the_pruned_model_exactly(name: str, tmp_path: Path) -> None:
    model = _model(name)
    net = PrunableNetwork(model, INPUT)
    kept = select_channels(net, _uneven_counts(net, 3))
    pruned = prune_copy(net, kept)
    spec = {"target": f"tests.families.{type(model).__name__}", "in_channels": 3, "num_classes": 10, "kwargs": {}}
    base = save_checkpoint(model, tmp_path / "base.safetensors", model_spec=spec)
    plan = make_plan(net, kept, base_model={**spec, "checksum": model_checksum(model), "checkpoint": str(base)})
    save_pruned(pruned, plan, tmp_path / "pruned")
    rebuilt = load_pruned(tmp_path / "pruned", allow=["tests.families"])
    x = torch.randn(2, *INPUT[1:])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))
