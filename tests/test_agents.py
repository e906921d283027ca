"""amc.agents on a tiny toy env: noise, replay buffer, learning rates, factory, callbacks, resume, actor files."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf
from stable_baselines3.common.callbacks import CallbackList

from amc import compat
from amc.agents import (
    ALGOS,
    AMCCallback,
    AMCSACPolicy,
    AMCTD3Policy,
    BestPolicyCallback,
    EpisodeLogCallback,
    EpisodeRewardReplayBuffer,
    ResumeCheckpointCallback,
    SaveAgentCallback,
    ScaledLRAdam,
    TensorBoardCallback,
    TruncatedNormalNoise,
    explores_with_noise,
    load_actor,
    load_resume_state,
    make_agent,
    save_actor,
    save_resume_state,
)
from amc.runs.search_log import BEST_REWARD, SCALARS, EpisodeLog

N_STEPS = 4  # episode length of the toy env


class ToyPruningEnv(gym.Env):
    """Fixed-length episodes; reward only at the last step: -mean((a - target)^2) over the episode's actions."""

    def __init__(self, n_steps: int = N_STEPS, obs_dim: int = 3, target: float = 0.3) -> None:
        self.n_steps, self.target = n_steps, target
        self.observation_space = spaces.Box(0.0, 1.0, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t, self.actions = 0, []

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.float32)
        obs[0] = self.t / self.n_steps
        obs[1] = (self.actions[-1] + 1) / 2 if self.actions else 0.5
        obs[2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t, self.actions = 0, []
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.actions.append(float(np.clip(action[0], -1, 1)))
        self.t += 1
        if self.t < self.n_steps:
            return self._obs(), 0.0, False, False, {}
        reward = -float(np.mean((np.array(self.actions) - self.target) ** 2))
        keep = [(a + 1) / 2 for a in self.actions]
        info = {"episode_end": True, "reward": reward, "accuracy": 1.0 + reward, "macs_ratio": float(np.mean(keep)),
                "params_ratio": float(np.mean(keep)), "keep_ratios": keep, "channels": [round(16 * k) for k in keep],
                "seconds": {"prune": 0.001, "evaluate": 0.002}}
        return self._obs(), reward, True, False, info


def small_agent(algo: str = "ddpg", warmup: int = 2, **kwargs: Any):
    kwargs = {"net_arch": (32, 32), "replay_episodes": 50, "batch_size": 16, **kwargs}
    return make_agent(algo, ToyPruningEnv(), episode_length=N_STEPS, warmup_episodes=warmup, **kwargs)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- noise


def test_noise_samples_stay_in_bounds_and_are_truncated_normal() -> None:
    noise = TruncatedNormalNoise(sigma=0.5, warmup_episodes=0, seed=0)
    mu = np.repeat(np.array([-1.0, -0.5, 0.0, 0.7, 1.0]), 4000)
    x = noise.sample(mu)
    assert x.shape == mu.shape and x.min() >= -1.0 and x.max() <= 1.0
    centred = x[mu == 0.0]  # N(0, 1) truncated to [-1, 1]: mean 0, std 0.538
    assert abs(centred.mean()) < 0.03 and abs(centred.std() - 0.538) < 0.02
    assert np.all(x[mu == 1.0] <= 1.0) and x[mu == 1.0].mean() < 0.5  # a half-normal below the upper bound
    assert np.array_equal(TruncatedNormalNoise(sigma=0.0).sample(np.array([0.25])), np.array([0.25]))


def test_noise_added_to_actor_action_stays_in_bounds() -> None:
    model = small_agent("ddpg", warmup=1)
    noise = model.action_noise
    assert isinstance(noise, TruncatedNormalNoise)
    compat.set_last_obs(model, model.env.reset())
    assert np.array_equal(noise(), np.zeros((1, 1), np.float32))  # SB3 warm-up: uniform actions, no noise
    model.num_timesteps = model.learning_starts
    mu, _ = model.predict(compat.last_obs(model), deterministic=True)
    draws = np.array([noise() for _ in range(500)])
    assert draws.shape == (500, 1, 1)
    assert np.all(np.abs(mu + draws) <= 1.0 + 1e-6) and draws.std() > 0.2
    with pytest.raises(RuntimeError, match="bind"):
        TruncatedNormalNoise()()


def test_noise_sigma_decays_only_after_warmup() -> None:
    noise = TruncatedNormalNoise(sigma=0.5, decay=0.9, warmup_episodes=3)
    sigmas = []
    for _ in range(6):
        sigmas.append(noise.sigma)
        noise.reset()
    assert sigmas == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.45, 0.405])
    assert noise.episode == 6 and noise.scaled_sigma == pytest.approx(2 * 0.5 * 0.9**3)


def test_bound_noise_counts_episodes_not_learn_calls() -> None:
    model = small_agent("td3", warmup=1)  # SB3 also calls action_noise.reset() at every learn() start
    model.learn(N_STEPS)
    assert model.action_noise.episode == 1
    model.learn(2 * N_STEPS, reset_num_timesteps=False)
    assert model.action_noise.episode == 3
    model.learn(N_STEPS)  # counters of the model restart, the noise schedule goes on
    assert model.action_noise.episode == 4 and compat.episode_count(model) == 1


def test_noise_state_round_trip_reproduces_samples() -> None:
    noise = TruncatedNormalNoise(sigma=0.4, decay=0.9, warmup_episodes=1, seed=7)
    for _ in range(3):
        noise.reset()
    noise.sample(np.zeros(10))
    state = json.loads(json.dumps(noise.get_state()))
    expected = noise.sample(np.full(50, 0.9))
    other = TruncatedNormalNoise(seed=123)
    other.set_state(state)
    assert other.episode == 3 and other.sigma == pytest.approx(noise.sigma)
    assert np.array_equal(other.sample(np.full(50, 0.9)), expected)


# ---------------------------------------------------------------- replay buffer


def make_buffer(size: int = 20) -> EpisodeRewardReplayBuffer:
    return EpisodeRewardReplayBuffer(size, spaces.Box(0, 1, (3,), np.float32), spaces.Box(-1, 1, (1,), np.float32),
                                     device="cpu")


def add_episode(buffer: EpisodeRewardReplayBuffer, final_reward: float, steps: int = N_STEPS, start: float = 0.0,
                finish: bool = True) -> None:
    for t in range(steps):
        done = finish and t == steps - 1
        obs = np.full((1, 3), start + t, np.float32)
        buffer.add(obs, obs + 1, np.array([[0.1 * t]]), np.array([final_reward if done else 0.0]),
                   np.array([done]), [{}])


def test_replay_stores_episode_with_final_reward_only_when_done() -> None:
    buffer = make_buffer()
    add_episode(buffer, 0.75, finish=False)
    assert buffer.size() == 0 and len(buffer.pending) == N_STEPS
    add_episode(buffer, 0.75, steps=1, start=10.0)  # the last step of that episode
    assert buffer.size() == N_STEPS + 1 and buffer.pending == []
    assert np.all(buffer.rewards[: N_STEPS + 1, 0] == 0.75)
    assert buffer.dones[: N_STEPS + 1, 0].tolist() == [0, 0, 0, 0, 1]
    assert buffer.observations[:5, 0, 0].tolist() == [0, 1, 2, 3, 10]


def test_replay_baseline_is_ema_of_minibatch_means() -> None:
    buffer = make_buffer(size=N_STEPS)  # one episode fills it: every sample sees only that episode's reward
    expected_baseline = None
    for reward in (1.0, 3.0, -1.0):
        add_episode(buffer, reward)
        samples = buffer.sample(8)
        expected_baseline = reward if expected_baseline is None else expected_baseline + 0.5 * (reward - expected_baseline)
        assert buffer.baseline == pytest.approx(expected_baseline)
        assert torch.allclose(samples.rewards, torch.full((8, 1), reward - expected_baseline))
    assert expected_baseline == pytest.approx(0.5)


def test_replay_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    buffer = make_buffer(size=10)
    for r in (0.1, 0.2, 0.3):  # wraps around
        add_episode(buffer, r, start=10 * r)
    buffer.sample(4)
    add_episode(buffer, 0.0, steps=2, finish=False)  # an unfinished episode
    path = tmp_path / "replay.npz"
    buffer.save_npz(path)
    with np.load(path, allow_pickle=False) as data:
        assert int(data["pos"]) == buffer.pos and int(data["n_pending"]) == 2
    restored = make_buffer(size=10)
    restored.load_npz(path)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(restored, name), getattr(buffer, name)), name
    assert (restored.pos, restored.full, restored.baseline) == (buffer.pos, buffer.full, buffer.baseline)
    assert len(restored.pending) == 2
    for a, b in zip(restored.pending, buffer.pending):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    add_episode(restored, 0.5, steps=1, start=99.0)  # the pending episode still completes with its final reward
    assert np.all(restored.rewards[[2, 3, 4], 0] == 0.5)
    with pytest.raises(ValueError, match="shape"):
        make_buffer(size=12).load_npz(path)


# ---------------------------------------------------------------- learning rates


def test_scaled_lr_adam_steps_at_scaled_lr_and_keeps_scheduled_lr() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ScaledLRAdam([p], lr=1e-3, lr_scale=0.1)
    p.grad = torch.tensor([1.0, -2.0, 3.0])
    opt.step()
    assert torch.allclose(p.detach().abs(), torch.full((3,), 1e-4), rtol=1e-3)  # Adam's first step is ~lr
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["lr_scale"] == 0.1
    state = opt.state_dict()
    other = ScaledLRAdam([torch.nn.Parameter(torch.zeros(3))], lr=5e-3)
    other.load_state_dict(state)
    assert other.param_groups[0]["lr_scale"] == 0.1


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_actor_and_critic_learning_rates_are_honoured(algo: str) -> None:
    model = small_agent(algo, warmup=2, actor_lr=1e-4, critic_lr=1e-3)
    model.learn(2 * N_STEPS)  # warm-up only: fills the buffer, no gradient step yet
    assert compat.update_count(model) == 0
    actor_before = [p.detach().clone() for p in model.actor.parameters()]
    critic_before = [p.detach().clone() for p in model.critic.parameters()]
    model.train(gradient_steps=2 if algo == "td3" else 1, batch_size=8)  # TD3 updates its actor every 2nd step
    actor_step = max((p.detach() - b).abs().max().item() for p, b in zip(model.actor.parameters(), actor_before))
    critic_step = max((p.detach() - b).abs().max().item() for p, b in zip(model.critic.parameters(), critic_before))
    # Adam's first update has magnitude ~lr on every weight with a gradient (TD3: 2 critic steps)
    assert 0.9e-4 < actor_step <= 1.001e-4
    critic_steps = 2 if algo == "td3" else 1
    assert 0.9e-3 < critic_step <= critic_steps * 1.001e-3
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # SB3's schedule value, unscaled


# ---------------------------------------------------------------- factory


def test_make_agent_wiring_and_hydra_lists() -> None:
    arch = OmegaConf.create({"net_arch": [16, 8]}).net_arch  # a ListConfig, as hydra passes it
    model = make_agent("ddpg", ToyPruningEnv(), episode_length=N_STEPS, net_arch=arch, warmup_episodes=3,
                       replay_episodes=5, actor_lr=2e-4, critic_lr=1e-3)
    assert isinstance(model.policy, AMCTD3Policy) and model.policy.actor_lr_scale == pytest.approx(0.2)
    assert model.policy.net_arch == {"pi": [16, 8], "qf": [16, 8]}
    assert isinstance(model.replay_buffer, EpisodeRewardReplayBuffer)
    assert (model.buffer_size, model.learning_starts, model.gradient_steps) == (5 * N_STEPS, 3 * N_STEPS, -1)
    assert (model.train_freq.frequency, model.train_freq.unit.value) == (1, "episode")
    assert (model.tau, model.gamma, model.batch_size, model.learning_rate) == (0.01, 1.0, 64, 1e-3)
    assert model.action_noise._model is model and model.policy.critic_kwargs["n_critics"] == 1
    sac = small_agent("sac")
    assert isinstance(sac.policy, AMCSACPolicy) and sac.action_noise is None
    for algo in ALGOS:  # the rule the search's warm-up warning reads agrees with the agents built
        assert explores_with_noise(algo) == (small_agent(algo).action_noise is not None), algo
    with pytest.raises(ValueError, match="ddpg"):
        make_agent("ppo", ToyPruningEnv(), episode_length=N_STEPS)


class RewardRecorder(AMCCallback):
    """AMCCallback that also keeps the rewards in memory."""

    @property
    def rewards(self) -> list[float]:
        return [row["reward"] for row in read_jsonl(self.run_dir / "episodes.jsonl")]


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_make_agent_learns_toy_env(algo: str, tmp_path: Path) -> None:
    # SAC starts with a wide policy and a large entropy bonus; for a 60-episode test give it a small fixed one
    # DDPG/TD3: AMC's fast noise decay (0.95), so that the last of 60 episodes show the policy, not the noise
    extra = {"actor_lr": 1e-3, "algo_kwargs": {"ent_coef": 0.01}} if algo == "sac" else {"sigma_decay": 0.95}
    model = small_agent(algo, warmup=20, replay_episodes=100, net_arch=(64, 64), batch_size=64, **extra)
    callback = RewardRecorder(60, tmp_path, progress=False, checkpoint_every=1000)
    model.learn(60 * N_STEPS, callback=callback)
    rewards = np.array(callback.rewards)
    assert len(rewards) == 60
    assert rewards[-10:].mean() > rewards[:20].mean() + 0.1, (rewards[:20].mean(), rewards[-10:].mean())


# ---------------------------------------------------------------- callback


def _tb_events(tb: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = [d for d in tb.iterdir() if d.is_dir()]
    return EventAccumulator(str(run)).Reload()


def test_callback_writes_episodes_tensorboard_checkpoints_and_stops(tmp_path: Path) -> None:
    run_dir, tb = tmp_path / "run", tmp_path / "tb"
    model = small_agent("ddpg", warmup=3, tensorboard_log=str(tb))
    bests: list[dict[str, Any]] = []
    callback = AMCCallback(8, run_dir, on_best=bests.append, checkpoint_every=3, progress=True,
                           hparams={"protocol.target": 0.5, "net": "toy", "arch": [1, 2]}, group_names=list("abcd"))
    assert isinstance(callback, CallbackList)
    assert [type(c) for c in callback.callbacks] == [EpisodeLogCallback, TensorBoardCallback, BestPolicyCallback,
                                                     ResumeCheckpointCallback, SaveAgentCallback]
    model.learn(20 * N_STEPS, callback=callback, log_interval=None)  # more than needed: stops after 8 episodes
    rows = read_jsonl(run_dir / "episodes.jsonl")
    assert [r["episode"] for r in rows] == list(range(1, 9)) and model.num_timesteps == 8 * N_STEPS
    assert {"reward", "accuracy", "macs_ratio", "params_ratio", "keep_ratios", "channels", "seconds", "time",
            "best_reward"} <= set(rows[0])
    assert [r["best_reward"] for r in rows] == list(np.maximum.accumulate([r["reward"] for r in rows]))
    assert bests and [b["reward"] for b in bests] == sorted({r["best_reward"] for r in rows})
    assert callback.best["reward"] == rows[-1]["best_reward"]
    assert (run_dir / "agent.zip").exists() and (run_dir / "actor.safetensors").exists()
    state = json.loads((run_dir / "resume" / "state.json").read_text())
    assert state["episode"] == 8 and state["best"]["reward"] == callback.best["reward"]

    events = _tb_events(tb)
    scalars = set(events.Tags()["scalars"])
    # the baselines' amc/* curves (same keys), the agent's noise, and SB3's own
    episode_tags = [t for k, t in SCALARS.items() if k != "target"]  # no budget here: no target curve
    assert {*episode_tags, BEST_REWARD, "amc/noise_sigma", "rollout/ep_rew_mean", "time/fps", "train/actor_loss",
            "train/critic_loss"} <= scalars
    for tag in scalars:  # one axis: every record at an episode number, none at a timestep
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(set(steps)) and set(steps) <= set(range(1, 9)), (tag, steps)
    for tag in (*episode_tags, BEST_REWARD, "amc/noise_sigma", "rollout/ep_rew_mean", "time/fps"):
        assert [e.step for e in events.Scalars(tag)] == list(range(1, 9)), tag
    # SB3 trains once num_timesteps > learning_starts (3 episodes), so after episodes 4..7 (the stop at episode 8
    # skips its training); the losses are at the episode they were trained after
    assert [e.step for e in events.Scalars("train/critic_loss")] == list(range(4, 8))
    assert [e.value for e in events.Scalars("amc/episode_reward")] == pytest.approx([r["reward"] for r in rows])
    assert len(events.Images("amc/best_keep_ratios")) == len(bests)


def test_sb3s_own_periodic_dumps_land_on_the_episode_axis_too(tmp_path: Path) -> None:
    tb = tmp_path / "tb"
    model = small_agent("td3", warmup=2, tensorboard_log=str(tb))
    model.learn(10 * N_STEPS, callback=AMCCallback(10, tmp_path / "run", progress=False), log_interval=4)
    events = _tb_events(tb)
    for tag in events.Tags()["scalars"]:
        assert {e.step for e in events.Scalars(tag)} <= set(range(1, 11)), tag  # never timesteps (up to 40)


def test_role_callbacks_work_on_their_own(tmp_path: Path) -> None:
    log = EpisodeLog(tmp_path, method="amc", total=5, progress=False, tensorboard=False)
    bests: list[float] = []
    callbacks = CallbackList([EpisodeLogCallback(log, 5), BestPolicyCallback(log, lambda row: bests.append(row["reward"])),
                              ResumeCheckpointCallback(tmp_path, log, every=2)])
    model = small_agent("ddpg", warmup=2)
    model.learn(5 * N_STEPS, callback=callbacks)
    log.close()
    rows = read_jsonl(tmp_path / "episodes.jsonl")
    assert [r["episode"] for r in rows] == [1, 2, 3, 4, 5] and bests == sorted(set(bests)) and bests[-1] == log.best_reward
    assert json.loads((tmp_path / "resume" / "state.json").read_text())["episode"] == 5
    assert not (tmp_path / "agent.zip").exists()  # no SaveAgentCallback, no saving


# ---------------------------------------------------------------- actor files


class BoundedToyEnv(ToyPruningEnv):
    """The toy env with the keep-ratio bounds of ChannelPruningEnv."""

    lbound, rbound = 0.2, 0.9


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_saved_actor_reproduces_the_agents_deterministic_action_without_sb3(algo: str, tmp_path: Path) -> None:
    model = make_agent(algo, BoundedToyEnv(), episode_length=N_STEPS, warmup_episodes=1, net_arch=(16, 8),
                       replay_episodes=10, batch_size=4)
    model.learn(3 * N_STEPS)  # trained a little: weights differ from the initialisation
    fields = ("t", "a_prev", "bias")
    meta_path = save_actor(model, tmp_path, obs_fields=fields)
    meta = json.loads(meta_path.read_text())
    assert (meta["algo"], meta["net_arch"], meta["activation"], meta["output_activation"]) == (algo, [16, 8], "ReLU", "tanh")
    assert meta["observation"] == {"size": 3, "fields": list(fields)}
    assert (meta["action"]["low"], meta["action"]["high"]) == ([-1.0], [1.0])
    assert (meta["keep_ratio"]["lbound"], meta["keep_ratio"]["rbound"]) == (0.2, 0.9)  # read from the env

    actor = load_actor(tmp_path)
    assert isinstance(actor, torch.nn.Module) and not actor.training
    obs = np.random.default_rng(0).uniform(0, 1, (32, 3)).astype(np.float32)
    action, _ = model.predict(obs, deterministic=True)
    with torch.no_grad():
        ours = actor(torch.from_numpy(obs)).numpy()
    assert ours.shape == (32, 1) and np.abs(ours).max() <= 1.0 and ours.std() > 0
    np.testing.assert_allclose(ours, model.policy.scale_action(action), atol=1e-6)


def test_load_actor_refuses_bad_files(tmp_path: Path) -> None:
    model = small_agent("td3")
    save_actor(model, tmp_path)
    meta_path = tmp_path / "actor.json"
    meta = json.loads(meta_path.read_text())
    assert meta["keep_ratio"] is None and meta["observation"]["fields"] is None  # the toy env has no bounds
    meta_path.write_text(json.dumps({**meta, "activation": "os.system"}))
    with pytest.raises(ValueError, match=r"activation 'os.system'; expected one of \['ELU'"):
        load_actor(tmp_path)
    meta_path.write_text(json.dumps({**meta, "net_arch": [16, 8]}))
    with pytest.raises(ValueError, match=r"does not match .*net_arch \[16, 8\]"):
        load_actor(tmp_path)
    (tmp_path / "actor.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="actor.safetensors"):
        load_actor(tmp_path)
    with pytest.raises(ValueError, match="2 observation field names for an observation of size 3"):
        save_actor(model, tmp_path, obs_fields=["a", "b"])


# ---------------------------------------------------------------- resume


def test_resume_continues_counters_buffer_and_best(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = small_agent("ddpg", warmup=2, seed=3)
    cb1 = AMCCallback(10, run_dir, checkpoint_every=3, progress=False)
    first.learn(6 * N_STEPS, callback=cb1)  # interrupted after 6 of 10 episodes
    assert cb1.episode == 6 and compat.update_count(first) > 0
    with (run_dir / "episodes.jsonl").open("a") as f:  # an episode run after the checkpoint, then killed
        f.write(json.dumps({"episode": 7, "reward": 1.0}) + "\n")

    fresh = small_agent("ddpg", warmup=2, seed=3)
    state = load_resume_state(fresh, run_dir)
    assert state["episode"] == 6 and state["best"] == cb1.best
    assert fresh.num_timesteps == first.num_timesteps == 6 * N_STEPS
    assert compat.update_count(fresh) == compat.update_count(first) and compat.episode_count(fresh) == 6
    for name in ("observations", "next_observations", "actions", "rewards", "dones"):
        assert np.array_equal(getattr(fresh.replay_buffer, name), getattr(first.replay_buffer, name)), name
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.baseline) == (first.replay_buffer.pos, first.replay_buffer.baseline)
    assert fresh.action_noise.get_state() == first.action_noise.get_state()
    for (k, a), b in zip(first.policy.state_dict().items(), fresh.policy.state_dict().values()):
        assert torch.equal(a, b), k
    assert fresh.actor.optimizer.state_dict()["state"][0]["step"] == first.actor.optimizer.state_dict()["state"][0]["step"]

    cb2 = AMCCallback(10, run_dir, checkpoint_every=3, progress=False, start_episode=state["episode"], best=state["best"])
    fresh.learn(4 * N_STEPS, callback=cb2, reset_num_timesteps=False)
    rows = read_jsonl(run_dir / "episodes.jsonl")
    assert [r["episode"] for r in rows] == list(range(1, 11))
    assert fresh.num_timesteps == 10 * N_STEPS and fresh.replay_buffer.size() == 10 * N_STEPS
    assert rows[-1]["best_reward"] == max(r["reward"] for r in rows) >= cb1.best["reward"]
    assert json.loads((run_dir / "resume" / "state.json").read_text())["episode"] == 10


def test_resume_save_is_atomic(tmp_path: Path) -> None:
    model = small_agent("sac", warmup=1)
    model.learn(2 * N_STEPS)
    save_resume_state(model, tmp_path, episode=2, best={"reward": -0.5})
    (tmp_path / "resume").rename(tmp_path / ".resume.old")  # killed between the two renames of the next save
    (tmp_path / ".resume.tmp").mkdir()  # and a half-written temp dir
    fresh = small_agent("sac", warmup=1)
    state = load_resume_state(fresh, tmp_path)
    assert state["episode"] == 2 and state["best"] == {"reward": -0.5}
    assert torch.equal(fresh.log_ent_coef, model.log_ent_coef)
    save_resume_state(fresh, tmp_path, episode=3, best=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume"]
    assert {p.name for p in (tmp_path / "resume").iterdir()} == {"policy.safetensors", "optimizers.pt", "replay.npz",
                                                                "state.json"}
    with pytest.raises(ValueError, match="SAC"):
        load_resume_state(small_agent("td3"), tmp_path)


def test_library_defaults_match_the_agent_config() -> None:
    # a user of make_agent / TruncatedNormalNoise gets the search's settings, not an older schedule
    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "agent" / "ddpg.yaml")
    factory = inspect.signature(make_agent).parameters
    noise = inspect.signature(TruncatedNormalNoise).parameters
    for key in ("actor_lr", "critic_lr", "tau", "gamma", "batch_size", "replay_episodes", "warmup_episodes", "sigma",
                "sigma_decay"):
        assert factory[key].default == pytest.approx(conf[key]), key
    assert list(factory["net_arch"].default) == list(conf.net_arch)
    assert (noise["sigma"].default, noise["decay"].default, noise["warmup_episodes"].default) == \
        (conf.sigma, conf.sigma_decay, conf.warmup_episodes)
