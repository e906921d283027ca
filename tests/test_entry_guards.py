"""Entry points refuse bad commands early, clearly, and without touching what a user already has.

A refused command leaves a finished run byte-identical (hydra's own config files included), a resumed search must
keep the settings it started with, expected errors print one line instead of a traceback, and Ctrl-C says how to
continue.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from amc.cli import resolve_runtime_settings
from amc.cli.checks import check_config, config_settings
from amc.runs.rundir import SETTINGS_FILE, episodes_done
from amc.search import interrupted_message, preflight
from tests.helpers import resnet20_checkpoint

REPO = Path(__file__).resolve().parents[1]
SMALL = ["data=synthetic", "debug=smoke", "env.calibration.num_images=64", "env.eval_images=64", "episodes=6",
         "agent.warmup_episodes=2", "agent.batch_size=8", "progress=false", "device=cpu", "final_eval.latency_repeats=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resnet20_checkpoint(tmp_path_factory.mktemp("ckpt") / "base.safetensors")


def _cfg(checkpoint: Path, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="search", overrides=[*SMALL, f"checkpoint={checkpoint}", *overrides])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _finished_search(run_dir: Path, cfg: DictConfig, episodes: int = 6) -> None:
    """A run dir as a finished search leaves it (the files the guards look at); settings as a search records them,
    with the runtime and the channel grid resolved."""
    resolve_runtime_settings(cfg, "env.round_to")
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (run_dir / SETTINGS_FILE).write_text(json.dumps(config_settings(cfg)))
    (run_dir / "resume").mkdir()
    (run_dir / "resume" / "state.json").write_text(json.dumps({"episode": episodes}))
    (run_dir / "episodes.jsonl").write_text("".join(json.dumps({"episode": i + 1, "reward": 0.5}) + "\n"
                                                    for i in range(episodes)))
    (run_dir / "summary.json").write_text(json.dumps({"best_reward": 0.5}))
    (run_dir / "comparison.md").write_text("| variant |\n")
    (run_dir / "search.log").write_text("the run's own log\n")


# --- a refused command touches nothing --------------------------------------------------------------------------


def test_a_refused_search_leaves_a_finished_run_byte_identical(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "finished"
    _finished_search(run_dir, _cfg(checkpoint))
    before = _digest(run_dir)
    proc = _cli("amc.search", *SMALL, f"checkpoint={checkpoint}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "already holds a finished search" in proc.stderr and "resume=" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _digest(run_dir) == before


def test_a_refused_resume_with_another_target_leaves_the_run_byte_identical(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "finished"
    _finished_search(run_dir, _cfg(checkpoint))
    before = _digest(run_dir)
    proc = _cli("amc.search", *SMALL, f"checkpoint={checkpoint}", "protocol.target=0.3", "episodes=10",
                f"resume={run_dir}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "protocol.target: recorded 0.5, given 0.3" in proc.stderr
    assert _digest(run_dir) == before


def test_train_refuses_a_dir_with_a_trained_model_before_hydra_rewrites_its_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "baseline"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("model:\n  _target_: resnet20\n")
    (run_dir / "model.safetensors").write_bytes(b"weights")
    (run_dir / "metrics.json").write_text("{}")
    before = _digest(run_dir)
    proc = _cli("amc.train", "model=vgg16", "data=synthetic", "device=cpu", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "already holds a trained model" in proc.stderr, proc.stderr[-2000:]
    assert _digest(run_dir) == before


def test_prune_refuses_a_dir_with_results(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "pruned"
    (run_dir / "reconstruction").mkdir(parents=True)
    (run_dir / "results.json").write_text("{}")
    before = _digest(run_dir)
    proc = _cli("amc.prune", "data=synthetic", "device=cpu", f"checkpoint={checkpoint}", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and "already holds pruning results" in proc.stderr, proc.stderr[-2000:]
    assert _digest(run_dir) == before


def test_a_sweep_dir_of_an_earlier_multirun_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = _digest(sweep)
    proc = _cli("amc.search", "-m", "seed=0,1", *SMALL, f"checkpoint={checkpoint}", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2 and "earlier multirun" in proc.stderr, proc.stderr[-2000:]
    assert _digest(sweep) == before


# --- resume keeps the settings that define the search ------------------------------------------------------------


@pytest.mark.parametrize("override, key", [("protocol.target=0.3", "protocol.target"), ("seed=1", "seed"),
                                           ("env.lbound=0.3", "env.lbound"), ("agent.tau=0.1", "agent.tau"),
                                           ("method=random", "method")])
def test_resume_with_a_changed_setting_is_refused_naming_it(checkpoint: Path, tmp_path: Path, override: str,
                                                           key: str) -> None:
    run_dir = tmp_path / "run"
    _finished_search(run_dir, _cfg(checkpoint))
    with pytest.raises(ValueError, match=rf"{key}: recorded .*, given"):
        preflight(_cfg(checkpoint, override, "episodes=12", f"resume={run_dir}"), tmp_path / "new")


def test_resume_may_grow_episodes_but_not_shrink_or_repeat_them(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _finished_search(run_dir, _cfg(checkpoint), episodes=6)
    assert preflight(_cfg(checkpoint, "episodes=12", f"resume={run_dir}"), tmp_path / "new") == run_dir
    with pytest.raises(ValueError, match="already run 6 episodes.*episodes >= 6"):
        preflight(_cfg(checkpoint, "episodes=4", f"resume={run_dir}"), tmp_path / "new")
    with pytest.raises(FileExistsError, match="finished search of 6 episodes"):
        preflight(_cfg(checkpoint, "episodes=6", f"resume={run_dir}"), tmp_path / "new")
    (run_dir / "comparison.md").unlink()  # killed while the compare_with baselines ran: completing them is allowed
    assert preflight(_cfg(checkpoint, "episodes=6", f"resume={run_dir}"), tmp_path / "new") == run_dir
    (run_dir / "summary.json").unlink()  # killed during the final evaluation: finishing it is allowed
    assert preflight(_cfg(checkpoint, "episodes=6", f"resume={run_dir}"), tmp_path / "new") == run_dir


def test_resume_from_another_working_dir_may_name_another_latency_cache(checkpoint: Path, tmp_path: Path) -> None:
    """A resumed run reads the latency table it started with from its own dir: the cache's place is not a setting
    of the search (a relative cache_dir resolves elsewhere when resumed from another checkout)."""
    run_dir = tmp_path / "run"
    _finished_search(run_dir, _cfg(checkpoint, "protocol=latency", "protocol.latency_table.cache_dir=/somewhere/x"))
    other = _cfg(checkpoint, "protocol=latency", "protocol.latency_table.cache_dir=/elsewhere/x", "episodes=12",
                 f"resume={run_dir}")
    assert preflight(other, tmp_path / "new") == run_dir
    with pytest.raises(ValueError, match=r"protocol.latency_table.batch_size: recorded"):
        preflight(_cfg(checkpoint, "protocol=latency", "protocol.latency_table.batch_size=4", "episodes=12",
                       f"resume={run_dir}"), tmp_path / "new")


def test_episodes_done_ignores_a_truncated_last_line(tmp_path: Path) -> None:
    (tmp_path / "episodes.jsonl").write_text('{"episode": 1}\n{"episode": 2}\n{"episo')
    assert episodes_done(tmp_path, "random") == 2


# --- bad settings fail in seconds, before data or model -----------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    ("env.rbound=1.5", "env.rbound must be in"), ("env.lbound=0.9 env.rbound=0.5", "env.lbound must be in"),
    ("env.lbound=0", "env.lbound must be in"), ("env.eval_images=0", "env.eval_images must be >= 1"),
    ("env.eval_images=100000", "exceeds data.reward_val_size"), ("env.selection=magic", "unknown env.selection"),
    ("final_eval.images=0", "final_eval.images must be"),
    ("data.reward_val_size=0", "data.reward_val_size must be >= 1"), ("checkpoint_every=0", "checkpoint_every must be"),
    ("episodes=0", "episodes must be"), ("protocol.reward=speed", "unknown reward"),
    ("protocol.resource=flops", "unknown protocol.resource"), ("agent.sigma_decay=0", "sigma_decay"),
    ("env.calibration.num_images=0", "env.calibration.num_images must be"),
])
def test_bad_settings_are_rejected_before_any_work(checkpoint: Path, override: str, message: str) -> None:
    cfg = _cfg(checkpoint, *override.split())
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


def test_an_expected_error_prints_one_clear_line_not_a_traceback(checkpoint: Path, tmp_path: Path) -> None:
    proc = _cli("amc.search", *SMALL, f"checkpoint={checkpoint}", "env.lbound=0.9", "env.rbound=0.5",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("amc-search: error: env.lbound must be in (0, env.rbound=0.5], got 0.9")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "run").exists()
    full = subprocess.run([sys.executable, "-m", "amc.search", *SMALL, f"checkpoint={checkpoint}", "env.lbound=0.9",
                           "env.rbound=0.5", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO,
                          env={**ENV, "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True, timeout=300)
    assert full.returncode != 0 and "Traceback" in full.stderr  # the debug switch keeps the traceback


# --- Ctrl-C ------------------------------------------------------------------------------------------------------


def test_interrupted_message_names_the_checkpoint_and_the_resume_command(tmp_path: Path) -> None:
    assert "nothing to resume" in interrupted_message(tmp_path, ["seed=1"])
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "state.json").write_text(json.dumps({"episode": 40}))
    msg = interrupted_message(tmp_path, ["experiment=resnet20_macs50", "seed=1"])
    assert f"{tmp_path}/resume (episode 40)" in msg
    assert msg.endswith(f"python -m amc.search experiment=resnet20_macs50 seed=1 resume={tmp_path}")


def _default_sigint() -> None:
    """A background job (``make test &``, CI runners) may inherit SIGINT ignored; Python then installs no
    KeyboardInterrupt handler. The child gets the default disposition, as a terminal user's command has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_one_line_with_the_resume_command(checkpoint: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # output to files, not pipes: a pipe nobody reads until the end could block the child on a busy machine
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "amc.search", *SMALL, f"checkpoint={checkpoint}", "episodes=400",
                                 "checkpoint_every=2", f"hydra.run.dir={run_dir}"], cwd=REPO, env=ENV, stdout=out,
                                stderr=err, preexec_fn=_default_sigint)
        try:
            deadline = time.time() + 600
            while not (run_dir / "resume" / "state.json").exists() and time.time() < deadline and proc.poll() is None:
                time.sleep(0.5)
            assert (run_dir / "resume" / "state.json").exists() and proc.poll() is None, \
                (tmp_path / "err.txt").read_text()[-2000:]
            # CPython swallows a KeyboardInterrupt raised inside a weakref callback ("Exception ignored"): press
            # Ctrl-C again, as a user would, until the search says it stopped; then let it exit (on a busy machine
            # that can take longer than a press's wait, and one more press would kill the exiting interpreter)
            for _ in range(60):
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    if "amc-search: interrupted;" in (tmp_path / "err.txt").read_text():
                        proc.wait(timeout=300)
                        break
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    # CPython's own report of an interrupt it swallowed ("Exception ignored in: ..."), not a traceback of ours
    ours = re.sub(r"Exception ignored in:.*?\nKeyboardInterrupt: *\n", "", stderr, flags=re.S)
    assert "Traceback" not in ours, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("amc-search: interrupted; last checkpoint:") and f"resume={run_dir}" in last
