"""``amc.apply agent_run=``: one trained agent, or several (a committee) of which the best on reward-val is kept.

Each agent drives the env with its own observation layout (its saved ``actor.json`` fields), so agents trained with
different states can sit in one committee; each plays one deterministic episode through the same budget wall.
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from amc.agents import load_actor
from amc.cli.checks import recorded_settings
from amc.envs.channel_pruning import OBS_FIELDS, TARGET_FIELD, observation_fields
from amc.envs.state_fields import extras_of_fields
from amc.runs.episodes import run_actor
from amc.runs.search_log import EpisodeLog
from amc.runs.setup import Setup

log = logging.getLogger(__name__)
AGENT_KEY = "agent_run"  # the episode row's key naming the agent that played it


@dataclass(frozen=True)
class AgentLayout:
    """What an agent observes: the budget (its target) and the extras after AMC's fields."""

    budget_in_state: bool
    state_extras: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return observation_fields(self.budget_in_state, self.state_extras)


def agent_dirs(value: Any) -> list[Path]:
    """``agent_run`` as a list of run dirs: one (a path), or a committee: a list of paths or a glob pattern
    (``runs/*/s?``: the matching dirs that hold an ``actor.json``, sorted), no repeats."""
    if isinstance(value, (str, Path)) and not glob.has_magic(str(value)):
        return [Path(str(value))]
    if isinstance(value, (str, Path)):
        items: list[Any] = sorted(p for p in glob.glob(str(value)) if (Path(p) / "actor.json").is_file())
        if not items:
            raise ValueError(f"agent_run={value}: the pattern matches no run dir with an actor.json")
    else:
        items = OmegaConf.to_container(value) if OmegaConf.is_list(value) else list(value)
    dirs = [Path(str(v)) for v in items]
    repeated = sorted({str(d) for d in dirs if dirs.count(d) > 1})
    if not dirs or repeated:
        raise ValueError(f"agent_run: give one search run dir or a list of different ones; got {items!r}"
                         + (f" ({', '.join(repeated)} more than once)" if repeated else ""))
    return dirs


def check_actor_fits(meta: dict[str, Any], *, obs_fields: tuple[str, ...], lbound: float, rbound: float,
                     source: Path) -> None:
    """An actor's observation layout and action bounds must be this env's, or its actions mean something else."""
    fields = (meta.get("observation") or {}).get("fields")
    if fields is not None and tuple(fields) != tuple(obs_fields):
        raise ValueError(f"agent {source}: its observation layout {fields} is not this env's {list(obs_fields)}; "
                         f"it was trained with another amc version or env and cannot drive this one")
    bounds = meta.get("keep_ratio") or {}
    if bounds and not (np.isclose(bounds.get("lbound"), lbound) and np.isclose(bounds.get("rbound"), rbound)):
        raise ValueError(f"agent {source} maps its actions to keep ratios in [{bounds.get('lbound')}, "
                         f"{bounds.get('rbound')}], this env to [{lbound}, {rbound}]: set env.lbound="
                         f"{bounds.get('lbound')} env.rbound={bounds.get('rbound')}")


def check_agent(agent_dir: Path, cfg: DictConfig) -> AgentLayout:
    """The checks of one agent run dir that need no data or model; returns the layout it observes."""
    for name in ("actor.json", "actor.safetensors"):
        if not (agent_dir / name).is_file():
            raise FileNotFoundError(f"agent_run={agent_dir} has no {name}: pass the run dir of a finished "
                                    f"`python -m amc.search` (method=amc) or `amc.apply` with refine_episodes")
    meta = json.loads((agent_dir / "actor.json").read_text(encoding="utf-8"))
    fields = (meta.get("observation") or {}).get("fields") or ()
    try:
        extras = extras_of_fields(fields, OBS_FIELDS, (TARGET_FIELD,)) if fields else ()
    except ValueError as e:
        raise ValueError(f"agent {agent_dir}: {e}") from None
    layout = AgentLayout(TARGET_FIELD in fields, tuple(extras))
    if "budget_left" in extras and cfg.protocol.get("resource") is None:
        raise ValueError(f"agent {agent_dir} sees the state field 'budget_left', which needs a resource budget: "
                         f"apply it with protocol=macs, params or latency (the accuracy-guaranteed ones have none)")
    check_actor_fits(meta, obs_fields=layout.fields, lbound=cfg.env.lbound, rbound=cfg.env.rbound, source=agent_dir)
    if cfg.refine_episodes and not (agent_dir / "resume" / "policy.safetensors").is_file():
        raise FileNotFoundError(f"refine_episodes needs the agent's critic too: {agent_dir}/resume/policy.safetensors "
                                f"is missing")
    return layout


def agents_target(dirs: Sequence[Path]) -> float:
    """The budget the agents were trained with (their runs' recorded protocol.target), which must agree."""
    targets = {str(d): float(recorded_settings(d)["protocol"]["target"]) for d in dirs}
    if len(set(targets.values())) > 1:
        raise ValueError(f"the agents were trained at different targets ({targets}): set protocol.target")
    return next(iter(targets.values()))


def use_layout(cfg: DictConfig, layout: AgentLayout) -> None:
    """Record an agent's layout as the env's settings (what a spawned worker builds its env from)."""
    with open_dict(cfg):
        cfg.env.budget_in_state, cfg.env.state_extras = layout.budget_in_state, list(layout.state_extras)


def play_agents(setup: Setup, episode_log: EpisodeLog, agents: dict[Path, AgentLayout], *,
                seed: int) -> tuple[Path, list[dict[str, Any]]]:
    """One deterministic episode of each agent (each observing with its own layout); returns the agent of the best
    one on reward-val (the first on a tie), whose layout the env keeps, and the episodes' rows (each naming its agent
    under ``AGENT_KEY``)."""
    env, rows = setup.env, []
    for agent_dir, layout in agents.items():
        env.set_observation(budget_in_state=layout.budget_in_state, state_extras=layout.state_extras)
        actor = load_actor(agent_dir).to(setup.device)
        row, _ = episode_log.record({**run_actor(actor, env, seed), AGENT_KEY: str(agent_dir)})
        log.info("zero-shot policy of %s: reward %.4f, accuracy %.4f", agent_dir, row["reward"], row["accuracy"])
        rows.append(row)
    best = max(rows, key=lambda r: r["reward"])  # the first of equals
    if len(rows) > 1:
        log.info("best of %d agents on reward-val: %s (reward %.4f)", len(rows), best[AGENT_KEY], best["reward"])
    winner = Path(best[AGENT_KEY])
    env.set_observation(budget_in_state=agents[winner].budget_in_state, state_extras=agents[winner].state_extras)
    return winner, rows
