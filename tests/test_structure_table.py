"""experiments/finetune/structure_table.py: per method mean ± std over fine-tuning seeds, the lead over uniform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.finetune.structure_table import main


def _metrics(path: Path, *, before: float, after: float, epochs: int = 1) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "model": "amc.models.mobilenet_v2", "macs_ratio": 0.3, "before": {"test_acc": before},
        "after": {"test_acc": after}, "teacher": {"test_acc": 0.93}, "epochs": epochs, "kd": {"alpha": 0.5},
        "config": {"lr": 0.01}}))


def test_means_leads_and_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mobilenet_v2_t0.3"
    for seed, (amc, uniform, deep) in enumerate([(0.90, 0.88, 0.88), (0.91, 0.885, 0.895)]):
        _metrics(root / "amc" / f"ft_s{seed}", before=0.72, after=amc)
        _metrics(root / "uniform" / f"ft_s{seed}", before=0.41, after=uniform)
        _metrics(root / "deep" / f"ft_s{seed}", before=0.26, after=deep)
    assert main([str(root), "--save", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "structure.md").read_text()
    assert "| mobilenet_v2_t0.3 | mobilenet_v2 | 0.300 | amc | 2 | 72.00% | 90.50 ± 0.71% | -2.50 | +2.25 | yes |" in text
    assert "| deep | 2 | 26.00% | 88.75 ± 1.06% | -4.25 | +0.50 | no |" in text  # within deep's own spread
    assert (tmp_path / "out" / "structure.png").stat().st_size > 0
    _metrics(root / "shallow" / "ft_s0", before=0.2, after=0.80)  # one seed: no spread to judge its lead by
    assert main([str(root)]) == 0
    assert "| shallow | 1 | 20.00% | 80.00 ± 0.00% | -13.00 | -8.25 | - (one seed) |" in capsys.readouterr().out
    capsys.readouterr()
    _metrics(root / "amc" / "ft_s2", before=0.72, after=0.9, epochs=3)  # another recipe among the seeds
    assert main([str(root)]) == 1
    assert "another recipe" in capsys.readouterr().err
