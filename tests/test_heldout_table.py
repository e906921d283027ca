"""experiments.transfer.heldout_table: rows per network, budget and method over finished seeds, gap to uniform."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.transfer import heldout_table as ht


def _run(root: Path, name: str, test_acc: float, *, target: str = "t0.5", finished: bool = True,
         episodes: int = 1) -> None:
    run = root / "heldout" / "resnet56" / target / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"test_acc": test_acc, "reward_val_acc": test_acc + 0.01,
                                                  "macs_ratio": 0.5, "episodes": episodes}))
    if finished:
        (run / "comparison.md").write_text("| variant |\n")


def test_method_names_of_the_run_dirs() -> None:
    assert ht.method_of("zero_shot_all_s2") == "zoo agent (all), zero-shot"
    assert ht.method_of("refine10_amc_s0") == "zoo agent (amc) + 10 episodes"
    assert ht.method_of("random25_s1") == "random search, 25 episodes"
    assert ht.method_of("uniform") == "uniform" and ht.method_of("uniform.incomplete.123") is None
    assert ht.method_of("refine10_best3_s1") == f"zoo agent ({ht.COMMITTEES['best3']}) + 10 episodes"


def test_table_averages_finished_seeds_and_gives_the_gap_to_uniform(tmp_path: Path) -> None:
    _run(tmp_path, "uniform", 0.80)
    _run(tmp_path, "zero_shot_all_s0", 0.82)
    _run(tmp_path, "zero_shot_all_s1", 0.84)
    _run(tmp_path, "zero_shot_all_s2", 0.10, finished=False)  # killed: not a result
    _run(tmp_path, "refine10_all_s0", 0.85, episodes=11)
    _run(tmp_path, "zero_shot_all_s0", 0.70, target="t0.3")
    text = ht.table(ht.collect(tmp_path, {}))
    rows = {line.split(" | ")[1] + " " + line.split(" | ")[2]: line for line in text.splitlines()[2:]}
    assert "| 2 | 83.00 ± 1.41 | 84.00 ± 1.41 | +3.00 |" in rows["0.5 zoo agent (all), zero-shot"]
    assert rows["0.5 zoo agent (all) + 10 episodes"].endswith("| +5.00 | 0.500 | 11 |")
    assert "| - |" in rows["0.3 zoo agent (all), zero-shot"]  # no uniform at 0.3: no gap
    assert len(rows) == 4


def test_summary_gives_each_seeds_gain_over_uniform_and_the_refinements_gap_to_the_search(tmp_path: Path) -> None:
    _run(tmp_path, "uniform", 0.80)
    _run(tmp_path, "zero_shot_scale_s0", 0.82)
    _run(tmp_path, "zero_shot_scale_s1", 0.79)
    _run(tmp_path, "refine10_scale_s0", 0.86, episodes=11)
    _run(tmp_path, "refine10_scale_s1", 0.84, episodes=11)
    scratch = tmp_path / "scratch"
    for seed, acc in enumerate([0.86, 0.88]):
        (scratch / f"seed{seed}").mkdir(parents=True)
        (scratch / f"seed{seed}" / "summary.json").write_text(json.dumps(
            {"test_acc": acc, "reward_val_acc": acc, "macs_ratio": 0.5, "episodes": 400}))
    text = ht.summary(ht.collect(tmp_path, {"resnet56": scratch}))
    assert text.splitlines()[2] == "| zoo, scale | resnet56 | 2 | +0.50 | +2.00 -1.00 | -2.00 |"
    assert len(text.splitlines()) == 3  # one state, one network, no ResNet-20 agent run
