"""amc.report and amc.plot_curve on damaged run dirs: unreadable files are skipped with a warning naming them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from amc.plot_curve import main as plot_main
from amc.plot_curve import moving_average, plot_reward_curve, read_episodes, warmup_end
from amc.report import collect_runs, write_report
from amc.report import main as report_main

GOOD_ROW = "| macs 0.5 | amc | 1 | 80.00 ± 0.00% |"


def _job(job: Path, *, seed: int = 0, acc: float = 0.8, target: float = 0.5, episodes: int = 6) -> Path:
    """A finished search job as hydra leaves it: config, summary and episode log."""
    (job / ".hydra").mkdir(parents=True)
    cfg = {"method": "amc", "seed": seed, "protocol": {"resource": "macs", "target": target},
           "agent": {"warmup_episodes": 2}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = {"variant": "amc", "macs": 50, "params": 10, "test_acc": acc, "reward_val_acc": acc,
               "macs_ratio": target - 0.01}
    (job / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps({"episode": i, "reward": 0.1 * i}) for i in range(1, episodes + 1)]
    (job / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return job


def _warned(caplog: pytest.LogCaptureFixture, path: Path) -> bool:
    return any(r.levelno == logging.WARNING and str(path) in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "damage",
    [b'{"variant": "amc", "test_acc": 0.', b"\xff\xfe\x00garbage", b"[1, 2]", b'{"variant": "amc"}',
     b'{"variant": "amc", "test_acc": "high", "reward_val_acc": 0.1, "macs_ratio": 0.4}'],
    ids=["truncated", "not-utf8", "not-an-object", "missing-keys", "not-a-number"],
)
def test_report_skips_an_unreadable_summary_and_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    root = tmp_path / "multirun"
    _job(root / "0")
    bad = _job(root / "1", seed=1, acc=0.2) / "summary.json"
    bad.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        table, md, png = write_report(root)
    assert _warned(caplog, bad)
    assert GOOD_ROW in table  # only the readable run, n = 1
    report = md.read_text()
    assert GOOD_ROW in report and f"not in the table:\n- {bad}" in report
    assert png.stat().st_size > 0


def test_report_with_an_unparsable_config_falls_back_or_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "multirun"
    _job(root / "0")
    broken = _job(root / "1", seed=1, acc=0.6)
    config = broken / ".hydra" / "config.yaml"
    config.write_text("method: amc\nprotocol: {target: [0.5\n")  # unclosed flow sequence
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        runs = collect_runs(root)
    assert [r.path.name for r in runs] == ["0"]  # without a config nor best_plan.json its budget is unknown
    assert _warned(caplog, config) and _warned(caplog, broken / "summary.json")

    # with a best_plan.json the run is reported from the plan's recorded protocol
    (broken / "best_plan.json").write_text(json.dumps({"settings": {"method": "amc", "protocol": {
        "resource": "macs", "target": 0.5}}, "macs_before": 100}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        runs = collect_runs(root)
    assert [(r.path.name, r.seed, r.test_acc) for r in runs] == [("0", 0, 0.8), ("1", None, 0.6)]
    assert _warned(caplog, config)


def test_report_cli_when_nothing_is_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _job(tmp_path / "0") / "summary.json"
    bad.write_text("{")
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 summary.json" in err
    assert not (tmp_path / "report.md").exists()


def test_reward_curve_skips_unreadable_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = _job(tmp_path / "job", episodes=8)
    log_path = run_dir / "episodes.jsonl"
    with log_path.open("ab") as f:
        f.write(b'{"episode": 9, "rew')  # cut by a kill mid-write
    lines = log_path.read_bytes().splitlines()
    lines[2] = b'{"episode": 3, "reward": "\xff"}'  # not UTF-8
    lines[4] = b'{"episode": 5}'  # no reward
    log_path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="amc.plot_curve"):
        rows = read_episodes(run_dir)
        png = plot_reward_curve(run_dir)
    assert [r["episode"] for r in rows] == [1, 2, 4, 6, 7, 8]
    warning = next(r.getMessage() for r in caplog.records if str(log_path) in r.getMessage())
    assert "3 unreadable line(s)" in warning and "line 3, 5, 9" in warning
    assert png.stat().st_size > 0

    log_path.write_bytes(b"\xff\n{\n")
    with pytest.raises(ValueError, match="holds no readable episode"):
        read_episodes(run_dir)


def test_reward_curve_with_an_unparsable_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = _job(tmp_path / "job")
    assert warmup_end(run_dir) == 2
    config = run_dir / ".hydra" / "config.yaml"
    config.write_bytes(b"agent: {warmup_episodes: \xff")
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        assert warmup_end(run_dir) is None
        assert plot_reward_curve(run_dir, tmp_path / "curve.png").stat().st_size > 0
    assert _warned(caplog, config)


@pytest.mark.parametrize(("window", "message"), [("0", "must be at least 1 episode, got 0"),
                                                 ("-3", "must be at least 1 episode, got -3"),
                                                 ("two", "expected a positive integer")])
def test_plot_curve_refuses_a_window_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], window: str, message: str
) -> None:
    run_dir = _job(tmp_path / "job")
    with pytest.raises(SystemExit) as e:
        plot_main([str(run_dir), f"--window={window}"])
    assert e.value.code == 2
    assert f"argument --window: {message}" in capsys.readouterr().err
    assert not (run_dir / "reward_curve.png").exists()
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0, 2.0], window=0)
    assert plot_main([str(run_dir), "--window", "1"]) == 0
    assert (run_dir / "reward_curve.png").stat().st_size > 0
