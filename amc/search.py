"""The AMC search: ``python -m amc.search [experiment=resnet20_macs50] [protocol.target=0.5] [method=amc]``.

Check the settings -> set up (data, base model, groups, calibration, budget, env) -> run the method (the RL agent,
random search, a heuristic or the sensitivity search) -> evaluate its best policy on all reward-val and test images
and save plan, pruned model, summary -> compare with the ``compare_with`` baselines, every row timed in one block ->
report (``comparison.md``). The parts live in ``amc.cli`` (reading the config) and ``amc.runs`` (the library).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from amc.cli import PreflightCallback, command_line, full_errors, user_errors
from amc.cli.checks import check_config, check_run_dir, config_settings
from amc.cli.compare import compare_and_report, evaluate_original
from amc.cli.methods import run_method
from amc.cli.setup import build_setup
from amc.runs.rundir import SETTINGS_FILE


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


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Run ``cfg.method`` (and the ``compare_with`` baselines into sub-dirs); returns the main method's summary."""
    output_dir = preflight(cfg, Path(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    if not (output_dir / SETTINGS_FILE).exists():
        (output_dir / SETTINGS_FILE).write_text(json.dumps(config_settings(cfg), indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    setup = build_setup(cfg, output_dir)
    original = evaluate_original(cfg, setup)
    row, model = run_method(cfg, setup, output_dir)
    rows, models = [original, row], {"original": setup.net.model, cfg.method: model}
    compare_and_report(cfg, setup, rows, models, output_dir,
                       f"{setup.base_info['target']} on {setup.data.name}, {cfg.protocol.resource or 'accuracy-guaranteed'} "
                       f"target {cfg.protocol.target}, reward {cfg.protocol.reward}; run dir {output_dir}")
    return rows[1]


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
