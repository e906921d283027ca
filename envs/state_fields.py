"""Observation fields beyond AMC's embedding, for a policy that carries across networks (``env.state_extras``).

AMC's static fields are min-max scaled within one network: a 64-channel layer is "wide" in ResNet-20 and "narrow" in
VGG-16, and a kernel column is all zeros in a network of 3x3 convs. The extras below mean the same in every network.
Each is an ablation row in the transfer results, not a default: the observation is AMC's unless a run asks for more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from amc.pruning.groups import PrunableNetwork

STATE_EXTRAS: dict[str, tuple[str, ...]] = {
    # the group's kind: it couples a depthwise conv, its root is a 1x1 conv, its root is a linear layer (regular: none)
    "kind": ("kind_depthwise", "kind_pointwise", "kind_linear"),
    # absolute sizes: log2(channels) / 11 and log2(input channels) / 11 (2048 -> 1), output side / input image side
    "scale": ("log_channels", "log_in_channels", "feature_share"),
    # the MACs of the layers the group touches, as a share of the network's
    "macs_share": ("macs_share",),
    # position within its stage (the run of consecutive groups whose output feature map has one size), 0 to 1
    "stage": ("stage_position",),
    # the share of what the later groups can still remove that the budget requires them to remove (1: all at lbound)
    "budget_left": ("budget_left",),
}
DYNAMIC = frozenset({"budget_left"})  # computed per step from the decided counts and the budget
# the env appends the dynamic fields after the static ones, so they must be the last extras in observation order
assert set(list(STATE_EXTRAS)[len(STATE_EXTRAS) - len(DYNAMIC):]) == DYNAMIC
_MAX_LOG2_CHANNELS = 11.0


def check_state_extras(extras: Sequence[str]) -> tuple[str, ...]:
    """The extras in their canonical order (the observation's), or a clear error naming an unknown one."""
    unknown = [e for e in extras if e not in STATE_EXTRAS]
    if unknown:
        raise ValueError(f"env.state_extras: unknown {unknown}; known: {list(STATE_EXTRAS)}")
    return tuple(e for e in STATE_EXTRAS if e in set(extras))


def extra_fields(extras: Sequence[str]) -> tuple[str, ...]:
    """The observation fields the extras add, in observation order."""
    return tuple(f for e in check_state_extras(extras) for f in STATE_EXTRAS[e])


def extras_of_fields(fields: Sequence[str], base: Sequence[str], trailing: Sequence[str] = ()) -> tuple[str, ...]:
    """The extras an observation layout holds (an actor's saved fields): ``base`` first, then whole extras in order,
    then any of ``trailing``. A field this amc cannot compute gets an error naming it."""
    fields = tuple(fields)
    if fields[: len(base)] != tuple(base):
        raise ValueError(f"observation layout {list(fields)} does not start with AMC's fields {list(base)}")
    middle = [f for f in fields[len(base):] if f not in trailing]
    by_field = {f: e for e, fs in STATE_EXTRAS.items() for f in fs}
    unknown = [f for f in middle if f not in by_field]
    if unknown:
        raise ValueError(f"observation field(s) {unknown} cannot be computed by this amc (known extras: "
                         f"{', '.join(f for fs in STATE_EXTRAS.values() for f in fs)})")
    extras = check_state_extras(list(dict.fromkeys(by_field[f] for f in middle)))
    if tuple(middle) != extra_fields(extras):
        raise ValueError(f"observation fields {middle} are not whole extras in order: {list(extra_fields(extras))}")
    return extras


def static_extras(net: PrunableNetwork, extras: Sequence[str]) -> np.ndarray:
    """Per group, the values of the static extras' fields (groups x fields), each in [0, 1]."""
    columns: list[np.ndarray] = []
    for e in check_state_extras(extras):
        if e in DYNAMIC:
            continue
        columns.extend(_COMPUTE[e](net).T)
    return np.stack(columns, axis=1) if columns else np.zeros((net.num_groups, 0))


def _kind(net: PrunableNetwork) -> np.ndarray:
    rows = []
    for g in net.groups:
        depthwise = any(isinstance(m := net.modules[x.layer], nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
                        for x in g.members)
        linear = isinstance(net.modules[g.root], nn.Linear)
        rows.append([float(depthwise), float(not linear and g.kernel == 1), float(linear)])
    return np.array(rows)


def _out_side(g) -> float:
    return -(-g.feature_hw[0] // max(g.stride, 1))


def _scale(net: PrunableNetwork) -> np.ndarray:
    side = float(net.input_shape[-2]) if len(net.input_shape) == 4 else 1.0
    return np.array([[np.log2(g.channels) / _MAX_LOG2_CHANNELS, np.log2(max(g.in_channels, 1)) / _MAX_LOG2_CHANNELS,
                      _out_side(g) / side] for g in net.groups]).clip(0.0, 1.0)


def _macs_share(net: PrunableNetwork) -> np.ndarray:
    return np.array([[g.macs / net.original_macs] for g in net.groups]).clip(0.0, 1.0)


def _stage(net: PrunableNetwork) -> np.ndarray:
    keys = [("linear",) if isinstance(net.modules[g.root], nn.Linear) else (_out_side(g),) for g in net.groups]
    runs: list[list[int]] = []
    for i, key in enumerate(keys):
        if runs and keys[runs[-1][-1]] == key:
            runs[-1].append(i)
        else:
            runs.append([i])
    position = np.zeros((net.num_groups, 1))
    for run in runs:
        for j, i in enumerate(run):
            position[i, 0] = j / (len(run) - 1) if len(run) > 1 else 0.0
    return position


_COMPUTE = {"kind": _kind, "scale": _scale, "macs_share": _macs_share, "stage": _stage}
