"""EpisodeLog: the episodes file (also after a kill mid-write), best so far, progress lines, TensorBoard curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from amc.runs.search_log import BEST_IMAGE, BEST_REWARD, SCALARS, EpisodeLog, elapsed_seconds, read_episodes


def test_progress_is_logged_every_5_percent_without_the_bar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = EpisodeLog(tmp_path, method="random", total=40, progress=False, tensorboard=False)
    rewards = [0.1 * (i % 7) for i in range(40)]
    with caplog.at_level(logging.INFO, logger="amc.runs.search_log"):
        for r in rewards:
            log.record({"reward": r, "keep_ratios": [0.5]})
    log.close()
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 20  # every 2 episodes of 40
    assert lines[-1].startswith("random search: episode 40/40, reward 0.4000, best 0.6000 (episode 7)")
    assert "ETA 0s" in lines[-1]
    rows = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in rows] == rewards and rows[-1]["best_reward"] == max(rewards)


def test_progress_lines_name_the_episodes_network_and_the_bests(tmp_path: Path, caplog) -> None:
    log = EpisodeLog(tmp_path, method="amc", total=2, progress=False, tensorboard=False, network="resnet20")
    with caplog.at_level(logging.INFO, logger="amc.runs.search_log"):
        log.record({"reward": 0.5, "network": "resnet20"})
        log.record({"reward": 0.9, "network": "vgg16"})
    log.close()
    lines = [rec.getMessage() for rec in caplog.records]
    assert lines[0].startswith("amc search: episode 1/2, reward 0.5000 on resnet20, best 0.5000 (episode 1) on resnet20")
    assert lines[1].startswith("amc search: episode 2/2, reward 0.9000 on vgg16, best 0.5000 (episode 1) on resnet20")


def test_no_progress_lines_with_the_bar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = EpisodeLog(tmp_path, method="amc", total=4, progress=True, tensorboard=False)
    with caplog.at_level(logging.INFO, logger="amc.runs.search_log"):
        for r in (0.1, 0.2, 0.3, 0.4):
            log.record({"reward": r})
    log.close()
    assert not caplog.records and log.best["episode"] == 4


def _write_log(tmp_path: Path, rewards: list[float]) -> EpisodeLog:
    log = EpisodeLog(tmp_path, method="random", total=10, progress=False, tensorboard=False)
    for r in rewards:
        log.record({"reward": r, "keep_ratios": [0.5]})
    log.close()
    return log


@pytest.mark.parametrize("how", ["restore", "resume_from_file"])
def test_a_partial_last_line_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       how: str) -> None:
    _write_log(tmp_path, [0.1, 0.3, 0.2])
    path = tmp_path / "episodes.jsonl"
    complete = path.read_text()
    with path.open("a") as f:  # killed while writing episode 4
        f.write('{"episode": 4, "reward": 0.9, "keep_rat')
    log = EpisodeLog(tmp_path, method="random", total=10, progress=False, tensorboard=False)
    with caplog.at_level(logging.WARNING, logger="amc.runs.search_log"):
        if how == "restore":
            log.restore(3, {"episode": 2, "reward": 0.3})
        else:
            log.resume_from_file()
    assert [r.getMessage() for r in caplog.records if "dropping its last line 4" in r.getMessage()]
    assert str(path) in caplog.records[0].getMessage() and "partial" in caplog.records[0].getMessage()
    assert path.read_text() == complete  # the partial line is gone, the complete ones are byte-identical
    assert (log.episode, log.best["episode"], log.best_reward) == (3, 2, 0.3)
    log.record({"reward": 0.25})
    log.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["episode"] for r in rows] == [1, 2, 3, 4] and rows[-1]["reward"] == 0.25


def test_an_unreadable_line_before_the_last_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    _write_log(tmp_path, [0.1, 0.3, 0.2])
    path = tmp_path / "episodes.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    log = EpisodeLog(tmp_path, method="random", total=10, progress=False, tensorboard=False)
    with pytest.raises(ValueError, match=rf"{path.name}, line 2: unreadable episode record"):
        log.resume_from_file()
    with pytest.raises(ValueError, match="line 2"):
        log.restore(3, None)
    assert path.read_text().splitlines() == lines  # left as it was
    log.close()


def test_baselines_write_the_agents_tensorboard_curves_on_the_episode_axis(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = EpisodeLog(tmp_path, method="random", total=5, progress=False, tensorboard=True, group_names=["a", "b"])
    rewards = [0.2, 0.1, 0.4, 0.3, 0.5]
    for r in rewards:
        log.record({"reward": r, "accuracy": r, "macs_ratio": 0.5, "params_ratio": 0.6, "target": 0.5,
                    "keep_ratios": [0.5, r]})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb" / "random")).Reload()
    assert set(events.Tags()["scalars"]) == set(SCALARS.values()) | {BEST_REWARD}
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("amc/episode_reward")] == list(zip(range(1, 6), rewards))
    assert [e.value for e in events.Scalars(BEST_REWARD)] == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.5])
    assert [e.step for e in events.Images(BEST_IMAGE)] == [1, 3, 5]  # the new bests


def test_a_resumed_log_knows_the_earlier_processes_time(tmp_path: Path) -> None:
    first = EpisodeLog(tmp_path, method="random", total=4, progress=False, tensorboard=False)
    for _ in range(2):
        first.record({"reward": 0.5})
    first.close()
    rows = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    rows[0]["elapsed"], rows[1]["elapsed"] = 40.0, 90.0  # as if the first process had spent 90 s
    (tmp_path / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = EpisodeLog(tmp_path, method="random", total=4, progress=False, tensorboard=False)
    second.resume_from_file()
    assert second.earlier_seconds == 90.0
    second.record({"reward": 0.6})
    second.close()
    rows = read_episodes(tmp_path / "episodes.jsonl")
    seconds, processes = elapsed_seconds(rows)
    assert processes == 2 and 90.0 <= seconds < 90.0 + 5.0
    assert elapsed_seconds([{"episode": 1, "reward": 0.1}]) == (0.0, 0)  # logs from before `elapsed` was recorded
