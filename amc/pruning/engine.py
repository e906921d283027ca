"""One prune: channel counts -> channel selection -> surgery on a copy -> reconstruction -> BN recalibration."""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from amc.data.base import DataSplits
from amc.pruning.bn import recalibrate_bn
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.pruning.selection import CRITERIA, select_channels
from amc.pruning.surgery import prune_copy


@dataclass
class PruneResult:
    """A physically pruned model and what it costs; ``keep_ratios`` are the realised (rounded) ratios."""

    model: nn.Module
    kept: list[torch.Tensor]
    channels: list[int]
    keep_ratios: list[float]
    macs: int
    params: int
    seconds: dict[str, float] = field(default_factory=dict)


class PruningEngine:
    """Applies per-group channel counts (or keep ratios, rounded) to copies of ``net.model``; the original is never modified."""

    def __init__(
        self,
        net: PrunableNetwork,
        *,
        selection: str = "consumer_l1",
        reconstructor: Reconstructor | None = None,
        bn_data: DataSplits | None = None,
        bn_batches: int = 0,
        bn_batch_size: int = 100,
        device: torch.device | str = "cpu",
        bn_channels_last: bool = False,
    ) -> None:
        if selection not in CRITERIA:
            raise ValueError(f"unknown channel selection criterion {selection!r}; expected one of {CRITERIA}")
        if bn_batches > 0 and bn_data is None:
            raise ValueError("BN recalibration (bn_batches > 0) needs bn_data")
        self.net, self.selection, self.reconstructor = net, selection, reconstructor
        self.bn_data, self.bn_batches, self.bn_batch_size, self.device = bn_data, bn_batches, bn_batch_size, device
        self.bn_channels_last = bn_channels_last  # BN recalibration forwards channels-last (recalibrate_bn)

    def prune(self, keep_ratios: Sequence[float]) -> PruneResult:
        """Round keep ratios to channel counts (``net.channel_counts``) and prune to them (``prune_counts``)."""
        return self.prune_counts(self.net.channel_counts(keep_ratios))

    def prune_counts(self, counts: Sequence[int], *, bn_recalibration: bool = True) -> PruneResult:
        """Select ``counts[i]`` channels of group i by the criterion and prune: the engine's entry point, no rounding.
        ``bn_recalibration=False`` skips the engine's BN recalibration (the plain pruned model)."""
        counts = self.check_counts(counts)
        start = time.perf_counter()
        kept = select_channels(self.net, counts, self.selection)
        return self.prune_kept(kept, counts, select_seconds=time.perf_counter() - start, bn_recalibration=bn_recalibration)

    def check_counts(self, counts: Sequence[int]) -> list[int]:
        """``counts`` as a list of ints, one per group with 1 <= count <= the group's channels, or a ValueError."""
        groups = self.net.groups
        if isinstance(counts, (str, bytes)) or len(counts) != len(groups):
            raise ValueError(f"got {len(counts)} channel counts for {len(groups)} prunable groups")
        checked = []
        for i, (n, g) in enumerate(zip(counts, groups)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= g.channels:
                raise ValueError(f"channel count of group {i} ({g.root}) is {n!r}; expected an integer in "
                                 f"[1, {g.channels}]")
            if n % g.channel_groups:
                raise ValueError(f"channel count of group {i} ({g.root}) is {n}; it feeds a grouped convolution of "
                                 f"{g.channel_groups} groups, so it must be a multiple of {g.channel_groups}")
            checked.append(int(n))
        return checked

    def prune_kept(self, kept: Sequence[torch.Tensor], counts: Sequence[int] | None = None, *,
                   select_seconds: float = 0.0, bn_recalibration: bool = True) -> PruneResult:
        """Prune to explicit kept root channel indices per group (e.g. from a plan); BN recalibration as
        :meth:`prune_counts`."""
        counts = [len(k) for k in kept] if counts is None else list(counts)
        seconds = {"select": select_seconds}
        t = time.perf_counter()
        model = prune_copy(self.net, kept)
        seconds["surgery"] = time.perf_counter() - t
        if self.reconstructor is not None:
            t = time.perf_counter()
            self.reconstructor.reconstruct(model, self.net, kept)
            seconds["reconstruct"] = time.perf_counter() - t
        model.to(self.device)
        if self.bn_batches > 0 and bn_recalibration:
            t = time.perf_counter()
            recalibrate_bn(model, self.bn_data, num_batches=self.bn_batches, batch_size=self.bn_batch_size, device=self.device,
                           channels_last=self.bn_channels_last)
            seconds["bn_recalibration"] = time.perf_counter() - t
        return PruneResult(
            model=model.eval(), kept=list(kept), channels=counts,
            keep_ratios=[n / g.channels for n, g in zip(counts, self.net.groups)],
            macs=self.net.predict_macs(counts), params=self.net.predict_params(counts), seconds=seconds,
        )
