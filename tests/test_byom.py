"""Bring your own model: plain state-dict checkpoints, any constructor, frozen groups instead of crashes or hangs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from safetensors.torch import save_file

from amc.artifacts.checkpoint import CheckpointError, load_model, read_state_dict
from amc.artifacts.plan import load_pruned
from amc.inspect import format_inspection
from amc.inspect import run as inspect_run
from amc.measure.macs import count_macs_params
from amc.models import TargetNotAllowedError
from amc.prune import run as prune_run
from amc.pruning import groups as groups_module
from amc.pruning.groups import ChannelGroup, GraphError, PrunableNetwork
from amc.pruning.selection import select_channels
from amc.pruning.surgery import PrunedModelError, prune_copy
from amc.pruning.uniform import solve_uniform
from amc.search import run as search_run
from tests.helpers import GroupedNet, NoIONet, OptionANet, ShuffleNet, tiny_net

INPUT = (1, 3, 16, 16)  # conf/data/synthetic.yaml: 3 channels, 16x16, 4 classes
SPEC = {"target": "tests.helpers.NoIONet", "in_channels": 3, "num_classes": 4, "kwargs": {"width": 6}}


def _state_dict_file(path: Path, model: torch.nn.Module, wrap: str | None = None) -> Path:
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    state = model.state_dict()
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    return path


def _prune_cfg(checkpoint: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="prune", overrides=[
            "data=synthetic", f"checkpoint={checkpoint}", "device=cpu", "calibration.num_images=64",
            "calibration.batch_size=32", "bn_recalibration.num_batches=1", "bn_recalibration.batch_size=64",
            "latency.repeats=2", "latency.warmup=1", "round_to=1", *overrides])  # tiny models: no channel grid


# --- plain checkpoints -----------------------------------------------------------------------------------------------
def test_plain_state_dict_of_a_class_without_io_arguments_prunes_and_rebuilds(tmp_path: Path) -> None:
    ckpt = _state_dict_file(tmp_path / "m.pth", NoIONet(width=6))
    out = tmp_path / "prune"
    rows = prune_run(_prune_cfg(ckpt, "model._target_=tests.helpers.NoIONet", "+model.width=6",
                                "target_macs_ratio=0.5"), out)
    assert rows[0]["macs"] > rows[-1]["macs"] and rows[-1]["macs"] <= 0.5 * rows[0]["macs"]
    plan = json.loads((out / "reconstruction" / "plan.json").read_text())
    assert plan["base_model"]["format"] == "state_dict" and plan["base_model"]["kwargs"] == {"width": 6}
    # the plan is a file: its model target is refused until the user allows it, then it rebuilds exactly
    with pytest.raises(CheckpointError, match="model_allow"):
        load_pruned(out / "reconstruction")
    model = load_pruned(out / "reconstruction", allow=["tests.helpers"])
    assert count_macs_params(model, INPUT)[0] == rows[2]["macs"]


def test_state_dict_nested_and_from_data_parallel_is_read(tmp_path: Path) -> None:
    model = NoIONet()
    path = _state_dict_file(tmp_path / "m.pt", model, wrap="state_dict")
    nested = torch.load(path, weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in nested["state_dict"].items()}}, tmp_path / "dp.pth")
    for p in (path, tmp_path / "dp.pth"):
        state = read_state_dict(p)
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[k], model.state_dict()[k]) for k in state)
    save_file(model.state_dict(), str(tmp_path / "plain.safetensors"))  # safetensors without our metadata
    loaded, spec = load_model(tmp_path / "plain.safetensors", model_spec={**SPEC, "kwargs": {}}, allow=["tests.helpers"])
    assert spec["format"] == "state_dict" and torch.equal(loaded.head.weight, model.head.weight)


def test_plain_checkpoint_errors_say_what_to_do(tmp_path: Path) -> None:
    ckpt = _state_dict_file(tmp_path / "m.pth", NoIONet(width=6))
    with pytest.raises(CheckpointError, match=r"plain state dict .*model\._target_="):
        load_model(ckpt)
    with pytest.raises(CheckpointError, match="does not fit model tests.helpers.NoIONet"):
        load_model(ckpt, model_spec={**SPEC, "kwargs": {"width": 5}}, allow=["tests.helpers"])
    with pytest.raises(CheckpointError, match="tests.helpers.NoIONet"):  # a file's target still needs allowing
        load_model(ckpt, model_spec=SPEC)
    torch.save(NoIONet(), tmp_path / "pickled.pth")  # a whole pickled module is never unpickled
    with pytest.raises(CheckpointError, match=r"pickled objects.*state_dict\(\)"):
        read_state_dict(tmp_path / "pickled.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_weights.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(tmp_path / "no_weights.pth")


def test_output_width_is_checked_against_the_data(tmp_path: Path) -> None:
    ckpt = _state_dict_file(tmp_path / "m.pth", NoIONet(classes=10))
    cfg = _prune_cfg(ckpt, "model._target_=tests.helpers.NoIONet", "+model.classes=10")
    with pytest.raises(ValueError, match=r"outputs \(1, 10\).*\(1, 4\)"):
        prune_run(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_model_target_with_our_own_checkpoint_is_refused(tmp_path: Path) -> None:
    from amc.artifacts.checkpoint import save_checkpoint
    ckpt = save_checkpoint(tiny_net(3, 4), tmp_path / "ours.safetensors",
                           model_spec={"target": "tests.helpers.tiny_net", "in_channels": 3, "num_classes": 4})
    with pytest.raises(CheckpointError, match="names its own model"):
        load_model(ckpt, model_spec=SPEC, allow=["tests.helpers"])


# --- prunability: frozen groups instead of crashes, a time limit instead of a hang -----------------------------------
def test_option_a_lambda_shortcut_stream_is_frozen_and_the_rest_meets_the_budget() -> None:
    torch.manual_seed(0)
    net = PrunableNetwork(OptionANet().eval(), INPUT)
    assert len(net.frozen) == 1 and net.frozen[0].root == "conv" and "trial prune fails" in net.frozen[0].reason
    assert "fc" in net.frozen[0].layers
    assert [g.root for g in net.groups] == ["layers.0.conv1", "layers.1.conv1", "layers.2.conv1"]
    policy = solve_uniform(net, 0.5)
    assert net.predict_macs(policy.counts) <= 0.5 * net.original_macs
    model = prune_copy(net, [torch.arange(n) for n in policy.counts])
    assert count_macs_params(model, INPUT)[0] == net.predict_macs(policy.counts)


def test_grouped_convolution_is_pruned_per_group_and_keeps_its_groups() -> None:
    net = PrunableNetwork(GroupedNet().eval(), INPUT)
    assert net.frozen == []
    grouped = {g.root: g for g in net.groups}
    assert grouped["reduce"].channel_groups == grouped["grouped"].channel_groups == 2  # feeds it / produced by it
    assert grouped["stem"].channel_groups == grouped["expand"].channel_groups == 1
    policy = solve_uniform(net, 0.5)
    assert all(n % grouped[g.root].channel_groups == 0 for n, g in zip(policy.counts, net.groups))
    model = prune_copy(net, select_channels(net, policy.counts))
    assert model.grouped.groups == 2 and model.grouped.in_channels < GroupedNet().grouped.in_channels
    assert count_macs_params(model, INPUT)[0] == net.predict_macs(policy.counts) <= 0.5 * net.original_macs


def test_split_and_shuffle_freezes_the_split_stream_and_prunes_the_branches() -> None:
    net = PrunableNetwork(ShuffleNet(units=2).eval(), INPUT)
    assert [f.root for f in net.frozen] == ["stem.0"]
    assert {g.root for g in net.groups} == {"units.0.branch.0", "units.1.branch.0", "head"}
    policy = solve_uniform(net, 0.8)
    model = prune_copy(net, [torch.arange(n) for n in policy.counts])
    assert model(torch.zeros(INPUT)).shape == (1, 4)


def test_a_graph_torch_pruning_cannot_build_is_a_clear_error() -> None:
    with pytest.raises(GraphError, match=r"dependency graph of ShuffleNet .*split/shuffle"):
        PrunableNetwork(ShuffleNet(units=3).eval(), INPUT)


def test_building_the_graph_has_a_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    def forever(*args, **kwargs):
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(groups_module, "dependency_groups", forever)
    start = time.perf_counter()
    with pytest.raises(GraphError, match=r"dependency graph of Sequential .*took more than 0.3 s"):
        PrunableNetwork(tiny_net(3, 4).eval(), INPUT, graph_time_limit=0.3)
    assert time.perf_counter() - start < 5


def test_a_pruned_model_that_does_not_run_is_refused_before_evaluation() -> None:
    net = PrunableNetwork(tiny_net(3, 4, width=8).eval(), INPUT)
    g = net.groups[0]
    # drop the consumer of group 0 from its members: the pruned copy then cannot run
    net.groups[0] = ChannelGroup(**{**g.__dict__, "members": tuple(m for m in g.members if m.dim == "out")})
    with pytest.raises(PrunedModelError, match=r"does not run .*pruned groups: 0 4/8"):
        prune_copy(net, [torch.arange(4), torch.arange(net.groups[1].channels)])


def test_inspect_lists_prunable_and_frozen_groups(tmp_path: Path) -> None:
    ckpt = _state_dict_file(tmp_path / "a.pth", OptionANet())
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="inspect", overrides=["data=synthetic", f"checkpoint={ckpt}",
                                                         "model._target_=tests.helpers.OptionANet"])
    info = inspect_run(cfg)
    assert [g["root"] for g in info["groups"]] == ["layers.0.conv1", "layers.1.conv1", "layers.2.conv1"]
    assert [f["root"] for f in info["frozen"]] == ["conv"]
    text = format_inspection(info)
    assert "3 prunable group(s), 1 frozen" in text and "trial prune fails" in text
    # the frozen stream keeps its channels: pruning can remove less than everything (the share inspect prints)
    assert 0.05 < info["prunable_macs_share"] < 0.5
    assert f"pruning can remove up to {100 * info['prunable_macs_share']:.1f}% of the MACs" in text


def test_smoke_search_on_an_option_a_state_dict_meets_the_budget(tmp_path: Path) -> None:
    ckpt = _state_dict_file(tmp_path / "a.pth", OptionANet())
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[
            "data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "episodes=4",
            "agent.warmup_episodes=2", "agent.batch_size=8", "progress=false", "device=cpu",
            "final_eval.latency_repeats=2", f"checkpoint={ckpt}", "model._target_=tests.helpers.OptionANet",
            "env.round_to=1"])  # a tiny model: no channel grid
    out = tmp_path / "run"
    row = search_run(cfg, out)
    assert row["macs_ratio"] <= 0.5 + 1e-9
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"] == {"_target_": "tests.helpers.OptionANet"}
    model = load_pruned(out / "best", allow=["tests.helpers.OptionANet"])
    assert count_macs_params(model, INPUT)[0] == row["macs"]
    with pytest.raises(TargetNotAllowedError):
        from amc.models import check_target
        check_target("tests.helpers.OptionANet", allow=["tests.helpersX"])
