"""Baseline training: SGD with a cosine or one-cycle schedule and standard augmentation."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from amc.data.base import DataSplits
from amc.measure.accuracy import evaluate_accuracy

log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "onecycle")


def make_schedule(schedule: str, optimizer: torch.optim.Optimizer, *, lr: float, total_steps: int, warmup_steps: int):
    """A per-step LR scheduler: 'cosine' (linear warm-up then cosine to 0) or 'onecycle'."""
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.25)
    if schedule == "cosine":
        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


def train_model(
    model: nn.Module,
    data: DataSplits,
    *,
    epochs: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    schedule: str = "onecycle",
    warmup_epochs: float = 1.0,
    label_smoothing: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns one metrics dict per epoch (loss, train acc, reward-val acc, lr)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, momentum=momentum, nesterov=True,
    )
    steps = data.num_batches("train", batch_size)
    scheduler = make_schedule(schedule, optimizer, lr=lr, total_steps=epochs * steps, warmup_steps=int(warmup_epochs * steps))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        bar = tqdm(data.batches("train", batch_size, shuffle=True, augment=True, generator=gen, device=device),
                   total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        for x, y in bar:
            out = model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
            loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        metrics = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_acc": correct / seen,
            "reward_val_acc": evaluate_accuracy(model, data, split="reward_val", device=device)
            if len(data.reward_val) else float("nan"),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(metrics)
        log.info("epoch %d/%d loss %.4f train %.4f reward-val %.4f (%.0fs)", epoch + 1, epochs,
                 metrics["loss"], metrics["train_acc"], metrics["reward_val_acc"], metrics["seconds"])
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    model.to(memory_format=torch.contiguous_format)
    return history
