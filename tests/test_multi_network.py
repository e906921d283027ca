"""One agent trained on several networks (``env.networks``): each episode prunes one of them, the log names it,
the run resumes, and its actor prunes a third network it has never seen within the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from amc.apply import run as apply_run
from amc.artifacts.checkpoint import save_checkpoint
from amc.models import build_model
from amc.search import run as search_run

SMALL = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "progress=false",
         "device=cpu", "final_eval.latency_repeats=1", "final_eval.bn_recalibration_batches=0",
         "agent.warmup_episodes=2", "agent.batch_size=4", "checkpoint_every=2"]


def _checkpoint(path: Path, name: str) -> Path:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=4)
    return save_checkpoint(model, path, model_spec={"target": name, "in_channels": 3, "num_classes": 4, "kwargs": {}})


def _compose(name: str, *overrides: str):
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def test_one_agent_on_two_networks_logs_each_resumes_and_prunes_a_third(tmp_path: Path) -> None:
    resnet20, plain20 = _checkpoint(tmp_path / "r20.safetensors", "resnet20"), _checkpoint(tmp_path / "p20.safetensors", "plain20")
    common = [*SMALL, f"checkpoint={resnet20}", f"env.networks=[{plain20}]", "env.network_order=round_robin"]
    run_dir = tmp_path / "run"
    search_run(_compose("search", *common, "episodes=4"), run_dir)
    rows = [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["network"] for r in rows] == ["resnet20", "plain20", "resnet20", "plain20"]
    assert {len(r["channels"]) for r in rows if r["network"] == "plain20"} != {len(rows[0]["channels"])}  # own groups
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_episode"] in (1, 3)  # the run's own network's best, not another's
    assert set(summary["best_by_network"]) == {"resnet20", "plain20"} and summary["macs_ratio"] <= 0.5 + 1e-9

    search_run(_compose("search", *common, "episodes=6", f"resume={run_dir}"), run_dir)  # continue: 2 more episodes
    rows = [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in rows] == list(range(1, 7)) and {r["network"] for r in rows[4:]} <= {"resnet20", "plain20"}

    resnet32 = _checkpoint(tmp_path / "r32.safetensors", "resnet32")  # never trained on
    row = apply_run(_compose("apply", "data=synthetic", "env.calibration.num_images=64", "env.eval_images=64",
                             "progress=false", "device=cpu", "final_eval.latency_repeats=1",
                             "final_eval.bn_recalibration_batches=0", "compare_with=[]", f"checkpoint={resnet32}",
                             f"agent_run={run_dir}", "protocol.target=0.5"), tmp_path / "applied")
    assert row["macs_ratio"] <= 0.5 + 1e-9 and row["source"] == "agent"


def test_runs_on_the_same_networks_share_their_calibration_through_the_cache(tmp_path: Path, caplog) -> None:
    """calibration_cache_dir: every network's reconstruction statistics computed once; a later search on the same
    networks reads them and prunes exactly as one that computed them."""
    resnet20, plain20 = _checkpoint(tmp_path / "r20.safetensors", "resnet20"), _checkpoint(tmp_path / "p20.safetensors", "plain20")
    cache = tmp_path / "cache"
    common = [*SMALL, f"checkpoint={resnet20}", f"env.networks=[{plain20}]", "env.network_order=round_robin",
              "episodes=2", "env.state_extras=[kind]", f"calibration_cache_dir={cache}"]
    search_run(_compose("search", *common), tmp_path / "computed")
    assert len(list(cache.glob("calibration-*.safetensors"))) == 2  # one per network
    with caplog.at_level("INFO"):
        search_run(_compose("search", *common), tmp_path / "cached")
    assert caplog.text.count("calibration statistics from the cache") == 2
    assert len(list(cache.glob("calibration-*.safetensors"))) == 2
    episodes = lambda d: [(r["network"], r["channels"], r["reward"])  # noqa: E731
                          for r in map(json.loads, (tmp_path / d / "episodes.jsonl").read_text().splitlines())]
    assert episodes("cached") == episodes("computed")


@pytest.mark.parametrize(("overrides", "match"), [
    (["method=random"], "needs method=amc"),
    (["env.network_order=shuffle"], "network_order must be random or round_robin"),
    (["env.networks=[/no/such/model.safetensors]"], r"env.networks\[0\]=/no/such/model.safetensors is not a file"),
])
def test_bad_network_lists_are_refused_before_any_work(tmp_path: Path, overrides: list[str], match: str) -> None:
    plain20 = _checkpoint(tmp_path / "p20.safetensors", "plain20")
    resnet20 = _checkpoint(tmp_path / "r20.safetensors", "resnet20")
    cfg = _compose("search", *SMALL, f"checkpoint={resnet20}", f"env.networks=[{plain20}]", *overrides)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        search_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "episodes.jsonl").exists()


def test_multi_network_env_draws_networks_from_its_rng() -> None:
    from amc.envs.multi_network import MultiNetworkEnv

    class Fake:  # the part of ChannelPruningEnv MultiNetworkEnv uses
        obs_fields, lbound, rbound, num_groups = ("t",), 0.2, 1.0, 1
        observation_space = action_space = None

        def reset(self, **_):
            return np.zeros(1, np.float32), {}

    env = MultiNetworkEnv({"a": Fake(), "b": Fake()})
    picks = [env.reset(seed=7 if i == 0 else None)[1]["network"] for i in range(40)]
    again = MultiNetworkEnv({"a": Fake(), "b": Fake()})
    assert picks == [again.reset(seed=7 if i == 0 else None)[1]["network"] for i in range(40)]
    assert {"a", "b"} == set(picks)


def test_networks_are_named_by_model_and_arguments() -> None:
    from types import SimpleNamespace

    from amc.cli.setup import network_name

    def setup(target: str, **kwargs):
        return SimpleNamespace(base_info={"target": target, "kwargs": kwargs})

    assert network_name(setup("amc.models.resnet20"), set()) == "resnet20"
    assert network_name(setup("amc.models.resnet20", width=8), {"resnet20"}) == "resnet20_width8"
    assert network_name(setup("resnet20"), {"resnet20", "resnet20#2"}) == "resnet20#3"
    assert network_name(setup("mobilenet_v1", width_mult=0.5), set()) == "mobilenet_v1_width_mult0.5"


def test_a_reward_relative_to_uniform_is_taken_per_network(tmp_path: Path) -> None:
    """env.reward_baseline=uniform: each row keeps its raw reward, and its reward is the raw one minus one constant
    per network (that network's uniform policy at the budget)."""
    resnet20, plain20 = _checkpoint(tmp_path / "r20.safetensors", "resnet20"), _checkpoint(tmp_path / "p20.safetensors", "plain20")
    run_dir = tmp_path / "run"
    search_run(_compose("search", *SMALL, f"checkpoint={resnet20}", f"env.networks=[{plain20}]", "episodes=4",
                        "env.network_order=round_robin", "env.reward_baseline=uniform"), run_dir)
    rows = [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines()]
    offsets = {net: {round(r["raw_reward"] - r["reward"], 9) for r in rows if r["network"] == net}
               for net in ("resnet20", "plain20")}
    assert all(len(v) == 1 and next(iter(v)) > 0 for v in offsets.values())
    assert all(r["raw_reward"] == r["accuracy"] for r in rows)
