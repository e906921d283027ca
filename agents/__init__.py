"""stable-baselines3 wiring for AMC (``amc.agents``): agent factory, exploration noise, replay buffer, callbacks."""

from amc.agents.actor_io import ActorMLP, load_actor, save_actor
from amc.agents.callbacks import (
    AMCCallback,
    BestPolicyCallback,
    EpisodeAxisLogger,
    EpisodeLogCallback,
    ResumeCheckpointCallback,
    SaveAgentCallback,
    TensorBoardCallback,
)
from amc.agents.factory import ALGOS, explores_with_noise, make_agent
from amc.agents.noise import TruncatedNormalNoise
from amc.agents.policies import AMCSACPolicy, AMCTD3Policy, ScaledLRAdam
from amc.agents.replay import EpisodeRewardReplayBuffer
from amc.agents.state import load_policy_weights, load_resume_state, save_resume_state
from amc.runs.search_log import keep_ratio_image

__all__ = [
    "ALGOS",
    "AMCCallback",
    "AMCSACPolicy",
    "AMCTD3Policy",
    "ActorMLP",
    "BestPolicyCallback",
    "EpisodeAxisLogger",
    "EpisodeLogCallback",
    "EpisodeRewardReplayBuffer",
    "ResumeCheckpointCallback",
    "SaveAgentCallback",
    "ScaledLRAdam",
    "TensorBoardCallback",
    "TruncatedNormalNoise",
    "explores_with_noise",
    "keep_ratio_image",
    "load_actor",
    "load_policy_weights",
    "load_resume_state",
    "make_agent",
    "save_actor",
    "save_resume_state",
]
