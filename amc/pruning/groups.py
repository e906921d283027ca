"""Prunable units: torch-pruning dependency groups in forward order, with the metadata the agent needs.

One group is one set of coupled channels (a residual stage, an inverted-residual block's hidden channels,
a depthwise conv and its producer): it takes one keep ratio. The original model is never modified.

Before a group is offered for pruning it must prove itself: a group touching a grouped (non-depthwise) convolution,
or whose trial prune (a random subset of its channels) does not run or changes the output shape, is *frozen* (kept whole, with the
reason) rather than left to crash a search. Building the graph has a time limit (torch-pruning can take very long
on channel shuffles).
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from amc.compat import dependency_groups
from amc.measure.macs import LayerCost, layer_costs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupMember:
    """One layer dimension a group prunes: ``dim`` is 'out' (output channels) or 'in' (input channels)."""

    layer: str
    dim: str
    handler: Callable[..., nn.Module] = field(repr=False, compare=False)
    idxs: tuple[int, ...] = field(repr=False)
    root_idxs: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class ChannelGroup:
    """A coupled channel group and the agent-state metadata of its root (first producing) layer."""

    index: int
    root: str
    channels: int
    members: tuple[GroupMember, ...] = field(repr=False)
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    in_channels: int
    kernel: int
    stride: int
    feature_hw: tuple[int, int]
    macs: int
    params: int
    channel_groups: int = 1  # > 1: the group feeds or is a grouped convolution; it loses channels equally per group
    step: int = 1  # channel counts are multiples of this (the runtime's grid, and of channel_groups), or all

    def layer_idxs(self, layer_member: GroupMember, root_subset: set[int]) -> list[int]:
        """The member layer's channel indices that correspond to the given root channel indices."""
        return [i for i, r in zip(layer_member.idxs, layer_member.root_idxs) if r in root_subset]


@dataclass(frozen=True)
class FrozenGroup:
    """A dependency group kept whole: its root, the layers it couples, its channels and why it is not pruned."""

    root: str
    layers: tuple[str, ...]
    channels: int
    reason: str


class GraphError(ValueError):
    """torch-pruning could not build (or took too long to build) a model's dependency graph."""


@contextmanager
def _time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise GraphError after ``seconds`` of wall time (SIGALRM: main thread on Unix only; elsewhere no limit)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise GraphError(f"{what} took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _is_grouped_conv(module: nn.Module) -> bool:
    """A convolution with groups that are neither 1 nor depthwise (one input channel per group)."""
    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.in_channels


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def layer_cuts(drops: Sequence[tuple[ChannelGroup, set[int]]]) -> dict[tuple[str, str], list[int]]:
    """For every (layer, 'in'|'out') dimension the root channels ``drop`` of each ``(group, drop)`` reach, the sorted
    union of its indices over all groups, all in the original layout."""
    cuts: dict[tuple[str, str], set[int]] = {}
    for group, drop in drops:
        for m in group.members:
            cuts.setdefault((m.layer, m.dim), set()).update(group.layer_idxs(m, drop))
    return {key: sorted(idxs) for key, idxs in cuts.items() if idxs}


def remove_channels(modules: dict[str, nn.Module], drops: Sequence[tuple[ChannelGroup, set[int]]]) -> None:
    """Remove the root channels ``drop`` of each ``(group, drop)`` from the layers in ``modules`` (a copy's named
    modules). Every layer dimension is cut once, by its ``layer_cuts``: a layer fed by a concatenation of several
    groups (Inception branches, DenseNet / DLA trees) holds each group's channels at an offset that cutting another
    group first would shift."""
    handlers = {(m.layer, m.dim): m.handler for group, _ in drops for m in group.members}
    for (layer, dim), idxs in layer_cuts(drops).items():
        handlers[(layer, dim)](modules[layer], idxs)


def trial_drop(channels: int, seed: int, channel_groups: int = 1) -> set[int]:
    """Channels a trial prune removes: a random subset at an uneven count (between a quarter and three quarters,
    never all), as real channel selection removes them, not a regular pattern that can hide an index-mapping bug.
    With ``channel_groups`` > 1 the same positions of every group (as ``spread_over_groups``)."""
    size = channels // channel_groups
    if size < 2:
        return set()
    rng = torch.Generator().manual_seed(seed)
    n = min(size - 1, max(1, size // 4 + int(torch.randint(0, max(1, size // 2), (1,), generator=rng))))
    return set(spread_over_groups(torch.randperm(size, generator=rng)[:n], channel_groups, size).tolist())


def spread_over_groups(positions: torch.Tensor, channel_groups: int, size: int) -> torch.Tensor:
    """Channel indices of ``positions`` (within one group of ``size`` channels) in each of ``channel_groups`` groups,
    sorted: a grouped convolution keeps its group count only if every group loses the same positions."""
    return (torch.arange(channel_groups).view(-1, 1) * size + positions.view(1, -1)).flatten().sort().values


def group_step(channels: int, channel_groups: int, round_to: int) -> int:
    """The granularity of a group's channel counts: ``round_to`` (the runtime's grid); for a grouped convolution's
    group a multiple of ``channel_groups`` on that grid when it leaves a count below all channels, else
    ``channel_groups`` alone."""
    if channel_groups == 1:
        return round_to
    step = math.lcm(channel_groups, round_to)
    return step if step < channels else channel_groups


def validate_keep_ratios(keep_ratios: Sequence[float], num_groups: int) -> None:
    if len(keep_ratios) != num_groups:
        raise ValueError(f"got {len(keep_ratios)} keep ratios for {num_groups} prunable groups")
    for i, k in enumerate(keep_ratios):
        if not (isinstance(k, numbers.Real) and 0.0 < float(k) <= 1.0) or math.isnan(float(k)):
            raise ValueError(f"keep_ratio of group {i} is {k!r}; keep ratios must be in (0, 1]")


def round_channels(keep_ratio: float, channels: int, round_to: int = 1) -> int:
    """Channels kept for ``keep_ratio``: nearest multiple of ``round_to`` or all, at least one (keep 1 = all)."""
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    target = keep_ratio * channels
    n = int(round(target / round_to)) * round_to
    if n > channels or channels - target < abs(target - n):
        n = channels  # all channels is a candidate too when ``channels`` is not a multiple of ``round_to``
    return max(min(round_to, channels), min(channels, n), 1)


class PrunableNetwork:
    """A trained model, its dependency groups and a cost model (MACs and params) over channel counts."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        *,
        exclude: Sequence[str] = (),
        round_to: int = 1,
        graph_time_limit: float | None = 120.0,
    ) -> None:
        """``graph_time_limit``: seconds allowed for torch-pruning's dependency graph (None: no limit)."""
        self.model = model.eval()
        self.input_shape = (1, *tuple(input_shape)[1:])
        self.round_to = round_to
        round_channels(1.0, 1, round_to)  # validates round_to
        device = next(model.parameters()).device
        self.costs: dict[str, LayerCost] = layer_costs(model, self.input_shape, device)
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        unknown = [n for n in exclude if n not in self.modules]
        if unknown:
            raise ValueError(f"exclude names {unknown} are not layers of the model; layers are e.g. {list(self.costs)[:8]}")
        layer_order = list(self.costs)
        output_layer = layer_order[-1]  # the classifier: its outputs (the classes) are never pruned
        ignored = [self.modules[output_layer], *(self.modules[n] for n in exclude)]
        name_of = {m: n for n, m in self.modules.items()}
        raw = []
        for group in self._dependency_groups(device, ignored, graph_time_limit):
            members = []
            for item in group:
                if not isinstance(item.module, nn.Module) or item.module not in name_of:
                    continue  # functional ops (add, cat) carry no weights
                dim = "out" if item.prunes_out_channels else "in"
                members.append(GroupMember(name_of[item.module], dim, item.handler, item.idxs, item.root_idxs))
            raw.append(members)
        order = {n: i for i, n in enumerate(layer_order)}
        # the root is the group's first producing layer in forward order; groups follow their roots
        roots = [min((m.layer for m in ms if m.dim == "out" and m.layer in order), key=order.__getitem__) for ms in raw]
        raw = sorted(zip(roots, raw), key=lambda r: order[r[0]])
        described = [self._describe(i, root, members) for i, (root, members) in enumerate(raw)]
        with torch.no_grad():
            self.output_shape = tuple(model(torch.zeros(self.input_shape, device=device)).shape)
        self.frozen: list[FrozenGroup] = []
        self.groups: list[ChannelGroup] = []
        reasons = self._freeze_reasons(described)
        for group in described:
            reason = reasons.get(group.index)
            if reason is None:
                self.groups.append(replace(group, index=len(self.groups)))
            else:
                self.frozen.append(FrozenGroup(group.root, tuple(dict.fromkeys((*group.producers, *group.consumers))),
                                               group.channels, reason))
                log.warning("frozen (not pruned): group of %s (%d channels, layers %s): %s", group.root, group.channels,
                            ", ".join(self.frozen[-1].layers), reason)
        if not self.groups:
            frozen = f"; frozen: {[f.root for f in self.frozen]}" if self.frozen else ""
            raise ValueError(
                f"model {type(model).__name__} has no prunable channel group (only its output layer "
                f"{output_layer!r} and excluded layers {list(exclude)} produce channels{frozen})"
            )
        self._original_channels = [g.channels for g in self.groups]
        self.original_macs = self.predict_macs(self._original_channels)
        self.original_params = self.predict_params(self._original_channels)
        log.info("%s: %d prunable groups, %d MACs, %d params", type(model).__name__, len(self.groups),
                 self.original_macs, self.original_params)

    # -- graph and prunability -------------------------------------------------------------------------
    def _dependency_groups(self, device: torch.device, ignored: list[nn.Module], time_limit: float | None) -> list:
        """torch-pruning's groups under the time limit; its failures become one GraphError naming the model."""
        name = type(self.model).__name__
        advice = ("channel split/shuffle (view/transpose/reshape of the channel axis) is the usual cause; prune a "
                  "model without it, or raise the limit (graph_time_limit / env.graph_time_limit) if it is merely large")
        start = time.perf_counter()
        try:
            with _time_limit(time_limit, f"building the dependency graph of {name} (torch-pruning)"):
                groups = dependency_groups(self.model, torch.randn(self.input_shape, device=device),
                                           ignored_layers=ignored, root_module_types=(nn.Conv2d, nn.Linear))
        except GraphError as e:
            raise GraphError(f"{e}: {advice}") from None
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError) as e:
            raise GraphError(f"torch-pruning could not build the dependency graph of {name} ({_first_line(e)}): "
                             f"{advice}") from e
        log.debug("dependency graph of %s in %.2f s", name, time.perf_counter() - start)
        return groups

    def _freeze_reasons(self, groups: list[ChannelGroup]) -> dict[int, str]:
        """Why each group that cannot be pruned safely cannot (by group index): a grouped convolution, or a trial
        prune of a random channel subset that fails to run or changes the output shape. All remaining groups are tried
        in one pruned copy first; only if that fails is each tried alone."""
        reasons: dict[int, str] = {}
        for group in groups:
            for m in group.members:
                module = self.modules[m.layer]
                if _is_grouped_conv(module) and (m.idxs != m.root_idxs or len(m.idxs) != group.channels):
                    reasons[group.index] = (f"grouped convolution {m.layer} (groups={module.groups}) takes these "
                                            f"channels at an offset (through a concatenation or slice): its groups "
                                            f"could not be cut equally")
        candidates = [g for g in groups if g.index not in reasons and g.channels > 1]
        if candidates and self._trial_prune(candidates) is not None:
            for group in candidates:
                reason = self._trial_prune([group])
                if reason is not None:
                    reasons[group.index] = reason
        return reasons

    def _trial_prune(self, groups: list[ChannelGroup]) -> str | None:
        """Prune a random subset of each group's channels (``trial_drop``) in a copy and run it: None if it runs with
        the original output shape, else what went wrong."""
        trial = copy.deepcopy(self.model)
        modules = dict(trial.named_modules())
        try:
            remove_channels(modules, [(g, trial_drop(g.channels, g.index, g.channel_groups)) for g in groups])
            with torch.no_grad():
                shape = tuple(trial(torch.zeros(self.input_shape, device=next(trial.parameters()).device)).shape)
        except Exception as e:  # noqa: BLE001 - any failure of the trial means the coupling is not understood
            return (f"a trial prune fails ({_first_line(e)}): the dependency graph does not see how these channels "
                    f"couple (e.g. a shortcut in an opaque function)")
        if shape != self.output_shape:
            return f"a trial prune changes the output shape {self.output_shape} to {shape}"
        return None

    # -- metadata ---------------------------------------------------------------------------------------
    def _describe(self, index: int, root: str, members: list[GroupMember]) -> ChannelGroup:
        weighted = lambda m: isinstance(self.modules[m.layer], (nn.Conv2d, nn.Linear))  # noqa: E731
        order = {n: i for i, n in enumerate(self.costs)}
        producers = tuple(sorted((m.layer for m in members if m.dim == "out" and weighted(m)), key=order.__getitem__))
        consumers = tuple(sorted((m.layer for m in members if m.dim == "in" and weighted(m)), key=order.__getitem__))
        cost = self.costs[root]
        touched = set(producers) | set(consumers)
        channels = len(members[0].root_idxs) if members else cost.out_channels
        grouped = [self.modules[m.layer].groups for m in members if _is_grouped_conv(self.modules[m.layer])]
        channel_groups = max(grouped, default=1) if all(channels % g == 0 for g in grouped) else channels
        return ChannelGroup(
            index=index, root=root, channels=channels, channel_groups=channel_groups,
            step=group_step(channels, channel_groups, self.round_to),
            members=tuple(members), producers=producers, consumers=consumers, in_channels=cost.in_channels,
            kernel=cost.kernel, stride=cost.stride, feature_hw=cost.in_hw,
            macs=sum(self.costs[n].macs for n in touched if n in self.costs),
            params=sum(p.numel() for m in members for p in self.modules[m.layer].parameters(recurse=False)),
        )

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def prunable_macs_share(self) -> float:
        """The share of the original MACs pruning can remove: every prunable group cut to its smallest count (one
        grid step), frozen groups and unprunable layers kept whole. Low when the prunable groups hold little."""
        smallest = [min(g.step, g.channels) for g in self.groups]
        return 1.0 - self.predict_macs(smallest) / max(1, self.original_macs)

    # -- channel counts and costs -----------------------------------------------------------------------
    def channel_counts(self, keep_ratios: Sequence[float]) -> list[int]:
        """Channels kept per group after rounding (validates the keep ratios)."""
        validate_keep_ratios(keep_ratios, self.num_groups)
        return [round_channels(float(k), g.channels, g.step) for k, g in zip(keep_ratios, self.groups)]

    def layer_channels(self, counts: Sequence[int]) -> dict[str, tuple[int, int]]:
        """(in, out) channels of every layer with a prunable dimension, for the given group channel counts."""
        removed: dict[tuple[str, str], float] = {}
        for g, n in zip(self.groups, counts):
            for m in g.members:
                removed[(m.layer, m.dim)] = removed.get((m.layer, m.dim), 0.0) + (g.channels - n) * len(m.idxs) / g.channels
        result = {}
        for layer in {k[0] for k in removed}:
            module = self.modules[layer]
            c_in, c_out = _io_channels(module)
            out = c_out - round(removed.get((layer, "out"), 0.0))
            depthwise = isinstance(module, nn.Conv2d) and module.groups == module.in_channels and module.groups > 1
            result[layer] = (out if depthwise else c_in - round(removed.get((layer, "in"), 0.0)), out)
        return result

    def predict_macs(self, counts: Sequence[int]) -> int:
        """Total MACs of the pruned model with ``counts`` channels per group (exact for conv/linear nets)."""
        channels = self.layer_channels(counts)
        total = 0
        for name, c in self.costs.items():
            if name not in channels:
                total += c.macs
                continue
            c_in, c_out = channels[name]
            groups = c_in if c.groups > 1 and c.groups == c.in_channels else c.groups
            total += c.macs // (c.out_channels * (c.in_channels // c.groups)) * c_out * (c_in // groups)
        return total

    def predict_params(self, counts: Sequence[int]) -> int:
        """Total parameters of the pruned model with ``counts`` channels per group."""
        channels = self.layer_channels(counts)
        total = 0
        for name, module in self.modules.items():
            own = sum(p.numel() for p in module.parameters(recurse=False))
            if name not in channels or own == 0:
                total += own
                continue
            c_in, c_out = channels[name]
            total += _scaled_params(module, c_in, c_out)
        return total


def _io_channels(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features, module.num_features
    raise TypeError(f"cannot count channels of {type(module).__name__}")


def _scaled_params(module: nn.Module, c_in: int, c_out: int) -> int:
    bias = c_out if getattr(module, "bias", None) is not None else 0
    if isinstance(module, nn.Conv2d):
        groups = c_in if module.groups > 1 and module.groups == module.in_channels else module.groups
        return c_out * (c_in // groups) * module.kernel_size[0] * module.kernel_size[1] + bias
    if isinstance(module, nn.Linear):
        return c_out * c_in + bias
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return 2 * c_out if module.affine else 0
    raise TypeError(f"cannot scale parameters of {type(module).__name__}")
