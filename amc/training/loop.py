"""Training and fine-tuning: SGD with a cosine or one-cycle schedule, standard augmentation, optional knowledge
distillation from a teacher, and a per-epoch training state so a killed run resumes from its last finished epoch.

Layout of a training state dir: ``model.safetensors`` (weights), ``optimizer.pt`` (optimizer, scheduler and RNG
states; plain tensors and numbers, loaded with ``weights_only=True``) and ``state.json`` (epoch counter, per-epoch
history, the settings it was made with). A save is written to a temporary dir and renamed into place, so a kill
mid-save keeps the previous epoch's state.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from amc.data.base import DataSplits
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.fast_paths import channels_last_works

log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "onecycle")
STATE_FORMAT = 1


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


def check_distillation(*, kd_alpha: float, kd_temperature: float) -> None:
    """Reject a distillation weight outside [0, 1] or a non-positive temperature."""
    if not 0.0 <= kd_alpha <= 1.0:
        raise ValueError(f"kd alpha must be in [0, 1] (0 = labels only, 1 = teacher only), got {kd_alpha}")
    if not kd_temperature > 0.0:
        raise ValueError(f"kd temperature must be > 0, got {kd_temperature}")


def _kd_terms(student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, *,
              temperature: float, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return ce, kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None, *,
    temperature: float = 4.0, alpha: float = 0.0, label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(p_teacher || p_student)`` with ``p = softmax(logits / T)``.

    Hinton et al.'s ``T^2`` keeps the soft-target gradients on the scale of the label gradients as ``T`` changes.
    ``alpha = 0`` is plain cross-entropy (the teacher's logits are not needed).
    """
    check_distillation(kd_alpha=alpha, kd_temperature=temperature)
    if alpha == 0.0:
        return F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if teacher_logits is None:
        raise ValueError(f"distillation with alpha={alpha} needs teacher_logits")
    ce, kd = _kd_terms(student_logits, labels, teacher_logits, temperature=temperature, label_smoothing=label_smoothing)
    return (1 - alpha) * ce + alpha * kd


def _state_paths(state_dir: Path) -> tuple[Path, Path, Path]:
    return state_dir, state_dir.with_name(f".{state_dir.name}.tmp"), state_dir.with_name(f".{state_dir.name}.old")


def _recover(state_dir: Path) -> None:
    """Finish a save that was killed between its two renames (the previous state sits in ``.<name>.old``)."""
    final, _, old = _state_paths(state_dir)
    if not final.exists() and old.exists():
        old.rename(final)


def read_training_state(state_dir: str | Path) -> dict[str, Any] | None:
    """``state.json`` of a training state dir (epoch, history, settings), or None when there is none yet."""
    state_dir = Path(state_dir)
    _recover(state_dir)
    path = state_dir / "state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"training state {path} is corrupt: {e}") from e
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"training state {path} has format {state.get('format')!r}, expected {STATE_FORMAT}")
    return state


def _save_training_state(state_dir: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                         generator: torch.Generator, device: torch.device, epoch: int,
                         history: list[dict[str, float]], settings: dict[str, Any]) -> None:
    _recover(state_dir)
    final, tmp, old = _state_paths(state_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng},
               tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"format": STATE_FORMAT, "epoch": epoch, "history": history,
                                                "settings": settings}, indent=1))
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _load_training_state(state_dir: Path, state: dict[str, Any], *, model: nn.Module,
                         optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
                         device: torch.device, settings: dict[str, Any]) -> None:
    changed = [f"{k}={state['settings'].get(k)!r} there, {v!r} here" for k, v in settings.items()
               if state["settings"].get(k) != v]
    if changed:
        raise ValueError(f"training state in {state_dir} was made with other settings ({'; '.join(changed)}); "
                         "resume with the settings of the interrupted run")
    try:
        model.load_state_dict(load_file(str(state_dir / "model.safetensors")))
        saved = torch.load(state_dir / "optimizer.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    except Exception as e:  # safetensors / torch raise several types for corrupt or mismatched files
        raise ValueError(f"training state in {state_dir} is corrupt or does not fit this model: {e}") from e
    torch.set_rng_state(saved["rng"]["torch"])
    generator.set_state(saved["rng"]["generator"])
    if device.type == "cuda" and "cuda" in saved["rng"]:
        torch.cuda.set_rng_state(saved["rng"]["cuda"], device)


def channels_last_is_safe(model: nn.Module, channel_block: int | None = None) -> bool:
    """False if ``model`` has a strided 1x1 conv with fewer input channels per group than oneDNN's channel block.

    oneDNN's channels-last weight gradient of such a conv writes past its workspace (uxlfoundation/oneDNN#6035, open;
    reproduced with torch 2.13 CPU on AVX2: heap corruption with one thread for 2-7 input channels; the report also
    shows wrong gradients with more threads). Pruned ResNet shortcuts hit it. The block is 16 channels on AVX-512 and
    8 below; such models train in NCHW instead (slower, correct).
    """
    if channel_block is None:
        channel_block = 16 if "AVX512" in torch.backends.cpu.get_cpu_capability().upper() else 8
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                   and m.in_channels // m.groups < channel_block for m in model.modules())


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
    nesterov: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    teacher: nn.Module | None = None,
    kd_temperature: float = 4.0,
    kd_alpha: float = 0.0,
    state_dir: str | Path | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; returns one metrics dict per epoch (loss, train acc, reward-val acc, lr, seconds).

    With ``teacher`` and ``kd_alpha > 0`` the loss is :func:`distillation_loss` against the teacher's logits on the
    same augmented batch (the teacher stays in eval mode); with ``kd_alpha = 0`` the teacher is not run. With
    ``state_dir`` the training state is saved there after every epoch and, if it already holds one, training
    continues from its last finished epoch (the returned history then includes the earlier epochs; ``on_epoch_end``
    is called for the new ones only).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    check_distillation(kd_alpha=kd_alpha, kd_temperature=kd_temperature)
    if kd_alpha > 0 and teacher is None:
        raise ValueError(f"kd_alpha={kd_alpha} needs a teacher; pass teacher= or kd_alpha=0")
    use_kd = teacher is not None and kd_alpha > 0
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    channels_last = channels_last_is_safe(model)  # the input always was channels-last; the model too on CPU
    if not channels_last:
        log.info("training in NCHW: a strided 1x1 conv has too few input channels for oneDNN's channels-last kernel")
    else:  # user code (.view of an activation, in-place reshapes) may not run channels-last: tried once
        images = next(data.batches("train", batch_size=min(8, batch_size)))[0].to(device)
        channels_last = channels_last_works(model, images)
    if channels_last and device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    if use_kd:
        teacher.to(device).eval()
        if channels_last and device.type == "cpu":
            teacher.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, momentum=momentum, nesterov=nesterov,
    )
    steps = data.num_batches("train", batch_size)
    scheduler = make_schedule(schedule, optimizer, lr=lr, total_steps=epochs * steps, warmup_steps=int(warmup_epochs * steps))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    settings = {"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                "batch_size": batch_size, "schedule": schedule, "warmup_epochs": warmup_epochs,
                "label_smoothing": label_smoothing, "nesterov": nesterov, "seed": seed,
                "kd_alpha": kd_alpha if use_kd else 0.0, "kd_temperature": kd_temperature if use_kd else None}
    history: list[dict[str, float]] = []
    start = 0
    if state_dir is not None:
        state_dir = Path(state_dir)
        state = read_training_state(state_dir)
        if state is not None:
            _load_training_state(state_dir, state, model=model, optimizer=optimizer, scheduler=scheduler,
                                 generator=gen, device=device, settings=settings)
            history, start = list(state["history"]), int(state["epoch"])
            log.info("resumed training from %s after epoch %d of %d", state_dir, start, epochs)
    for epoch in range(start, epochs):
        model.train()
        t0, loss_sum, ce_sum, kd_sum, correct, seen = time.time(), 0.0, 0.0, 0.0, 0, 0
        bar = tqdm(data.batches("train", batch_size, shuffle=True, augment=True, generator=gen, device=device),
                   total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        for x, y in bar:
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out = model(x)
            if use_kd:
                with torch.no_grad():
                    teacher_out = teacher(x)
                ce, kd = _kd_terms(out, y, teacher_out, temperature=kd_temperature, label_smoothing=label_smoothing)
                loss = (1 - kd_alpha) * ce + kd_alpha * kd
                ce_sum += ce.item() * len(y)
                kd_sum += kd.item() * len(y)
            else:
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
        if use_kd:
            metrics.update(ce_loss=ce_sum / seen, kd_loss=kd_sum / seen)
        history.append(metrics)
        log.info("epoch %d/%d loss %.4f train %.4f reward-val %.4f (%.0fs)", epoch + 1, epochs,
                 metrics["loss"], metrics["train_acc"], metrics["reward_val_acc"], metrics["seconds"])
        if state_dir is not None:
            _save_training_state(state_dir, model=model, optimizer=optimizer, scheduler=scheduler, generator=gen,
                                 device=device, epoch=epoch + 1, history=history, settings=settings)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    model.to(memory_format=torch.contiguous_format)
    if use_kd:
        teacher.to(memory_format=torch.contiguous_format)
    return history
