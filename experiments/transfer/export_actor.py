"""Write ``actor.safetensors`` + ``actor.json`` for a search run made before searches saved them.

    python experiments/transfer/export_actor.py <search run dir>

Rebuilds the agent from the run's recorded settings (``settings.json`` or ``.hydra/config.yaml``: plain data, the
algorithm looked up in a fixed table), loads the pickle-free ``resume/policy.safetensors`` and saves the actor next to
it. Nothing is unpickled; an existing actor is never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from amc.agents import load_policy_weights, make_agent, save_actor
from amc.cli.checks import recorded_settings
from amc.envs.channel_pruning import OBS_DIM, OBS_FIELDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    run_dir = parser.parse_args().run_dir
    if (run_dir / "actor.json").exists():
        raise SystemExit(f"{run_dir}/actor.json exists; left as it is")
    settings = recorded_settings(run_dir)
    a, e = settings["agent"], settings["env"]

    class Shapes(gym.Env):  # only the spaces matter: the weights are loaded, not trained
        observation_space = gym.spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    agent = make_agent(a["algo"], Shapes(), net_arch=a["net_arch"], episode_length=1, device="cpu")
    load_policy_weights(agent, run_dir)
    print(save_actor(agent, run_dir, obs_fields=OBS_FIELDS, keep_ratio_bounds=(e["lbound"], e["rbound"])))


if __name__ == "__main__":
    main()
