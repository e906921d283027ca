"""Fine-tune a pruned model: ``python -m amc.finetune pruned=<dir with pruned.safetensors + plan.json>``.

Load the pruned model and its unpruned base (the teacher, named by the plan) -> measure both -> fine-tune with the
baseline trainer (SGD + Nesterov, cosine, augmentation) and knowledge distillation from the teacher (``kd.alpha=0``:
labels only) -> save the fine-tuned model as ``finetuned/`` (safetensors + plan, loadable with ``load_pruned``) and
``metrics.json``. A killed run continues from its last finished epoch with ``resume=<run dir>``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from amc.artifacts.plan import PlanError, PruningPlan, load_base, rebuild_pruned, save_pruned
from amc.cli import (
    PreflightCallback,
    build_data,
    check_interrupted_run,
    command_line,
    full_errors,
    plain_settings,
    require_positive_ints,
    resolve_device,
    training_interrupted,
    user_errors,
)
from amc.data.base import DataSplits
from amc.measure.accuracy import evaluate_accuracy
from amc.training.loop import SCHEDULES, check_distillation, read_training_state, train_model

log = logging.getLogger(__name__)
STATE_DIR = "training_state"   # per-epoch training state (amc.training.loop), for resume=
SETTINGS_FILE = "settings.json"  # what defines the run, written when it starts; a resume must repeat it
OUTPUT_DIR = "finetuned"
DEFINING = ("pruned", "base_checkpoint", "data", "epochs", "lr", "momentum", "weight_decay", "batch_size", "nesterov",
            "schedule", "warmup_epochs", "kd", "seed")


def check_config(cfg: DictConfig) -> None:
    """Reject bad settings before any data or model is loaded."""
    require_positive_ints(cfg, "epochs", "batch_size")
    if cfg.lr <= 0 or cfg.weight_decay < 0 or not 0 <= cfg.momentum < 1 or cfg.warmup_epochs < 0:
        raise ValueError(f"need lr > 0, weight_decay >= 0, 0 <= momentum < 1, warmup_epochs >= 0; got {cfg.lr}, "
                         f"{cfg.weight_decay}, {cfg.momentum}, {cfg.warmup_epochs}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {SCHEDULES}")
    check_distillation(kd_alpha=float(cfg.kd.alpha), kd_temperature=float(cfg.kd.temperature))
    resolve_device(cfg.device)


def check_pruned_dir(pruned: str | Path, base_checkpoint: str | None) -> tuple[PruningPlan, Path]:
    """The pruned dir holds its weights and plan, and the plan's base model (the teacher) is a file."""
    pruned = Path(pruned)
    if not pruned.is_dir():
        raise FileNotFoundError(f"pruned={pruned} is not a directory; pass a dir with pruned.safetensors + plan.json "
                                f"(amc.prune writes one per variant, amc.search writes best/)")
    missing = [n for n in ("plan.json", "pruned.safetensors") if not (pruned / n).is_file()]
    if missing:
        raise PlanError(f"pruned={pruned} lacks {' and '.join(missing)}; a pruned dir holds pruned.safetensors + "
                        f"plan.json as written by amc.prune (<variant>/) and amc.search (best/)")
    plan = PruningPlan.load(pruned / "plan.json")
    checkpoint = base_checkpoint or plan.base_model.get("checkpoint")
    if not checkpoint:
        raise PlanError(f"the plan in {pruned} names no base checkpoint (the teacher); pass base_checkpoint=<path>")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"the teacher checkpoint {checkpoint} (the plan's base model) is not a file; pass "
                                f"base_checkpoint=<path of that model.safetensors> (checked by checksum)")
    return plan, Path(checkpoint)


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A finished run is never touched; an interrupted one is only continued with resume= and its own settings."""
    if (run_dir / "metrics.json").exists():
        raise FileExistsError(f"{run_dir} holds a finished fine-tune (metrics.json); it is left as it is (choose "
                              f"another hydra.run.dir)")
    check_interrupted_run(run_dir, resume=bool(cfg.resume), what="fine-tune", settings_file=SETTINGS_FILE,
                          markers=(SETTINGS_FILE, STATE_DIR, OUTPUT_DIR), given=plain_settings(cfg, DEFINING))


def preflight(cfg: DictConfig, output_dir: Path) -> Path:
    """Every check that needs no data or model; returns the run dir to use (a resumed run's own dir)."""
    check_config(cfg)
    run_dir = Path(cfg.resume) if cfg.resume else Path(output_dir)
    if cfg.resume and not run_dir.is_dir():
        raise NotADirectoryError(f"resume={cfg.resume} is not a run directory")
    check_run_dir(cfg, run_dir)
    check_pruned_dir(cfg.pruned, cfg.base_checkpoint)
    return run_dir


def accuracies(model: torch.nn.Module, data: DataSplits, device: torch.device) -> dict[str, float]:
    """Reward-val and test accuracy."""
    return {split: evaluate_accuracy(model, data, split=split.removesuffix("_acc"), device=device)
            for split in ("reward_val_acc", "test_acc")}


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Fine-tune ``cfg.pruned`` (with distillation from its base model); returns the metrics."""
    run_dir = preflight(cfg, Path(output_dir))
    plan, checkpoint = check_pruned_dir(cfg.pruned, cfg.base_checkpoint)
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base = plan.base_model
    if (base.get("in_channels"), base.get("num_classes")) != (data.in_channels, data.num_classes):
        raise ValueError(f"the teacher {checkpoint} (base model of pruned={cfg.pruned}) takes {base.get('in_channels')} "
                         f"input channels and {base.get('num_classes')} classes, but data {data.name} has "
                         f"{data.in_channels} and {data.num_classes}; fine-tune on the data it was trained on")
    if list(plan.input_shape[2:]) != list(data.image_size):
        log.warning("the plan was made for %s images, data %s has %s", plan.input_shape[2:], data.name, data.image_size)
    teacher, _ = load_base(plan, checkpoint, allow=list(cfg.model_allow))
    student = rebuild_pruned(teacher, plan, Path(cfg.pruned) / "pruned.safetensors").to(device)
    teacher.to(device).eval()

    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / SETTINGS_FILE).exists():
        (run_dir / SETTINGS_FILE).write_text(json.dumps(plain_settings(cfg, DEFINING), indent=1) + "\n")
    before, teacher_acc = accuracies(student, data, device), accuracies(teacher, data, device)
    log.info("teacher %s: reward-val %.4f test %.4f; pruned before fine-tuning: reward-val %.4f test %.4f",
             checkpoint, teacher_acc["reward_val_acc"], teacher_acc["test_acc"], before["reward_val_acc"],
             before["test_acc"])

    state = read_training_state(run_dir / STATE_DIR)
    start = state["epoch"] if state else 0
    writer = SummaryWriter(str(run_dir / "tb"))
    if start == 0:
        writer.add_scalar("train/reward_val_acc", before["reward_val_acc"], 0)
    bar = tqdm(total=cfg.epochs, initial=start, desc="fine-tune", unit="epoch", disable=not cfg.progress)
    t_run = time.perf_counter()

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        writer.add_scalar("train/loss", metrics["loss"], epoch + 1)
        writer.add_scalar("train/acc", metrics["train_acc"], epoch + 1)
        writer.add_scalar("train/reward_val_acc", metrics["reward_val_acc"], epoch + 1)
        writer.add_scalar("train/lr", metrics["lr"], epoch + 1)
        if "kd_loss" in metrics:
            writer.add_scalar("train/ce_loss", metrics["ce_loss"], epoch + 1)
            writer.add_scalar("train/kd_loss", metrics["kd_loss"], epoch + 1)
        writer.flush()
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", reward_val=f"{metrics['reward_val_acc']:.4f}")
        bar.update(1)
        if not cfg.progress:
            done = epoch + 1 - start
            eta = (time.perf_counter() - t_run) / done * (cfg.epochs - epoch - 1)
            log.info("fine-tune epoch %d/%d: loss %.4f, reward-val %.4f, ETA %.0fs", epoch + 1, cfg.epochs,
                     metrics["loss"], metrics["reward_val_acc"], eta)

    kd_alpha = float(cfg.kd.alpha)
    history = train_model(
        student, data, epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        batch_size=cfg.batch_size, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs, nesterov=cfg.nesterov,
        seed=cfg.seed, device=device, on_epoch_end=on_epoch_end, progress=cfg.progress,
        teacher=teacher if kd_alpha > 0 else None, kd_temperature=float(cfg.kd.temperature), kd_alpha=kd_alpha,
        state_dir=run_dir / STATE_DIR,
    )
    bar.close()
    writer.close()
    student.eval()
    after = accuracies(student, data, device)
    kd = {"alpha": kd_alpha, "temperature": float(cfg.kd.temperature)}
    train_seconds = sum(h["seconds"] for h in history)
    finetune = {"source": str(cfg.pruned), "epochs": cfg.epochs, "lr": cfg.lr, "schedule": cfg.schedule,
                "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "nesterov": cfg.nesterov,
                "kd": kd, "teacher": str(checkpoint), "seed": cfg.seed, "dataset": data.name,
                "accuracy_before": before}
    out_plan = dataclasses.replace(plan, base_model={**plan.base_model, "checkpoint": str(checkpoint)},
                                   accuracy=dict(after), settings={**plan.settings, "finetuned": finetune})
    save_atomically(student.cpu(), out_plan, run_dir / OUTPUT_DIR)
    metrics = {
        "pruned": str(cfg.pruned), "teacher_checkpoint": str(checkpoint), "model": plan.base_model.get("target"),
        "dataset": data.name, "macs": plan.macs_after, "params": plan.params_after,
        "macs_ratio": plan.macs_after / plan.macs_before,
        "before": before, "after": after, "teacher": teacher_acc, "kd": kd,
        "epochs": cfg.epochs, "resumed_from_epoch": start,
        "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / len(history),
        "history": history, "command": command_line("amc.finetune", sys.argv[1:]),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\n{metrics['model']} at {metrics['macs_ratio']:.1%} MACs on {data.name}, {cfg.epochs} epochs "
          f"(kd alpha {kd_alpha}, T {kd['temperature']}): test {before['test_acc']:.4f} -> {after['test_acc']:.4f}, "
          f"reward-val {before['reward_val_acc']:.4f} -> {after['reward_val_acc']:.4f}; teacher test "
          f"{teacher_acc['test_acc']:.4f}; {metrics['seconds_per_epoch']:.1f} s/epoch; saved {run_dir / OUTPUT_DIR}")
    return metrics


def save_atomically(model: torch.nn.Module, plan: PruningPlan, directory: Path) -> None:
    """``save_pruned`` into a temporary dir renamed into place, so a kill never leaves half a model behind."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if directory.exists():  # this unfinished run's own output (killed before metrics.json): redone now
        shutil.rmtree(directory)
    save_pruned(model, plan, tmp)
    tmp.rename(directory)


class Preflight(PreflightCallback):
    """hydra callback (conf/finetune.yaml): refuse a bad command before hydra writes into the run dir."""

    prog = "amc-finetune"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return preflight(cfg, run_dir)


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="finetune")
def main(cfg: DictConfig) -> float:
    """Returns the fine-tuned reward-val accuracy (what a sweeper would maximise; test stays untouched)."""
    hc = HydraConfig.get()
    run_dir = Path(cfg.resume) if cfg.resume else Path(hc.runtime.output_dir)
    try:
        with user_errors("amc-finetune"):
            return run(cfg, run_dir)["after"]["reward_val_acc"]
    except KeyboardInterrupt:
        if full_errors():
            raise
        training_interrupted("amc-finetune", run_dir, read_training_state(run_dir / STATE_DIR), list(hc.overrides.task))


if __name__ == "__main__":
    main()
