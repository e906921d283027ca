"""Apply a learned policy to a network: ``python -m amc.apply checkpoint=<model> agent_run=<search run dir>``.

Three sources of a policy, one run dir like a search's (``best/``, ``best_plan.json``, ``summary.json``,
``comparison.md`` with uniform at the same budget, ``episodes.jsonl``, TensorBoard):

- ``agent_run=<search run dir>``: the trained actor (``actor.safetensors`` + ``actor.json``, nothing unpickled) runs
  deterministically over the new network's groups; the observation is width- and depth-independent, so no retraining
  is needed. The budget wall for ``protocol.target`` holds as in the search (default: the agent's own target).
  ``refine_episodes=N`` then trains the loaded agent on the new network for N more episodes (no warm-up, noise
  ``refine_sigma``) and keeps the best policy seen, the zero-shot one included. ``agent_run=[<dir>, <dir>, ...]``:
  a committee; each agent plays one episode (with its own observation layout), the best on reward-val is kept and
  is the one refined.
- ``plan=<plan.json>``: a plan's channel counts on a checkpoint of the same architecture with other weights; groups
  are matched by structure and channels re-selected on the new weights.
- ``policy=uniform|deep|shallow|sensitivity``: a hand-made baseline, or the sensitivity search, through the same
  command.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from stable_baselines3.common.callbacks import CallbackList

from amc.agents import EpisodeLogCallback, SaveAgentCallback, load_policy_weights, make_agent
from amc.artifacts.plan import PlanError, PruningPlan, check_plan_structure
from amc.cli import PreflightCallback, user_errors
from amc.cli.agent_runs import AGENT_KEY, AgentLayout, agent_dirs, agents_target, check_agent, play_agents, use_layout
from amc.cli.checks import check_common, check_workers, recorded_settings
from amc.cli.compare import compare_and_report, evaluate_original
from amc.cli.methods import evaluate_best, run_policy
from amc.cli.setup import agent_env, build_setup
from amc.pruning.heuristics import HEURISTICS
from amc.runs.search_log import EpisodeLog
from amc.runs.setup import Setup
from amc.runs.stages import StageClock

log = logging.getLogger(__name__)
POLICIES = (*HEURISTICS, "sensitivity")  # policy=<name>: one policy at the budget, no agent
SOURCES = ("agent_run", "plan", "policy")  # `agent=` is the search's agent config group, hence agent_run
RUN_MARKERS = ("summary.json", "episodes.jsonl")


# -- preflight ------------------------------------------------------------------------------------------------------
def source_of(cfg: DictConfig) -> str:
    """Which of agent / plan / policy the command names (exactly one)."""
    given = [s for s in SOURCES if cfg.get(s)]
    if len(given) != 1:
        raise ValueError(f"give exactly one of agent_run=<search run dir>, plan=<plan.json> or policy=<{'|'.join(POLICIES)}>"
                         f"; got {', '.join(f'{s}={cfg[s]}' for s in given) or 'none'}")
    return given[0]


def preflight(cfg: DictConfig, run_dir: Path) -> Path:
    """Every check that needs no data or model; fills in protocol.target when it is left null."""
    source = source_of(cfg)
    if source == "agent_run":
        layouts = [check_agent(d, cfg) for d in agent_dirs(cfg.agent_run)]
        use_layout(cfg, layouts[0])  # the (first) agent's observation layout decides; a committee's others in turn
    elif source == "plan" and not Path(str(cfg.plan)).is_file():
        raise FileNotFoundError(f"plan={cfg.plan} is not a file")
    elif source == "policy" and cfg.policy not in POLICIES:
        raise ValueError(f"unknown policy={cfg.policy!r}; expected one of {POLICIES}")
    if not isinstance(cfg.refine_episodes, int) or cfg.refine_episodes < 0:
        raise ValueError(f"refine_episodes must be an integer >= 0, got {cfg.refine_episodes!r}")
    if cfg.refine_episodes and source != "agent_run":
        raise ValueError("refine_episodes continues training a loaded agent: it needs agent_run=<search run dir>")
    if cfg.refine_sigma < 0:
        raise ValueError(f"refine_sigma must be >= 0, got {cfg.refine_sigma}")
    if cfg.protocol.target is None:
        with open_dict(cfg):
            cfg.protocol.target = default_target(cfg, source)
    if source == "agent_run":
        for agent_dir in agent_dirs(cfg.agent_run):
            trained = recorded_settings(agent_dir)["protocol"].get("target_range")
            if trained and not trained[0] <= float(cfg.protocol.target) <= trained[1]:
                log.warning("protocol.target=%s lies outside the range agent %s was trained on (%s)",
                            cfg.protocol.target, agent_dir, trained)
    check_common(cfg)
    n_envs = check_workers(cfg)
    if cfg.refine_episodes % n_envs:
        raise ValueError(f"with env.n_envs={n_envs} the agent refines in rounds of {n_envs} episodes: "
                         f"refine_episodes={cfg.refine_episodes} must be a multiple of {n_envs}")
    found = [m for m in RUN_MARKERS if (run_dir / m).exists()]
    if found:
        raise FileExistsError(f"{run_dir} already holds results ({', '.join(found)}); they are left as they are "
                              f"(choose another hydra.run.dir)")
    return run_dir


def default_target(cfg: DictConfig, source: str) -> float:
    """protocol.target when left null: the agent's training target, the plan's MACs ratio, or 0.5."""
    if source == "agent_run":
        return agents_target(agent_dirs(cfg.agent_run))
    if source == "plan":
        plan = PruningPlan.load(cfg.plan)
        return float(plan.settings.get("protocol", {}).get("target") or plan.macs_after / plan.macs_before)
    return 0.5


class Preflight(PreflightCallback):
    """hydra callback (conf/apply.yaml): refuse a bad command before hydra writes into the run dir."""

    prog = "amc-apply"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return preflight(cfg, run_dir)


# -- the three sources ----------------------------------------------------------------------------------------------
def refine_agent(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog, agent_dir: Path,
                 layout: AgentLayout) -> None:
    """Continue training the agent of ``agent_dir`` (of ``cfg.agent_run``, observing with ``layout``: the env's now)
    on this network for ``refine_episodes`` episodes (on ``env.n_envs`` workers when there are several).

    The policy and critic come from the agent run's pickle-free ``resume/policy.safetensors``; the agent settings
    from its recorded config (plain data; ``algo`` is looked up in a fixed table). No warm-up, noise ``refine_sigma``.
    """
    use_layout(cfg, layout)  # a spawned worker rebuilds its env from the config: with this agent's layout
    with agent_env(cfg, setup, run_dir) as env:
        _refine(cfg, setup, run_dir, episode_log, env, agent_dir)


def _refine(cfg: DictConfig, setup: Setup, run_dir: Path, episode_log: EpisodeLog, env: Any, agent_dir: Path) -> None:
    a = recorded_settings(agent_dir)["agent"]
    agent = make_agent(a["algo"], env, actor_lr=a["actor_lr"], critic_lr=a["critic_lr"], net_arch=a["net_arch"],
                       tau=a["tau"], gamma=a["gamma"], batch_size=a["batch_size"], replay_episodes=a["replay_episodes"],
                       warmup_episodes=0, episode_length=setup.net.num_groups, sigma=cfg.refine_sigma,
                       sigma_decay=a["sigma_decay"], seed=cfg.seed, device=setup.device)
    load_policy_weights(agent, agent_dir)
    total = episode_log.episode + cfg.refine_episodes
    callback = CallbackList([EpisodeLogCallback(episode_log, total),
                             SaveAgentCallback(run_dir, obs_fields=setup.env.obs_fields,
                                               keep_ratio_bounds=(setup.env.lbound, setup.env.rbound))])
    agent.learn(total_timesteps=cfg.refine_episodes * setup.net.num_groups, callback=callback, log_interval=None)


def run_plan(cfg: DictConfig, setup: Setup) -> dict[str, Any]:
    """The plan's channel counts on this network, groups matched by structure, channels re-selected here."""
    plan = PruningPlan.load(cfg.plan)
    try:
        check_plan_structure(plan, setup.net)
    except PlanError as e:
        raise PlanError(f"plan={cfg.plan} does not fit checkpoint={cfg.checkpoint}: {e}") from None
    counts = [g["kept_channels"] for g in plan.groups]
    if plan.round_to != setup.net.round_to:  # e.g. a plan searched on grid 1 applied on the runtime's grid
        counts = setup.net.channel_counts([n / g.channels for n, g in zip(counts, setup.net.groups)])
        log.info("plan=%s was made on a channel grid of %d: its counts rounded to this run's grid of %d (env.round_to)",
                 cfg.plan, plan.round_to, setup.net.round_to)
    return setup.env.play_counts(counts, seed=cfg.seed)


def source_text(cfg: DictConfig, source: str) -> str:
    """The source as given: a path, a policy name, or a committee's paths (``[a, b]``)."""
    if source == "agent_run":
        dirs = agent_dirs(cfg.agent_run)
        return str(dirs[0]) if len(dirs) == 1 and isinstance(cfg.agent_run, str) else f"[{', '.join(map(str, dirs))}]"
    return str(cfg.get(source))


def final_eval_stage(cfg: DictConfig) -> str:
    """The final evaluation's stage name, saying which images and columns it evaluates."""
    images = cfg.final_eval.images
    what = "all reward-val and test images" if images is None else f"{images} reward-val and test images"
    return f"final evaluation ({what}" + (", BN-recalibrated columns)" if cfg.final_eval.bn_recalibration_batches else ")")


def faster_levers(cfg: DictConfig) -> list[str]:
    """The overrides that would make an apply faster, leaving out those already set."""
    levers = [] if not cfg.compare_with else ["compare_with=[]"]
    if cfg.final_eval.bn_recalibration_batches:
        levers.append("final_eval.bn_recalibration_batches=0")
    if cfg.final_eval.images is None:
        levers.append("final_eval.images=<n>")
    return levers


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Apply the policy, re-evaluate the best on all reward-val and test images, compare with uniform; returns the
    summary row."""
    output_dir = preflight(cfg, Path(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    source = source_of(cfg)
    method = {"agent_run": "agent", "plan": "plan", "policy": cfg.get("policy")}[source]
    with open_dict(cfg):
        cfg.method = method  # what final_evaluation records
    torch.manual_seed(cfg.seed)
    clock = StageClock()
    with clock.stage("set-up (data, model, groups, calibration)"):
        setup = build_setup(cfg, output_dir)
    with clock.stage("the original's accuracy"):
        original = evaluate_original(cfg, setup, cache_dir=cfg.get("original_cache_dir"))
    total = 1 + int(cfg.refine_episodes)
    episode_log = EpisodeLog(output_dir, method=method, total=total, progress=cfg.progress,
                             group_names=[g.root for g in setup.net.groups])
    with clock.stage(f"the policy ({source})"):
        if source == "agent_run":
            agents = {d: check_agent(d, cfg) for d in agent_dirs(cfg.agent_run)}
            winner, played = play_agents(setup, episode_log, agents, seed=cfg.seed)  # zero-shot
            if cfg.refine_episodes:
                refine_agent(cfg, setup, output_dir, episode_log, winner, agents[winner])
        elif source == "plan":
            episode_log.record(run_plan(cfg, setup))
        else:
            run_policy(cfg, setup, output_dir, episode_log, str(cfg.policy))
        episode_log.close()
    with clock.stage(final_eval_stage(cfg)):
        row, model = evaluate_best(cfg, setup, output_dir, episode_log)
    if source != "agent_run":
        played = [json.loads((output_dir / "episodes.jsonl").read_text().splitlines()[0])]
    row.update(source=source.removesuffix("_run"), source_path=source_text(cfg, source), episodes=episode_log.episode,
               zero_shot_reward=max(r["reward"] for r in played))
    if source == "agent_run":
        row["agents"] = [{"agent_run": r[AGENT_KEY], "reward": r["reward"], "accuracy": r["accuracy"]} for r in played]
        row["chosen_agent"] = str(winner)
    (output_dir / "summary.json").write_text(json.dumps(row, indent=2))
    with clock.stage(f"comparison (compare_with={list(cfg.compare_with)}, latency block)"):
        compare_and_report(cfg, setup, [original, row], {"original": setup.net.model, method: model}, output_dir,
                           f"{source}={source_text(cfg, source)} applied to {setup.base_info['target']} ({cfg.checkpoint}), "
                           f"{cfg.protocol.resource or 'accuracy-guaranteed'} target {cfg.protocol.target}; "
                           f"run dir {output_dir}")
    summary = json.loads((output_dir / "summary.json").read_text())
    summary["stage_seconds"] = clock.seconds
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    levers = faster_levers(cfg)
    print(f"time: {clock.summary()}" + (f" (faster: {' '.join(levers)})" if levers else ""))
    return {**row, "stage_seconds": clock.seconds}


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="apply")
def main(cfg: DictConfig) -> float:
    with user_errors("amc-apply"):
        return float(run(cfg, Path(HydraConfig.get().runtime.output_dir))["best_reward"])


if __name__ == "__main__":
    main()
