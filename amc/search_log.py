"""What every search method writes while it runs: episodes.jsonl, best-so-far, a progress bar, TensorBoard curves.

The RL agent's SB3 callback and the baselines (random search, heuristics) share this class, so their runs produce
the same files and compare line by line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

SCALARS = {"reward": "amc/episode_reward", "accuracy": "amc/accuracy", "macs_ratio": "amc/macs_ratio",
           "params_ratio": "amc/params_ratio"}
_DROP = ("episode_end", "terminal_observation", "TimeLimit.truncated", "episode")  # SB3/Monitor bookkeeping


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> Python numbers/lists, recursively; anything else unknown -> str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def keep_ratio_image(keep_ratios: Sequence[float], names: Sequence[str] | None = None, title: str = "") -> np.ndarray:
    """A bar chart of keep ratio per group as an HWC uint8 RGB array (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(keep_ratios)
    fig = Figure(figsize=(max(4.0, 0.3 * n + 1.5), 3.0 if names is None else 3.8), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(n), keep_ratios, color="tab:blue")
    ax.set(ylim=(0, 1), xlabel="group", ylabel="keep ratio", title=title)
    if names is not None and len(names) == n:
        ax.set_xticks(range(n), [str(s) for s in names], rotation=90, fontsize=6)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class EpisodeLog:
    """Records finished episodes (the env's final ``info``) of one run and tracks the best one.

    With ``tensorboard=True`` it also writes the ``amc/*`` curves and the best policy's bar chart itself (the
    baselines); the agent's callback passes False and logs through SB3's logger instead, next to SB3's losses.
    """

    def __init__(self, run_dir: Path, *, method: str, total: int, progress: bool = True, tensorboard: bool = True,
                 group_names: Sequence[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.method, self.total = method, total
        self.group_names = list(group_names) if group_names is not None else None
        self.path = self.run_dir / "episodes.jsonl"
        self.episode = 0
        self.episodes_this_run = 0
        self.best: dict[str, Any] | None = None
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb" / method))
        self.start = time.time()
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=f"{method} search", disable=not progress, unit="ep",
                        mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)

    @property
    def best_reward(self) -> float:
        return float("-inf") if self.best is None else float(self.best["reward"])

    def restore(self, episode: int, best: dict[str, Any] | None) -> None:
        """Continue from ``episode`` with ``best``; lines of episodes.jsonl past ``episode`` (run after the last
        checkpoint of a killed run, and redone now) are dropped."""
        self.episode, self.best = episode, best
        if self.path.exists():
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line)["episode"] <= episode]
            if len(kept) != len(lines):
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(line + "\n" for line in kept))
                tmp.replace(self.path)
        self.bar.n = episode
        self.bar.refresh()

    def resume_from_file(self) -> None:
        """Restore counter and best from an existing episodes.jsonl (a resumed random search)."""
        if self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.restore(len(rows), max(rows, key=lambda r: r["reward"], default=None))

    def record(self, info: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Append one finished episode; returns its row and whether it is the new best."""
        self.episode += 1
        self.episodes_this_run += 1
        now = time.time()
        row: dict[str, Any] = {"episode": self.episode, **{k: jsonable(v) for k, v in info.items() if k not in _DROP}}
        row.update(time=now, elapsed=round(now - self.start, 3))
        new_best = self.best is None or row["reward"] > self.best["reward"]
        if new_best:
            self.best = dict(row)
        row["best_reward"] = self.best_reward
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, tag in SCALARS.items():
                if isinstance(row.get(key), (int, float)):
                    self.writer.add_scalar(tag, row[key], self.episode)
            self.writer.add_scalar("amc/best_reward", self.best_reward, self.episode)
            if new_best and row.get("keep_ratios"):
                self.writer.add_image("amc/best_keep_ratios", self.best_image(), self.episode, dataformats="HWC")
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best_reward:.4f}", refresh=False)
        if self.bar.disable:
            self._log_progress(row)
        return row, new_best

    def _log_progress(self, row: dict[str, Any]) -> None:
        """Without the progress bar (progress=false), a log line every 5% of the run, with ETA and best so far."""
        every = max(1, self.total // 20)
        if self.episode % every and self.episode != self.total:
            return
        elapsed = row["elapsed"]
        eta = elapsed / self.episodes_this_run * max(0, self.total - self.episode)
        log.info("%s search: episode %d/%d, reward %.4f, best %.4f (episode %d), %.0fs elapsed, ETA %.0fs",
                 self.method, self.episode, self.total, row["reward"], self.best_reward, self.best["episode"],
                 elapsed, eta)

    def best_image(self) -> np.ndarray:
        assert self.best is not None
        return keep_ratio_image(self.best["keep_ratios"], self.group_names,
                                title=f"best policy (episode {self.best['episode']}, reward {self.best['reward']:.4f})")

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
