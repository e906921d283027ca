"""The settings checks of a search and ``amc.apply`` (before any data or model is touched: mistakes cost seconds),
and the run-dir rules read from a config."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from amc.artifacts.checkpoint import CheckpointError
from amc.cli import require_batch_sizes, require_positive_ints, resolve_device, resolve_runtime_settings
from amc.envs.state_fields import check_state_extras
from amc.pruning.budget import RESOURCES
from amc.pruning.heuristics import HEURISTICS
from amc.pruning.selection import CRITERIA
from amc.runs.rewards import get_reward
from amc.runs.rundir import SETTINGS_FILE, check_new_run_dir, check_resume, defining_settings

log = logging.getLogger(__name__)
METHODS = ("amc", "random", "eagleeye", "sensitivity", *HEURISTICS)


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
    check_networks(cfg)
    check_state_extras_config(cfg)


def check_state_extras_config(cfg: DictConfig) -> None:
    """``env.state_extras``: known names; ``budget_left`` only under a resource budget."""
    extras = check_state_extras(list(cfg.env.get("state_extras") or []))
    if "budget_left" in extras and cfg.protocol.resource is None:
        raise ValueError("env.state_extras: 'budget_left' needs a resource budget (protocol=macs, params or latency); "
                         "the accuracy-guaranteed protocols have none")


def check_networks(cfg: DictConfig) -> None:
    """``env.networks``: more checkpoints one agent trains on (method=amc, one env per network, no latency table)."""
    networks = list(cfg.env.get("networks") or [])
    if not networks:
        return
    order = cfg.env.get("network_order", "random")
    if order not in ("random", "round_robin"):
        raise ValueError(f"env.network_order must be random or round_robin, got {order!r}")
    if cfg.method != "amc":
        raise ValueError(f"env.networks trains one agent on several networks: it needs method=amc, got {cfg.method}")
    if int(cfg.env.get("n_envs", 1)) > 1:
        raise ValueError("env.networks runs on one env (env.n_envs=1)")
    if cfg.protocol.resource == "latency":
        raise ValueError("env.networks with protocol=latency is not supported (one latency table per run dir)")
    for i, path in enumerate(networks):
        if not Path(str(path)).is_file():
            raise CheckpointError(f"env.networks[{i}]={path} is not a file (a model.safetensors, or a zoo model's "
                                  f"checkpoint)")


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


def config_settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings that define the search ``cfg`` describes (resolved plain data; see ``amc.runs.rundir``)."""
    return defining_settings(OmegaConf.to_container(cfg, resolve=True))


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


def check_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A new search needs a dir that holds no search; a resumed one its own settings and more episodes."""
    if not cfg.resume:
        check_new_run_dir(run_dir)
        return
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume={run_dir} is not a run directory")
    check_resume(run_dir, recorded=recorded_settings(run_dir), given=config_settings(cfg), method=str(cfg.method),
                 episodes=int(cfg.episodes))
