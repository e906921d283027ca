"""The one place that reads internals of stable-baselines3 and torch-pruning.

amc relies on a few private attributes of SB3's off-policy algorithms (episode and update counters, the last
observation, the end of the current ``learn()``), one method SB3 renamed, and torch-pruning's dependency-graph
internals (group items, their target modules, handlers and root indices). Every such use goes through an accessor
here, setup.cfg bounds both libraries below their next minor release, and ``tests/test_compat.py`` runs every
accessor against the installed versions: a release that changes one fails there with a :class:`CompatError` naming
the attribute and the version, not somewhere deep in a search.

Core layering: SB3 is never imported here (the model object comes in as an argument); torch-pruning is imported
where it is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import nn

SB3 = "stable-baselines3"
TORCH_PRUNING = "torch-pruning"
SUPPORTED = {SB3: ">=2.3,<2.10", TORCH_PRUNING: ">=1.5,<1.7"}  # the install_requires ranges of setup.cfg

# Private attributes of SB3's OffPolicyAlgorithm that the accessors below read or write.
SB3_ATTRIBUTES = ("_episode_num", "_n_updates", "_total_timesteps", "_last_obs")
# Protected hooks of SB3's policies that amc.agents.policies overrides (checked by tests/test_compat.py).
SB3_POLICY_HOOKS = ("_build", "_get_constructor_parameters")


class CompatError(RuntimeError):
    """An installed stable-baselines3 or torch-pruning lacks an internal that amc relies on."""


def installed_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"


def _error(dist: str, owner: str, attr: str) -> CompatError:
    return CompatError(f"{dist} {installed_version(dist)}: {owner} has no {attr!r}, which amc.compat relies on; amc "
                       f"supports {dist}{SUPPORTED[dist]} (setup.cfg): install a version in that range")


def _get(obj: Any, attr: str, dist: str) -> Any:
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise _error(dist, type(obj).__name__, attr) from None


def _set(obj: Any, attr: str, value: Any, dist: str) -> None:
    if not hasattr(obj, attr):
        raise _error(dist, type(obj).__name__, attr)
    setattr(obj, attr, value)


# -- stable-baselines3: OffPolicyAlgorithm counters and state ------------------------------------------------------
def episode_count(model: Any) -> int:
    """Episodes SB3 has finished (``_episode_num``; incremented after the callbacks saw the episode's last step)."""
    return int(_get(model, "_episode_num", SB3))


def set_episode_count(model: Any, episodes: int) -> None:
    _set(model, "_episode_num", int(episodes), SB3)


def update_count(model: Any) -> int:
    """Gradient steps SB3 has taken (``_n_updates``)."""
    return int(_get(model, "_n_updates", SB3))


def set_update_count(model: Any, updates: int) -> None:
    _set(model, "_n_updates", int(updates), SB3)


def total_timesteps(model: Any) -> int:
    """The timestep at which the running ``learn()`` call ends (``_total_timesteps``)."""
    return int(_get(model, "_total_timesteps", SB3))


def last_obs(model: Any) -> Any:
    """The observation the next action is taken in (``_last_obs``; None before ``learn()`` resets the env)."""
    return _get(model, "_last_obs", SB3)


def set_last_obs(model: Any, obs: Any) -> None:
    """Set ``_last_obs``; None makes the next ``learn()`` reset the env (a fresh episode)."""
    _set(model, "_last_obs", obs, SB3)


def dump_logs(model: Any) -> None:
    """SB3's own ``time/*`` and ``rollout/*`` records, then a logger dump (``dump_logs``; ``_dump_logs`` < 2.6)."""
    method = getattr(model, "dump_logs", None) or getattr(model, "_dump_logs", None)
    if method is None:
        raise _error(SB3, type(model).__name__, "dump_logs")
    method()


def sb3_problems(model: Any, policy_classes: Iterable[type] = ()) -> list[str]:
    """Messages for every SB3 internal amc uses that ``model`` (an off-policy algorithm) or the policies lack."""
    problems = []
    for attr in SB3_ATTRIBUTES:
        if not hasattr(model, attr):
            problems.append(str(_error(SB3, type(model).__name__, attr)))
    if not (hasattr(model, "dump_logs") or hasattr(model, "_dump_logs")):
        problems.append(str(_error(SB3, type(model).__name__, "dump_logs")))
    for cls in policy_classes:
        for hook in SB3_POLICY_HOOKS:
            if not callable(getattr(cls, hook, None)):
                problems.append(str(_error(SB3, cls.__name__, hook)))
    return problems


# -- torch-pruning: dependency groups -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DependencyItem:
    """One member of a torch-pruning group as plain data.

    ``module`` is the pruned object (an ``nn.Module``, or an op/parameter for functional nodes), ``handler`` its
    pruning function (called as ``handler(module, idxs)``), ``prunes_out_channels`` whether it removes output
    channels, ``idxs`` the member's channel indices and ``root_idxs`` the group root's channel index of each.
    """

    module: Any
    handler: Callable[..., Any]
    prunes_out_channels: bool
    idxs: tuple[int, ...]
    root_idxs: tuple[int, ...]


def _require_parameters(fn: Callable[..., Any], names: Sequence[str], owner: str) -> None:
    params = inspect.signature(fn).parameters
    for name in names:
        if name not in params:
            raise _error(TORCH_PRUNING, owner, f"argument {name!r}")


def dependency_groups(model: nn.Module, example_input: torch.Tensor, *, ignored_layers: Sequence[nn.Module],
                      root_module_types: tuple[type[nn.Module], ...]) -> list[list[DependencyItem]]:
    """Every coupled channel group of ``model`` (torch-pruning's ``DependencyGraph.get_all_groups``), as plain data.

    The graph is traced with autograd enabled; ``model`` is not modified.
    """
    import torch_pruning as tp

    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(model, example_input, verbose=False)
    get_all_groups = _get(graph, "get_all_groups", TORCH_PRUNING)
    _require_parameters(get_all_groups, ("ignored_layers", "root_module_types"), "DependencyGraph.get_all_groups")
    is_out = _get(graph, "is_out_channel_pruning_fn", TORCH_PRUNING)
    groups = []
    for group in get_all_groups(ignored_layers=list(ignored_layers), root_module_types=root_module_types):
        items = []
        for item in _get(group, "items", TORCH_PRUNING):
            dep = _get(item, "dep", TORCH_PRUNING)
            handler = _get(dep, "handler", TORCH_PRUNING)
            items.append(DependencyItem(
                module=_get(_get(dep, "target", TORCH_PRUNING), "module", TORCH_PRUNING), handler=handler,
                prunes_out_channels=bool(is_out(handler)), idxs=tuple(int(i) for i in _get(item, "idxs", TORCH_PRUNING)),
                root_idxs=tuple(int(i) for i in _get(item, "root_idxs", TORCH_PRUNING)),
            ))
        groups.append(items)
    return groups


def torch_pruning_problems() -> list[str]:
    """Messages for every torch-pruning internal amc uses that the installed version lacks (a tiny conv net)."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1))
    try:
        groups = dependency_groups(model, torch.randn(1, 2, 5, 5), ignored_layers=[model[3]],
                                   root_module_types=(nn.Conv2d, nn.Linear))
    except CompatError as e:
        return [str(e)]
    members = {(type(i.module).__name__, i.prunes_out_channels, len(i.root_idxs)) for g in groups for i in g}
    expected = {("Conv2d", True, 4), ("BatchNorm2d", True, 4), ("Conv2d", False, 4)}
    if not expected <= members:
        return [f"{TORCH_PRUNING} {installed_version(TORCH_PRUNING)}: the dependency group of Conv2d(2, 4) -> "
                f"BatchNorm2d -> Conv2d(4, 3) has members {sorted(members)}, expected {sorted(expected)} "
                f"(module type, prunes output channels, root channels)"]
    return []
