"""Top-1 accuracy of a model over a split."""

from __future__ import annotations

import torch
from torch import nn

from amc.data.base import DataSplits


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, data: DataSplits, *, split: str = "reward_val", batch_size: int = 500,
    device: torch.device | str = "cpu", limit: int | None = None,
) -> float:
    """Fraction of ``split`` images classified correctly (test-time transform, fixed order)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in data.batches(split, batch_size, device=device, limit=limit):
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    if total == 0:
        raise ValueError(f"split {split!r} is empty: cannot measure accuracy")
    return correct / total
