"""experiments/peers/side_by_side.py: the order rotates per round, a finished run is not redone, the table averages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.peers import side_by_side


def _fake_run(calls: list[tuple[str, ...]], fail: set[str]):
    def run_one(cmd: list[str], log_path: Path) -> dict:
        method = "fastnas" if cmd[1].endswith("modelopt_fastnas.py") else \
            next(c for c in cmd if c.startswith("method=")).split("=")[1]
        run_dir = Path(next(c for c in cmd if c.startswith("hydra.run.dir=")).split("=", 1)[1]) \
            if method != "fastnas" else Path(cmd[cmd.index("--out") + 1])
        calls.append((method, run_dir.name))
        run_dir.mkdir(parents=True)
        if method == "fastnas":
            summary = {"results": {"search_seconds": 30.0, "score_calls": 31, "test_acc": 0.7, "test_acc_bn": 0.71,
                                   "macs_ratio": 0.41}}
        else:
            summary = {"search_seconds": 60.0 if method == "amc" else 20.0, "episodes": 400, "test_acc": 0.9,
                       "test_acc_bn": 0.91, "macs_ratio": 0.5, **({"evaluations": 98} if method == "sensitivity" else {})}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return {"wall_seconds": 100.0, "peak_rss_mb": 700.0, "returncode": 1 if method in fail else 0,
                "load_before": (1.0, 1.0, 1.0), "load_after": (1.0, 1.0, 1.0)}
    return run_one


def test_rounds_rotate_resume_and_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    peer = tmp_path / "python"
    peer.touch()
    monkeypatch.setattr(side_by_side, "run_one", _fake_run(calls, fail={"amc"}))
    args = ["--model", "resnet20", "--rounds", "2", "--peer-python", str(peer), "--out", str(tmp_path / "out")]
    assert side_by_side.main(args) == 1  # amc failed in both rounds
    assert [m for m, _ in calls] == ["fastnas", "sensitivity", "amc", "sensitivity", "amc", "fastnas"]
    calls.clear()
    monkeypatch.setattr(side_by_side, "run_one", _fake_run(calls, fail=set()))
    assert side_by_side.main(args) == 0  # every run has finished now (the failed rows stay in costs.jsonl)
    assert calls == [("amc", "amc_r0"), ("amc", "amc_r1")]  # only what had not finished
    assert any(p.name.startswith("amc_r0.killed") for p in (tmp_path / "out" / "runs").iterdir())  # kept, not lost
    text = (tmp_path / "out" / "cost.md").read_text()
    assert "| fastnas | 2 | 30 | 100 | 700 | 31 | 70.00% | 71.00% | 0.410 |" in text
    assert "| sensitivity | 2 | 20 | 100 | 700 | 98 | 90.00% | 91.00% | 0.500 |" in text
    assert "| amc | 2 | 60 | 100 | 700 | 400 |" in text
    assert "--bn-workaround" in json.loads((tmp_path / "out" / "costs.jsonl").read_text().splitlines()[0])["command"]


def test_a_missing_peer_python_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        side_by_side.main(["--model", "resnet20", "--peer-python", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert "nope does not exist" in capsys.readouterr().err
