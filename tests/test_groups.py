"""Dependency groups, channel counts and the MACs / params cost model, on every zoo model and a custom one."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from amc.measure.macs import count_macs_params
from amc.models import ZOO, build_model
from amc.pruning.groups import PrunableNetwork, round_channels, validate_keep_ratios
from amc.pruning.selection import CRITERIA, channel_scores, select_channels
from amc.pruning.surgery import prune_copy, pruned_layer_idxs

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT = (1, 1, 28, 28)
MODELS = [*sorted(ZOO), "tests.helpers.tiny_net"]


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # make the tests folder importable as ``tests``


def _build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, in_channels=1, num_classes=10, allow=["tests.helpers"]).eval()


def _forward_order(model: nn.Module) -> list[str]:
    """Names of conv / linear layers in the order they run (independent of the library's tracer)."""
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: order.append(n))
             for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(INPUT))
    for h in hooks:
        h.remove()
    return order


def _random_ratios(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(0.1, 1.0) for _ in range(n)]


def _prune(net: PrunableNetwork, keep_ratios: list[float], criterion: str = "consumer_l1") -> tuple[list[int], nn.Module]:
    counts = net.channel_counts(keep_ratios)
    return counts, prune_copy(net, select_channels(net, counts, criterion))


@pytest.mark.parametrize("name", MODELS)
def test_groups_prune_and_cost_model(name: str, importable_tests: None) -> None:
    model = _build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    order = _forward_order(model)
    classifier = order[-1]
    net = PrunableNetwork(model, INPUT)

    assert net.num_groups >= 1
    assert [g.index for g in net.groups] == list(range(net.num_groups))
    positions = [order.index(g.root) for g in net.groups]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "groups not in forward order"
    for g in net.groups:
        assert g.root in g.producers and order.index(g.root) == min(order.index(p) for p in g.producers)
        assert (classifier, "out") not in {(m.layer, m.dim) for m in g.members}, "classifier outputs in a group"
    assert net.original_macs == count_macs_params(model, INPUT)[0]
    assert net.original_params == count_macs_params(model, INPUT)[1]

    counts, pruned = _prune(net, _random_ratios(net.num_groups, seed=len(name)))
    assert counts != [g.channels for g in net.groups], "the random ratios should prune something"
    assert all(1 <= n <= g.channels for n, g in zip(counts, net.groups))
    with torch.no_grad():
        out = pruned(torch.randn(2, *INPUT[1:]))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    modules = dict(pruned.named_modules())
    first = modules[order[0]]
    assert first.in_channels == 1
    assert modules[classifier].out_features == 10
    for g, n in zip(net.groups, counts):
        root = modules[g.root]
        assert (root.out_channels if isinstance(root, nn.Conv2d) else root.out_features) == n
    assert count_macs_params(pruned, INPUT) == (net.predict_macs(counts), net.predict_params(counts))
    assert net.predict_macs(counts) < net.original_macs

    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k].shape == v.shape and torch.equal(after[k], v), f"original model changed at {k}"
    assert _forward_order(model) == order
    assert count_macs_params(model, INPUT) == (net.original_macs, net.original_params)


def test_resnet20_stage1_residual_group_is_coupled() -> None:
    net = PrunableNetwork(_build("resnet20"), INPUT)
    stage1 = next(g for g in net.groups if g.root == "conv1")
    assert set(stage1.producers) == {"conv1", "layers.0.conv2", "layers.1.conv2", "layers.2.conv2"}
    for layer in ("layers.0.conv1", "layers.1.conv1", "layers.2.conv1", "layers.3.conv1", "layers.3.shortcut.0"):
        assert layer in stage1.consumers  # everything that reads the stage-1 residual stream
    counts, pruned = _prune(net, _random_ratios(net.num_groups, seed=1))
    modules = dict(pruned.named_modules())
    kept = counts[stage1.index]
    assert kept < 16
    for layer in stage1.producers:
        assert modules[layer].out_channels == kept
    for layer in ("layers.0.conv1", "layers.3.conv1", "layers.3.shortcut.0"):
        assert modules[layer].in_channels == kept
    # each block's first conv is its own group: only its out channels and the block's conv2 inputs
    for i in range(3):
        g = next(g for g in net.groups if g.root == f"layers.{i}.conv1")
        assert g.producers == (f"layers.{i}.conv1",) and g.consumers == (f"layers.{i}.conv2",)
        assert modules[f"layers.{i}.conv2"].in_channels == counts[g.index]


def test_mobilenet_v2_depthwise_follows_its_producer() -> None:
    model = _build("mobilenet_v2")
    net = PrunableNetwork(model, INPUT)
    counts, pruned = _prune(net, _random_ratios(net.num_groups, seed=2))
    modules = dict(pruned.named_modules())
    depthwise = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17
    for name in depthwise:
        block = name.rsplit(".", 2)[0]  # features.i.conv
        expansion = f"{block}.0.0"
        producer = expansion if expansion != name else "features.0.0"  # the t=1 block reads the stem directly
        dw = modules[name]
        assert dw.in_channels == dw.out_channels == dw.groups == modules[producer].out_channels, name
        group = next(g for g in net.groups if producer in g.producers)
        assert name in group.producers  # same group, one decision
        assert dw.out_channels == counts[group.index]


def test_round_channels() -> None:
    for channels in (1, 3, 8, 10, 16, 20, 37, 64):
        for round_to in (1, 2, 4, 8):
            for keep in np.linspace(0.01, 1.0, 50):
                n = round_channels(float(keep), channels, round_to)
                assert 1 <= n <= channels
                assert n % round_to == 0 or n == channels, (keep, channels, round_to, n)
                assert abs(n - keep * channels) <= round_to, (keep, channels, round_to, n)
            assert round_channels(1.0, channels, round_to) == channels, "keep ratio 1 must keep every channel"
    assert round_channels(0.5, 64, 1) == 32
    assert round_channels(0.3, 64, 8) == 16  # 19.2 -> nearest multiple of 8
    assert round_channels(0.01, 64, 8) == 8  # never below one multiple
    assert round_channels(0.01, 4, 8) == 4  # fewer channels than round_to: keep them all
    with pytest.raises(ValueError, match="round_to"):
        round_channels(0.5, 16, 0)


def test_round_channels_is_monotone_in_keep_ratio() -> None:
    for channels in (10, 12, 20, 37):
        counts = [round_channels(float(k), channels, 8) for k in np.linspace(0.01, 1.0, 200)]
        assert counts == sorted(counts), channels


def test_channel_counts_with_round_to_8() -> None:
    model = _build("resnet20")
    net = PrunableNetwork(model, INPUT, round_to=8)
    ratios = _random_ratios(net.num_groups, seed=3)
    counts = net.channel_counts(ratios)
    assert counts == [round_channels(k, g.channels, 8) for k, g in zip(ratios, net.groups)]
    assert all(n % 8 == 0 and 8 <= n <= g.channels for n, g in zip(counts, net.groups))
    assert net.channel_counts([1.0] * net.num_groups) == [g.channels for g in net.groups]
    assert net.channel_counts([1e-6] * net.num_groups) == [8] * net.num_groups
    pruned = prune_copy(net, select_channels(net, counts))
    assert count_macs_params(pruned, INPUT) == (net.predict_macs(counts), net.predict_params(counts))
    with pytest.raises(ValueError, match="round_to"):
        PrunableNetwork(model, INPUT, round_to=0)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), float("inf"), "0.5", None])
def test_bad_keep_ratio_raises(bad: object) -> None:
    net = PrunableNetwork(_build("resnet20"), INPUT)
    ratios = [0.5] * net.num_groups
    ratios[4] = bad
    with pytest.raises(ValueError, match=r"\(0, 1\]") as e:
        net.channel_counts(ratios)
    assert repr(bad) in str(e.value) and "group 4" in str(e.value)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        validate_keep_ratios([bad], 1)


def test_wrong_number_of_keep_ratios_raises() -> None:
    net = PrunableNetwork(_build("resnet20"), INPUT)
    for n in (0, net.num_groups - 1, net.num_groups + 1):
        with pytest.raises(ValueError, match=rf"got {n} keep ratios for {net.num_groups} prunable groups"):
            net.channel_counts([0.5] * n)


def test_numpy_keep_ratios_are_accepted() -> None:
    """Agents hand over float32 numpy actions."""
    net = PrunableNetwork(_build("resnet20"), INPUT)
    ratios = np.full(net.num_groups, 0.5, dtype=np.float32)
    assert net.channel_counts(ratios) == net.channel_counts([0.5] * net.num_groups)
    assert net.channel_counts(list(ratios.astype(np.float64))) == net.channel_counts([0.5] * net.num_groups)


def test_model_without_prunable_group_raises() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match="no prunable"):
        PrunableNetwork(model, INPUT)


def test_exclude() -> None:
    model = _build("resnet20")
    net = PrunableNetwork(model, INPUT)
    with pytest.raises(ValueError, match="not_a_layer"):
        PrunableNetwork(model, INPUT, exclude=["not_a_layer"])

    excluded = PrunableNetwork(model, INPUT, exclude=["layers.1.conv1"])
    assert excluded.num_groups == net.num_groups - 1
    assert "layers.1.conv1" not in {p for g in excluded.groups for p in g.producers}
    assert [g.index for g in excluded.groups] == list(range(excluded.num_groups))
    counts, pruned = _prune(excluded, [0.25] * excluded.num_groups)
    modules = dict(pruned.named_modules())
    assert modules["layers.1.conv1"].out_channels == 16 and modules["layers.1.conv2"].in_channels == 16
    assert modules["layers.0.conv1"].out_channels == 4
    assert count_macs_params(pruned, INPUT)[0] == excluded.predict_macs(counts)

    # excluding any producer of a coupled group removes the whole group (the residual stream stays intact)
    coupled = PrunableNetwork(model, INPUT, exclude=["layers.1.conv2"])
    assert coupled.num_groups == net.num_groups - 1
    assert "conv1" not in {g.root for g in coupled.groups}
    pruned = _prune(coupled, [0.25] * coupled.num_groups)[1]
    assert dict(pruned.named_modules())["conv1"].out_channels == 16


def test_flatten_linear_and_depthwise_without_bn() -> None:
    """A conv feeding a Linear through Flatten prunes 16 input features per channel; MACs still exact."""
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
        nn.Conv2d(8, 16, 3, 7, 1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    ).eval()
    net = PrunableNetwork(model, INPUT)
    assert [g.root for g in net.groups] == ["0", "4"]
    assert "3" in net.groups[0].producers
    counts, pruned = _prune(net, [0.5, 0.25])
    assert counts == [4, 4]
    modules = dict(pruned.named_modules())
    assert modules["3"].groups == modules["3"].out_channels == 4 and modules["7"].in_features == 4 * 16
    assert pruned(torch.randn(3, *INPUT[1:])).shape == (3, 10)
    assert count_macs_params(pruned, INPUT) == (net.predict_macs(counts), net.predict_params(counts))


@pytest.mark.parametrize("criterion", CRITERIA)
def test_selection_keeps_the_highest_scores(criterion: str) -> None:
    net = PrunableNetwork(_build("resnet20", seed=4), INPUT)
    counts = net.channel_counts([0.5] * net.num_groups)
    kept = select_channels(net, counts, criterion)
    for g, n, k in zip(net.groups, counts, kept):
        scores = channel_scores(net, g, criterion)
        assert scores.shape == (g.channels,) and len(k) == n
        assert k.tolist() == sorted(k.tolist()) and len(set(k.tolist())) == n
        dropped = sorted(set(range(g.channels)) - set(k.tolist()))
        assert scores[k].min() >= scores[dropped].max()
    removed = pruned_layer_idxs(net, kept)
    assert removed[("conv1", "out")] == removed[("layers.0.conv1", "in")]
    with pytest.raises(ValueError, match="criterion"):
        channel_scores(net, net.groups[0], "random")


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_predicted_macs_match_measured_for_random_ratios(name: str) -> None:
    model = _build(name)
    nets = {r: PrunableNetwork(model, INPUT, round_to=r) for r in (1, 8)}
    rng = np.random.default_rng(0)
    for trial in range(20):
        net = nets[8 if trial % 4 == 3 else 1]
        ratios = rng.uniform(0.05, 1.0, net.num_groups).tolist()
        if trial % 5 == 0:
            ratios[int(rng.integers(net.num_groups))] = 1.0
        counts, pruned = _prune(net, ratios)
        measured = count_macs_params(pruned, INPUT)
        assert measured == (net.predict_macs(counts), net.predict_params(counts)), (trial, ratios)
        assert measured[0] <= net.original_macs
