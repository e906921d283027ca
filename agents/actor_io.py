"""The trained actor without pickle and without SB3: ``actor.safetensors`` + ``actor.json`` -> a plain torch MLP.

``agent.zip`` (SB3's format) pickles Python objects; these two files hold only tensors and JSON. ``actor.json``
records what is needed to rebuild and use the actor: the algorithm and network layout, the observation (size and
field names), the action space ([-1, 1], tanh output) and, when known, the env's mapping of an action to a keep ratio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_file
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

ACTOR_WEIGHTS = "actor.safetensors"
ACTOR_META = "actor.json"
FORMAT_VERSION = 1
ACTIVATIONS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (nn.ReLU, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.SiLU,
                                                                           nn.GELU, nn.Sigmoid)}
LAYOUTS = {"ddpg": "mu", "td3": "mu", "sac": "latent_pi+mu"}  # parameter names of SB3's actors
KEEP_RATIO_FORMULA = "keep_ratio = lbound + (clip(action, -1, 1) + 1) / 2 * (rbound - lbound)"


def _mlp(in_dim: int, net_arch: Sequence[int], activation: type[nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in net_arch:
        layers += [nn.Linear(in_dim, width), activation()]
        in_dim = width
    return layers


class ActorMLP(nn.Module):
    """A deterministic actor: observation -> action in [-1, 1] (tanh), with SB3's parameter names.

    ``layout="mu"`` (DDPG, TD3): ``mu = [Linear, act]* + Linear + Tanh``. ``layout="latent_pi+mu"`` (SAC):
    ``tanh(mu(latent_pi(obs)))``, the mean action of SAC's squashed Gaussian; ``log_std`` is kept for a strict load.
    """

    def __init__(self, obs_dim: int, action_dim: int, net_arch: Sequence[int], activation: type[nn.Module],
                 layout: str) -> None:
        super().__init__()
        self.meta: dict[str, Any] = {}  # actor.json, set by load_actor
        if layout not in set(LAYOUTS.values()):
            raise ValueError(f"unknown actor layout {layout!r}; expected one of {sorted(set(LAYOUTS.values()))}")
        self.layout = layout
        last = net_arch[-1] if net_arch else obs_dim
        if layout == "mu":
            self.mu = nn.Sequential(*_mlp(obs_dim, net_arch, activation), nn.Linear(last, action_dim), nn.Tanh())
        else:
            self.latent_pi = nn.Sequential(*_mlp(obs_dim, net_arch, activation))
            self.mu = nn.Linear(last, action_dim)
            self.log_std = nn.Linear(last, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float().flatten(1) if obs.dim() > 1 else obs.float().unsqueeze(0)
        if self.layout == "mu":
            return self.mu(obs)
        return torch.tanh(self.mu(self.latent_pi(obs)))


def _env_bounds(model: OffPolicyAlgorithm) -> dict[str, float] | None:
    env = model.get_env()
    if env is None:
        return None
    try:
        lbound, rbound = env.get_attr("lbound")[0], env.get_attr("rbound")[0]
    except AttributeError:
        return None
    return {"lbound": float(lbound), "rbound": float(rbound)}


def save_actor(model: OffPolicyAlgorithm, path_dir: str | Path, *, obs_fields: Sequence[str] | None = None,
               keep_ratio_bounds: tuple[float, float] | None = None) -> Path:
    """Write ``actor.safetensors`` (the policy's actor state dict) and ``actor.json`` into ``path_dir``.

    ``keep_ratio_bounds`` (lbound, rbound) defaults to the env's ``lbound``/``rbound`` when it has them. Returns the
    JSON's path.
    """
    algo = type(model).__name__.lower()
    if algo not in LAYOUTS:
        raise ValueError(f"save_actor supports {sorted(LAYOUTS)}, not {type(model).__name__}")
    actor = model.actor
    if getattr(actor, "use_sde", False):
        raise ValueError("save_actor does not support gSDE actors (use_sde=True)")
    if not isinstance(actor.features_extractor, FlattenExtractor):
        raise ValueError(f"save_actor needs the flatten features extractor, got {type(actor.features_extractor).__name__}")
    activation = model.policy.activation_fn.__name__
    if activation not in ACTIVATIONS:
        raise ValueError(f"save_actor supports activations {sorted(ACTIVATIONS)}, not {activation}")
    obs_dim = int(model.observation_space.shape[0])
    if obs_fields is not None and len(obs_fields) != obs_dim:
        raise ValueError(f"{len(obs_fields)} observation field names for an observation of size {obs_dim}")
    space = model.action_space
    bounds = ({"lbound": float(keep_ratio_bounds[0]), "rbound": float(keep_ratio_bounds[1])}
              if keep_ratio_bounds is not None else _env_bounds(model))
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "algo": algo,
        "layout": LAYOUTS[algo],
        "net_arch": [int(n) for n in actor.net_arch],
        "activation": activation,
        "output_activation": "tanh",
        "observation": {"size": obs_dim, "fields": list(obs_fields) if obs_fields is not None else None},
        "action": {"size": int(space.shape[0]), "low": space.low.tolist(), "high": space.high.tolist(),
                   "scaled_low": -1.0, "scaled_high": 1.0,
                   "note": "the actor outputs SB3's scaled action in [-1, 1]; "
                           "action = low + (scaled + 1) / 2 * (high - low)"},
        "keep_ratio": None if bounds is None else {**bounds, "formula": KEEP_RATIO_FORMULA},
    }
    path_dir = Path(path_dir)
    path_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
    save_file(state, str(path_dir / ACTOR_WEIGHTS), metadata={"format": str(FORMAT_VERSION), "algo": algo})
    (path_dir / ACTOR_META).write_text(json.dumps(meta, indent=2) + "\n")
    return path_dir / ACTOR_META


def _field(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{path}: {key!r} is {value!r}; expected a {getattr(kind, '__name__', kind)}")
    return value


def load_actor(path_dir: str | Path) -> ActorMLP:
    """Rebuild the actor :func:`save_actor` wrote as a plain torch module (eval mode); nothing is unpickled.

    ``actor(obs)`` is the deterministic action in [-1, 1]; the metadata is in ``actor.meta``.
    """
    path_dir = Path(path_dir)
    meta_path, weights = path_dir / ACTOR_META, path_dir / ACTOR_WEIGHTS
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; save_actor(model, dir) writes {ACTOR_META} and {ACTOR_WEIGHTS}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{meta_path} is not UTF-8 JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT_VERSION}")
    layout = _field(meta, "layout", str, meta_path)
    if layout not in set(LAYOUTS.values()):
        raise ValueError(f"{meta_path}: layout {layout!r}; expected one of {sorted(set(LAYOUTS.values()))}")
    activation = _field(meta, "activation", str, meta_path)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{meta_path}: activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    net_arch = _field(meta, "net_arch", list, meta_path)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in net_arch):
        raise ValueError(f"{meta_path}: net_arch {net_arch!r}; expected a list of positive integers")
    obs_dim = _field(_field(meta, "observation", dict, meta_path), "size", int, meta_path)
    action_dim = _field(_field(meta, "action", dict, meta_path), "size", int, meta_path)
    actor = ActorMLP(obs_dim, action_dim, net_arch, ACTIVATIONS[activation], layout)
    try:
        load_model(actor, str(weights), strict=True)
    except RuntimeError as e:
        raise ValueError(f"{weights} does not match {meta_path} ({layout}, net_arch {net_arch}, obs {obs_dim}, "
                         f"action {action_dim}): {e}") from None
    actor.meta = meta
    return actor.eval()
