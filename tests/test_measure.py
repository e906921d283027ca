"""MACs / params against hand counts and torch's FlopCounterMode; latency."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import amc.measure.latency as latency_module
from amc.measure.latency import measure_latency
from amc.measure.macs import count_macs_params, layer_costs
from amc.models import build_model


def hand_net() -> nn.Sequential:
    """conv 3->8 k3 s1 p1, depthwise 8 k3, conv 8->16 k3 s2, linear 256->10; input (3, 8, 8)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
        nn.Conv2d(8, 16, 3, 2, 1, bias=False),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


HAND_MACS = {
    "0": 8 * 8 * 8 * 3 * 9,  # out positions x out channels x in channels x kernel
    "3": 8 * 8 * 8 * 1 * 9,  # depthwise: one input channel per output channel
    "4": 4 * 4 * 16 * 8 * 9,  # stride 2 halves the output side
    "6": 256 * 10,
}


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def test_layer_costs_match_hand_counts() -> None:
    model = hand_net().train()
    costs = layer_costs(model, (1, 3, 8, 8))
    assert list(costs) == ["0", "3", "4", "6"]  # call order
    assert {name: c.macs for name, c in costs.items()} == HAND_MACS
    dw, s2, fc = costs["3"], costs["4"], costs["6"]
    assert (dw.groups, dw.in_channels, dw.out_channels, dw.params) == (8, 8, 8, 8 * 9)
    assert (s2.stride, s2.kernel, s2.in_hw, s2.out_hw) == (2, 3, (8, 8), (4, 4))
    assert (fc.in_channels, fc.out_channels, fc.params) == (256, 10, 256 * 10 + 10)
    assert costs["0"].params == 3 * 8 * 9 + 8
    assert model.training  # mode restored


def test_count_macs_params_totals() -> None:
    model = hand_net()
    macs, params = count_macs_params(model, (1, 3, 8, 8))
    assert macs == sum(HAND_MACS.values()) == 39424
    assert params == sum(p.numel() for p in model.parameters()) == (3 * 8 * 9 + 8) + 16 + 72 + 16 * 8 * 9 + 2570
    # MACs are per image: the batch dimension of input_shape only sets the traced batch
    assert count_macs_params(model, (3, 3, 8, 8))[0] == macs


def test_linear_on_token_inputs_counts_every_position() -> None:
    model = nn.Linear(6, 4)
    assert layer_costs(model, (2, 5, 6))[""].macs == 5 * 6 * 4


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_macs_agree_with_torch_flop_counter(name: str) -> None:
    model = build_model(name, in_channels=1, num_classes=10).eval()
    macs, params = count_macs_params(model, (1, 1, 28, 28))
    assert params == sum(p.numel() for p in model.parameters())
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate of every conv / matmul and ignores biases,
    # BatchNorm, activations, residual additions and pooling, exactly like our conv + linear MAC count.
    assert _flops(model, torch.zeros(1, 1, 28, 28)) == 2 * macs
    # it counts the whole batch, our MACs are per image
    assert _flops(model, torch.zeros(3, 1, 28, 28)) == 2 * 3 * macs


def test_hand_net_agrees_with_torch_flop_counter() -> None:
    model = hand_net().eval()
    assert _flops(model, torch.zeros(1, 3, 8, 8)) == 2 * count_macs_params(model, (1, 3, 8, 8))[0]


def test_latency_positive_and_restores_mode() -> None:
    model = hand_net().train()
    seconds = measure_latency(model, (1, 3, 8, 8), warmup=1, repeats=3)
    assert isinstance(seconds, float) and 0 < seconds < 10
    assert model.training
    model.eval()
    measure_latency(model, (2, 3, 8, 8), warmup=0, repeats=1)
    assert not model.training


def test_latency_is_the_median(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 20.5])  # pass durations 1, 3, 0.5 -> median 1
    monkeypatch.setattr(latency_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    assert measure_latency(hand_net(), (1, 3, 8, 8), warmup=0, repeats=3) == 1.0


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": -1}, {"warmup": -1}])
def test_latency_rejects_bad_counts(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        measure_latency(hand_net(), (1, 3, 8, 8), **kwargs)
