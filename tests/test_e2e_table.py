"""experiments.speed.e2e_table: figures per run and per group, and a clear refusal of what is not a run dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from experiments.speed import e2e_table


def _run(path: Path, *, seconds: float, pass_s: float, best: float, test: float, stopped: list[bool]) -> Path:
    path.mkdir(parents=True)
    summary = {"search_seconds": seconds, "reward_val_pass_seconds": pass_s, "seconds_per_episode": seconds / len(stopped),
               "best_reward": best, "test_acc": test}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "episodes.jsonl").write_text("".join(json.dumps({"stopped_early": s}) + "\n" for s in stopped))
    return path


def test_rows_and_groups(tmp_path: Path) -> None:
    a = _run(tmp_path / "fast" / "s0", seconds=600, pass_s=20, best=0.91, test=0.90, stopped=[True, False, False, False])
    b = _run(tmp_path / "fast" / "s1", seconds=240, pass_s=10, best=0.93, test=0.92, stopped=[False] * 4)
    row = e2e_table.run_row(a, "fast")
    assert row["passes"] == pytest.approx(30) and row["stopped"] == pytest.approx(0.25)
    assert row["minutes"] == pytest.approx(10) and row["best_reward"] == pytest.approx(91)
    text = e2e_table.table([row, e2e_table.run_row(b, "fast")], target_minutes=5)
    group_line = text.splitlines()[-1]
    assert group_line.startswith("| fast | 2 | 7.0 ± 4.2 | 27 ± 4 | 92.00 ± 1.41 | 91.00 ± 1.41 | no (1.4x) |")


def test_a_path_that_is_not_a_run_dir_is_refused_by_name(tmp_path: Path, monkeypatch, capsys) -> None:
    _run(tmp_path / "fast" / "s0", seconds=60, pass_s=10, best=0.9, test=0.9, stopped=[False])
    log = tmp_path / "fast" / "s0.log"
    log.write_text("a search's log")
    monkeypatch.setattr(sys, "argv", ["e2e_table", str(tmp_path / "fast" / "s0"), str(log)])
    with pytest.raises(SystemExit):
        e2e_table.main()
    assert f"{log} is not a finished search dir" in capsys.readouterr().err
