"""What a search method works on: data, network, pruning engine, env, budget, built once and shared by the methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from amc.data.base import DataSplits
from amc.measure.latency_table import LatencyTable
from amc.pruning.budget import ResourceBudget
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork

if TYPE_CHECKING:  # the env needs gymnasium, which the library never imports
    from amc.envs import ChannelPruningEnv


@dataclass
class Setup:
    """Everything a search method needs, built once and shared by the compared methods."""

    data: DataSplits
    net: PrunableNetwork
    engine: PruningEngine
    env: ChannelPruningEnv
    budget: ResourceBudget | None
    latency_table: LatencyTable | None
    base_info: dict[str, Any]
    device: torch.device
    reward_val_seconds: float = float("nan")  # one accuracy pass of the original model over all reward-val images

    def budget_cost(self, target: float) -> tuple[Any, float]:
        """(cost of a list of channel counts, its limit): the budget wall's, else MACs at ``target`` of the original."""
        if self.budget is not None:
            return self.budget.cost, self.budget.limit
        return self.net.predict_macs, target * self.net.original_macs
