"""MACs and parameters, per layer and total: the one counter used by state, budget wall and reports.

MACs count multiply-accumulates of Conv2d and Linear layers (bias ignored, as in AMC); parameters count
every parameter of the model (including BN and biases).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCost:
    name: str
    macs: int
    params: int
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]


def conv_macs(in_channels: int, out_channels: int, kernel: tuple[int, int], groups: int, out_hw: tuple[int, int]) -> int:
    return out_hw[0] * out_hw[1] * out_channels * (in_channels // groups) * kernel[0] * kernel[1]


@torch.no_grad()
def layer_costs(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str | None = None) -> dict[str, LayerCost]:
    """Trace one forward pass of a zero batch and return the cost of every Conv2d / Linear, in call order."""
    costs: dict[str, LayerCost] = {}
    hooks = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            params = sum(p.numel() for p in module.parameters(recurse=False))
            if isinstance(module, nn.Conv2d):
                out_hw = (int(output.shape[-2]), int(output.shape[-1]))
                macs = conv_macs(module.in_channels, module.out_channels, module.kernel_size, module.groups, out_hw)
                costs[name] = LayerCost(name, macs, params, module.in_channels, module.out_channels,
                                        module.kernel_size[0], module.stride[0], module.groups,
                                        (int(x.shape[-2]), int(x.shape[-1])), out_hw)
            else:
                positions = output.numel() // output.shape[0] // module.out_features
                costs[name] = LayerCost(name, positions * module.in_features * module.out_features, params,
                                        module.in_features, module.out_features, 1, 1, 1, (1, 1), (1, 1))
        return fn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        model(torch.zeros(input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return costs


def count_macs_params(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """MACs per image (conv + linear) and total parameter count."""
    macs = sum(c.macs for c in layer_costs(model, input_shape).values())
    return macs, sum(p.numel() for p in model.parameters())
