"""Resume an interrupted search without unpickling anything: safetensors, weights-only torch files, npz and JSON.

Layout of ``run_dir/resume/``: ``policy.safetensors`` (actor, critic and targets), ``optimizers.pt`` (optimizer
state dicts, SAC's entropy coefficient, torch's RNG; loaded with ``weights_only=True``), ``replay.npz``,
``noise.json`` (DDPG/TD3) and ``state.json`` (counters, best-so-far, replay baseline, numpy's global RNG). A save
is written to a temporary dir and renamed into place, so a kill mid-save keeps the previous checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from safetensors.torch import load_model, save_model
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from amc import compat
from amc.agents.noise import TruncatedNormalNoise
from amc.agents.replay import EpisodeRewardReplayBuffer

RESUME_DIR = "resume"
FORMAT_VERSION = 1


def _paths(run_dir: Path) -> tuple[Path, Path, Path]:
    return run_dir / RESUME_DIR, run_dir / f".{RESUME_DIR}.tmp", run_dir / f".{RESUME_DIR}.old"


def _recover(run_dir: Path) -> None:
    """Finish a save that was killed between its two renames (the previous checkpoint sits in ``.resume.old``)."""
    final, _, old = _paths(run_dir)
    if not final.exists() and old.exists():
        old.rename(final)


def _replay_buffer(model: OffPolicyAlgorithm) -> EpisodeRewardReplayBuffer:
    buffer = model.replay_buffer
    if not isinstance(buffer, EpisodeRewardReplayBuffer):
        raise TypeError(f"resume state needs an EpisodeRewardReplayBuffer (make_agent), got {type(buffer).__name__}")
    return buffer


def save_resume_state(model: OffPolicyAlgorithm, run_dir: str | Path, *, episode: int,
                      best: dict[str, Any] | None) -> Path:
    """Write everything needed to continue training to ``run_dir/resume/`` (atomically); returns that dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _recover(run_dir)
    final, tmp, old = _paths(run_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    save_model(model.policy, str(tmp / "policy.safetensors"))
    torch_state: dict[str, Any] = {"actor": model.actor.optimizer.state_dict(),
                                   "critic": model.critic.optimizer.state_dict(), "torch_rng": th.get_rng_state()}
    ent_optimizer = getattr(model, "ent_coef_optimizer", None)
    if ent_optimizer is not None:  # SAC with a learned entropy coefficient (a tensor outside the policy)
        torch_state["ent_coef"] = ent_optimizer.state_dict()
        torch_state["log_ent_coef"] = model.log_ent_coef.detach().cpu()  # type: ignore[attr-defined]
    th.save(torch_state, tmp / "optimizers.pt")
    buffer = _replay_buffer(model)
    buffer.save_npz(tmp / "replay.npz")
    if isinstance(model.action_noise, TruncatedNormalNoise):
        # The decay schedule follows the episode counter (when training is stopped by a callback at an episode's
        # last step, SB3 skips that episode's noise.reset()).
        noise_state = {**model.action_noise.get_state(), "episode": int(episode)}
        (tmp / "noise.json").write_text(json.dumps(noise_state))
    np_state = np.random.get_state(legacy=False)
    state = {
        "format": FORMAT_VERSION,
        "algo": type(model).__name__,
        "episode": int(episode),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": compat.update_count(model),
        "episode_num": compat.episode_count(model),
        "best": best,
        "replay_baseline": buffer.baseline,
        "numpy_rng": {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": np_state["state"]["pos"]}},
    }
    (tmp / "state.json").write_text(json.dumps(state))

    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def load_resume_state(model: OffPolicyAlgorithm, run_dir: str | Path) -> dict[str, Any]:
    """Restore :func:`save_resume_state`'s checkpoint into a fresh agent of the same config; returns ``state.json``.

    Continue with ``model.learn(total_timesteps=remaining_episodes * episode_length, reset_num_timesteps=False)``.
    The resumed run starts a fresh episode, so transitions of an unfinished episode are dropped.
    """
    run_dir = Path(run_dir)
    _recover(run_dir)
    folder = run_dir / RESUME_DIR
    if not (folder / "state.json").exists():
        raise FileNotFoundError(f"no resume state in {folder}")
    state = json.loads((folder / "state.json").read_text())
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: resume format {state.get('format')}, expected {FORMAT_VERSION}")
    if state["algo"] != type(model).__name__:
        raise ValueError(f"{folder} holds a {state['algo']} agent, not a {type(model).__name__}")

    load_model(model.policy, str(folder / "policy.safetensors"), strict=True, device=str(model.device))
    torch_state = th.load(folder / "optimizers.pt", weights_only=True, map_location="cpu")
    model.actor.optimizer.load_state_dict(torch_state["actor"])
    model.critic.optimizer.load_state_dict(torch_state["critic"])
    if "log_ent_coef" in torch_state:
        with th.no_grad():
            model.log_ent_coef.copy_(torch_state["log_ent_coef"])  # type: ignore[attr-defined]
        model.ent_coef_optimizer.load_state_dict(torch_state["ent_coef"])  # type: ignore[attr-defined]
    th.set_rng_state(torch_state["torch_rng"])

    buffer = _replay_buffer(model)
    buffer.load_npz(folder / "replay.npz")
    buffer.pending = []
    if isinstance(model.action_noise, TruncatedNormalNoise) and (folder / "noise.json").exists():
        model.action_noise.set_state(json.loads((folder / "noise.json").read_text()))

    model.num_timesteps = int(state["num_timesteps"])
    compat.set_update_count(model, state["n_updates"])
    compat.set_episode_count(model, state["episode_num"])
    compat.set_last_obs(model, None)  # learn() resets the env: a fresh episode
    if isinstance(model.action_noise, TruncatedNormalNoise):
        model.action_noise.bind(model)  # re-sync with the restored episode counter
    rng = state["numpy_rng"]
    np.random.set_state({**rng, "state": {"key": np.asarray(rng["state"]["key"], dtype=np.uint32),
                                          "pos": rng["state"]["pos"]}})
    return state


def load_policy_weights(model: OffPolicyAlgorithm, run_dir: str | Path) -> None:
    """Load only the actor and critic weights (and their targets) of ``run_dir``'s resume checkpoint into ``model``.

    For continuing a trained agent on another network (``amc.apply refine_episodes=``): the replay buffer, counters
    and optimizer states of the old run do not carry over. The networks must have the same shapes.
    """
    run_dir = Path(run_dir)
    _recover(run_dir)
    path = run_dir / RESUME_DIR / "policy.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the agent's weights are saved there by a search's checkpoints")
    try:
        load_model(model.policy, str(path), strict=True, device=str(model.device))
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit this agent (algo {type(model).__name__}, net_arch): {e}") from None
