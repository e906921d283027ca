"""Re-estimate BatchNorm running statistics of a pruned model on a few calibration batches."""

from __future__ import annotations

import torch
from torch import nn

from amc.data.base import DataSplits


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, data: DataSplits, *, num_batches: int = 10, batch_size: int = 100, seed: int = 0,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Reset every BN's running mean/var and recompute them as plain averages over training batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for x, _ in data.batches("train", batch_size, shuffle=True, generator=gen, limit=num_batches * batch_size, device=device):
        model(x)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model.eval()
