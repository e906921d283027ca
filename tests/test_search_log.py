"""EpisodeLog: the episodes file, best so far, and progress lines in the log when the progress bar is off."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from amc.search_log import EpisodeLog


def test_progress_is_logged_every_5_percent_without_the_bar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = EpisodeLog(tmp_path, method="random", total=40, progress=False, tensorboard=False)
    rewards = [0.1 * (i % 7) for i in range(40)]
    with caplog.at_level(logging.INFO, logger="amc.search_log"):
        for r in rewards:
            log.record({"reward": r, "keep_ratios": [0.5]})
    log.close()
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 20  # every 2 episodes of 40
    assert lines[-1].startswith("random search: episode 40/40, reward 0.4000, best 0.6000 (episode 7)")
    assert "ETA 0s" in lines[-1]
    rows = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == rewards and rows[-1]["best_reward"] == max(rewards)


def test_no_progress_lines_with_the_bar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = EpisodeLog(tmp_path, method="amc", total=4, progress=True, tensorboard=False)
    with caplog.at_level(logging.INFO, logger="amc.search_log"):
        for r in (0.1, 0.2, 0.3, 0.4):
            log.record({"reward": r})
    log.close()
    assert not caplog.records and log.best["episode"] == 4
