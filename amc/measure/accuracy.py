"""Top-1 accuracy of a model over a split, optionally stopping early once it clearly falls short."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from amc.data.base import DataSplits


@dataclass(frozen=True)
class EarlyStop:
    """Stop once the upper confidence bound of the accuracy (Wilson, ``z``) is below ``below``, after at least
    ``min_images`` images: the episode can no longer come near the running best."""

    below: float
    z: float = 3.0
    min_images: int = 500

    def __post_init__(self) -> None:
        if self.z <= 0 or self.min_images < 1:
            raise ValueError(f"early stop needs z > 0 and min_images >= 1, got z={self.z}, min_images={self.min_images}")


def wilson_upper(correct: int, total: int, z: float) -> float:
    """Upper end of the Wilson score interval of a binomial proportion (1.0 for no observations)."""
    if total == 0:
        return 1.0
    p = correct / total
    denom = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return min(1.0, (centre + spread) / denom)


@torch.no_grad()
def evaluate_accuracy_adaptive(
    model: nn.Module, data: DataSplits, *, split: str = "reward_val", batch_size: int = 500,
    device: torch.device | str = "cpu", limit: int | None = None, stop: EarlyStop | None = None,
) -> tuple[float, int]:
    """(accuracy on the images seen, images seen): all of ``split`` (up to ``limit``) unless ``stop`` ends it early,
    checked after every batch."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in data.batches(split, batch_size, device=device, limit=limit):
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
        if stop is not None and total >= stop.min_images and wilson_upper(correct, total, stop.z) < stop.below:
            break
    model.train(was_training)
    if total == 0:
        raise ValueError(f"split {split!r} is empty: cannot measure accuracy")
    return correct / total, total


def evaluate_accuracy(
    model: nn.Module, data: DataSplits, *, split: str = "reward_val", batch_size: int = 500,
    device: torch.device | str = "cpu", limit: int | None = None,
) -> float:
    """Fraction of ``split`` images classified correctly (test-time transform, fixed order)."""
    return evaluate_accuracy_adaptive(model, data, split=split, batch_size=batch_size, device=device, limit=limit)[0]
