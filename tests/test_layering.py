"""The core library never imports hydra, omegaconf, gymnasium or stable_baselines3 (conventions)."""

from __future__ import annotations

import subprocess
import sys

CORE = ["amc", "amc.models", "amc.data", "amc.measure.macs", "amc.measure.accuracy", "amc.measure.latency",
        "amc.pruning.groups", "amc.pruning.selection", "amc.pruning.surgery", "amc.pruning.reconstruction",
        "amc.pruning.bn", "amc.pruning.engine", "amc.pruning.uniform", "amc.plan", "amc.checkpoint",
        "amc.training", "amc.report", "amc.plot_curve", "amc.rewards", "amc.pruning.budget", "amc.measure.latency_table"]
FORBIDDEN = ["hydra", "omegaconf", "gymnasium", "stable_baselines3"]


def test_core_imports_no_framework() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        f"print([f for f in {FORBIDDEN!r} if f in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"core library imported {out}"
