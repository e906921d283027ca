"""Parallel environments (``env.n_envs``): SB3's SubprocVecEnv workers with AMC's settings intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from amc.agents.replay import EpisodeRewardReplayBuffer
from amc.search import run
from tests.test_search import _assert_run_files, _cfg, _checkpoint, _episodes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def _policies(run_dir: Path) -> list[tuple[float, list[int]]]:
    return [(r["reward"], r["channels"]) for r in _episodes(run_dir)]


def test_two_envs_run_every_episode_with_amc_settings(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    row = run(_cfg(checkpoint, "env.n_envs=2", "episodes=6", "agent.warmup_episodes=2"), out)
    _assert_run_files(out, 6)
    assert row["macs_ratio"] <= 0.5 + 1e-9
    state = json.loads((out / "resume" / "state.json").read_text())
    steps = len(row["channels"])
    # warm-up counted in episodes; one gradient step per transition of the 4 policy episodes
    assert state["num_timesteps"] == 6 * steps and state["n_updates"] == 4 * steps
    assert json.loads((out / "resume" / "noise.json").read_text())["episode"] == 6  # decay per episode, not round
    with np.load(out / "resume" / "replay.npz") as replay:
        stored = replay["rewards"][: int(replay["pos"])]  # (steps per env, 2 envs)
    rewards = [r["reward"] for r in _episodes(out)]
    # every transition carries its own episode's final reward: env 0 ran the odd episodes, env 1 the even ones
    for k in range(3):
        assert np.allclose(stored[k * steps : (k + 1) * steps], [rewards[2 * k], rewards[2 * k + 1]])


def test_random_search_on_two_workers_draws_what_one_env_draws(checkpoint: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    run(_cfg(checkpoint, "method=random", "episodes=5"), one)
    two = tmp_path / "two"
    run(_cfg(checkpoint, "method=random", "episodes=5", "env.n_envs=2"), two)  # an odd count: a partial last round
    assert _policies(two) == _policies(one)
    assert [r["episode"] for r in _episodes(two)] == [1, 2, 3, 4, 5]


def test_spawned_workers_rebuild_the_same_env(checkpoint: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    run(_cfg(checkpoint, "method=random", "episodes=2"), one)
    spawned = tmp_path / "spawned"
    run(_cfg(checkpoint, "method=random", "episodes=2", "env.n_envs=2", "env.start_method=spawn"), spawned)
    assert _policies(spawned) == _policies(one)


def test_two_envs_resume_after_a_kill(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ("env.n_envs=2", "agent.warmup_episodes=2", "checkpoint_every=2")
    run(_cfg(checkpoint, *common, "episodes=4"), out)
    # as if killed during the next round: the checkpoint holds episode 4, the log one more line, no final results
    fake = {**_episodes(out)[-1], "episode": 5, "reward": 999.0}
    with (out / "episodes.jsonl").open("a") as f:
        f.write(json.dumps(fake) + "\n")
    (out / "summary.json").unlink()
    row = run(_cfg(checkpoint, *common, "episodes=8", f"resume={out}"), tmp_path / "ignored")
    rows = _episodes(out)
    assert [r["episode"] for r in rows] == list(range(1, 9))
    assert all(r["reward"] != 999.0 for r in rows)
    assert row["best_reward"] == max(r["reward"] for r in rows)
    assert json.loads((out / "resume" / "state.json").read_text())["episode"] == 8


def test_resume_with_another_n_envs_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(_cfg(checkpoint, "method=random", "episodes=2"), out)
    with pytest.raises(ValueError, match="env.n_envs: recorded 1, given 2"):
        run(_cfg(checkpoint, "method=random", "episodes=4", "env.n_envs=2", f"resume={out}"), out)


@pytest.mark.parametrize(("overrides", "match"), [
    (["env.n_envs=2", "episodes=5"], "episodes=5 and agent.warmup_episodes=2 must be multiples of 2"),
    (["env.n_envs=2", "agent.warmup_episodes=3"], "multiples of 2"),
    (["env.n_envs=0"], "env.n_envs must be an integer >= 1"),
    (["env.start_method=threads"], "env.start_method must be fork, spawn, forkserver or null"),
])
def test_bad_parallel_settings_are_refused_before_any_work(checkpoint: Path, tmp_path: Path, overrides: list[str],
                                                           match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run(_cfg(checkpoint, *overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _buffer(n_envs: int) -> EpisodeRewardReplayBuffer:
    return EpisodeRewardReplayBuffer(40, spaces.Box(0, 1, (3,), np.float32), spaces.Box(-1, 1, (1,), np.float32),
                                     device="cpu", n_envs=n_envs)


def test_replay_buffer_gives_each_env_its_own_episode_reward() -> None:
    buffer = _buffer(2)
    obs = np.zeros((2, 3), np.float32)
    for t in range(3):
        last = t == 2
        buffer.add(obs, obs, np.zeros((2, 1)), np.array([0.7, 0.2]) if last else np.zeros(2), np.array([last, last]),
                   [{}, {}])
    assert buffer.pos == 3 and not buffer.pending
    assert np.allclose(buffer.rewards[:3], [[0.7, 0.2]] * 3)


def test_replay_buffer_refuses_episodes_of_unequal_length() -> None:
    buffer = _buffer(2)
    obs = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="ended at different steps"):
        buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.array([True, False]), [{}, {}])


def test_apply_refines_on_two_workers(tmp_path: Path) -> None:
    from amc.apply import run as apply_run
    from tests.test_apply import SEARCH, _apply_cfg
    from tests.test_apply import _checkpoint as zoo_checkpoint
    from tests.test_search import _cfg as search_cfg

    ckpt = zoo_checkpoint(tmp_path / "r20.safetensors", "resnet20")
    run(search_cfg(ckpt, *SEARCH), tmp_path / "agent")
    other = zoo_checkpoint(tmp_path / "r32.safetensors", "resnet32")
    row = apply_run(_apply_cfg(f"checkpoint={other}", f"agent_run={tmp_path / 'agent'}", "refine_episodes=4",
                               "env.n_envs=2", "compare_with=[]"), tmp_path / "out")
    assert [r["episode"] for r in _episodes(tmp_path / "out")] == [1, 2, 3, 4, 5]
    assert row["macs_ratio"] <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="refine_episodes=3 must be a multiple of 2"):
        apply_run(_apply_cfg(f"checkpoint={other}", f"agent_run={tmp_path / 'agent'}", "refine_episodes=3",
                             "env.n_envs=2"), tmp_path / "out3")
