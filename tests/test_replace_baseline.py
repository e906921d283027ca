"""experiments.budgets.replace_baseline: a re-run baseline replaces a run's compare row, keeps the old files, refuses
a mismatched or repeated replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from experiments.budgets import replace_baseline


def _run(path: Path, *, variant: str, target: float, seed: int, acc: str) -> Path:
    """A finished run dir with its hydra config, summary, plan and a comparison.md row for ``variant``."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"protocol": {"resource": "macs", "target": target}, "seed": seed, "checkpoint": "model.safetensors"}))
    (path / "summary.json").write_text(json.dumps({"variant": variant, "test_acc": float(acc) / 100}))
    (path / "best_plan.json").write_text(json.dumps({"groups": [], "acc": acc}))
    (path / "comparison.md").write_text(f"| variant | test acc |\n|---|---:|\n| original | 93.88% |\n| {variant} | {acc}% |\n")
    return path


def _job(path: Path, target: float = 0.3, seed: int = 0) -> Path:
    job = _run(path, variant="amc", target=target, seed=seed, acc="80.00")
    (job / "comparison.md").write_text((job / "comparison.md").read_text() + "| uniform | 78.89% |\n")
    compare = job / "compare" / "uniform"
    compare.mkdir(parents=True)
    (compare / "summary.json").write_text(json.dumps({"variant": "uniform", "test_acc": 0.7889}))
    (compare / "best_plan.json").write_text("{}")
    return job


def test_replaces_the_row_and_keeps_the_old_files(tmp_path: Path) -> None:
    job = _job(tmp_path / "job")
    rerun = _run(tmp_path / "rerun", variant="uniform", target=0.3, seed=0, acc="79.08")
    assert replace_baseline.replace(rerun, job, "the fill") == "uniform"
    compare = job / "compare" / "uniform"
    assert json.loads((compare / "summary.json").read_text())["test_acc"] == pytest.approx(0.7908)
    assert json.loads((compare / "summary.superseded.json").read_text())["test_acc"] == pytest.approx(0.7889)
    assert (compare / "best_plan.superseded.json").read_text() == "{}"
    table = (job / "comparison.md").read_text()
    assert "| uniform | 79.08% |" in table.splitlines()[4] and "| amc | 80.00% |" in table
    assert "row replaced on" in table and "(the fill)" in table and "Was: | uniform | 78.89% |" in table
    with pytest.raises(SystemExit, match="already replaced once"):
        replace_baseline.replace(rerun, job, "again")


def test_refuses_a_mismatch_or_an_unfinished_or_non_heuristic_run(tmp_path: Path) -> None:
    job = _job(tmp_path / "job")
    before = {p: p.read_bytes() for p in job.rglob("*") if p.is_file()}
    other_seed = _run(tmp_path / "s1", variant="uniform", target=0.3, seed=1, acc="79.00")
    with pytest.raises(SystemExit, match=r"seed differs: 1 in .*s1, 0 in .*job"):
        replace_baseline.replace(other_seed, job, "x")
    other_target = _run(tmp_path / "t7", variant="uniform", target=0.7, seed=0, acc="92.00")
    with pytest.raises(SystemExit, match=r"protocol.target differs: 0.7"):
        replace_baseline.replace(other_target, job, "x")
    agent = _run(tmp_path / "amc", variant="amc", target=0.3, seed=0, acc="80.00")
    with pytest.raises(SystemExit, match=r"variant 'amc'\); expected one of \('uniform', 'deep', 'shallow'\)"):
        replace_baseline.replace(agent, job, "x")
    deep = _run(tmp_path / "deep", variant="deep", target=0.3, seed=0, acc="28.00")
    with pytest.raises(SystemExit, match="has no compare/deep/"):
        replace_baseline.replace(deep, job, "x")
    (other_seed / "comparison.md").unlink()
    with pytest.raises(SystemExit, match="not a finished run"):
        replace_baseline.replace(other_seed, job, "x")
    assert {p: p.read_bytes() for p in job.rglob("*") if p.is_file()} == before  # nothing touched
