"""Running a search method from its config into a run dir: the agent (on one env or ``env.n_envs`` workers), random
search, a heuristic or the sensitivity search; then the final evaluation of its best policy."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from amc.cli.setup import agent_env, network_name, network_setups
from amc.runs import methods
from amc.runs.episodes import run_actor, warmup_warning
from amc.runs.final_eval import final_evaluation
from amc.runs.rundir import BUDGETED
from amc.runs.search_log import EpisodeLog
from amc.runs.setup import Setup

log = logging.getLogger(__name__)


def final_images(cfg: DictConfig) -> int | None:
    """Images per split for the final figures (``final_eval.images``; None: all of them)."""
    images = cfg.final_eval.get("images")
    return None if images is None else int(images)


def run_method(cfg: DictConfig, setup: Setup, run_dir: Path) -> tuple[dict[str, Any], torch.nn.Module]:
    """Run ``cfg.method`` into ``run_dir`` (continuing what it saved) and evaluate its best policy; returns the
    summary row and the pruned model."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "summary.json").exists() and not cfg.resume:
        raise FileExistsError(f"{run_dir} already holds a finished search (summary.json); choose a new run dir "
                              f"or continue it with resume={run_dir} episodes=<more>")
    best = None
    episode_log = EpisodeLog(run_dir, method=cfg.method, total=cfg.episodes if cfg.method in BUDGETED else 1,
                             progress=cfg.progress, tensorboard=cfg.method != "amc",
                             group_names=[g.root for g in setup.net.groups],
                             network=network_name(setup, set()) if cfg.env.get("networks") else None)
    start = time.perf_counter()
    if cfg.method == "amc":
        best = run_agent_method(cfg, setup, run_dir, episode_log)
    else:
        episode_log.resume_from_file()
        if cfg.method == "random":
            run_random(cfg, setup, run_dir, episode_log)
        elif cfg.method == "eagleeye":
            if int(cfg.env.get("n_envs", 1)) > 1:
                log.warning("method=eagleeye runs on one env (env.n_envs=%s is for the agent and random search)",
                            cfg.env.n_envs)
            methods.run_eagleeye(setup, episode_log, episodes=cfg.episodes, seed=cfg.seed,
                                 bn_batches=int(cfg.get("eagleeye", {}).get("bn_batches", 20)))
        elif episode_log.episode == 0:
            run_policy(cfg, setup, run_dir, episode_log, str(cfg.method))
    episode_log.close()
    # the episodes only, not the final evaluation; a resumed run adds its earlier processes' time
    search_seconds = episode_log.earlier_seconds + time.perf_counter() - start
    row, model = evaluate_best(cfg, setup, run_dir, episode_log, best=best)
    row["search_seconds"] = search_seconds
    row["seconds_per_episode"] = row["search_seconds"] / max(1, episode_log.episode)
    row["reward_val_pass_seconds"] = setup.reward_val_seconds
    row["episode_to_reward_val_pass"] = row["seconds_per_episode"] / setup.reward_val_seconds
    if episode_log.best_by_network:  # an agent trained on several networks: the best episode of each
        row["best_by_network"] = {name: {k: b.get(k) for k in ("episode", "reward", "accuracy", "macs_ratio", "channels")}
                                  for name, b in episode_log.best_by_network.items()}
    (run_dir / "summary.json").write_text(json.dumps(row, indent=2))
    return row, model


def evaluate_best(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog,
                  best: dict[str, Any] | None = None) -> tuple[dict[str, Any], torch.nn.Module]:
    """The final evaluation of ``best`` (default: the episode log's best), with the settings the plan records."""
    e = cfg.env
    return final_evaluation(
        setup, best if best is not None else episode_log.best, method=cfg.method, episodes=episode_log.episode,
        run_dir=run_dir, images=final_images(cfg), bn_batches=int(cfg.final_eval.get("bn_recalibration_batches", 0)),
        reward_recalibrates_bn=e.bn_recalibration_batches > 0 or cfg.method == "eagleeye", seed=cfg.seed,
        exclude=list(e.exclude),
        plan_settings={"method": cfg.method, "protocol": OmegaConf.to_container(cfg.protocol, resolve=True),
                       "selection": e.selection, "reconstruction": e.reconstruction,
                       "bn_recalibration_batches": e.bn_recalibration_batches})


def run_agent_method(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> dict[str, Any] | None:
    """method=amc: train the agent; warn when its best policy is a warm-up one. Returns the result to evaluate when
    it is not the episode log's best (one agent for every budget: its actor at ``protocol.target``)."""
    run_agent(cfg, setup, run_dir, episode_log)
    if episode_log.best is not None and setup.env.target_range is None:
        from amc.agents import explores_with_noise

        a = cfg.agent
        warning = warmup_warning(best_episode=episode_log.best["episode"], warmup_episodes=a.warmup_episodes,
                                 episodes=episode_log.episode,
                                 sigma_decay=a.sigma_decay if explores_with_noise(str(a.algo)) else None)
        if warning:
            log.warning(warning)
    if setup.env.target_range is None:
        return None
    setup.env.fix_target(float(cfg.protocol.target))
    return at_target_result(cfg, setup, run_dir, episode_log)


def run_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    """Train the agent (or continue its checkpoint) on the env or its ``env.n_envs`` workers; the callbacks log,
    checkpoint and save agent + actor."""
    if cfg.env.get("networks"):  # one agent, several networks: each episode prunes one of them
        from amc.envs.multi_network import MultiNetworkEnv

        envs = {name: s.env for name, s in network_setups(cfg, setup, run_dir).items()}
        env = MultiNetworkEnv(envs, order=str(cfg.env.get("network_order", "random")))
        _train_agent(cfg, setup, run_dir, episode_log, env, env.max_steps)
        return
    with agent_env(cfg, setup, run_dir) as env:
        _train_agent(cfg, setup, run_dir, episode_log, env, setup.net.num_groups)


def _train_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog, env: Any,
                 episode_length: int) -> None:
    """``episode_length``: the longest episode (several networks: timesteps are given for that many per episode;
    the callback stops after ``episodes`` episodes)."""
    from amc.agents import AMCCallback, load_resume_state, make_agent

    a = cfg.agent
    agent = make_agent(
        a.algo, env, actor_lr=a.actor_lr, critic_lr=a.critic_lr, net_arch=list(a.net_arch), tau=a.tau, gamma=a.gamma,
        batch_size=a.batch_size, replay_episodes=a.replay_episodes, warmup_episodes=a.warmup_episodes,
        episode_length=episode_length, sigma=a.sigma, sigma_decay=a.sigma_decay, seed=cfg.seed,
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
        hparams=flat_hparams(cfg), group_names=[g.root for g in setup.net.groups],
        obs_fields=setup.env.obs_fields, keep_ratio_bounds=(setup.env.lbound, setup.env.rbound),
    )
    # log_interval=None: the callback has SB3 dump once per episode, at step = episode (one TensorBoard axis)
    agent.learn(total_timesteps=remaining * episode_length, callback=callback,
                reset_num_timesteps=start == 0, tb_log_name="amc", log_interval=None)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The scalar agent / protocol / env settings, episodes, seed and method: TensorBoard's hyperparameters."""
    flat = {}
    for section in ("agent", "protocol", "env"):
        for k, v in OmegaConf.to_container(cfg[section], resolve=True).items():
            if isinstance(v, (int, float, str, bool)):
                flat[f"{section}.{k}"] = v
    flat.update(episodes=cfg.episodes, seed=cfg.seed, method=cfg.method)
    return flat


def at_target_result(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> dict[str, Any]:
    """A budget-conditioned search's result: its trained actor, deterministic, at ``protocol.target``."""
    from amc.agents import load_actor

    actor = load_actor(run_dir).to(setup.device)
    info = run_actor(actor, setup.env, cfg.seed)
    log.info("conditioned agent at protocol.target=%s: reward %.4f, MACs ratio %.4f", cfg.protocol.target,
             info["reward"], info["macs_ratio"])
    return {**info, "episode": episode_log.episode, "policy": f"deterministic actor at target {cfg.protocol.target}"}


def run_random(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog) -> None:
    """Best of ``episodes`` uniformly random policies, through the same env (same wall, same evaluation), on the
    ``env.n_envs`` workers when there are several."""
    n_envs = int(cfg.env.get("n_envs", 1))
    if n_envs == 1:
        methods.run_random(setup, episode_log, episodes=cfg.episodes, seed=cfg.seed)
        return
    from amc.agents.vec import play_policies

    steps = setup.net.num_groups
    rng = methods.random_policies(np.random.default_rng(cfg.seed), done=episode_log.episode, steps=steps)
    with agent_env(cfg, setup, run_dir) as venv:
        while episode_log.episode < cfg.episodes:  # rounds of n_envs policies, the same draws as one env in turn
            todo = min(n_envs, cfg.episodes - episode_log.episode)
            actions = np.zeros((n_envs, steps))
            actions[:todo] = rng.uniform(-1, 1, (todo, steps))
            for info in play_policies(venv, actions)[:todo]:
                episode_log.record(info)


def run_policy(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog, name: str) -> None:
    """A one-policy method at the budget (MACs at protocol.target when there is no wall): a heuristic (uniform /
    deep / shallow) or the sensitivity search (its probes in ``run_dir/sensitivity.jsonl``)."""
    if name == "sensitivity":
        methods.run_sensitivity(setup, episode_log, target=float(cfg.protocol.target),
                                points=int(cfg.get("sensitivity", {}).get("points", 8)), lbound=cfg.env.lbound,
                                seed=cfg.seed, probes_path=run_dir / "sensitivity.jsonl")
    else:
        methods.run_heuristic(setup, episode_log, family=name, target=float(cfg.protocol.target),
                              lbound=cfg.env.lbound, rbound=cfg.env.rbound, seed=cfg.seed)
