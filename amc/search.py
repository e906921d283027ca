"""The AMC search: ``python -m amc.search [experiment=resnet20_macs50] [protocol.target=0.5] [method=amc]``.

Build (data, base model, groups, calibration, budget, env) -> run the method (the RL agent, random search or a
heuristic) -> re-evaluate the best policy on all reward-val and test images -> save plan, pruned model, summary.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from amc.cli import build_data, load_checkpoint_for, resolve_device
from amc.data.base import DataSplits
from amc.envs import ChannelPruningEnv
from amc.heuristics import HEURISTICS, solve_heuristic
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.latency import measure_latency
from amc.measure.latency_table import LatencyTable
from amc.plan import make_plan, model_checksum, save_pruned
from amc.pruning.bn import recalibrate_bn
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.report import format_table
from amc.search_log import EpisodeLog

log = logging.getLogger(__name__)
METHODS = ("amc", "random", *HEURISTICS)


@dataclass
class Setup:
    """Everything a search method needs, built once and shared by the compared methods."""

    data: DataSplits
    net: PrunableNetwork
    engine: PruningEngine
    env: ChannelPruningEnv
    budget: ResourceBudget | None
    latency_table: LatencyTable | None
    base_info: dict[str, Any]
    device: torch.device
    reward_val_seconds: float = float("nan")  # one accuracy pass of the original model over all reward-val images


def check_config(cfg: DictConfig) -> None:
    """Reject bad settings before any directory, data or model is touched."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; expected one of {METHODS}")
    for m in cfg.compare_with:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} in compare_with; expected some of {METHODS}")
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}")
    if not 0.0 < float(cfg.protocol.target) <= 1.0:
        raise ValueError(f"protocol.target must be in (0, 1], got {cfg.protocol.target}")
    if cfg.method == "amc":
        from amc.agents import ALGOS

        if str(cfg.agent.algo).lower() not in ALGOS:
            raise ValueError(f"unknown agent.algo {cfg.agent.algo!r}; expected one of {sorted(ALGOS)}")


def build_setup(cfg: DictConfig, run_dir: Path) -> Setup:
    """Data, base model, groups, calibration statistics, budget wall and environment."""
    p, e = cfg.protocol, cfg.env
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base, spec = load_checkpoint_for(cfg.checkpoint, data, device)
    net = PrunableNetwork(base, (1, data.in_channels, *data.image_size), exclude=list(e.exclude), round_to=e.round_to)
    table = None
    if p.resource == "latency":
        table_path = run_dir / "latency_table.json"
        if table_path.exists():
            table = LatencyTable.from_dict(json.loads(table_path.read_text()), net)
        else:
            t = p.latency_table
            table = LatencyTable.measure(net, device=device, batch_size=t.batch_size, grid=tuple(t.grid), repeats=t.repeats)
            table_path.write_text(json.dumps(table.to_dict()))
    budget = None
    if p.resource is not None:
        budget = ResourceBudget(net, p.resource, float(p.target), e.lbound, latency_table=table)
    reconstructor = None
    if e.reconstruction:
        c = e.calibration
        reconstructor = Reconstructor.calibrate(net, data, num_images=c.num_images, positions_per_image=c.positions_per_image,
                                                batch_size=c.batch_size, ridge=c.ridge, seed=cfg.seed, device=device)
    engine = PruningEngine(net, selection=e.selection, reconstructor=reconstructor, bn_data=data,
                           bn_batches=e.bn_recalibration_batches, device=device)
    env = ChannelPruningEnv(net, engine, data, reward=p.reward, budget=budget, lbound=e.lbound, rbound=e.rbound,
                            eval_images=e.eval_images, eval_batch_size=e.eval_batch_size, device=device,
                            latency_table=table)
    base_info = {**spec, "checksum": model_checksum(base), "checkpoint": str(cfg.checkpoint)}
    return Setup(data, net, engine, env, budget, table, base_info, device)


def keep_to_action(keep: float, lbound: float, rbound: float) -> float:
    """The env action in [-1, 1] that asks for ``keep`` (clipped to the action bounds)."""
    return float(np.clip(2 * (keep - lbound) / max(rbound - lbound, 1e-12) - 1, -1.0, 1.0))


def run_episode(env: ChannelPruningEnv, actions: list[float], seed: int | None = None) -> dict[str, Any]:
    env.reset(seed=seed)
    info: dict[str, Any] = {}
    for a in actions:
        _, _, terminated, _, info = env.step(np.array([a], dtype=np.float32))
        if terminated:
            break
    return info


def run_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    from amc.agents import AMCCallback, load_resume_state, make_agent

    a = cfg.agent
    agent = make_agent(
        a.algo, setup.env, actor_lr=a.actor_lr, critic_lr=a.critic_lr, net_arch=list(a.net_arch), tau=a.tau, gamma=a.gamma,
        batch_size=a.batch_size, replay_episodes=a.replay_episodes, warmup_episodes=a.warmup_episodes,
        episode_length=setup.net.num_groups, sigma=a.sigma, sigma_decay=a.sigma_decay, seed=cfg.seed,
        device=setup.device, tensorboard_log=str(run_dir / "tb"),
    )
    start = 0
    if (run_dir / "resume").exists():
        state = load_resume_state(agent, run_dir)
        start = state["episode"]
        episode_log.restore(start, state.get("best"))
        log.info("resumed %s at episode %d of %d (best reward %.4f)", run_dir, start, cfg.episodes, episode_log.best_reward)
    remaining = cfg.episodes - start
    if remaining <= 0:
        return
    callback = AMCCallback(
        total_episodes=cfg.episodes, run_dir=run_dir, episode_log=episode_log, start_episode=start,
        best=episode_log.best,
        checkpoint_every=cfg.checkpoint_every, progress=cfg.progress,
        hparams=_flat_hparams(cfg), group_names=[g.root for g in setup.net.groups],
    )
    agent.learn(total_timesteps=remaining * setup.net.num_groups, callback=callback,
                reset_num_timesteps=start == 0, tb_log_name="amc")


def run_random(cfg: DictConfig, setup: Setup, episode_log: EpisodeLog) -> None:
    """Best of ``episodes`` uniformly random policies, through the same env (same wall, same evaluation)."""
    rng = np.random.default_rng(cfg.seed)
    for _ in range(episode_log.episode, cfg.episodes):
        info = run_episode(setup.env, rng.uniform(-1, 1, setup.net.num_groups).tolist(), seed=cfg.seed)
        episode_log.record(info)


def run_heuristic(cfg: DictConfig, setup: Setup, episode_log: EpisodeLog) -> None:
    """The weakest policy of the family that meets the budget (MACs at protocol.target when no wall)."""
    e, net = cfg.env, setup.net
    if setup.budget is not None:
        cost, limit = (lambda k: setup.budget.cost(net.channel_counts(k))), setup.budget.limit
    else:
        cost, limit = (lambda k: net.predict_macs(net.channel_counts(k))), cfg.protocol.target * net.original_macs
    keep = solve_heuristic(cfg.method, net.num_groups, e.lbound, cost, limit)
    episode_log.record(run_episode(setup.env, [keep_to_action(k, e.lbound, e.rbound) for k in keep], seed=cfg.seed))


def final_evaluation(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> dict[str, Any]:
    """Re-prune the best policy, evaluate on all reward-val and test images, measure latency, save plan + model."""
    best = episode_log.best
    if best is None:
        raise RuntimeError("the search recorded no episode")
    result = setup.engine.prune(best["keep_ratios"])
    shape = (cfg.final_eval.latency_batch_size, *setup.net.input_shape[1:])
    row = {
        "variant": cfg.method, "macs": result.macs, "params": result.params,
        "macs_ratio": result.macs / setup.net.original_macs, "params_ratio": result.params / setup.net.original_params,
        "latency_ms": 1e3 * measure_latency(result.model, shape, repeats=cfg.final_eval.latency_repeats, device=setup.device),
        "reward_val_acc": evaluate_accuracy(result.model, setup.data, split="reward_val", device=setup.device),
        "test_acc": evaluate_accuracy(result.model, setup.data, split="test", device=setup.device),
        "best_reward": best["reward"], "best_episode": best["episode"], "episodes": episode_log.episode,
        "keep_ratios": result.keep_ratios, "channels": result.channels,
    }
    if setup.latency_table is not None:
        row["predicted_latency_ms"] = 1e3 * setup.latency_table.predict(result.channels)
    bn_batches = int(cfg.final_eval.get("bn_recalibration_batches", 0))
    if bn_batches > 0 and cfg.env.bn_recalibration_batches == 0:
        # like-for-like figures for every method: the same policy with BN statistics re-estimated after pruning
        bn_model = recalibrate_bn(copy.deepcopy(result.model), setup.data, num_batches=bn_batches, seed=cfg.seed,
                                  device=setup.device)
        row["reward_val_acc_bn"] = evaluate_accuracy(bn_model, setup.data, split="reward_val", device=setup.device)
        row["test_acc_bn"] = evaluate_accuracy(bn_model, setup.data, split="test", device=setup.device)
    plan = make_plan(setup.net, result.kept, base_model=setup.base_info, exclude=list(cfg.env.exclude),
                     accuracy={"reward_val_acc": row["reward_val_acc"], "test_acc": row["test_acc"]},
                     settings={"method": cfg.method, "protocol": OmegaConf.to_container(cfg.protocol, resolve=True),
                               "selection": cfg.env.selection, "reconstruction": cfg.env.reconstruction,
                               "bn_recalibration_batches": cfg.env.bn_recalibration_batches})
    if (run_dir / "best").exists():  # from an earlier final evaluation of this run (resumed); redone now
        shutil.rmtree(run_dir / "best")
    save_pruned(result.model, plan, run_dir / "best")
    plan.save(run_dir / "best_plan.json")
    (run_dir / "summary.json").write_text(json.dumps(row, indent=2))
    return row


def run_method(cfg: DictConfig, setup: Setup, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "summary.json").exists() and not cfg.resume:
        raise FileExistsError(f"{run_dir} already holds a finished search (summary.json); choose a new run dir "
                              f"or continue it with resume={run_dir} episodes=<more>")
    episode_log = EpisodeLog(run_dir, method=cfg.method, total=cfg.episodes if cfg.method in ("amc", "random") else 1,
                             progress=cfg.progress, tensorboard=cfg.method != "amc",
                             group_names=[g.root for g in setup.net.groups])
    start = time.perf_counter()
    if cfg.method == "amc":
        run_agent(cfg, setup, run_dir, episode_log)
    else:
        episode_log.resume_from_file()
        if cfg.method == "random":
            run_random(cfg, setup, episode_log)
        elif episode_log.episode == 0:
            run_heuristic(cfg, setup, episode_log)
    episode_log.close()
    search_seconds = time.perf_counter() - start  # the episodes only, not the final evaluation
    row = final_evaluation(cfg, setup, run_dir, episode_log)
    row["search_seconds"] = search_seconds
    row["seconds_per_episode"] = row["search_seconds"] / max(1, episode_log.episodes_this_run)
    row["reward_val_pass_seconds"] = setup.reward_val_seconds
    row["episode_to_reward_val_pass"] = row["seconds_per_episode"] / setup.reward_val_seconds
    (run_dir / "summary.json").write_text(json.dumps(row, indent=2))
    return row


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Run ``cfg.method`` (and the ``compare_with`` baselines into sub-dirs); returns the main method's summary."""
    check_config(cfg)
    output_dir = Path(cfg.resume) if cfg.resume else Path(output_dir)
    if cfg.resume and not output_dir.is_dir():
        raise FileNotFoundError(f"resume={cfg.resume} is not a run directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    setup = build_setup(cfg, output_dir)
    start = time.perf_counter()
    reward_val_acc = evaluate_accuracy(setup.net.model, setup.data, split="reward_val", device=setup.device)
    setup.reward_val_seconds = time.perf_counter() - start
    shape = (cfg.final_eval.latency_batch_size, *setup.net.input_shape[1:])
    original = {"variant": "original", "macs": setup.net.original_macs, "params": setup.net.original_params,
                "latency_ms": 1e3 * measure_latency(setup.net.model, shape, repeats=cfg.final_eval.latency_repeats,
                                                    device=setup.device),
                "reward_val_acc": reward_val_acc,
                "test_acc": evaluate_accuracy(setup.net.model, setup.data, split="test", device=setup.device)}
    rows = [original, run_method(cfg, setup, output_dir)]
    for method in cfg.compare_with:
        if method == cfg.method:
            continue
        sub = OmegaConf.merge(cfg, {"method": method})
        rows.append(run_method(sub, setup, output_dir / "compare" / method))
    table = format_table(rows, baseline=original)
    (output_dir / "comparison.md").write_text(table + "\n")
    print(f"\n{setup.base_info['target']} on {setup.data.name}, {cfg.protocol.resource or 'accuracy-guaranteed'} "
          f"target {cfg.protocol.target}, reward {cfg.protocol.reward}; run dir {output_dir}")
    print(table)
    return rows[1]


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    flat = {}
    for section in ("agent", "protocol", "env"):
        for k, v in OmegaConf.to_container(cfg[section], resolve=True).items():
            if isinstance(v, (int, float, str, bool)):
                flat[f"{section}.{k}"] = v
    flat.update(episodes=cfg.episodes, seed=cfg.seed, method=cfg.method)
    return flat


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="search")
def main(cfg: DictConfig) -> float:
    """Returns the best reward, so an Optuna sweeper can drive the search."""
    return float(run(cfg, Path(HydraConfig.get().runtime.output_dir))["best_reward"])


if __name__ == "__main__":
    main()
