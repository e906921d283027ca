"""``amc.apply``: a learned agent, a plan or a heuristic applied to a network, with the budget met exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from amc.apply import run as apply_run
from amc.artifacts.checkpoint import save_checkpoint
from amc.artifacts.plan import PlanError, PruningPlan, load_pruned
from amc.models import build_model
from amc.search import run as search_run
from experiments.deploy.remeasure_latency import remeasure

SEARCH = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "episodes=4",
          "agent.warmup_episodes=2", "agent.batch_size=8", "progress=false", "device=cpu", "final_eval.latency_repeats=2"]
APPLY = ["data=synthetic", "env.calibration.num_images=64", "env.eval_images=64", "progress=false", "device=cpu",
         "final_eval.latency_repeats=2", "final_eval.bn_recalibration_batches=0", "original_cache_dir=null",
         "calibration_cache_dir=null"]


def _checkpoint(path: Path, target: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    kwargs = {"width_mult": 0.25} if target == "mobilenet_v2" else {}  # small and quick
    model = build_model(target, in_channels=3, num_classes=4, **kwargs)
    spec = {"target": target, "in_channels": 3, "num_classes": 4, "kwargs": kwargs}
    return save_checkpoint(model, path, model_spec=spec)


def _apply_cfg(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="apply", overrides=[*APPLY, *overrides])


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A smoke search on a ResNet-20 at 50% MACs: (its run dir, its checkpoint)."""
    root = tmp_path_factory.mktemp("searched")
    ckpt = _checkpoint(root / "resnet20.safetensors", "resnet20")
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[*SEARCH, f"checkpoint={ckpt}"])
    search_run(cfg, root / "run")
    return root / "run", ckpt


def _episodes(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def test_search_writes_a_pickle_free_actor(searched) -> None:
    run_dir, _ = searched
    meta = json.loads((run_dir / "actor.json").read_text())
    assert meta["keep_ratio"]["lbound"] == 0.2 and meta["observation"]["size"] == 11
    assert (run_dir / "actor.safetensors").is_file()


@pytest.mark.parametrize("target_model", ["mobilenet_v2", "resnet32"])
def test_agent_applied_zero_shot_to_another_network_meets_the_budget(searched, tmp_path: Path,
                                                                     target_model: str) -> None:
    run_dir, _ = searched
    ckpt = _checkpoint(tmp_path / f"{target_model}.safetensors", target_model)
    row = apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={run_dir}", "protocol.target=0.4"), tmp_path / "out")
    out = tmp_path / "out"
    assert row["macs_ratio"] <= 0.4 + 1e-9 and row["episodes"] == 1 and row["source"] == "agent"
    model = load_pruned(out / "best")
    assert sum(p.numel() for p in model.parameters()) == row["params"]
    for name in ("best_plan.json", "summary.json", "comparison.md", "compare/uniform/summary.json", "latency.json"):
        assert (out / name).is_file(), name
    assert "| uniform |" in (out / "comparison.md").read_text()
    stages = json.loads((out / "summary.json").read_text())["stage_seconds"]  # where the time went, stage by stage
    assert list(stages)[0].startswith("set-up") and len(stages) == 5 and all(s >= 0 for s in stages.values())
    again = apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={run_dir}", "protocol.target=0.4"), tmp_path / "again")
    assert again["channels"] == row["channels"]  # deterministic: no noise


def test_the_originals_accuracies_and_calibration_are_reused_only_for_the_same_checkpoint_and_data(
        searched, tmp_path: Path, caplog) -> None:
    run_dir, ckpt = searched
    cache = tmp_path / "cache"
    common = [f"checkpoint={ckpt}", f"agent_run={run_dir}", "compare_with=[]", f"original_cache_dir={cache}",
              f"calibration_cache_dir={cache}"]
    first = apply_run(_apply_cfg(*common), tmp_path / "first")
    assert len(list(cache.glob("original-*.json"))) == 1 and len(list(cache.glob("calibration-*.safetensors"))) == 1
    with caplog.at_level("INFO"):
        repeat = apply_run(_apply_cfg(*common), tmp_path / "repeat")
        second = apply_run(_apply_cfg(*common, "protocol.target=0.6"), tmp_path / "second")
    assert "the original's accuracies from the cache" in caplog.text
    assert "calibration statistics from the cache" in caplog.text
    for k in ("channels", "best_reward", "reward_val_acc", "test_acc"):  # the cached statistics change nothing
        assert repeat[k] == first[k], k
    table = lambda d: (tmp_path / d / "comparison.md").read_text().splitlines()[2]  # noqa: E731  (the original's row)
    assert table("first").split("|")[-3:] == table("second").split("|")[-3:] and second["macs_ratio"] <= 0.6 + 1e-9
    retrained = _checkpoint(tmp_path / "retrained.safetensors", "resnet20", seed=1)  # other weights: evaluated again
    apply_run(_apply_cfg(*common[1:], f"checkpoint={retrained}"), tmp_path / "third")
    apply_run(_apply_cfg(*common, "final_eval.images=32"), tmp_path / "fourth")  # other images: evaluated again
    assert len(list(cache.glob("original-*.json"))) == 3
    assert len(list(cache.glob("calibration-*.safetensors"))) == 2  # the retrained weights' own; images don't matter


def test_agent_default_target_is_its_training_target(searched, tmp_path: Path) -> None:
    run_dir, _ = searched
    ckpt = _checkpoint(tmp_path / "r32.safetensors", "resnet32")
    row = apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={run_dir}", "compare_with=[]"), tmp_path / "out")
    plan = PruningPlan.load(tmp_path / "out" / "best_plan.json")
    assert plan.settings["protocol"]["target"] == 0.5 and row["macs_ratio"] <= 0.5 + 1e-9


def test_refine_continues_training_and_keeps_the_best_including_zero_shot(searched, tmp_path: Path) -> None:
    run_dir, _ = searched
    ckpt = _checkpoint(tmp_path / "r32.safetensors", "resnet32")
    row = apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={run_dir}", "refine_episodes=3", "compare_with=[]"),
                    tmp_path / "out")
    rows = _episodes(tmp_path / "out")
    assert [r["episode"] for r in rows] == [1, 2, 3, 4]
    assert row["best_reward"] == max(r["reward"] for r in rows) >= rows[0]["reward"] == row["zero_shot_reward"]
    assert all(r["macs_ratio"] <= 0.5 + 1e-9 for r in rows)
    assert (tmp_path / "out" / "actor.json").is_file()  # the refined agent can be applied again


def test_plan_transfers_to_a_retrained_checkpoint_of_the_same_architecture(searched, tmp_path: Path) -> None:
    run_dir, _ = searched
    retrained = _checkpoint(tmp_path / "retrained.safetensors", "resnet20", seed=1)
    row = apply_run(_apply_cfg(f"checkpoint={retrained}", f"plan={run_dir / 'best_plan.json'}", "compare_with=[]"),
                    tmp_path / "out")
    original = PruningPlan.load(run_dir / "best_plan.json")
    moved = PruningPlan.load(tmp_path / "out" / "best_plan.json")
    assert [g["kept_channels"] for g in moved.groups] == [g["kept_channels"] for g in original.groups]
    assert moved.base_model["checksum"] != original.base_model["checksum"]
    assert row["macs"] == original.macs_after


def test_a_plan_for_another_architecture_is_rejected_naming_the_group(searched, tmp_path: Path) -> None:
    run_dir, _ = searched
    other = _checkpoint(tmp_path / "mnv2.safetensors", "mobilenet_v2")
    with pytest.raises(PlanError, match="groups"):
        apply_run(_apply_cfg(f"checkpoint={other}", f"plan={run_dir / 'best_plan.json'}"), tmp_path / "out")


def test_policy_uniform_is_the_search_uniform(searched, tmp_path: Path) -> None:
    _, ckpt = searched
    row = apply_run(_apply_cfg(f"checkpoint={ckpt}", "policy=uniform", "compare_with=[]"), tmp_path / "out")
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[*SEARCH, f"checkpoint={ckpt}", "method=uniform",
                                                       "final_eval.bn_recalibration_batches=0"])
    assert search_run(cfg, tmp_path / "search")["channels"] == row["channels"]


@pytest.mark.parametrize("overrides, error, message", [
    (["env.lbound=0.3"], ValueError, r"keep ratios in \[0.2, 1.0\].*env.lbound=0.2"),
    (["policy=uniform"], ValueError, "exactly one of"),
    (["refine_episodes=-1"], ValueError, "refine_episodes must be"),
])
def test_bad_agent_commands_are_refused_before_any_work(searched, tmp_path: Path, overrides: list[str],
                                                       error: type, message: str) -> None:
    run_dir, ckpt = searched
    with pytest.raises(error, match=message):
        apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={run_dir}", *overrides), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_agent_dir_without_an_actor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="actor.json"):
        apply_run(_apply_cfg(f"agent_run={tmp_path}"), tmp_path / "out")


def test_a_finished_run_is_timed_again_without_touching_its_own_figures(searched) -> None:
    run_dir, _ = searched
    own = (run_dir / "latency.json").read_text()
    record = remeasure(run_dir, batch_sizes=[1, 2], repeats=3, warmup=1)
    again = json.loads((run_dir / "latency_remeasured.json").read_text())
    assert again == json.loads(json.dumps(record)) and (run_dir / "latency.json").read_text() == own
    assert set(again["speedups"]) == {"original", "amc"} and again["speedups"]["original"]["onnxruntime b1"] == 1.0
    assert all(x > 0 for x in again["speedups"]["amc"].values()) and set(again["speedups"]["amc"]) == {
        "onnxruntime b1", "onnxruntime b2"}
    assert again["conditions"]["threads"] == 1 and again["conditions"]["loadavg_1_5_15"] is not None


def test_stage_name_and_speed_hint_follow_the_settings() -> None:
    """The printed timing names what the final evaluation did and suggests only levers not already pulled."""
    from amc.apply import faster_levers, final_eval_stage

    quick = _apply_cfg("compare_with=[]", "final_eval.images=500")
    assert final_eval_stage(quick) == "final evaluation (500 reward-val and test images)"
    assert faster_levers(quick) == []
    default = _apply_cfg("final_eval.bn_recalibration_batches=10", "final_eval.images=null")
    assert final_eval_stage(default) == "final evaluation (all reward-val and test images, BN-recalibrated columns)"
    assert faster_levers(default) == ["compare_with=[]", "final_eval.bn_recalibration_batches=0",
                                      "final_eval.images=<n>"]


def test_a_committee_of_agents_with_different_states_keeps_the_best_on_reward_val_and_refines_it(
        searched, tmp_path: Path) -> None:
    """agent_run=[a, b]: each agent plays with its own observation layout; the winner is what it alone would give."""
    run_dir, ckpt = searched
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        cfg = compose(config_name="search", overrides=[*SEARCH, f"checkpoint={ckpt}", "seed=1",
                                                       "env.state_extras=[kind,scale,budget_left]"])
    search_run(cfg, tmp_path / "extras")
    agents = [run_dir, tmp_path / "extras"]
    target = _checkpoint(tmp_path / "r32.safetensors", "resnet32")
    committee = f"agent_run=[{agents[0]},{agents[1]}]"
    row = apply_run(_apply_cfg(f"checkpoint={target}", committee, "protocol.target=0.4", "compare_with=[]"),
                    tmp_path / "both")
    rows = _episodes(tmp_path / "both")
    assert [r["agent_run"] for r in rows] == [str(a) for a in agents] and row["episodes"] == 2
    assert [a["reward"] for a in row["agents"]] == [r["reward"] for r in rows]
    winner = max(range(2), key=lambda i: (rows[i]["reward"], -i))
    assert row["chosen_agent"] == str(agents[winner]) and row["best_reward"] == rows[winner]["reward"]
    assert row["zero_shot_reward"] == rows[winner]["reward"] and row["macs_ratio"] <= 0.4 + 1e-9
    for agent, played in zip(agents, rows):  # each agent's episode is the one it plays alone
        alone = apply_run(_apply_cfg(f"checkpoint={target}", f"agent_run={agent}", "protocol.target=0.4",
                                     "compare_with=[]"), tmp_path / f"alone_{agent.name}")
        assert alone["channels"] == played["channels"]
    apply_run(_apply_cfg(f"checkpoint={target}", committee, "protocol.target=0.4", "compare_with=[]",
                         "refine_episodes=2"), tmp_path / "refined")
    fields = json.loads((tmp_path / "refined" / "actor.json").read_text())["observation"]["fields"]
    expected = json.loads((agents[winner] / "actor.json").read_text())["observation"]["fields"]
    assert fields == expected and len(_episodes(tmp_path / "refined")) == 4  # the winner refined, in its layout


@pytest.mark.parametrize("committee, message", [
    ("[{run},{run}]", "more than once"),
    ("[]", "exactly one of"),
])
def test_bad_committees_are_refused_before_any_work(searched, tmp_path: Path, committee: str, message: str) -> None:
    run_dir, ckpt = searched
    with pytest.raises(ValueError, match=message):
        apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run={committee.format(run=run_dir)}"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_committee_trained_at_different_targets_needs_protocol_target(searched, tmp_path: Path) -> None:
    run_dir, ckpt = searched
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    settings = json.loads((other / "settings.json").read_text())
    settings["protocol"]["target"] = 0.7
    (other / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"different targets .*set protocol.target"):
        apply_run(_apply_cfg(f"checkpoint={ckpt}", f"agent_run=[{run_dir},{other}]"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_committee_can_be_named_by_a_glob_of_run_dirs(searched, tmp_path: Path) -> None:
    from amc.cli.agent_runs import agent_dirs

    run_dir, _ = searched
    for name in ("b/s1", "a/s0", "a/s1"):
        shutil.copytree(run_dir, tmp_path / name)
    (tmp_path / "a" / "s2").mkdir()  # no actor: not an agent
    assert agent_dirs(f"{tmp_path}/*/s?") == [tmp_path / "a/s0", tmp_path / "a/s1", tmp_path / "b/s1"]
    assert agent_dirs(str(run_dir)) == [run_dir]
    with pytest.raises(ValueError, match=r"agent_run=.*/c\*: the pattern matches no run dir"):
        agent_dirs(f"{tmp_path}/c*")
