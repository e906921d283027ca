"""amc.train: a killed training run continues from its last finished epoch, with its own settings only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import amc.train as train_cmd
from amc.artifacts.checkpoint import load_checkpoint

SMALL = ["model=plain20", "data=synthetic", "data.train_size=128", "data.test_size=32", "data.reward_val_size=32",
         "device=cpu", "train.epochs=2", "train.batch_size=32"]


class Killed(Exception):
    pass


def _cfg(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="train", overrides=[*SMALL, *overrides])


def test_a_killed_training_run_resumes_and_matches_an_uninterrupted_one(tmp_path: Path, monkeypatch) -> None:
    straight = train_cmd.run(_cfg(), tmp_path / "straight")
    assert not (tmp_path / "straight" / train_cmd.STATE_DIR).exists()  # nothing left to resume once saved

    real = train_cmd.train_model

    def killed_after_first_epoch(*args, on_epoch_end, **kwargs):
        def kill(epoch: int, metrics: dict) -> None:
            on_epoch_end(epoch, metrics)
            raise Killed

        return real(*args, on_epoch_end=kill, **kwargs)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(train_cmd, "train_model", killed_after_first_epoch)
    with pytest.raises(Killed):
        train_cmd.run(_cfg(), run_dir)
    monkeypatch.setattr(train_cmd, "train_model", real)
    assert not (run_dir / "model.safetensors").exists()
    assert json.loads((run_dir / train_cmd.STATE_DIR / "state.json").read_text())["epoch"] == 1

    with pytest.raises(FileExistsError, match=f"interrupted training run.*resume={run_dir}"):
        train_cmd.run(_cfg(), tmp_path / "run")
    with pytest.raises(ValueError, match=r"train: recorded .*'lr': 0.1.*given .*'lr': 0.05"):
        train_cmd.run(_cfg("train.lr=0.05", f"resume={run_dir}"), tmp_path / "elsewhere")
    resumed = train_cmd.run(_cfg(f"resume={run_dir}"), tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists() and (run_dir / "model.safetensors").is_file()
    assert [h["epoch"] for h in resumed["epochs"]] == [1, 2]
    assert [h["loss"] for h in resumed["epochs"]] == pytest.approx([h["loss"] for h in straight["epochs"]], rel=1e-5)
    assert resumed["test_acc"] == pytest.approx(straight["test_acc"])
    assert not (run_dir / train_cmd.STATE_DIR).exists()
    load_checkpoint(run_dir / "model.safetensors")
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        train_cmd.run(_cfg(f"resume={run_dir}"), tmp_path / "x")
