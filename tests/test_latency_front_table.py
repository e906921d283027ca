"""experiments.deploy.latency_front_table: mean ± std per network, budget and method from run dirs; unfinished runs skipped."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.deploy import latency_front_table as lft


def _summary(path: Path, test_acc: float, speedup: float, met: bool | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    row = {"test_acc": test_acc, "test_acc_bn": test_acc + 0.01, "macs_ratio": 0.4,
           "speedups": {"onnxruntime b1": speedup, "onnxruntime b64": speedup + 0.5, "torch b1": 1.1}}
    if met is not None:
        row["latency_budget_met"] = met
    (path / "summary.json").write_text(json.dumps(row))


def _run(root: Path, seed: int, amc: float, uniform: float, *, finished: bool = True) -> None:
    run = root / "mobilenet_v2" / "t0.5" / f"s{seed}"
    _summary(run, amc, 2.0 + seed / 10, met=seed != 1)
    _summary(run / "compare" / "uniform", uniform, 2.1, met=True)
    if finished:
        (run / "comparison.md").write_text("| variant |\n")


def test_front_table_gives_mean_and_std_over_finished_seeds(tmp_path: Path) -> None:
    _run(tmp_path, 0, 0.90, 0.58)
    _run(tmp_path, 1, 0.92, 0.56)
    _run(tmp_path, 2, 0.10, 0.10, finished=False)  # still running: left out
    plan = tmp_path / "mobilenet_v2" / "macs_plan" / "s0"
    _summary(plan, 0.9066, 1.71)
    (plan / "comparison.md").write_text("| variant |\n")
    table = lft.format_front(lft.collect(tmp_path))
    lines = table.splitlines()
    amc = next(line for line in lines if "AMC, latency protocol" in line)
    assert "| mobilenet_v2 | latency 0.5 | AMC, latency protocol | 2 | 91.00 ± 1.41 | 92.00 ± 1.41 | 2.05x ± 0.07 |" in amc
    assert amc.endswith("| 1 of 2 | - |")
    uniform = next(line for line in lines if "uniform" in line)
    assert "| 2 | 57.00 ± 1.41 |" in uniform and uniform.endswith("| 2 of 2 | - |")
    assert "| MACs 0.5 | AMC's MACs-0.5 plan on the grid | 1 | 90.66 | 91.66 | 1.71x | 2.21x | 1.10x | 0.400 | - | - |" in table


def test_re_timed_speedups_replace_the_runs_own_onnxruntime_figures(tmp_path: Path) -> None:
    _run(tmp_path, 0, 0.90, 0.58)
    _run(tmp_path, 1, 0.92, 0.56)
    run = tmp_path / "mobilenet_v2" / "t0.5" / "s0"
    clean, noisy = {"noisy": False}, {"noisy": True}
    (run / "latency_remeasured.json").write_text(json.dumps({
        "speedups": {"original": {"onnxruntime b1": 1.0, "onnxruntime b64": 1.0},
                     "amc": {"onnxruntime b1": 2.5, "onnxruntime b64": 9.0}, "uniform": {"onnxruntime b1": 2.3}},
        "stats": {"original": {"onnxruntime b1": clean, "onnxruntime b64": clean},
                  "amc": {"onnxruntime b1": clean, "onnxruntime b64": noisy},  # noisy: the run's own figure stays
                  "uniform": {"onnxruntime b1": clean}}}))
    lines = lft.format_front(lft.collect(tmp_path)).splitlines()
    amc = next(line for line in lines if "AMC, latency protocol" in line)
    uniform = next(line for line in lines if "uniform" in line)
    assert "| 2.30x ± 0.28 | 2.55x ± 0.07 | 1.10x ± 0.00 |" in amc and amc.endswith("| 1 of 2 | 1 |")  # b64, torch: own
    assert "| 2.20x ± 0.14 |" in uniform and uniform.endswith("| 2 of 2 | 1 |")
