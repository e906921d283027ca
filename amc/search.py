"""The AMC search: ``python -m amc.search [experiment=resnet20_macs50] [protocol.target=0.5] [method=amc]``.

Build (data, base model, groups, calibration, budget, env) -> run the method (the RL agent, random search or a
heuristic) -> re-evaluate the best policy on all reward-val and test images -> save plan, pruned model, summary.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from amc.checkpoint import CheckpointError
from amc.cli import (
    PreflightCallback,
    build_data,
    command_line,
    full_errors,
    load_checkpoint_for,
    model_allow,
    require_batch_sizes,
    require_positive_ints,
    resolve_device,
    resolve_runtime_settings,
    user_errors,
    user_model_spec,
)
from amc.data.base import DataSplits
from amc.envs import ChannelPruningEnv
from amc.heuristics import HEURISTICS, solve_heuristic
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.latency import machine_conditions
from amc.measure.latency_table import LatencyTable, cached_table, table_identity
from amc.measure.runtime import (
    add_latency_figures,
    comparison_runtimes,
    describe_conditions,
    export_onnx,
    latency_key,
    measure_runtime_latencies,
    resolve_threads,
    runtime_conditions,
)
from amc.plan import make_plan, model_checksum, save_pruned
from amc.pruning.bn import recalibrate_bn
from amc.pruning.budget import RESOURCES, ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.pruning.selection import CRITERIA
from amc.pruning.sensitivity import monotone_scores, probe_widths, solve_threshold
from amc.report import format_table
from amc.rewards import get_reward
from amc.search_log import EpisodeLog

log = logging.getLogger(__name__)
METHODS = ("amc", "random", "sensitivity", *HEURISTICS)


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
    """Reject bad settings before any directory, data or model is touched (mistakes cost seconds, not minutes)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; expected one of {METHODS}")
    for m in cfg.compare_with:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} in compare_with; expected some of {METHODS}")
    require_positive_ints(cfg, "episodes", "checkpoint_every")
    check_common(cfg)
    check_n_envs(cfg)
    if cfg.method == "amc" or "amc" in cfg.compare_with:
        check_agent(cfg.agent)
    check_target_range(cfg)


def check_target_range(cfg: DictConfig) -> None:
    """``protocol.target_range`` (one agent for every budget): [lo, hi] around protocol.target, for method=amc."""
    p = cfg.protocol
    target_range = p.get("target_range")
    if target_range is None:
        return
    if p.resource is None:
        raise ValueError("protocol.target_range needs a resource budget (protocol=macs, params or latency)")
    values = list(target_range) if not isinstance(target_range, (str, int, float)) else []
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
            or not 0.0 < values[0] < values[1] <= 1.0:
        raise ValueError(f"protocol.target_range must be [lo, hi] with 0 < lo < hi <= 1, got {target_range}")
    if not values[0] <= float(p.target) <= values[1]:
        raise ValueError(f"protocol.target={p.target} (the budget the result is reported at) lies outside "
                         f"protocol.target_range={values}")
    if cfg.method != "amc":
        raise ValueError(f"protocol.target_range trains one agent for every budget: it needs method=amc, got "
                         f"method={cfg.method}")
    if not cfg.env.get("budget_in_state", False):
        log.warning("protocol.target_range without env.budget_in_state=true: the agent cannot see the budget")


def check_workers(cfg: DictConfig) -> int:
    """``env.n_envs`` (parallel environments) and ``env.start_method``, shared by the search and apply; returns
    n_envs."""
    n = cfg.env.get("n_envs", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"env.n_envs must be an integer >= 1 (parallel environments), got {n!r}")
    start_method = cfg.env.get("start_method")
    if start_method is not None and start_method not in ("fork", "spawn", "forkserver"):
        raise ValueError(f"env.start_method must be fork, spawn, forkserver or null (fork on CPU, else spawn), got "
                         f"{start_method!r}")
    return n


def check_n_envs(cfg: DictConfig) -> None:
    """``env.n_envs`` parallel environments: the agent runs episodes in rounds of n_envs."""
    n = check_workers(cfg)
    if n > 1 and (cfg.method == "amc" or "amc" in cfg.compare_with):
        warmup = int(cfg.agent.warmup_episodes)
        if cfg.episodes % n or warmup % n:
            raise ValueError(f"with env.n_envs={n} the agent runs episodes in rounds of {n}: episodes={cfg.episodes} "
                             f"and agent.warmup_episodes={warmup} must be multiples of {n}")


def check_common(cfg: DictConfig) -> None:
    """Checks of the settings a search and ``amc.apply`` share: protocol, env, data, checkpoint, device, final_eval,
    runtime. Resolves ``runtime`` and ``env.round_to`` (``auto``) in place, so the run dir records what was used."""
    resolve_runtime_settings(cfg, "env.round_to")
    require_batch_sizes(cfg.final_eval.latency_batch_sizes, "final_eval.latency_batch_sizes")
    if cfg.final_eval.get("latency_threads") is not None:
        require_positive_ints(cfg, "final_eval.latency_threads")
    require_positive_ints(cfg, "final_eval.latency_repeats", "env.eval_batch_size", "env.calibration.num_images",
                          "env.calibration.positions_per_image", "env.calibration.batch_size")
    p, e = cfg.protocol, cfg.env
    if not 0.0 < float(p.target) <= 1.0:
        raise ValueError(f"protocol.target must be in (0, 1], got {p.target}")
    if p.resource is not None and p.resource not in RESOURCES:
        raise ValueError(f"unknown protocol.resource {p.resource!r}; expected one of {list(RESOURCES)} or null")
    get_reward(p.reward)
    if not 0.0 < float(e.rbound) <= 1.0:
        raise ValueError(f"env.rbound must be in (0, 1], got {e.rbound}")
    if not 0.0 < float(e.lbound) <= float(e.rbound):
        raise ValueError(f"env.lbound must be in (0, env.rbound={e.rbound}], got {e.lbound}")
    if e.selection not in CRITERIA:
        raise ValueError(f"unknown env.selection {e.selection!r}; expected one of {CRITERIA}")
    if e.bn_recalibration_batches < 0 or cfg.final_eval.get("bn_recalibration_batches", 0) < 0:
        raise ValueError("env.bn_recalibration_batches and final_eval.bn_recalibration_batches must be >= 0")
    reward_val = cfg.data.get("reward_val_size")
    if reward_val is not None and int(reward_val) < 1:
        raise ValueError(f"data.reward_val_size must be >= 1 (images held out for the reward), got {reward_val}")
    if e.eval_images is not None:
        if int(e.eval_images) < 1:
            raise ValueError(f"env.eval_images must be >= 1 or null (all reward-val images), got {e.eval_images}")
        if reward_val is not None and int(e.eval_images) > int(reward_val):
            raise ValueError(f"env.eval_images={e.eval_images} exceeds data.reward_val_size={reward_val}; "
                             f"lower it or use null (all reward-val images)")
    images = cfg.final_eval.get("images")
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 1):
        raise ValueError(f"final_eval.images must be an integer >= 1 or null (all images), got {images!r}")
    if not Path(str(cfg.checkpoint)).is_file():
        raise CheckpointError(f"checkpoint {cfg.checkpoint} not found; train one with `python -m amc.train` or pass "
                              f"the path of a model.safetensors")
    resolve_device(cfg.device)


def check_agent(a: DictConfig) -> None:
    """The agent settings (``agent/*.yaml``)."""
    from amc.agents import ALGOS

    if str(a.algo).lower() not in ALGOS:
        raise ValueError(f"unknown agent.algo {a.algo!r}; expected one of {sorted(ALGOS)}")
    require_positive_ints(a, "batch_size", "replay_episodes", prefix="agent.")
    if a.warmup_episodes < 0 or a.sigma < 0 or not 0 < a.sigma_decay <= 1 or not 0 < a.tau <= 1:
        raise ValueError(f"need agent.warmup_episodes >= 0, sigma >= 0, 0 < sigma_decay <= 1, 0 < tau <= 1; got "
                         f"{a.warmup_episodes}, {a.sigma}, {a.sigma_decay}, {a.tau}")
    if a.actor_lr <= 0 or a.critic_lr <= 0:
        raise ValueError(f"agent.actor_lr and agent.critic_lr must be > 0, got {a.actor_lr}, {a.critic_lr}")


# -- run dirs: never clobber a finished run; resume only what was started with the same settings -------------------
SETTINGS_FILE = "settings.json"  # the settings that define a search, written once when a run starts
DEFINING = ("checkpoint", "data", "protocol", "env", "agent", "seed", "method", "sensitivity")
RUN_MARKERS = ("summary.json", "episodes.jsonl", "resume", SETTINGS_FILE)


# settings under DEFINING that cannot change a search's results: a resume may change them
# (BN folding, channels-last and the evaluation batch size change logits by float rounding only: no reward-val
# image changed in the benchmark; with early stopping the batch size moves the points where it checks)
RESULT_NEUTRAL = frozenset({"env.graph_time_limit", "env.release_memory", "env.start_method", "env.fold_bn",
                            "env.channels_last", "env.eval_batch_size"})
# settings added after runs were recorded without them: absent in a recorded run means this value
ADDED_DEFAULTS = {"env.budget_in_state": False, "protocol.target_range": None, "model": None,
                  "env.early_stop.margin": None, "env.early_stop.z": 3.0, "env.early_stop.min_images": 500,
                  "env.n_envs": 1, "sensitivity.points": 8}


def defining_settings(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that define a search (a resumed run must not change them), resolved to plain data."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    settings = {k: c.get(k) for k in DEFINING}
    model = c.get("model")  # a plain state dict's model; absent (None) for our checkpoints and in older runs
    settings["model"] = model if isinstance(model, dict) and model.get("_target_") is not None else None
    return settings


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."  if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def recorded_settings(run_dir: Path) -> dict[str, Any]:
    """The defining settings a run recorded when it started (``settings.json``; older runs: ``.hydra/config.yaml``)."""
    path = run_dir / SETTINGS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        return defining_settings(OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=False))
    raise FileNotFoundError(f"resume={run_dir}: no {SETTINGS_FILE} nor .hydra/config.yaml there, so its settings are "
                            f"unknown; is it a run dir of `python -m amc.search`?")


def episodes_done(run_dir: Path, method: str) -> int:
    """Episodes a run has saved: the agent's last checkpoint, or the complete lines of episodes.jsonl."""
    if method == "amc":
        state = run_dir / "resume" / "state.json"
        return int(json.loads(state.read_text())["episode"]) if state.is_file() else 0
    log_path = run_dir / "episodes.jsonl"
    if not log_path.is_file():
        return 0
    return sum(1 for line in log_path.read_text().splitlines() if line.strip().endswith("}"))


def is_finished(run_dir: Path) -> bool:
    """A search is finished once its ``comparison.md`` is written, the last file of a run. A run killed after its
    own summary but during the ``compare_with`` baselines or the latency block is not: ``resume=`` completes it."""
    return (run_dir / "summary.json").exists() and (run_dir / "comparison.md").exists()


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A new search needs a dir that holds no search; a resumed one its own settings and more episodes."""
    if not cfg.resume:
        found = [m for m in RUN_MARKERS if (run_dir / m).exists()]
        if found:
            state = "a finished search" if is_finished(run_dir) else "an interrupted search"
            raise FileExistsError(f"{run_dir} already holds {state} ({', '.join(found)}); it is left as it is. Choose a "
                                  f"new run dir, or continue it with resume={run_dir} (and episodes=<more> if finished)")
        return
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume={run_dir} is not a run directory")
    recorded, given = _flatten(recorded_settings(run_dir)), _flatten(defining_settings(cfg))
    differing = sorted(k for k in recorded.keys() | given.keys()
                       if k not in RESULT_NEUTRAL and recorded.get(k, ADDED_DEFAULTS.get(k)) != given.get(k))
    if differing:
        lines = "; ".join(f"{k}: recorded {recorded.get(k)!r}, given {given.get(k)!r}" for k in differing[:8])
        more = f" (and {len(differing) - 8} more)" if len(differing) > 8 else ""
        raise ValueError(f"resume={run_dir}: these settings differ from the run's own, so the search would mix two "
                         f"searches: {lines}{more}. Repeat the run's overrides (see {run_dir}/.hydra/overrides.yaml); "
                         f"only episodes may grow")
    method = str(cfg.method)
    done = episodes_done(run_dir, method)
    total = int(cfg.episodes) if method in ("amc", "random") else 1
    if total < done:
        raise ValueError(f"resume={run_dir} has already run {done} episodes; episodes={cfg.episodes} would drop "
                         f"some: pass episodes >= {done}")
    if is_finished(run_dir) and done >= total:
        raise FileExistsError(f"resume={run_dir} is a finished search of {done} episodes; it is left as it is. Pass "
                              f"episodes=<more than {done}> to continue it" if method in ("amc", "random") else
                              f"resume={run_dir} is a finished {method} run; it is left as it is")


def preflight(cfg: DictConfig, run_dir: Path) -> Path:
    """Every check that needs no data or model; returns the run dir to use (the resumed run's own dir)."""
    check_config(cfg)
    run_dir = Path(cfg.resume) if cfg.resume else Path(run_dir)
    check_run_dir(cfg, run_dir)
    return run_dir


class Preflight(PreflightCallback):
    """hydra callback (conf/search.yaml): refuse a bad command before hydra writes into the run dir."""

    prog = "amc-search"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return preflight(cfg, run_dir)


def build_setup(cfg: DictConfig, run_dir: Path) -> Setup:
    """Data, base model, groups, calibration statistics, budget wall and environment."""
    p, e = cfg.protocol, cfg.env
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base, spec = load_checkpoint_for(cfg.checkpoint, data, device, allow=model_allow(cfg),
                                     model_spec=user_model_spec(cfg, data))
    net = PrunableNetwork(base, (1, data.in_channels, *data.image_size), exclude=list(e.exclude), round_to=e.round_to,
                          graph_time_limit=e.get("graph_time_limit"))
    if cfg.runtime == "onnxruntime":  # a model the exporter cannot convert fails now, not after the search
        export_onnx(base, net.input_shape)
    table = build_latency_table(cfg, net, device, run_dir) if p.resource == "latency" else None
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
                            latency_table=table, release_memory_per_episode=e.release_memory,
                            budget_in_state=bool(e.get("budget_in_state", False)),
                            early_stop_margin=OmegaConf.select(e, "early_stop.margin"),
                            early_stop_z=OmegaConf.select(e, "early_stop.z", default=3.0),
                            early_stop_min_images=OmegaConf.select(e, "early_stop.min_images", default=500),
                            target_range=None if p.get("target_range") is None else tuple(p.target_range),
                            fold_bn=bool(e.get("fold_bn", False)), channels_last=bool(e.get("channels_last", False)))
    base_info = {**spec, "checksum": model_checksum(base), "checkpoint": str(cfg.checkpoint)}
    return Setup(data, net, engine, env, budget, table, base_info, device)


def build_latency_table(cfg: DictConfig, net: PrunableNetwork, device: torch.device, run_dir: Path) -> LatencyTable:
    """The latency protocol's table in ``cfg.runtime``: the run's own (a resumed run keeps the table its budget was set
    with), a given one (``protocol.latency_table.path``, refused if measured under other conditions), or from the
    cache (``cache_dir``), else measured now; saved in the run dir."""
    t, table_path = cfg.protocol.latency_table, run_dir / "latency_table.json"
    threads = resolve_threads(t.get("threads"))
    identity = table_identity(net, runtime=cfg.runtime, threads=threads, batch_size=t.batch_size,
                              max_points=t.max_points)
    if table_path.exists():
        return LatencyTable.load(table_path, net, batch_size=t.batch_size, expect=identity)
    if t.get("path"):
        table = LatencyTable.load(t.path, net, batch_size=t.batch_size, expect=identity)
    else:
        start = time.perf_counter()
        table = cached_table(net, t.get("cache_dir"), runtime=cfg.runtime, threads=threads, batch_size=t.batch_size,
                             max_points=t.max_points, device=device, repeats=t.repeats,
                             calibration_models=t.calibration_models, seed=cfg.seed)
        log.info("latency table ready in %.1f s", time.perf_counter() - start)
    table.save(table_path)
    return table


def build_worker_env(cfg: dict[str, Any], run_dir: str) -> ChannelPruningEnv:
    """The env of a search, built again from its (plain, resolved) config: a spawned worker's env."""
    return build_setup(OmegaConf.create(cfg), Path(run_dir)).env


def parallel_env(cfg: DictConfig, setup: Setup, run_dir: Path):  # -> VecEnv (stable_baselines3 is imported lazily)
    """``env.n_envs`` worker processes, each with a copy of ``setup.env`` (forked on CPU; rebuilt from the config
    with spawn) and its share of the threads. Close it when done."""
    from amc.agents.vec import default_start_method, make_vec_env, threads_per_env

    method = cfg.env.get("start_method") or default_start_method(setup.device)
    if method == "fork":
        env = setup.env
        make_env = lambda: env  # noqa: E731  (inherited by the forked worker, never pickled)
    else:
        make_env = partial(build_worker_env, OmegaConf.to_container(cfg, resolve=True), str(run_dir))
    n = int(cfg.env.n_envs)
    log.info("%d parallel environments (%s), %d thread(s) each", n, method, threads_per_env(n))
    return make_vec_env(make_env, n, start_method=method, device=setup.device)


@contextmanager
def agent_env(cfg: DictConfig, setup: Setup, run_dir: Path) -> Iterator[Any]:
    """The env an agent trains on: ``setup.env``, or its ``env.n_envs`` workers (closed on exit)."""
    if int(cfg.env.get("n_envs", 1)) == 1:
        yield setup.env
        return
    venv = parallel_env(cfg, setup, run_dir)
    try:
        yield venv
    finally:
        venv.close()


def run_episode(env: ChannelPruningEnv, actions: list[float], seed: int | None = None) -> dict[str, Any]:
    env.reset(seed=seed)
    info: dict[str, Any] = {}
    for a in actions:
        _, _, terminated, _, info = env.step(np.array([a], dtype=np.float32))
        if terminated:
            break
    return info


def run_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    """Train the agent (or continue its checkpoint) on the env or its ``env.n_envs`` workers; the callbacks log,
    checkpoint and save agent + actor."""
    with agent_env(cfg, setup, run_dir) as env:
        _train_agent(cfg, setup, run_dir, episode_log, env)


def _train_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog, env: Any) -> None:
    from amc.agents import AMCCallback, load_resume_state, make_agent

    a = cfg.agent
    agent = make_agent(
        a.algo, env, actor_lr=a.actor_lr, critic_lr=a.critic_lr, net_arch=list(a.net_arch), tau=a.tau, gamma=a.gamma,
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
        obs_fields=setup.env.obs_fields, keep_ratio_bounds=(setup.env.lbound, setup.env.rbound),
    )
    # log_interval=None: the callback has SB3 dump once per episode, at step = episode (one TensorBoard axis)
    agent.learn(total_timesteps=remaining * setup.net.num_groups, callback=callback,
                reset_num_timesteps=start == 0, tb_log_name="amc", log_interval=None)


def warmup_warning(*, best_episode: int, warmup_episodes: int, episodes: int, sigma_decay: float | None) -> str | None:
    """A warning when the search's best policy came from the agent's warm-up (uniformly random actions): the trained
    agent then found nothing better in every episode after it, and random search would have done as well.
    ``sigma_decay``: the decay of the exploration noise (DDPG, TD3), None for an agent without it (SAC)."""
    if episodes <= warmup_episodes or best_episode > warmup_episodes:
        return None
    advice = "More episodes (resume=<run dir> episodes=<more>) may help"
    if sigma_decay is not None and sigma_decay < 1:
        slower = 0.99 if sigma_decay < 0.99 else round(1 - (1 - sigma_decay) / 2, 6)  # strictly slower than now
        advice += (f", or at tight budgets a slower decay of the exploration noise than agent.sigma_decay={sigma_decay} "
                   f"per episode (agent.sigma_decay={slower})")
    return (f"the best policy is warm-up episode {best_episode} (random actions): in the {episodes - warmup_episodes} "
            f"episodes after the warm-up the agent found nothing better. {advice} (README, 'Tight budgets')")


def run_random(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    """Best of ``episodes`` uniformly random policies, through the same env (same wall, same evaluation), on the
    ``env.n_envs`` workers when there are several."""
    rng = np.random.default_rng(cfg.seed)
    steps = setup.net.num_groups
    rng.uniform(-1, 1, (episode_log.episode, steps))  # a resumed search goes on with the policies it had not drawn
    n_envs = int(cfg.env.get("n_envs", 1))
    if n_envs == 1:
        for _ in range(episode_log.episode, cfg.episodes):
            episode_log.record(run_episode(setup.env, rng.uniform(-1, 1, steps).tolist(), seed=cfg.seed))
        return
    from amc.agents.vec import play_policies

    with agent_env(cfg, setup, run_dir) as venv:
        while episode_log.episode < cfg.episodes:  # rounds of n_envs policies, the same draws as one env in turn
            todo = min(n_envs, cfg.episodes - episode_log.episode)
            actions = np.zeros((n_envs, steps))
            actions[:todo] = rng.uniform(-1, 1, (todo, steps))
            for info in play_policies(venv, actions)[:todo]:
                episode_log.record(info)


def run_heuristic(cfg: DictConfig, setup: Setup, episode_log: EpisodeLog) -> None:
    """The weakest policy of the family that meets the budget (MACs at protocol.target when no wall), the budget
    rounding left filled group by group as the agent's episodes fill it at the wall (``solve_heuristic(fill=True)``)."""
    e, net = cfg.env, setup.net
    if setup.budget is not None:
        cost, limit = setup.budget.cost, setup.budget.limit
    else:
        cost, limit = net.predict_macs, cfg.protocol.target * net.original_macs
    policy = solve_heuristic(net, cfg.method, cost=cost, limit=limit, lbound=e.lbound, rbound=e.rbound, fill=True)
    episode_log.record(setup.env.play_counts(policy.counts, seed=cfg.seed))  # exact counts, same wall and evaluation


def run_sensitivity(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    """ModelOpt FastNAS / AIMET style: every group scored alone at ``sensitivity.points`` widths (the others
    unpruned, no wall), then the smallest global score-drop threshold that meets the budget; its policy is played
    through the env like any baseline's. The probes go to ``sensitivity.jsonl``; their count is the method's cost."""
    e, net, env = cfg.env, setup.net, setup.env
    full = [g.channels for g in net.groups]
    points = int(cfg.get("sensitivity", {}).get("points", 8))
    base = env.play_counts(full, seed=cfg.seed, wall=False)["reward"]
    scores, evaluations = [], 1
    with (run_dir / "sensitivity.jsonl").open("w", encoding="utf-8") as f:
        for i, g in enumerate(net.groups):
            group = {g.channels: base}
            for width in probe_widths(g.channels, net.round_to, e.lbound, points):
                info = env.play_counts([*full[:i], width, *full[i + 1:]], seed=cfg.seed, wall=False)
                group[width], evaluations = info["reward"], evaluations + 1
                f.write(json.dumps({"group": i, "root": g.root, "channels": width, "reward": info["reward"]}) + "\n")
                f.flush()  # a probe costs seconds: the file shows the progress
            scores.append(monotone_scores(group))
            log.info("sensitivity: group %d/%d (%s) scored at %d widths", i + 1, net.num_groups, g.root, len(group) - 1)
    if setup.budget is not None:
        cost, limit = setup.budget.cost, setup.budget.limit
    else:
        cost, limit = net.predict_macs, cfg.protocol.target * net.original_macs
    policy = solve_threshold(scores, full, base, cost=cost, limit=limit)
    info = env.play_counts(policy.counts, seed=cfg.seed)
    episode_log.record({**info, "evaluations": evaluations + 1, "threshold": policy.threshold})


def final_images(cfg: DictConfig) -> int | None:
    """Images per split for the final figures (``final_eval.images``; None: all of them)."""
    images = cfg.final_eval.get("images")
    return None if images is None else int(images)


def run_actor(actor: torch.nn.Module, env: ChannelPruningEnv, seed: int) -> dict[str, Any]:
    """One deterministic episode of ``actor`` (observation -> action in [-1, 1]) through the env and its wall."""
    obs, _ = env.reset(seed=seed)
    info: dict[str, Any] = {}
    terminated = False
    with torch.no_grad():
        while not terminated:
            action = actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].cpu().numpy()
            obs, _, terminated, _, info = env.step(action)
    return info


def at_target_result(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> dict[str, Any]:
    """A budget-conditioned search's result: its trained actor, deterministic, at ``protocol.target``."""
    from amc.agents import load_actor

    actor = load_actor(run_dir).to(setup.device)
    info = run_actor(actor, setup.env, cfg.seed)
    log.info("conditioned agent at protocol.target=%s: reward %.4f, MACs ratio %.4f", cfg.protocol.target,
             info["reward"], info["macs_ratio"])
    return {**info, "episode": episode_log.episode, "policy": f"deterministic actor at target {cfg.protocol.target}"}


def final_evaluation(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog,
                     best: dict[str, Any] | None = None) -> tuple[dict[str, Any], torch.nn.Module]:
    """Re-prune the best policy (``best``, default the episode log's), evaluate on all reward-val and test images,
    save plan + model; returns the summary row and the pruned model (its latency is measured later, with every
    variant of the table in one block)."""
    best = best if best is not None else episode_log.best
    if best is None:
        raise RuntimeError("the search recorded no episode")
    result = setup.engine.prune_counts(best["channels"])
    row = {
        "variant": cfg.method, "macs": result.macs, "params": result.params,
        "macs_ratio": result.macs / setup.net.original_macs, "params_ratio": result.params / setup.net.original_params,
        "reward_val_acc": evaluate_accuracy(result.model, setup.data, split="reward_val", device=setup.device, limit=final_images(cfg)),
        "test_acc": evaluate_accuracy(result.model, setup.data, split="test", device=setup.device, limit=final_images(cfg)),
        "best_reward": best["reward"], "best_episode": best["episode"], "episodes": episode_log.episode,
        "keep_ratios": result.keep_ratios, "channels": result.channels, "final_eval_images": final_images(cfg),
        **{k: best[k] for k in ("evaluations", "threshold") if k in best},  # the sensitivity method's cost
    }
    if setup.latency_table is not None:
        row["predicted_latency_ms"] = 1e3 * setup.latency_table.predict(result.channels)
    bn_batches = int(cfg.final_eval.get("bn_recalibration_batches", 0))
    if bn_batches > 0 and cfg.env.bn_recalibration_batches == 0:
        # like-for-like figures for every method: the same policy with BN statistics re-estimated after pruning
        bn_model = recalibrate_bn(copy.deepcopy(result.model), setup.data, num_batches=bn_batches, seed=cfg.seed,
                                  device=setup.device)
        row["reward_val_acc_bn"] = evaluate_accuracy(bn_model, setup.data, split="reward_val", device=setup.device, limit=final_images(cfg))
        row["test_acc_bn"] = evaluate_accuracy(bn_model, setup.data, split="test", device=setup.device, limit=final_images(cfg))
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
    return row, result.model


def run_method(cfg: DictConfig, setup: Setup, run_dir: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "summary.json").exists() and not cfg.resume:
        raise FileExistsError(f"{run_dir} already holds a finished search (summary.json); choose a new run dir "
                              f"or continue it with resume={run_dir} episodes=<more>")
    best = None
    episode_log = EpisodeLog(run_dir, method=cfg.method, total=cfg.episodes if cfg.method in ("amc", "random") else 1,
                             progress=cfg.progress, tensorboard=cfg.method != "amc",
                             group_names=[g.root for g in setup.net.groups])
    start = time.perf_counter()
    if cfg.method == "amc":
        run_agent(cfg, setup, run_dir, episode_log)
        if episode_log.best is not None and setup.env.target_range is None:
            from amc.agents import explores_with_noise

            a = cfg.agent
            warning = warmup_warning(best_episode=episode_log.best["episode"], warmup_episodes=a.warmup_episodes,
                                     episodes=episode_log.episode,
                                     sigma_decay=a.sigma_decay if explores_with_noise(str(a.algo)) else None)
            if warning:
                log.warning(warning)
        if setup.env.target_range is not None:  # one agent for every budget: report it at protocol.target
            setup.env.fix_target(float(cfg.protocol.target))
            best = at_target_result(cfg, setup, run_dir, episode_log)
    else:
        episode_log.resume_from_file()
        if cfg.method == "random":
            run_random(cfg, setup, run_dir, episode_log)
        elif cfg.method == "sensitivity" and episode_log.episode == 0:
            run_sensitivity(cfg, setup, run_dir, episode_log)
        elif episode_log.episode == 0:
            run_heuristic(cfg, setup, episode_log)
    episode_log.close()
    search_seconds = time.perf_counter() - start  # the episodes only, not the final evaluation
    row, model = final_evaluation(cfg, setup, run_dir, episode_log, best=best)
    row["search_seconds"] = search_seconds
    row["seconds_per_episode"] = row["search_seconds"] / max(1, episode_log.episodes_this_run)
    row["reward_val_pass_seconds"] = setup.reward_val_seconds
    row["episode_to_reward_val_pass"] = row["seconds_per_episode"] / setup.reward_val_seconds
    (run_dir / "summary.json").write_text(json.dumps(row, indent=2))
    return row, model


def measure_table_latencies(cfg: DictConfig, setup: Setup, models: dict[str, torch.nn.Module],
                            rows: list[dict[str, Any]], run_dir: Path) -> str:
    """Latency of every variant of the table in ONE interleaved block at the end (round-robin, warm-up, median and
    inter-quartile spread, fixed threads), in the deployment runtime and eager PyTorch at every batch size, so all
    figures and speedups share the machine's load; conditions go to latency.json. Returns the conditions line."""
    f = cfg.final_eval
    runtimes = comparison_runtimes(cfg.runtime, eager=bool(f.get("latency_eager", True)))
    batch_sizes, threads = list(f.latency_batch_sizes), resolve_threads(f.get("latency_threads"))
    conditions = {**machine_conditions(setup.device), **runtime_conditions(cfg.runtime, threads)}
    stats = measure_runtime_latencies(models, setup.net.input_shape, runtimes=runtimes, batch_sizes=batch_sizes,
                                      threads=threads, warmup=f.latency_warmup, repeats=f.latency_repeats)
    add_latency_figures(rows, stats)
    if setup.latency_table is not None:
        check_measured_budget(cfg, setup, rows[0], rows[1:])
    record = {"conditions": conditions, "loadavg_after": machine_conditions(setup.device)["loadavg_1_5_15"],
              "runtimes": runtimes, "batch_sizes": batch_sizes, "batch_size": batch_sizes[0],
              "stats": {name: s for name, s in ((r["variant"], r["latencies"]) for r in rows)}}
    (run_dir / "latency.json").write_text(json.dumps(record, indent=2) + "\n")
    original = {k: rows[0][k] for k in ("macs", "params", "reward_val_acc", "test_acc", "latencies")}  # the unpruned model
    for row in rows[1:]:  # the summaries were written before the block: add the figures
        path = (run_dir if row["variant"] == cfg.method else run_dir / "compare" / row["variant"]) / "summary.json"
        path.write_text(json.dumps({**row, "original": original}, indent=2))
    return describe_conditions(conditions, runtimes, batch_sizes)


def check_measured_budget(cfg: DictConfig, setup: Setup, original: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The latency protocol's promise, measured: each row's predicted and measured speedup in the table's runtime
    and batch size, and a warning when the measured latency misses the budget by more than the timings' noise."""
    table = setup.latency_table
    assert table is not None
    key = latency_key(cfg.runtime, table.batch_size)
    full = table.predict([g.channels for g in setup.net.groups])
    target = float(cfg.protocol.target)
    for row in rows:
        if key not in row.get("speedups", {}):
            log.warning("the latency budget cannot be checked: the table's batch size %d is not among "
                        "final_eval.latency_batch_sizes", table.batch_size)
            return
        measured = 1.0 / row["speedups"][key]
        noise = (row["latencies"][key]["spread"] + original["latencies"][key]["spread"]) / 2  # half IQRs, both
        row.update(predicted_speedup=full / table.predict(row["channels"]), measured_speedup=row["speedups"][key],
                   latency_target=target, measured_latency_ratio=measured,
                   latency_budget_met=bool(measured <= target * (1 + noise)))
        if not row["latency_budget_met"]:
            log.warning("%s: measured latency ratio %.3f (speedup %.2fx) misses the budget %.3f by more than the "
                        "timings' noise (%.0f%%); predicted speedup %.2fx. The table may be stale or the machine busy: "
                        "re-measure (protocol.latency_table.cache_dir=null) on a quiet machine", row["variant"],
                        measured, row["measured_speedup"], target, 100 * noise, row["predicted_speedup"])


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Run ``cfg.method`` (and the ``compare_with`` baselines into sub-dirs); returns the main method's summary."""
    output_dir = preflight(cfg, Path(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    if not (output_dir / SETTINGS_FILE).exists():
        (output_dir / SETTINGS_FILE).write_text(json.dumps(defining_settings(cfg), indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    setup = build_setup(cfg, output_dir)
    start = time.perf_counter()
    reward_val_acc = evaluate_accuracy(setup.net.model, setup.data, split="reward_val", device=setup.device, limit=final_images(cfg))
    setup.reward_val_seconds = time.perf_counter() - start
    original = {"variant": "original", "macs": setup.net.original_macs, "params": setup.net.original_params,
                "reward_val_acc": reward_val_acc,
                "test_acc": evaluate_accuracy(setup.net.model, setup.data, split="test", device=setup.device, limit=final_images(cfg))}
    row, model = run_method(cfg, setup, output_dir)
    rows, models = [original, row], {"original": setup.net.model, cfg.method: model}
    compare_and_report(cfg, setup, rows, models, output_dir,
                       f"{setup.base_info['target']} on {setup.data.name}, {cfg.protocol.resource or 'accuracy-guaranteed'} "
                       f"target {cfg.protocol.target}, reward {cfg.protocol.reward}; run dir {output_dir}")
    return rows[1]


def compare_and_report(cfg: DictConfig, setup: Setup, rows: list[dict[str, Any]], models: dict[str, torch.nn.Module],
                       output_dir: Path, title: str) -> None:
    """Run the ``compare_with`` baselines into ``compare/<method>/``, time every row in one block, write and print
    ``comparison.md``. ``rows`` / ``models`` start with the original and the main method."""
    for method in cfg.compare_with:
        if method == cfg.method:
            continue
        sub = cfg.copy()
        with open_dict(sub):
            sub.method = method
            sub.setdefault("episodes", 1)  # amc.apply's config has neither: its baselines run once, fresh
            sub.setdefault("resume", None)
        row, models[method] = run_method(sub, setup, output_dir / "compare" / method)
        rows.append(row)
    conditions = measure_table_latencies(cfg, setup, models, rows, output_dir)
    table = format_table(rows, baseline=rows[0], conditions=conditions)
    if final_images(cfg) is not None:
        table += f"\n\nAccuracies on the first {final_images(cfg)} reward-val and test images (final_eval.images)."
    (output_dir / "comparison.md").write_text(table + "\n")
    print(f"\n{title}")
    print(table)


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    flat = {}
    for section in ("agent", "protocol", "env"):
        for k, v in OmegaConf.to_container(cfg[section], resolve=True).items():
            if isinstance(v, (int, float, str, bool)):
                flat[f"{section}.{k}"] = v
    flat.update(episodes=cfg.episodes, seed=cfg.seed, method=cfg.method)
    return flat


def interrupted_message(run_dir: Path, overrides: list[str]) -> str:
    """One line for Ctrl-C: where the last checkpoint is and the command that continues from it."""
    args = [o for o in overrides if not o.startswith("resume=")]
    state = run_dir / "resume" / "state.json"
    if state.is_file():
        episode = json.loads(state.read_text())["episode"]
        where = f"last checkpoint: {run_dir}/resume (episode {episode})"
    elif (run_dir / "episodes.jsonl").is_file():
        where = f"episodes so far: {run_dir}/episodes.jsonl"
    else:
        return f"interrupted before the first checkpoint; nothing to resume in {run_dir}"
    return f"interrupted; {where}; continue with: {command_line('amc.search', [*args, f'resume={run_dir}'])}"


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="search")
def main(cfg: DictConfig) -> float:
    """Returns the best reward, so an Optuna sweeper can drive the search."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        with user_errors("amc-search"):
            return float(run(cfg, run_dir)["best_reward"])
    except KeyboardInterrupt:
        if full_errors():
            raise
        print(f"\namc-search: {interrupted_message(run_dir, list(hc.overrides.task))}", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
