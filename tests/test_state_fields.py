"""Observation fields that mean the same in every network (env.state_extras): values, layout, budget, apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from amc.apply import preflight as apply_preflight
from amc.apply import run as apply_run
from amc.cli.checks import check_config
from amc.data.synthetic import synthetic
from amc.envs import ChannelPruningEnv
from amc.envs.channel_pruning import OBS_FIELDS, TARGET_FIELD, observation_fields
from amc.envs.state_fields import STATE_EXTRAS, extra_fields, extras_of_fields, static_extras
from amc.models import build_model
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.search import run as search_run
from tests.helpers import resnet20_checkpoint

INPUT = (1, 3, 32, 32)
ALL = tuple(STATE_EXTRAS)
SMALL = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "agent.batch_size=8",
         "progress=false", "device=cpu", "final_eval.latency_repeats=2", "final_eval.bn_recalibration_batches=0"]


def _net(name: str) -> PrunableNetwork:
    torch.manual_seed(0)
    return PrunableNetwork(build_model(name, in_channels=3, num_classes=4).eval(), INPUT)


@pytest.fixture(scope="module")
def resnet() -> PrunableNetwork:
    return _net("resnet20")


@pytest.fixture(scope="module")
def mobilenet() -> PrunableNetwork:
    return _net("mobilenet_v2")


def _env(net: PrunableNetwork, extras=ALL, target: float = 0.5, **kwargs) -> ChannelPruningEnv:
    data = synthetic(train_size=64, test_size=16, reward_val_size=32, image_size=INPUT[-1], num_classes=4)
    return ChannelPruningEnv(net, PruningEngine(net), data, budget=ResourceBudget(net, "macs", target, 0.2),
                             state_extras=extras, **kwargs)


def _column(net: PrunableNetwork, field: str) -> np.ndarray:
    fields = [f for e in ALL if e != "budget_left" for f in STATE_EXTRAS[e]]
    return static_extras(net, ALL)[:, fields.index(field)]


def test_kinds_tell_depthwise_pointwise_and_regular_groups_apart(resnet, mobilenet) -> None:
    dw, pw = _column(mobilenet, "kind_depthwise"), _column(mobilenet, "kind_pointwise")
    # MobileNet-V2: an expansion 1x1 conv couples its depthwise conv; the stem's 3x3 conv feeds the first block's
    # depthwise conv directly (expansion 1); the last 1x1 conv feeds the classifier
    assert dw.sum() >= 10 and pw.sum() >= 10 and (dw[0], pw[0]) == (1, 0) and (dw[-1], pw[-1]) == (0, 1)
    for g, d in zip(mobilenet.groups, dw):
        assert bool(d) == any(getattr(mobilenet.modules[m.layer], "groups", 1) > 1 for m in g.members)
    assert _column(resnet, "kind_depthwise").sum() == 0 and _column(resnet, "kind_pointwise").sum() == 0


def test_scale_share_and_stage_are_absolute_and_restart_at_each_feature_size(resnet, mobilenet) -> None:
    for net in (resnet, mobilenet):
        values = static_extras(net, ALL)
        assert values.shape == (net.num_groups, len(extra_fields(ALL)) - 1) and 0 <= values.min() and values.max() <= 1
        share = _column(net, "macs_share")
        assert np.allclose(share, [g.macs / net.original_macs for g in net.groups])
        position = _column(net, "stage_position")
        sides = [-(-g.feature_hw[0] // g.stride) for g in net.groups]
        for i in range(1, net.num_groups):
            assert (position[i] == 0) == (sides[i] != sides[i - 1])
    # the same 16-channel width reads the same in both networks (AMC's min-max column does not)
    wide = {round(float(v), 6) for g, v in zip(resnet.groups, _column(resnet, "log_channels")) if g.channels == 16}
    assert wide == {round(4 / 11, 6)}


def test_the_layout_is_amcs_fields_then_the_extras_then_the_target(resnet) -> None:
    env = _env(resnet, extras=("budget_left", "kind"), budget_in_state=True)
    assert env.obs_fields == (*OBS_FIELDS, "kind_depthwise", "kind_pointwise", "kind_linear", "budget_left", "target")
    obs, _ = env.reset(seed=0)
    plain, _ = _env(resnet, extras=()).reset(seed=0)
    assert obs.shape == env.observation_space.shape and np.array_equal(obs[: len(OBS_FIELDS)], plain)
    assert extras_of_fields(env.obs_fields, OBS_FIELDS, (TARGET_FIELD,)) == ("kind", "budget_left")


def test_budget_left_starts_at_the_needed_share_grows_when_a_group_is_kept_and_ends_at_zero(resnet) -> None:
    env = _env(resnet, extras=("budget_left",))
    budget = env.budget
    obs, _ = env.reset(seed=0)
    floor = budget.ratio(budget.min_counts)
    assert obs[-1] == pytest.approx((1 - 0.5) / (1 - floor), abs=1e-6)
    before = obs[-1]
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))  # the first group kept whole: the rest must cut more
    assert obs[-1] > before
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["macs_ratio"] <= 0.5 + 1e-12 and obs[-1] == 0.0


def test_budget_left_without_a_budget_and_unknown_extras_are_refused(resnet, tmp_path: Path) -> None:
    data = synthetic(train_size=64, test_size=16, reward_val_size=32, image_size=INPUT[-1], num_classes=4)
    with pytest.raises(ValueError, match="'budget_left' needs a resource budget"):
        ChannelPruningEnv(resnet, PruningEngine(resnet), data, state_extras=("budget_left",))
    with pytest.raises(ValueError, match=r"unknown \['depth'\]; known: \['kind'"):
        _env(resnet, extras=("depth",))
    checkpoint = resnet20_checkpoint(tmp_path / "base.safetensors")
    for overrides, match in ((["env.state_extras=[depth]"], "unknown"),
                             (["protocol=acc_macs", "env.state_extras=[budget_left]"], "needs a resource budget")):
        with pytest.raises(ValueError, match=match):
            check_config(_cfg("search", checkpoint, *overrides))


def test_an_actors_layout_names_the_field_this_amc_cannot_compute() -> None:
    with pytest.raises(ValueError, match=r"\['depth_in_stage'\] cannot be computed"):
        extras_of_fields((*OBS_FIELDS, "kind_depthwise", "kind_pointwise", "kind_linear", "depth_in_stage"), OBS_FIELDS)
    with pytest.raises(ValueError, match="not whole extras"):
        extras_of_fields((*OBS_FIELDS, "kind_depthwise"), OBS_FIELDS)
    assert observation_fields(False, ("stage", "kind")) == (*OBS_FIELDS, *extra_fields(("kind", "stage")))


def _cfg(name: str, checkpoint: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name=name, overrides=[*SMALL, f"checkpoint={checkpoint}", *overrides])


def test_an_agent_with_extras_applies_with_its_layout_and_refuses_a_foreign_field(tmp_path: Path) -> None:
    checkpoint = resnet20_checkpoint(tmp_path / "base.safetensors")
    agent = tmp_path / "agent"
    search_run(_cfg("search", checkpoint, "episodes=4", "agent.warmup_episodes=2",
                    "env.state_extras=[kind,scale,macs_share,stage,budget_left]"), agent)
    fields = json.loads((agent / "actor.json").read_text())["observation"]["fields"]
    assert fields == [*OBS_FIELDS, *extra_fields(ALL)]
    row = apply_run(_cfg("apply", checkpoint, f"agent_run={agent}", "protocol.target=0.6", "compare_with=[]"),
                    tmp_path / "apply")
    assert row["macs_ratio"] <= 0.6 + 1e-12
    with pytest.raises(ValueError, match="'budget_left', which needs a resource budget"):
        apply_preflight(_cfg("apply", checkpoint, f"agent_run={agent}", "protocol=acc_macs"), tmp_path / "a2")
    meta = json.loads((agent / "actor.json").read_text())
    meta["observation"]["fields"][-1] = "stage_depth"
    (agent / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"agent .*\['stage_depth'\] cannot be computed"):
        apply_preflight(_cfg("apply", checkpoint, f"agent_run={agent}"), tmp_path / "a3")
