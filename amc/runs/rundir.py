"""Run dirs of a search: never clobber a finished run; resume only what was started with the same settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETTINGS_FILE = "settings.json"  # the settings that define a search, written once when a run starts
DEFINING = ("checkpoint", "data", "protocol", "env", "agent", "seed", "method", "sensitivity", "eagleeye")
RUN_MARKERS = ("summary.json", "episodes.jsonl", "resume", SETTINGS_FILE)

# settings under DEFINING that cannot change a search's results: a resume may change them
# (BN folding, channels-last and the evaluation batch size change logits by float rounding only: no reward-val
# image changed in the benchmark; with early stopping the batch size moves the points where it checks; a resumed run
# reads the latency table it started with from its own dir, so where the cache lives does not matter)
RESULT_NEUTRAL = frozenset({"env.graph_time_limit", "env.release_memory", "env.start_method", "env.fold_bn",
                            "env.channels_last", "env.eval_batch_size", "protocol.latency_table.cache_dir"})
# settings added after runs were recorded without them: absent in a recorded run means this value
ADDED_DEFAULTS = {"env.budget_in_state": False, "protocol.target_range": None, "model": None,
                  "env.early_stop.margin": None, "env.early_stop.z": 3.0, "env.early_stop.min_images": 500,
                  "env.n_envs": 1, "sensitivity.points": 8, "eagleeye.bn_batches": 20, "env.networks": [],
                  "env.network_order": "random", "env.state_extras": [], "env.reward_baseline": "none",
                  "env.baseline_points": 5}
BUDGETED = ("amc", "random", "eagleeye")  # the methods that run `episodes` episodes; the others run one


def defining_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a search (a resumed run must not change them), from its config as plain data."""
    settings = {k: config.get(k) for k in DEFINING}
    model = config.get("model")  # a plain state dict's model; absent (None) for our checkpoints and in older runs
    settings["model"] = model if isinstance(model, dict) and model.get("_target_") is not None else None
    return settings


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


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


def check_new_run_dir(run_dir: Path) -> None:
    """A new search needs a dir that holds no search."""
    found = [m for m in RUN_MARKERS if (run_dir / m).exists()]
    if found:
        state = "a finished search" if is_finished(run_dir) else "an interrupted search"
        raise FileExistsError(f"{run_dir} already holds {state} ({', '.join(found)}); it is left as it is. Choose a "
                              f"new run dir, or continue it with resume={run_dir} (and episodes=<more> if finished)")


def check_resume(run_dir: Path, *, recorded: dict[str, Any], given: dict[str, Any], method: str, episodes: int) -> None:
    """A resumed search needs its own settings (``recorded`` when it started, ``given`` now) and more episodes."""
    recorded, given = flatten(recorded), flatten(given)
    differing = sorted(k for k in recorded.keys() | given.keys()
                       if k not in RESULT_NEUTRAL and recorded.get(k, ADDED_DEFAULTS.get(k)) != given.get(k))
    if differing:
        lines = "; ".join(f"{k}: recorded {recorded.get(k)!r}, given {given.get(k)!r}" for k in differing[:8])
        more = f" (and {len(differing) - 8} more)" if len(differing) > 8 else ""
        raise ValueError(f"resume={run_dir}: these settings differ from the run's own, so the search would mix two "
                         f"searches: {lines}{more}. Repeat the run's overrides (see {run_dir}/.hydra/overrides.yaml); "
                         f"only episodes may grow")
    done = episodes_done(run_dir, method)
    total = episodes if method in BUDGETED else 1
    if total < done:
        raise ValueError(f"resume={run_dir} has already run {done} episodes; episodes={episodes} would drop "
                         f"some: pass episodes >= {done}")
    if is_finished(run_dir) and done >= total:
        raise FileExistsError(f"resume={run_dir} is a finished search of {done} episodes; it is left as it is. Pass "
                              f"episodes=<more than {done}> to continue it" if method in BUDGETED else
                              f"resume={run_dir} is a finished {method} run; it is left as it is")
