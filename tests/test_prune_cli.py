"""The uniform-prune entry point: the real conf/prune.yaml composed with hydra, shrunk, run on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from amc.artifacts.checkpoint import CheckpointError, save_checkpoint
from amc.artifacts.plan import PlanError, PruningPlan, load_pruned
from amc.measure.macs import count_macs_params
from amc.models import build_model
from amc.prune import run

VARIANTS = {"selection only": "selection_only", "+ reconstruction": "reconstruction",
            "+ reconstruction + BN recal": "reconstruction_bn_recal"}
INPUT = (1, 3, 16, 16)  # conf/data/synthetic.yaml: 3 channels, 16x16, 4 classes


def _checkpoint(path: Path, seed: int = 0, num_classes: int = 4) -> Path:
    torch.manual_seed(seed)
    model = build_model("resnet20", in_channels=3, num_classes=num_classes)
    spec = {"target": "resnet20", "in_channels": 3, "num_classes": num_classes, "kwargs": {}}
    return save_checkpoint(model, path, model_spec=spec)


def _cfg(checkpoint: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="prune", overrides=[
            "data=synthetic", f"checkpoint={checkpoint}", "device=cpu", "calibration.num_images=64",
            "calibration.batch_size=32", "bn_recalibration.num_batches=2", "bn_recalibration.batch_size=64",
            "latency.repeats=2", "latency.warmup=1", *overrides,
        ])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("prune")
    checkpoint = _checkpoint(root / "base.safetensors")
    out = root / "uniform"
    rows = run(_cfg(checkpoint, "target_macs_ratio=0.5"), out)
    return checkpoint, out, rows


def test_prune_run_writes_results_and_loadable_models(first_run) -> None:
    _, out, rows = first_run
    results = json.loads((out / "results.json").read_text())
    assert results["rows"] == rows
    assert [r["variant"] for r in rows] == ["original", *VARIANTS]
    original = rows[0]
    base = build_model("resnet20", in_channels=3, num_classes=4)
    assert (original["macs"], original["params"]) == count_macs_params(base, INPUT)
    assert results["method"].startswith("uniform keep_ratio")
    assert len(set(results["keep_ratios"])) == 1 and 0 < results["keep_ratios"][0] < 1
    for row in rows:
        assert row["latency_ms"] > 0 and 0 <= row["reward_val_acc"] <= 1 and 0 <= row["test_acc"] <= 1
    for row in rows[1:]:
        assert row["macs"] / original["macs"] <= 0.5
        assert row["macs"] == rows[1]["macs"] and row["params"] < original["params"]
        directory = out / VARIANTS[row["variant"]]
        assert (directory / "plan.json").is_file() and (directory / "pruned.safetensors").is_file()
        plan = PruningPlan.load(directory / "plan.json")
        assert plan.macs_after == row["macs"] and plan.settings["variant"] == row["variant"]
        assert plan.accuracy == {"reward_val_acc": row["reward_val_acc"], "test_acc": row["test_acc"]}
        model = load_pruned(directory)
        assert count_macs_params(model, INPUT) == (row["macs"], row["params"])
        assert model(torch.randn(2, *INPUT[1:])).shape == (2, 4)


def test_prune_run_applies_a_saved_plan(first_run, tmp_path: Path) -> None:
    checkpoint, out, rows = first_run
    plan_path = out / "selection_only" / "plan.json"
    again = run(_cfg(checkpoint, f"plan={plan_path}"), tmp_path / "replay")
    assert [r["macs"] for r in again] == [r["macs"] for r in rows]
    assert [r["params"] for r in again] == [r["params"] for r in rows]
    assert again[1]["reward_val_acc"] == rows[1]["reward_val_acc"]  # same channels, same weights
    original = PruningPlan.load(plan_path)
    for directory in VARIANTS.values():
        replayed = PruningPlan.load(tmp_path / "replay" / directory / "plan.json")
        assert [g["kept_indices"] for g in replayed.groups] == [g["kept_indices"] for g in original.groups]
        assert count_macs_params(load_pruned(tmp_path / "replay" / directory), INPUT)[0] == rows[1]["macs"]
    assert json.loads((tmp_path / "replay" / "results.json").read_text())["method"] == f"plan {plan_path}"


def test_prune_plan_for_another_checkpoint_is_rejected(first_run, tmp_path: Path) -> None:
    _, out, _ = first_run
    other = _checkpoint(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(PlanError, match="checksum"):
        run(_cfg(other, f"plan={out / 'selection_only' / 'plan.json'}"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prune_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(CheckpointError, match=str(missing)):
        run(_cfg(missing), tmp_path / "out")


def test_prune_checkpoint_for_other_classes_is_rejected(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "ten.safetensors", num_classes=10)
    with pytest.raises(ValueError, match="10 classes"):
        run(_cfg(checkpoint), tmp_path / "out")


def test_a_target_only_a_cliff_meets_is_refused_before_calibration(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "base.safetensors")
    cfg = _cfg(checkpoint, "target_macs_ratio=0.03", "round_to=1", "calibration.num_images=100000")  # would take long
    with pytest.raises(ValueError, match=r"target_macs_ratio=0.03 needs every prunable group at keep ratio 0\.1\d+, "
                                         r"below lbound=0.2: pruning can remove at most \d+% of the MACs\. At "
                                         r"lbound=0.2 the smallest reachable MACs ratio is 0\.0\d+"):
        run(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()
    rows = run(_cfg(checkpoint, "target_macs_ratio=0.03", "round_to=1", "lbound=0"), tmp_path / "anyway")
    assert rows[1]["macs"] <= 0.03 * rows[0]["macs"]
