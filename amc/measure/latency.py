"""Wall-clock latency of a forward pass (median over repeats, after warm-up)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    warmup: int = 5,
    repeats: int = 30,
    device: torch.device | str = "cpu",
) -> float:
    """Median seconds per forward pass of a random ``input_shape`` batch, in eval mode.

    The model must already live on ``device`` (it is not moved, so the caller's model is never mutated);
    its train/eval mode is restored afterwards.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    device = torch.device(device)
    param = next(model.parameters(), None)
    if param is not None and param.device.type != device.type:
        raise ValueError(f"model is on {param.device} but latency was requested on {device}; move it first")
    x = torch.randn(input_shape, device=device)
    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(x)
        _sync(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)
