"""One agent for every budget: the target in the observation, per-episode targets from the env's RNG, apply anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from amc.apply import run as apply_run
from amc.cli.checks import check_config
from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.envs.channel_pruning import OBS_FIELDS
from amc.models import build_model
from amc.plot_curve import drawn_targets, plot_reward_curve
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.search import run as search_run
from tests.helpers import resnet20_checkpoint

INPUT = (1, 3, 16, 16)
SMALL = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "agent.batch_size=8",
         "progress=false", "device=cpu", "final_eval.latency_repeats=2", "final_eval.bn_recalibration_batches=0"]
CONDITIONED = ["protocol.target_range=[0.3,0.7]", "env.budget_in_state=true"]


@pytest.fixture(scope="module")
def net() -> PrunableNetwork:
    torch.manual_seed(0)
    return PrunableNetwork(build_model("resnet20", in_channels=3, num_classes=4).eval(), INPUT)


def _env(net: PrunableNetwork, **kwargs: object) -> ChannelPruningEnv:
    data = synthetic(train_size=64, test_size=16, reward_val_size=32)
    return ChannelPruningEnv(net, PruningEngine(net), data, budget=ResourceBudget(net, "macs", 0.5, 0.2),
                             **kwargs)  # type: ignore[arg-type]


def _draws(env: ChannelPruningEnv, seed: int, n: int = 6) -> list[float]:
    targets = [env.reset(seed=seed)[0][-1]]
    targets += [env.reset()[0][-1] for _ in range(n - 1)]
    return [float(t) for t in targets]


def test_the_target_enters_the_observation_only_when_asked(net: PrunableNetwork) -> None:
    plain, conditioned = _env(net), _env(net, budget_in_state=True)
    assert plain.observation_space.shape == (len(OBS_FIELDS),) and plain.obs_fields == OBS_FIELDS
    assert conditioned.observation_space.shape == (len(OBS_FIELDS) + 1,) and conditioned.obs_fields[-1] == "target"
    obs_plain, _ = plain.reset(seed=0)
    obs, _ = conditioned.reset(seed=0)
    assert obs.shape == (12,) and obs[-1] == pytest.approx(0.5) and np.array_equal(obs[:-1], obs_plain)
    assert conditioned.observation_space.contains(obs)


def test_drawn_targets_are_reproducible_from_the_seed_and_within_range(net: PrunableNetwork) -> None:
    a, b = (_env(net, budget_in_state=True, target_range=(0.3, 0.7)) for _ in range(2))
    first, again, other = _draws(a, seed=3), _draws(b, seed=3), _draws(a, seed=4)
    assert first == again and first != other
    assert all(0.3 <= t <= 0.7 for t in first + other) and len(set(first)) == len(first)
    a.reset(seed=3, options={"target": 0.42})
    assert a.target == pytest.approx(0.42)


def test_the_budget_holds_for_every_drawn_target(net: PrunableNetwork) -> None:
    env = _env(net, budget_in_state=True, target_range=(0.3, 0.7))
    rng = np.random.default_rng(0)
    seen = []
    for episode in range(8):
        obs, _ = env.reset(seed=11 if episode == 0 else None)
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        seen.append(info["target"])
        assert info["macs_ratio"] <= info["target"] + 1e-12 and info["target"] == pytest.approx(obs[-1], abs=1e-6)
    assert min(seen) < 0.45 < max(seen)


def test_unreachable_range_and_range_without_budget_are_refused(net: PrunableNetwork) -> None:
    with pytest.raises(ValueError, match="budget unreachable: target_ratio=0.01"):
        _env(net, target_range=(0.01, 0.5))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        _env(net, target_range=(0.6, 0.4))
    data = synthetic(train_size=64, test_size=16, reward_val_size=32)
    with pytest.raises(ValueError, match="budget_in_state needs a resource budget"):
        ChannelPruningEnv(net, PruningEngine(net), data, budget_in_state=True)
    with pytest.raises(ValueError, match="target_range needs a resource budget"):
        ChannelPruningEnv(net, PruningEngine(net), data, target_range=(0.4, 0.6))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resnet20_checkpoint(tmp_path_factory.mktemp("ckpt") / "base.safetensors")


def _cfg(name: str, checkpoint: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name=name, overrides=[*SMALL, f"checkpoint={checkpoint}", *overrides])


@pytest.mark.parametrize("overrides, match", [
    (["method=random", *CONDITIONED], "needs method=amc"),
    (["protocol.target=0.8", *CONDITIONED], "outside protocol.target_range"),
    (["protocol=acc_macs", "protocol.target_range=[0.3,0.7]"], "needs a resource budget"),
    (["protocol.target_range=[0.7,0.3]"], r"\[lo, hi\]"),
])
def test_bad_target_range_settings_are_refused(checkpoint: Path, overrides: list[str], match: str) -> None:
    cfg = _cfg("search", checkpoint, *overrides)
    with pytest.raises(ValueError, match=match):
        check_config(cfg)


@pytest.fixture(scope="module")
def conditioned_run(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("conditioned") / "run"
    row = search_run(_cfg("search", checkpoint, "episodes=6", "agent.warmup_episodes=2", *CONDITIONED), out)
    return out, row


def test_a_conditioned_search_logs_drawn_targets_and_reports_at_protocol_target(conditioned_run) -> None:
    run_dir, row = conditioned_run
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    targets = [r["target"] for r in rows]
    assert len(rows) == 6 and len(set(targets)) == 6 and all(0.3 <= t <= 0.7 for t in targets)
    assert all(r["macs_ratio"] <= r["target"] + 1e-12 for r in rows)
    assert row["macs_ratio"] <= 0.5 + 1e-12 and row["best_episode"] == 6
    assert json.loads((run_dir / "actor.json").read_text())["observation"]["fields"][-1] == "target"
    assert drawn_targets(rows) is not None and plot_reward_curve(run_dir, run_dir / "curve.png").is_file()


@pytest.mark.parametrize("target", [0.45, 0.65])
def test_apply_a_conditioned_agent_at_an_unseen_target_meets_it(conditioned_run, checkpoint: Path, tmp_path: Path,
                                                                  target: float) -> None:
    agent_dir, _ = conditioned_run
    row = apply_run(_cfg("apply", checkpoint, f"agent_run={agent_dir}", f"protocol.target={target}",
                         "compare_with=[]"), tmp_path / "apply")
    assert row["macs_ratio"] <= target + 1e-12  # a 6-episode agent may stay well under it; the wall holds
    episode = json.loads((tmp_path / "apply" / "episodes.jsonl").read_text().splitlines()[0])
    assert episode["target"] == pytest.approx(target) and episode["budget_ratio"] <= target + 1e-12
    plan = json.loads((tmp_path / "apply" / "best_plan.json").read_text())
    assert plan["settings"]["protocol"]["target"] == target
