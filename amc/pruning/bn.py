"""Re-estimate BatchNorm running statistics of a pruned model on a few calibration batches."""

from __future__ import annotations

import torch
from torch import nn

from amc.data.base import DataSplits


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, data: DataSplits, *, num_batches: int = 10, batch_size: int = 100, seed: int = 0,
    device: torch.device | str = "cpu", channels_last: bool = False,
) -> nn.Module:
    """Reset every BN's running mean/var and recompute them as plain averages over training batches.

    ``channels_last`` runs those forwards in the channels-last memory format: the same statistics up to float rounding,
    1.15-1.5x faster on CPU for pruned copies. Only for a model known to run channels-last (e.g. the env's
    ``channels_last`` after its check); the model is returned in the default format."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    for x, _ in data.batches("train", batch_size, shuffle=True, generator=gen, limit=num_batches * batch_size, device=device):
        model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return model.eval()
