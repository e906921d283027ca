"""The proxy study (experiments/proxy, issue 28): candidates, resume, refusals, correlations."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from amc.artifacts.checkpoint import load_checkpoint
from amc.artifacts.plan import make_plan, model_checksum
from amc.data import synthetic
from amc.envs import ChannelPruningEnv
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.heuristics import solve_heuristic
from amc.pruning.selection import select_channels
from amc.runs.episodes import run_episode
from experiments.proxy.analysis import bootstrap_ci, pearson, ranks, read_candidates, spearman
from experiments.proxy.candidates import Candidate, heuristic_candidates, random_candidates
from experiments.proxy.proxies import Recipe
from experiments.proxy.recipe_check import main as recipe_check_main
from experiments.proxy.rundir import StudyMismatch
from experiments.proxy.study import StudyConfig, build_data, main, run_candidates, run_study
from tests.helpers import resnet20_checkpoint

TARGET = 0.5
PROXIES = {"select", "recon", "recon_bn1", "recon_bn2", "sgd1"}


def _net(checkpoint: Path) -> tuple[PrunableNetwork, ResourceBudget]:
    model, _ = load_checkpoint(checkpoint)
    net = PrunableNetwork(model, (1, 3, 16, 16))
    return net, ResourceBudget(net, "macs", TARGET, 0.2)


def _amc_plan(checkpoint: Path, path: Path) -> Path:
    """A stand-in for a search's best_plan.json: shallow at the budget."""
    net, budget = _net(checkpoint)
    counts = solve_heuristic(net, "shallow", cost=budget.cost, limit=budget.limit, lbound=0.2).counts
    plan = make_plan(net, select_channels(net, counts), base_model={"checksum": model_checksum(net.model)},
                     settings={"protocol": {"resource": "macs", "target": TARGET}})
    return plan.save(path / "best_plan.json")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> StudyConfig:
    """A finished study: 8 random candidates, uniform / deep / shallow and an 'AMC' plan, tiny everything."""
    root = tmp_path_factory.mktemp("proxy")
    checkpoint = resnet20_checkpoint(root / "model.safetensors")
    config = StudyConfig(out=root / "study", checkpoint=checkpoint, target=TARGET, candidates=8, data="synthetic",
                         calibration_images=64, eval_images=None, bn_batches=(1, 2), bn_batch_size=32, sgd_steps=1,
                         finetune_steps=1, recipe=Recipe(batch_size=32), amc_run=_amc_plan(checkpoint, root),
                         bootstrap=200)
    report = run_study(config)
    assert not report.failed and not report.skipped
    assert len(report.scored) == len(report.finetuned) == 12
    return config


def _ids(config: StudyConfig) -> list[str]:
    return sorted(p.name for p in (config.out / "candidates").iterdir())


def test_study_files_budget_and_analysis(study: StudyConfig, capsys) -> None:
    out = study.out
    assert _ids(study) == sorted(["uniform", "deep", "shallow", "amc", *(f"random_{i:03d}" for i in range(8))])
    settings = json.loads((out / "study.json").read_text())["settings"]
    assert settings["target"] == TARGET and settings["bn_batches"] == [1, 2]
    for cid in _ids(study):
        c = json.loads((out / "candidates" / cid / "candidate.json").read_text())
        f = json.loads((out / "candidates" / cid / "finetuned.json").read_text())
        assert c["macs_ratio"] <= TARGET + 1e-12 and c["macs"] <= TARGET * json.loads((out / "base.json").read_text())["macs"]
        assert set(c["proxies"]) == set(c["proxy_seconds"]) == PROXIES
        assert all(0 <= v <= 1 for v in c["proxies"].values()) and all(s > 0 for s in c["proxy_seconds"].values())
        assert 0 <= f["test_acc"] <= 1 and f["steps"] == 1
        # the fine-tune starts from the recon_bn<largest k> proxy's model
        assert f["start_reward_val_acc"] == pytest.approx(c["proxies"]["recon_bn2"])
    assert main(["--out", str(out), "--analyse-only", "--bootstrap", "200"]) == 0
    assert "| recon_bn2 |" in capsys.readouterr().out
    report = json.loads((out / "correlations.json").read_text())
    assert report["n"] == 12 and set(report["proxies"]) == PROXIES
    for name in PROXIES:
        assert (out / f"scatter_{name}.png").stat().st_size > 1000
        r = report["proxies"][name]
        assert r["seconds_mean"] > 0 and 1 <= r["pick"]["rank"] <= 12


def test_rerun_skips_finished_and_resumes_killed(study: StudyConfig) -> None:
    cands = study.out / "candidates"
    mtimes = {p: p.stat().st_mtime_ns for p in cands.glob("*/*.json")}
    (cands / "random_003" / "finetuned.json").unlink()  # killed during its fine-tune
    (cands / "deep" / "finetuned.json").unlink()  # killed before its proxies were written
    (cands / "deep" / "candidate.json").unlink()
    report = run_study(study)
    assert report.scored == ["deep"]
    assert sorted(report.finetuned) == ["deep", "random_003"]
    assert len(report.skipped) == 10 and not report.failed
    for path, mtime in mtimes.items():
        if path.parent.name not in ("deep", "random_003"):
            assert path.stat().st_mtime_ns == mtime, path
    assert (cands / "random_003" / "candidate.json").stat().st_mtime_ns == mtimes[cands / "random_003" / "candidate.json"]
    again = run_study(study)
    assert len(again.skipped) == 12 and not again.scored and not again.finetuned


def test_other_settings_are_refused(study: StudyConfig, capsys) -> None:
    with pytest.raises(StudyMismatch, match=r"bn_batches=\[1, 2\] there, \[1, 3\] here"):
        run_study(dataclasses.replace(study, bn_batches=(1, 3)))
    code = main(["--out", str(study.out), "--checkpoint", str(study.checkpoint), "--data", "synthetic",
                 "--target", "0.4", "--candidates", "8"])
    assert code == 1
    err = capsys.readouterr().err
    assert "target=0.5 there, 0.4 here" in err and "not overwritten" in err
    assert json.loads((study.out / "study.json").read_text())["settings"]["target"] == TARGET
    # a mistaken command leaves no study behind that would refuse the corrected one
    fresh = study.out.parent / "mistaken"
    assert main(["--out", str(fresh), "--checkpoint", str(study.checkpoint), "--data", "synthetic", "--target", "0.5",
                 "--finetune-steps", "100"]) == 1
    assert "more than one epoch" in capsys.readouterr().err and not fresh.exists()


def test_too_few_finished_candidates(study: StudyConfig, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "partial"
    shutil.copytree(study.out, copy)
    for cid in ("random_000", "random_001", "random_002"):
        (copy / "candidates" / cid / "finetuned.json").unlink()
    assert main(["--out", str(copy), "--analyse-only"]) == 2
    err = capsys.readouterr().err
    assert "only 9 finished candidate(s)" in err and "3 pending" in err and "at least 10" in err


def test_failed_candidate_is_recorded(study: StudyConfig, tmp_path: Path) -> None:
    net, budget = _net(study.checkpoint)

    class NoScorer:  # the failing candidates never reach the proxies
        def __init__(self) -> None:
            self.net = net

    over = Candidate("over", "random", [g.channels for g in net.groups])
    report = run_candidates(NoScorer(), budget, [over, Candidate("none", "deep", error="cannot meet")], tmp_path)
    assert report.failed == ["over", "none"]
    error = json.loads((tmp_path / "candidates" / "over" / "error.json").read_text())
    assert error["stage"] == "proxies" and "over the budget" in error["error"] and "Traceback" in error["traceback"]
    assert json.loads((tmp_path / "candidates" / "none" / "error.json").read_text())["error"] == "cannot meet"


def test_candidates_are_the_envs_episodes(study: StudyConfig) -> None:
    """Random candidates are random search's episodes, heuristics its baselines' policies, through the same wall."""
    net, budget = _net(study.checkpoint)
    data = synthetic()
    env = ChannelPruningEnv(net, PruningEngine(net), data, budget=budget, lbound=0.2)
    for c in random_candidates(net, budget, count=3, seed=5, lbound=0.2, rbound=1.0):
        assert run_episode(env, c.source["actions"], seed=0)["channels"] == c.counts
    for c in heuristic_candidates(net, budget, lbound=0.2, rbound=1.0):
        assert env.play_counts(c.counts)["channels"] == c.counts
    first = random_candidates(net, budget, count=2, seed=0, lbound=0.2, rbound=1.0)
    assert [c.counts for c in first] == [c.counts for c in random_candidates(net, budget, count=4, seed=0, lbound=0.2,
                                                                             rbound=1.0)[:2]]


def test_select_proxy_is_the_search_envs_accuracy(study: StudyConfig) -> None:
    """A proxy is what a search would score: the env (its fast paths, the same images) on the same counts."""
    net, budget = _net(study.checkpoint)
    env = ChannelPruningEnv(net, PruningEngine(net), build_data(study), budget=budget, lbound=0.2, eval_images=None)
    stored = [json.loads(p.read_text()) for p in sorted((study.out / "candidates").glob("*/candidate.json"))]
    assert len(stored) == 12
    for c in stored[:4]:
        assert env.play_counts(c["counts"], wall=False)["accuracy"] == pytest.approx(c["proxies"]["select"], abs=1e-9)


def test_correlations_on_known_values() -> None:
    x = np.arange(1.0, 11.0)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert pearson(x, np.exp(x)) < 0.9
    assert spearman(x, -x**3) == pytest.approx(-1.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert math.isnan(pearson(x, np.ones_like(x)))
    assert ranks([3, 1, 2, 2]).tolist() == [4.0, 1.0, 2.5, 2.5]
    # by hand: ranks 1..4 against [1, 2.5, 2.5, 4]: sum of products of deviations 4.5, sums of squares 5 and 4.5
    assert spearman([1, 2, 3, 4], [1, 5, 5, 9]) == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert bootstrap_ci(x, np.exp(x), spearman, resamples=200) == pytest.approx((1.0, 1.0))
    noisy = a + rng.normal(size=30)
    lo, hi = bootstrap_ci(a, noisy, pearson, resamples=500)
    assert -1.0 <= lo < pearson(a, noisy) < hi <= 1.0


def test_recipe_check_compares_the_candidates_both_recipes_finished(study: StudyConfig, tmp_path: Path,
                                                                    capsys) -> None:
    longer = dataclasses.replace(study, out=tmp_path / "long", candidates=4, finetune_steps=2, heuristics=False,
                                 amc_run=None)
    report = run_study(longer)
    ids = [f"random_{i:03d}" for i in range(4)]
    assert sorted(report.finetuned) == ids  # no heuristics, no AMC plan
    assert recipe_check_main(["--short", str(study.out), "--long", str(longer.out)]) == 0
    result = json.loads((longer.out / "recipe_check.json").read_text())
    assert [c["id"] for c in result["candidates"]] == ids
    short = {c.id: c.finetuned for c in read_candidates(study.out)[0]}
    long = {c.id: c.finetuned for c in read_candidates(longer.out)[0]}
    assert all(c["short"] == short[c["id"]] and c["long"] == long[c["id"]] for c in result["candidates"])
    assert result["spearman"] == pytest.approx(spearman([short[i] for i in ids], [long[i] for i in ids]))
    assert "4 candidates finished in both" in (longer.out / "recipe_check.md").read_text()
    capsys.readouterr()

    same = tmp_path / "same"  # the same recipe: nothing to compare
    shutil.copytree(longer.out, same)
    settings = json.loads((same / "study.json").read_text())
    settings["settings"]["finetune"] = json.loads((study.out / "study.json").read_text())["settings"]["finetune"]
    (same / "study.json").write_text(json.dumps(settings))
    assert recipe_check_main(["--short", str(study.out), "--long", str(same)]) == 1
    assert "same recipe" in capsys.readouterr().err
    settings["settings"]["target"] = 0.3  # other candidates
    (same / "study.json").write_text(json.dumps(settings))
    assert recipe_check_main(["--short", str(study.out), "--long", str(same)]) == 1
    assert "target" in capsys.readouterr().err


def test_better_half_correlation_looks_only_at_the_best_fine_tuned() -> None:
    """A proxy that orders the bad candidates right but the good ones backwards: high overall, -1 on the better half."""
    from experiments.proxy.analysis import Finished, correlate

    finetuned = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    proxy = [0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 0.95, 0.9, 0.85, 0.8]
    finished = [Finished(f"c{i}", "random", {"p": p}, {"p": 1.0}, y, 1.0, 0.5)
                for i, (p, y) in enumerate(zip(proxy, finetuned))]
    r = correlate(finished, resamples=50)["p"]
    assert r["spearman"] > 0.5 and r["spearman_top_half"] == pytest.approx(-1.0)
    assert r["pick"] == {"id": "c5", "finetuned": 0.6, "rank": 5.0}
