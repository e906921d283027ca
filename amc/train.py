"""Train a baseline network: ``python -m amc.train model=resnet20 data=fashion_mnist``.

A killed run continues from its last finished epoch with ``resume=<run dir>`` (its own settings, checked)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from amc.artifacts.checkpoint import save_checkpoint
from amc.cli import (
    PreflightCallback,
    build_data,
    check_interrupted_run,
    full_errors,
    model_spec_from_cfg,
    plain_settings,
    require_positive_ints,
    resolve_device,
    training_interrupted,
    user_errors,
)
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.macs import count_macs_params
from amc.models import build_model
from amc.training.loop import read_training_state, train_model

log = logging.getLogger(__name__)
STATE_DIR = "training_state"  # per-epoch training state while the run is going (removed once the model is saved)
SETTINGS_FILE = "settings.json"  # what defines the run, written when it starts; a resume must repeat it
DEFINING = ("model", "data", "train", "seed")


def run(cfg: DictConfig, output_dir: Path) -> dict:
    """Build data and model, train, save the checkpoint and metrics; returns the metrics."""
    output_dir = preflight(cfg, Path(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.get("resume"):
        (output_dir / SETTINGS_FILE).write_text(json.dumps(plain_settings(cfg, DEFINING), indent=1))
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    spec = model_spec_from_cfg(cfg.model, data)
    torch.manual_seed(cfg.seed)  # the initial weights come from the seed too, not from what the process ran before
    model = build_model(spec["target"], in_channels=spec["in_channels"], num_classes=spec["num_classes"],
                        allow=[spec["target"]], **spec["kwargs"])  # the user's own config names it
    writer = SummaryWriter(str(output_dir / "tb"))

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        for key in ("loss", "train_acc", "reward_val_acc", "lr"):
            writer.add_scalar(f"train/{key}", metrics[key], epoch + 1)

    t = cfg.train
    history = train_model(
        model, data, epochs=t.epochs, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
        batch_size=t.batch_size, schedule=t.schedule, warmup_epochs=t.warmup_epochs,
        label_smoothing=t.label_smoothing, seed=cfg.seed, device=device, on_epoch_end=on_epoch_end,
        state_dir=output_dir / STATE_DIR,
    )
    model.eval()
    macs, params = count_macs_params(model, (1, data.in_channels, *data.image_size))
    metrics = {
        "model": spec,
        "dataset": data.name,
        "test_acc": evaluate_accuracy(model, data, split="test", device=device),
        "reward_val_acc": evaluate_accuracy(model, data, split="reward_val", device=device),
        "macs": macs,
        "params": params,
        "epochs": history,
        "train_seconds": sum(h["seconds"] for h in history),
        "command": " ".join(["python -m amc.train", *sys.argv[1:]]),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    writer.add_hparams({"lr": t.lr, "epochs": t.epochs, "batch_size": t.batch_size},
                       {"hparam/test_acc": metrics["test_acc"]})
    writer.close()
    save_checkpoint(model.cpu(), output_dir / "model.safetensors", model_spec=spec,
                    extra={"test_acc": metrics["test_acc"], "dataset": data.name})
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(output_dir / STATE_DIR, ignore_errors=True)  # the model is saved: nothing left to resume
    log.info("test accuracy %.4f, reward-val %.4f; saved %s", metrics["test_acc"], metrics["reward_val_acc"],
             output_dir / "model.safetensors")
    return metrics


def preflight(cfg: DictConfig, output_dir: Path) -> Path:
    """Checks that need no data: a run dir that holds no trained model (an interrupted one only with ``resume=``
    and its own settings), sane training settings. Returns the run dir to use (a resumed run's own)."""
    resume = cfg.get("resume")
    output_dir = Path(resume) if resume else output_dir
    if (output_dir / "model.safetensors").exists() or (output_dir / "metrics.json").exists():
        raise FileExistsError(f"{output_dir} already holds a trained model; it is left as it is (choose another "
                              f"hydra.run.dir)")
    check_interrupted_run(output_dir, resume=bool(resume), what="training run", settings_file=SETTINGS_FILE,
                          markers=(SETTINGS_FILE, STATE_DIR), given=plain_settings(cfg, DEFINING))
    t = cfg.train
    require_positive_ints(cfg, "train.epochs", "train.batch_size")
    if t.lr <= 0 or t.weight_decay < 0 or not 0 <= t.momentum < 1:
        raise ValueError(f"need train.lr > 0, weight_decay >= 0, 0 <= momentum < 1; got {t.lr}, {t.weight_decay}, "
                         f"{t.momentum}")
    resolve_device(cfg.device)
    return output_dir


class Preflight(PreflightCallback):
    """hydra callback (conf/train.yaml): refuse before hydra rewrites a trained model's recorded config."""

    prog = "amc-train"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return preflight(cfg, run_dir)


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(cfg.resume) if cfg.get("resume") else Path(hc.runtime.output_dir)
    try:
        with user_errors("amc-train"):
            return run(cfg, run_dir)["test_acc"]
    except KeyboardInterrupt:
        if full_errors():
            raise
        training_interrupted("amc-train", run_dir, read_training_state(run_dir / STATE_DIR), list(hc.overrides.task))


if __name__ == "__main__":
    main()
