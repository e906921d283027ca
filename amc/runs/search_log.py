"""What every search method writes while it runs: episodes.jsonl, best-so-far, a progress bar, TensorBoard curves.

The RL agent's SB3 callbacks and the baselines (random search, heuristics) share :class:`EpisodeLog` and the
TensorBoard writers :func:`write_episode_scalars` / :func:`write_best_image`, so their runs produce the same files
and the same curves (keys, episode axis) and compare line by line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

SCALARS = {"reward": "amc/episode_reward", "accuracy": "amc/accuracy", "macs_ratio": "amc/macs_ratio",
           "params_ratio": "amc/params_ratio", "target": "amc/target"}
BEST_REWARD = "amc/best_reward"
BEST_IMAGE = "amc/best_keep_ratios"
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


class ScalarSink(Protocol):
    """Where per-episode TensorBoard records go: torch's SummaryWriter (baselines) or SB3's logger (the agent)."""

    def scalar(self, tag: str, value: float) -> None: ...

    def image(self, tag: str, hwc: np.ndarray) -> None: ...


def write_episode_scalars(sink: ScalarSink, row: dict[str, Any], best_reward: float) -> None:
    """The ``amc/*`` curves of one finished episode, the same for every search method."""
    for key, tag in SCALARS.items():
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            sink.scalar(tag, float(value))
    if best_reward > float("-inf"):
        sink.scalar(BEST_REWARD, float(best_reward))
    if row.get("network") is not None:  # an agent on several networks: one reward curve per network too
        sink.scalar(f"{SCALARS['reward']}/{row['network']}", float(row["reward"]))


def write_best_image(sink: ScalarSink, episode_log: EpisodeLog) -> None:
    """The best policy's keep-ratio bar chart (call when an episode is a new best)."""
    if episode_log.best is not None and episode_log.best.get("keep_ratios"):
        sink.image(BEST_IMAGE, episode_log.best_image())


class SummaryWriterSink:
    """A :class:`ScalarSink` on torch's SummaryWriter, at step ``self.step`` (the episode number)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.step = 0

    def scalar(self, tag: str, value: float) -> None:
        self.writer.add_scalar(tag, value, self.step)

    def image(self, tag: str, hwc: np.ndarray) -> None:
        self.writer.add_image(tag, hwc, self.step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


EpisodeListener = Callable[[dict[str, Any], bool], None]  # (row, is_new_best), called after each recorded episode


class EpisodeProgress:
    """A tqdm bar over the run's episodes or, without it (progress=false), a log line every 5% with ETA and best."""

    def __init__(self, episode_log: EpisodeLog, *, enabled: bool = True) -> None:
        self.log = episode_log
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=episode_log.total, desc=f"{episode_log.method} search", disable=not enabled, unit="ep",
                        mininterval=0.5 if tty else 30.0, dynamic_ncols=tty)

    def restore(self, episode: int) -> None:
        self.bar.n = episode
        self.bar.refresh()

    def __call__(self, row: dict[str, Any], new_best: bool) -> None:
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.log.best_reward:.4f}", refresh=False)
        if self.bar.disable:
            self._log_line(row)

    def _log_line(self, row: dict[str, Any]) -> None:
        episode_log, total = self.log, self.log.total
        every = max(1, total // 20)
        if episode_log.episode % every and episode_log.episode != total:
            return
        elapsed = row["elapsed"]
        eta = elapsed / max(1, episode_log.episodes_this_run) * max(0, total - episode_log.episode)
        best = episode_log.best  # None until the run's own network had an episode (an agent on several networks)
        best_text = "-" if best is None else f"{episode_log.best_reward:.4f} (episode {best['episode']})"
        reward_text = f"{row['reward']:.4f}"
        if row.get("network") is not None:  # several networks: whose episode this was, whose best that is
            reward_text += f" on {row['network']}"
            best_text += f" on {episode_log.network}"
        log.info("%s search: episode %d/%d, reward %s, best %s, %.0fs elapsed, ETA %.0fs", episode_log.method,
                 episode_log.episode, total, reward_text, best_text, elapsed, eta)

    def close(self) -> None:
        self.bar.close()


def read_episodes(path: Path) -> list[dict[str, Any]]:
    """The rows of an episodes.jsonl; a partial last line (a kill during a write) is dropped with a warning.

    An unreadable line before the last one is an error naming the file and the line number.
    """
    return [row for row, _ in _read_lines(path)]


def elapsed_seconds(rows: Sequence[dict[str, Any]]) -> tuple[float, int]:
    """(wall seconds of the episodes, processes) from the rows' ``elapsed``: each process of a resumed run counts
    from its own start, so a drop in ``elapsed`` begins the next one and every process's last value is added."""
    total, last, processes = 0.0, None, 0
    for row in rows:
        elapsed = row.get("elapsed")
        if not isinstance(elapsed, (int, float)):
            continue
        if last is None or elapsed < last:
            total, processes = total + (last or 0.0), processes + 1
        last = float(elapsed)
    return total + (last or 0.0), processes


def _read_lines(path: Path) -> list[tuple[dict[str, Any], str]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for k, (number, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("episode"), int) or "reward" not in row:
                raise ValueError("not an episode record (a JSON object with 'episode' and 'reward')")
        except ValueError as e:
            if k == len(numbered) - 1:
                log.warning("%s: dropping its last line %d, a partial record (the run was killed while writing it): "
                            "%.60r", path, number, line)
                break
            raise ValueError(f"{path}, line {number}: unreadable episode record ({e}); only a partial last line is "
                             f"dropped on resume, so fix or remove this line") from None
        rows.append((row, line))
    return rows


class EpisodeLog:
    """Records finished episodes (the env's final ``info``) of one run and tracks the best one.

    Each record appends a line to ``run_dir/episodes.jsonl`` and calls the listeners (:meth:`add_listener`) with the
    row: the progress bar (``progress``) and, with ``tensorboard=True`` (the baselines), the ``amc/*`` curves and
    best-policy image in ``run_dir/tb/<method>``. The agent passes ``tensorboard=False``: its SB3 callbacks write the
    same curves through SB3's logger, next to SB3's own.

    An agent trained on several networks (``env.networks``) records each episode's ``network``; ``best`` is then the
    best episode of ``network`` (the run's own checkpoint) and ``best_by_network`` the best of each.
    """

    def __init__(self, run_dir: Path, *, method: str, total: int, progress: bool = True, tensorboard: bool = True,
                 group_names: Sequence[str] | None = None, network: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.method, self.total = method, total
        self.group_names = list(group_names) if group_names is not None else None
        self.path = self.run_dir / "episodes.jsonl"
        self.episode = 0
        self.episodes_this_run = 0
        self.earlier_seconds = 0.0  # the episodes' wall time in the earlier processes of a resumed run
        self.best: dict[str, Any] | None = None
        self.network = network
        self.best_by_network: dict[str, dict[str, Any]] = {}
        self.start = time.time()
        self.listeners: list[EpisodeListener] = []
        self.progress = EpisodeProgress(self, enabled=progress)
        self.add_listener(self.progress)
        self.tensorboard: SummaryWriterSink | None = None
        if tensorboard:
            self.tensorboard = SummaryWriterSink(self.run_dir / "tb" / method)
            self.add_listener(self._write_tensorboard)

    @property
    def best_reward(self) -> float:
        return float("-inf") if self.best is None else float(self.best["reward"])

    def add_listener(self, listener: EpisodeListener) -> None:
        """Call ``listener(row, new_best)`` after every recorded episode."""
        self.listeners.append(listener)

    def restore(self, episode: int, best: dict[str, Any] | None) -> None:
        """Continue from ``episode`` with ``best``; lines of episodes.jsonl past ``episode`` (run after the last
        checkpoint of a killed run, and redone now) and a partial last line are dropped from the file."""
        self.episode, self.best = episode, best
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            lines = [line for line in text.splitlines() if line.strip()]
            kept = [(row, line) for row, line in _read_lines(self.path) if row["episode"] <= episode]
            if len(kept) != len(lines) or not text.endswith("\n"):
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(line + "\n" for _, line in kept))
                tmp.replace(self.path)
            for row, _ in kept:
                self._track_network(row)
            self.earlier_seconds = elapsed_seconds([row for row, _ in kept])[0]
        self.progress.restore(episode)

    def resume_from_file(self) -> None:
        """Restore counter and best from an existing episodes.jsonl (a resumed random search)."""
        if self.path.exists():
            rows = read_episodes(self.path)
            self.restore(len(rows), max(rows, key=lambda r: r["reward"], default=None))

    def record(self, info: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Append one finished episode; returns its row and whether it is the new best."""
        self.episode += 1
        self.episodes_this_run += 1
        now = time.time()
        row: dict[str, Any] = {"episode": self.episode, **{k: jsonable(v) for k, v in info.items() if k not in _DROP}}
        row.update(time=now, elapsed=round(now - self.start, 3))
        self._track_network(row)
        own = row.get("network") is None or row["network"] == self.network
        new_best = own and (self.best is None or row["reward"] > self.best["reward"])
        if new_best:
            self.best = dict(row)
        row["best_reward"] = self.best_reward
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for listener in self.listeners:
            listener(row, new_best)
        return row, new_best

    def _track_network(self, row: dict[str, Any]) -> None:
        network = row.get("network")
        if network is not None and (network not in self.best_by_network
                                    or row["reward"] > self.best_by_network[network]["reward"]):
            self.best_by_network[network] = dict(row)

    def _write_tensorboard(self, row: dict[str, Any], new_best: bool) -> None:
        assert self.tensorboard is not None
        self.tensorboard.step = self.episode
        write_episode_scalars(self.tensorboard, row, self.best_reward)
        if new_best:
            write_best_image(self.tensorboard, self)

    def best_image(self) -> np.ndarray:
        assert self.best is not None
        return keep_ratio_image(self.best["keep_ratios"], self.group_names,
                                title=f"best policy (episode {self.best['episode']}, reward {self.best['reward']:.4f})")

    def close(self) -> None:
        self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
