"""experiments/budgets/conditioned_table.py: one column per conditioned training run, labelled variants included."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiments.budgets import conditioned_table


def _summary(path: Path, test_acc: float, macs_ratio: float, **extra: int) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"test_acc": test_acc, "macs_ratio": macs_ratio, **extra}))


def test_labelled_runs_get_their_own_column(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "resnet20"
    _summary(root / "apply_e400" / "s0" / "t0.3", 0.456, 0.300)
    _summary(root / "apply_e400" / "s0" / "t0.3" / "compare" / "uniform", 0.7908, 0.300)
    _summary(root / "apply_e800_decay99" / "s0" / "t0.3", 0.7656, 0.299)
    (root / "apply_e800-bad").mkdir()  # not a run column: ignored, not a crash
    monkeypatch.setattr(sys, "argv", ["conditioned_table", str(root)])
    conditioned_table.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| target | conditioned, 400 episodes | conditioned, 800 episodes, decay99 | "
                        "AMC searched at this target | uniform |")
    assert lines[2] == "| 0.3 | 45.60 (0.300, n=1) | 76.56 (0.299, n=1) | - | 79.08 (0.300, n=1) |"
    assert lines[3].startswith("| episodes per seed, all targets | 400 | 800 | - |")


def test_each_front_gets_a_column_and_its_episode_total(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "conditioned" / "resnet20"
    for t in ("0.3", "0.5"):
        _summary(root / "apply_e400" / "s0" / f"t{t}", 0.80, float(t))
        _summary(root / "apply_e400" / "s0" / f"t{t}" / "compare" / "uniform", 0.79, float(t))
    old, new = tmp_path / "protocol.target=0.3", tmp_path / "tight"  # "=" in a dir name: not a label
    for seed, acc in enumerate((0.80, 0.78)):
        _summary(old / "t0.3" / f"s{seed}", acc, 0.3, episodes=400)
    _summary(new / "t0.5" / "s0", 0.91, 0.5, episodes=300)
    monkeypatch.setattr(sys, "argv", ["conditioned_table", str(root), "--front", str(old),
                                      "--front", f"decay 0.99={new}"])
    conditioned_table.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("| target | conditioned, 400 episodes | AMC searched at this target | "
                        "AMC searched at this target, decay 0.99 | uniform |")
    assert lines[2] == "| 0.3 | 80.00 (0.300, n=1) | 79.00 ± 1.41 (0.300, n=2) | - | 79.00 (0.300, n=1) |"
    assert lines[3] == "| 0.5 | 80.00 (0.500, n=1) | - | 91.00 (0.500, n=1) | 79.00 (0.500, n=1) |"
    assert lines[4].startswith("| episodes per seed, all targets | 400 | 400 | 300 | 1 per target |")
