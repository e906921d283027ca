"""The sensitivity baseline (ModelOpt FastNAS / AIMET style): probe widths, monotone scores, the global threshold
(checked against brute force on random score tables), and ``method=sensitivity`` in the search harness."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from amc.pruning.sensitivity import monotone_scores, probe_widths, solve_threshold
from tests.helpers import resnet20_checkpoint


def test_probe_widths_are_on_the_grid_from_lbound_and_below_all_channels() -> None:
    assert probe_widths(64, 8, 0.2, 8) == [16, 24, 32, 40, 48, 56]  # lbound 12.8 -> 16; all grid counts fit
    widths = probe_widths(480, 8, 0.2, 5)
    assert len(widths) == 5 and widths[0] == 96 and widths[-1] == 472 and all(w % 8 == 0 for w in widths)
    assert probe_widths(16, 8, 0.2, 8) == [8]
    assert probe_widths(8, 8, 0.2, 8) == []  # one grid step: nothing below all channels
    with pytest.raises(ValueError, match="points must be >= 1"):
        probe_widths(64, 8, 0.2, 0)


def test_monotone_scores_never_drop_with_width() -> None:
    assert monotone_scores({8: 0.5, 16: 0.4, 24: 0.7, 32: 0.6}) == {8: 0.5, 16: 0.5, 24: 0.7, 32: 0.7}


@pytest.mark.parametrize("seed", range(20))
def test_threshold_is_the_smallest_that_meets_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    full = [rng.choice([16, 32, 64]) for _ in range(5)]
    base = 0.9
    scores = [monotone_scores({**{w: rng.uniform(0.1, 0.9) for w in range(8, n, 8)}, n: base}) for n in full]
    weights = [rng.uniform(0.5, 2) for _ in full]

    def cost(counts: list[int]) -> float:
        return sum(w * c for w, c in zip(weights, counts))

    limit = rng.uniform(0.4, 0.9) * cost(full)

    def at(t: float) -> list[int]:
        return [min((w for w, s in g.items() if base - s <= t), default=n) for g, n in zip(scores, full)]

    candidates = sorted({max(0.0, base - s) for g in scores for s in g.values()} | {0.0})
    feasible = [t for t in candidates if cost(at(t)) <= limit]
    if not feasible:
        with pytest.raises(ValueError, match="cannot meet the limit"):
            solve_threshold(scores, full, base, cost=cost, limit=limit)
        return
    plain = solve_threshold(scores, full, base, cost=cost, limit=limit, fill=False)
    assert plain.threshold == min(feasible) and plain.counts == at(min(feasible))
    filled = solve_threshold(scores, full, base, cost=cost, limit=limit)
    assert cost(filled.counts) <= limit and all(a >= b for a, b in zip(filled.counts, plain.counts))
    for i, g in enumerate(scores):  # filled: no group can take its next scored width within the limit
        wider = min((w for w in g if w > filled.counts[i]), default=None)
        if wider is not None:
            assert cost([*filled.counts[:i], wider, *filled.counts[i + 1:]]) > limit


def test_search_method_sensitivity_meets_the_budget_and_reports_its_cost(tmp_path: Path) -> None:
    from amc.search import run

    checkpoint = resnet20_checkpoint(tmp_path / "base.safetensors")
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[
            "data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "progress=false",
            "device=cpu", "final_eval.latency_repeats=1", "final_eval.bn_recalibration_batches=0",
            f"checkpoint={checkpoint}", "method=sensitivity", "sensitivity.points=2", "protocol.target=0.5",
            "compare_with=[uniform]"])
    row = run(cfg, tmp_path / "run")
    probes = [json.loads(line) for line in (tmp_path / "run" / "sensitivity.jsonl").read_text().splitlines()]
    assert row["evaluations"] == len(probes) + 2  # the unpruned score, the probes, the chosen policy
    assert 0 < len(probes) <= 2 * 12 and all(p["channels"] % 8 == 0 for p in probes)
    assert row["macs_ratio"] <= 0.5 and row["variant"] == "sensitivity"
    episodes = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) == 1 and json.loads(episodes[0])["budget_ratio"] <= 0.5 + 1e-9
    assert (tmp_path / "run" / "compare" / "uniform" / "summary.json").is_file()
    assert "| sensitivity |" in (tmp_path / "run" / "comparison.md").read_text()


SMALL = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "progress=false",
         "device=cpu", "final_eval.latency_repeats=1", "final_eval.bn_recalibration_batches=0", "protocol.target=0.5"]


def test_eagleeye_scores_the_random_policies_after_adaptive_bn(tmp_path: Path) -> None:
    """The draws of random search (same seed: same channel counts), each scored with re-estimated BN statistics;
    the engine's own setting is restored afterwards."""
    from amc.search import run

    checkpoint = resnet20_checkpoint(tmp_path / "base.safetensors")
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[*SMALL, f"checkpoint={checkpoint}", "method=eagleeye",
                                                       "episodes=3", "eagleeye.bn_batches=2", "compare_with=[random]",
                                                       "env.bn_recalibration_batches=0"])  # random: AMC's reward
    row = run(cfg, tmp_path / "run")
    assert row["variant"] == "eagleeye" and row["episodes"] == 3 and row["macs_ratio"] <= 0.5
    eagle = [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    rand = [json.loads(x) for x in (tmp_path / "run" / "compare" / "random" / "episodes.jsonl").read_text().splitlines()]
    assert [e["channels"] for e in eagle] == [r["channels"] for r in rand]
    assert [e["accuracy"] for e in eagle] != [r["accuracy"] for r in rand]  # BN statistics re-estimated
    assert "| eagleeye |" in (tmp_path / "run" / "comparison.md").read_text()


def test_apply_policy_sensitivity(tmp_path: Path) -> None:
    from amc.apply import run as apply_run

    checkpoint = resnet20_checkpoint(tmp_path / "base.safetensors")
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="apply", overrides=[
            "data=synthetic", "env.calibration.num_images=64", "env.eval_images=64", "progress=false", "device=cpu",
            "final_eval.latency_repeats=1", "final_eval.bn_recalibration_batches=0", f"checkpoint={checkpoint}",
            "policy=sensitivity", "sensitivity.points=2", "protocol.target=0.5"])
    row = apply_run(cfg, tmp_path / "run")
    assert row["variant"] == "sensitivity" and row["macs_ratio"] <= 0.5 and row["evaluations"] > 2
    assert (tmp_path / "run" / "sensitivity.jsonl").is_file()
