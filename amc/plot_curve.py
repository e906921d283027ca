"""Reward curve of one search: ``python -m amc.plot_curve <run_dir> [--out PNG]``.

Episode rewards (scatter), the running best, a moving average over 20 episodes and, for the RL agent, a vertical
line where the warm-up (random actions) ends, read from the job's ``.hydra/config.yaml`` (``agent.warmup_episodes``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from amc.reporting.runs import job_config

log = logging.getLogger(__name__)

WINDOW = 20


def read_episodes(run_dir: str | Path) -> list[dict]:
    """The rows of ``run_dir/episodes.jsonl`` with a numeric ``episode`` and ``reward``.

    Lines that cannot be parsed (e.g. cut by a kill mid-write, not UTF-8) are skipped with a warning naming the
    file and line; a file with no usable row is an error.
    """
    path = Path(run_dir) / "episodes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a search run directory")
    rows, bad = [], []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict) or not all(isinstance(row.get(k), (int, float)) and not isinstance(
                    row.get(k), bool) and math.isfinite(row[k]) for k in ("episode", "reward")):
                raise ValueError("no numeric 'episode' and 'reward'")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            bad.append((number, str(e)))
            continue
        rows.append(row)
    if bad:
        lines = ", ".join(str(n) for n, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
        log.warning("skipped %d unreadable line(s) of %s (line %s: %s)", len(bad), path, lines, bad[0][1])
    if not rows:
        raise ValueError(f"{path} holds no readable episode")
    return rows


def warmup_end(run_dir: str | Path) -> int | None:
    """The RL agent's warm-up episodes from the job config; None for other methods or without a config."""
    run_dir = Path(run_dir)
    cfg = job_config(run_dir)
    if cfg is None or run_dir.parent.name == "compare" or cfg.get("method", "amc") != "amc":
        return None
    warmup = (cfg.get("agent") or {}).get("warmup_episodes")
    return None if warmup is None else int(warmup)


def _title(run_dir: Path) -> str:
    """'reward curve: <method>, <resource> <target>, seed <seed>' when the job config is known."""
    cfg = job_config(run_dir)
    if cfg is None:
        return f"reward curve: {run_dir}"
    method = run_dir.name if run_dir.parent.name == "compare" else cfg.get("method", "?")
    p = cfg.get("protocol") or {}
    budget = f"targets drawn from {p['target_range']}" if p.get("target_range") else p.get("target")
    return f"reward curve: {method}, {p.get('resource') or 'accuracy-guaranteed'} {budget}, seed {cfg.get('seed')}"


def moving_average(values: Sequence[float], window: int = WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"moving-average window must be a positive number of episodes, got {window!r}")
    v = np.asarray(values, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    start = np.maximum(0, idx - window)
    return (csum[idx] - csum[start]) / (idx - start)


def drawn_targets(rows: Sequence[dict]) -> np.ndarray | None:
    """Each episode's budget when the run drew them (``protocol.target_range``: more than one value), else None."""
    targets = [r.get("target") for r in rows]
    if any(t is None for t in targets) or len(set(targets)) < 2:
        return None
    return np.array(targets, dtype=float)


def plot_reward_curve(run_dir: str | Path, out: str | Path | None = None, window: int = WINDOW) -> Path:
    """Write the reward curve of ``run_dir`` to ``out`` (default ``run_dir/reward_curve.png``); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rows = read_episodes(run_dir)
    episodes = np.array([r["episode"] for r in rows])
    rewards = np.array([r["reward"] for r in rows], dtype=float)
    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    targets = drawn_targets(rows)
    if targets is None:
        ax.scatter(episodes, rewards, s=8, alpha=0.4, color="tab:blue", label="episode reward")
        ax.plot(episodes, np.maximum.accumulate(rewards), color="tab:red", label="running best")
    else:  # a budget-conditioned run: rewards at different budgets, coloured by the drawn target; no running best
        points = ax.scatter(episodes, rewards, s=10, alpha=0.7, c=targets, cmap="viridis",
                            label="episode reward (colour: drawn target)")
        fig.colorbar(points, ax=ax, label="target ratio")
    ax.plot(episodes, moving_average(rewards, window), color="tab:green", label=f"moving average ({window})")
    warmup = warmup_end(run_dir)
    if warmup is not None and 0 < warmup <= int(episodes.max()):
        ax.axvline(warmup + 0.5, color="gray", linestyle="--", label=f"end of warm-up ({warmup})")
    relative = any("raw_reward" in r for r in rows)  # env.reward_baseline: the reward is the gain over a baseline
    ax.set(xlabel="episode", ylabel="reward - uniform's at the budget" if relative else "reward", title=_title(run_dir))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / "reward_curve.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer (episodes), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 episode, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amc-plot-curve", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a search run directory (holding episodes.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: <run_dir>/reward_curve.png)")
    parser.add_argument("--window", type=positive_int, default=WINDOW,
                        help=f"moving-average window in episodes, >= 1 (default {WINDOW})")
    args = parser.parse_args(argv)
    logging.basicConfig(format="amc-plot-curve: %(levelname)s: %(message)s")
    try:
        path = plot_reward_curve(args.run_dir, args.out, args.window)
    except (FileNotFoundError, ValueError) as e:
        print(f"amc-plot-curve: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
