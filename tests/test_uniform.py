"""One path for channel counts: the engine's count entry point, the one heuristic solver, the env's exact-count
episodes, and the same uniform model from ``amc.prune`` and ``amc.search method=uniform``."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from amc.artifacts.checkpoint import save_checkpoint
from amc.artifacts.plan import PruningPlan, load_pruned
from amc.data.base import DataSplits
from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.measure.macs import count_macs_params
from amc.models import build_model
from amc.prune import run as prune_run
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.heuristics import HEURISTICS, heuristic_counts, heuristic_keep_ratios, solve_heuristic
from amc.pruning.uniform import solve_uniform, uniform_keep_ratio
from amc.search import run as search_run

INPUT = (1, 3, 16, 16)  # conf/data/synthetic.yaml: 3 channels, 16x16, 4 classes


def _net(name: str = "resnet20", round_to: int = 1) -> PrunableNetwork:
    torch.manual_seed(0)
    return PrunableNetwork(build_model(name, in_channels=3, num_classes=4).eval(), INPUT, round_to=round_to)


@pytest.fixture(scope="module")
def resnet20() -> PrunableNetwork:
    return _net()


@pytest.fixture(scope="module")
def data() -> DataSplits:
    return synthetic(train_size=64, test_size=16, reward_val_size=64)


# --- the engine's count entry point ----------------------------------------------------------------------------


def test_prune_counts_is_what_prune_rounds_to(resnet20: PrunableNetwork) -> None:
    engine = PruningEngine(resnet20)
    keep = [0.3 + 0.05 * i for i in range(resnet20.num_groups)]
    counts = resnet20.channel_counts(keep)
    a, b = engine.prune(keep), engine.prune_counts(counts)
    assert a.channels == b.channels == counts
    assert all(torch.equal(x, y) for x, y in zip(a.kept, b.kept))
    assert [len(k) for k in b.kept] == counts
    assert count_macs_params(b.model, INPUT) == (b.macs, b.params) == (resnet20.predict_macs(counts),
                                                                       resnet20.predict_params(counts))
    assert b.keep_ratios == [n / g.channels for n, g in zip(counts, resnet20.groups)]


def test_prune_counts_validation_names_the_bad_group(resnet20: PrunableNetwork) -> None:
    engine = PruningEngine(resnet20)
    full = [g.channels for g in resnet20.groups]
    with pytest.raises(ValueError, match=f"got {len(full) - 1} channel counts for {len(full)} prunable groups"):
        engine.prune_counts(full[:-1])
    root = resnet20.groups[3].root
    for bad in (0, -2, full[3] + 1, 2.5, 3.0, True, "8"):
        counts = [*full[:3], bad, *full[4:]]
        with pytest.raises(ValueError, match=rf"group 3 \({root}\) is {bad!r}; expected an integer in \[1, {full[3]}\]"):
            engine.prune_counts(counts)
    assert engine.prune_counts(np.array(full)).channels == full  # numpy integers are integers


# --- the one solver --------------------------------------------------------------------------------------------


def _check_solver(name: str, round_to: int, kind: str) -> int:
    """The solver's guarantees on random budgets; returns how many groups the fill raised in all."""
    net = _net(name, round_to)
    filled = 0
    rng = random.Random(f"{name}-{round_to}-{kind}")
    for resource in ("macs", "params"):
        for _ in range(4):
            lbound = rng.choice([0.1, 0.2, 0.5])
            floor = ResourceBudget(net, resource, 1.0, lbound)
            floor_ratio = floor.cost(floor.min_counts) / floor.original
            budget = ResourceBudget(net, resource, rng.uniform(floor_ratio * 1.01, 0.95), lbound)
            policy = solve_heuristic(net, kind, cost=budget.cost, limit=budget.limit, lbound=lbound, fill=True)
            assert budget.cost(policy.counts) <= budget.limit
            assert all(lo <= n for lo, n in zip(budget.min_counts, policy.counts))
            assert 0 < policy.strength
            member = heuristic_counts(net, policy.keep_ratios)
            assert budget.cost(member) <= budget.limit
            plain = solve_heuristic(net, kind, cost=budget.cost, limit=budget.limit, lbound=lbound)
            assert (plain.counts, plain.strength, plain.raised) == (member, policy.strength, 0)  # no fill by default
            # the next weaker member: the strength one float below (the bisection ends on adjacent floats)
            below = math.nextafter(policy.strength, 0.0)
            weaker = heuristic_counts(net, heuristic_keep_ratios(kind, below, net.num_groups, lbound))
            assert budget.cost(weaker) > budget.limit  # any weaker member breaks the limit
            # the fill: each count is the member's or the weaker member's, and no further group could be raised
            raised = [i for i, (n, m) in enumerate(zip(policy.counts, member)) if n != m]
            assert len(raised) == policy.raised
            assert all(policy.counts[i] == weaker[i] for i in raised)
            for i, (n, w) in enumerate(zip(policy.counts, weaker)):
                if n < w:
                    assert budget.cost([*policy.counts[:i], w, *policy.counts[i + 1:]]) > budget.limit
            filled += policy.raised
    return filled


@pytest.mark.parametrize(("name", "round_to"), [("resnet20", 1), ("resnet20", 4), ("mobilenet_v2", 1)])
@pytest.mark.parametrize("kind", HEURISTICS)
def test_solver_finds_the_weakest_member_within_the_limit(name: str, round_to: int, kind: str) -> None:
    _check_solver(name, round_to, kind)


def test_the_fill_spends_the_rounding_left_of_the_budget() -> None:
    """Uniform at ResNet-20's 50% MACs (its Fashion-MNIST shape): the last stage keeps 46, 46, 46, 45 channels (the
    family alone gives 45 everywhere, 0.494 of the MACs), and the fill raises groups on the random budgets too."""
    net = PrunableNetwork(build_model("resnet20", in_channels=1, num_classes=10).eval(), (1, 1, 28, 28))
    budget = ResourceBudget(net, "macs", 0.5, 0.2)
    policy = solve_heuristic(net, "uniform", cost=budget.cost, limit=budget.limit, lbound=0.2, fill=True)
    assert policy.counts == [11] * 4 + [23] * 4 + [46, 46, 46, 45] and policy.raised == 3
    assert heuristic_counts(net, policy.keep_ratios)[8:] == [45] * 4
    assert 0.4995 < budget.ratio(policy.counts) <= 0.5
    assert _check_solver("resnet20", 1, "uniform") > 0


def test_solver_limits_and_errors(resnet20: PrunableNetwork) -> None:
    full = [g.channels for g in resnet20.groups]
    for kind in HEURISTICS:
        policy = solve_heuristic(resnet20, kind, cost=resnet20.predict_macs, limit=resnet20.original_macs)
        assert policy.counts == full and policy.strength == 0.0
        with pytest.raises(ValueError, match=f"the {kind} policy cannot meet the limit.*lbound=0.5"):
            solve_heuristic(resnet20, kind, cost=resnet20.predict_macs, limit=0.1 * resnet20.original_macs, lbound=0.5)
    capped = solve_heuristic(resnet20, "uniform", cost=resnet20.predict_macs, limit=resnet20.original_macs, rbound=0.5)
    assert capped.counts == resnet20.channel_counts([0.5] * resnet20.num_groups)
    with pytest.raises(ValueError, match="'middle'"):
        solve_heuristic(resnet20, "middle", cost=resnet20.predict_macs, limit=1.0)
    with pytest.raises(ValueError, match="lbound=0.6, rbound=0.5"):
        solve_heuristic(resnet20, "uniform", cost=resnet20.predict_macs, limit=1.0, lbound=0.6, rbound=0.5)


@pytest.mark.parametrize(("name", "round_to"), [("resnet20", 1), ("resnet20", 8), ("mobilenet_v2", 1)])
def test_uniform_does_not_depend_on_lbound_where_reachable(name: str, round_to: int) -> None:
    """prune's uniform (lbound 0) and the search's (env lbound 0.2, MACs wall) are the same counts."""
    net = _net(name, round_to)
    for target in (0.3, 0.45, 0.5, 0.77, 1.0):
        budget = ResourceBudget(net, "macs", target, 0.2)
        search = solve_heuristic(net, "uniform", cost=budget.cost, limit=budget.limit, lbound=0.2)
        prune = solve_uniform(net, target)
        assert search.counts == prune.counts, target
        family = net.channel_counts([uniform_keep_ratio(net, target)] * net.num_groups)
        assert prune.counts == family


# --- the env plays exact counts through the same path ----------------------------------------------------------


class _SpyEngine(PruningEngine):
    """Records the counts the env hands to the engine."""

    def prune_counts(self, counts):  # type: ignore[no-untyped-def]
        self.seen = list(counts)
        return super().prune_counts(counts)


def test_play_counts_gives_a_normal_episode_info_and_the_engine_gets_the_counts(resnet20: PrunableNetwork,
                                                                                 data: DataSplits) -> None:
    engine = _SpyEngine(resnet20)
    budget = ResourceBudget(resnet20, "macs", 0.5, 0.2)
    env = ChannelPruningEnv(resnet20, engine, data, budget=budget, eval_images=32)
    # a normal episode: the engine gets exactly the realised channels, and the model has them
    env.reset(seed=0)
    terminated, rng = False, np.random.default_rng(0)
    while not terminated:
        _, _, terminated, _, stepped = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
    assert engine.seen == stepped["channels"]
    assert stepped["macs"] == resnet20.predict_macs(engine.seen) <= budget.limit
    # exact counts within the budget: passed through unchanged, same info form
    policy = solve_heuristic(resnet20, "deep", cost=budget.cost, limit=budget.limit, lbound=0.2)
    info = env.play_counts(policy.counts, seed=0)
    assert info.keys() == stepped.keys() and info["seconds"].keys() == stepped["seconds"].keys()
    assert info["episode_end"] is True and info["reward"] == info["accuracy"]
    assert engine.seen == info["channels"] == policy.counts
    assert info["requested_keep_ratios"] == info["keep_ratios"]
    assert info["budget_ratio"] <= 0.5 and info["macs_ratio"] == info["budget_ratio"]
    # the same counts asked for by actions give the same episode
    env.reset(seed=0)
    for n, g in zip(policy.counts, resnet20.groups):
        action = (n / g.channels - 0.2) / 0.8 * 2 - 1
        _, _, _, _, by_actions = env.step(np.array([action]))
    assert by_actions["channels"] == info["channels"] and by_actions["accuracy"] == info["accuracy"]


def test_play_counts_applies_the_wall_and_checks_the_bounds(resnet20: PrunableNetwork, data: DataSplits) -> None:
    budget = ResourceBudget(resnet20, "macs", 0.5, 0.2)
    engine = _SpyEngine(resnet20)
    env = ChannelPruningEnv(resnet20, engine, data, budget=budget, lbound=0.2, rbound=0.9, eval_images=16)
    bounds = env.count_bounds()
    assert bounds == [(round(0.2 * g.channels), round(0.9 * g.channels)) for g in resnet20.groups]
    top = [hi for _, hi in bounds]
    info = env.play_counts(top)  # over budget: the wall caps it like any agent's episode
    assert info["macs"] <= budget.limit and info["channels"] != top
    assert engine.seen == info["channels"]
    assert all(n <= hi for n, hi in zip(info["channels"], top))
    root = resnet20.groups[2].root
    for bad in (bounds[2][0] - 1, bounds[2][1] + 1):
        counts = [*top[:2], bad, *top[3:]]
        with pytest.raises(ValueError, match=rf"group 2 \({root}\) is {bad}; .*allow \[{bounds[2][0]}, {bounds[2][1]}\]"):
            env.play_counts(counts)
    with pytest.raises(ValueError, match="channel counts for"):
        env.play_counts(top[:-1])


# --- both commands, the same uniform model ---------------------------------------------------------------------


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=3, num_classes=4)
    spec = {"target": "resnet20", "in_channels": 3, "num_classes": 4, "kwargs": {}}
    return save_checkpoint(model, path, model_spec=spec)


def _compose(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def test_prune_and_search_uniform_give_the_same_model(tmp_path: Path) -> None:
    """Where the search's fill raises no group (0.7 here), both commands give the same model; at 0.5 the search's
    uniform fills the budget (``solve_heuristic(fill=True)``) and prune's does not."""
    target = 0.7
    net = _net()
    budget = ResourceBudget(net, "macs", target, 0.2)
    assert solve_heuristic(net, "uniform", cost=budget.cost, limit=budget.limit, lbound=0.2, fill=True).raised == 0
    checkpoint = _checkpoint(tmp_path / "base.safetensors")
    common = ["data=synthetic", f"checkpoint={checkpoint}", "device=cpu", "seed=0"]
    prune_cfg = _compose("prune", [*common, f"target_macs_ratio={target}", "calibration.num_images=64",
                                   "calibration.batch_size=32", "bn_recalibration.num_batches=1", "latency.repeats=1",
                                   "latency.warmup=0", "round_to=1"])
    search_overrides = [*common, "method=uniform", "progress=false", "env.calibration.num_images=64",
                        "env.calibration.batch_size=32", "env.eval_images=32", "env.bn_recalibration_batches=0",
                        "final_eval.bn_recalibration_batches=0", "final_eval.latency_repeats=1", "env.round_to=1"]
    search_cfg = _compose("search", [*search_overrides, f"protocol.target={target}"])
    prune_run(prune_cfg, tmp_path / "prune")
    row = search_run(search_cfg, tmp_path / "search")
    from_prune, from_search = tmp_path / "prune" / "reconstruction", tmp_path / "search" / "best"
    a, b = PruningPlan.load(from_prune / "plan.json"), PruningPlan.load(from_search / "plan.json")
    assert [g["kept_channels"] for g in a.groups] == [g["kept_channels"] for g in b.groups] == row["channels"]
    assert [g["kept_indices"] for g in a.groups] == [g["kept_indices"] for g in b.groups]
    assert a.macs_after == b.macs_after == row["macs"] <= target * a.macs_before
    full = [g.channels for g in net.groups]
    assert row["channels"] != full
    ma, mb = load_pruned(from_prune), load_pruned(from_search)
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].shape == sb[k].shape and torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6), k
    # at 0.5 the search fills the rounding left of the budget: one rounding step up in some groups, within the budget
    half = ResourceBudget(net, "macs", 0.5, 0.2)
    filled = solve_heuristic(net, "uniform", cost=half.cost, limit=half.limit, lbound=0.2, fill=True)
    assert filled.raised > 0 and filled.counts != solve_uniform(net, 0.5).counts
    row = search_run(_compose("search", [*search_overrides, "protocol.target=0.5"]), tmp_path / "half")
    assert row["channels"] == filled.counts and row["macs"] <= half.limit
