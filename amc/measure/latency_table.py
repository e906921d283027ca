"""A per-layer latency model of a prunable network, measured on the current device.

Every Conv2d / Linear layer is timed standalone at a grid of channel counts (its prunable dimensions scaled by
each grid fraction); a pruned model's latency is predicted as the sum of the layers' bilinearly interpolated
latencies plus a constant overhead (the unmodelled rest: BN, activations, pooling, Python dispatch). The table
is made monotone in both channel counts, so the prediction never grows when channels are removed (which the
budget wall's binary search relies on).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.measure.latency import measure_latency
from amc.pruning.groups import PrunableNetwork

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class LayerLatency:
    """Seconds per forward of one layer over a grid of (in, out) channel counts; ``seconds[i][j]`` at (in_i, out_j).

    A depthwise layer has a single ``in_values`` entry: its latency depends on ``out`` only (in = out = groups).
    """

    in_values: list[int]
    out_values: list[int]
    seconds: list[list[float]]
    depthwise: bool = False

    def predict(self, c_in: int, c_out: int) -> float:
        """Bilinear interpolation (clamped at the grid's ends)."""
        table = np.asarray(self.seconds, dtype=np.float64)
        row = np.array([np.interp(c_in, self.in_values, table[:, j]) for j in range(len(self.out_values))])
        return float(np.interp(c_out, self.out_values, row))


class LatencyTable:
    """Predicts the latency (seconds) of ``net`` pruned to given per-group channel counts."""

    def __init__(
        self,
        layers: Mapping[str, LayerLatency],
        overhead: float,
        *,
        net: PrunableNetwork | None = None,
        device: str = "cpu",
        batch_size: int = 1,
        grid: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        full_latency: float | None = None,
    ) -> None:
        self.layers = dict(layers)
        self.overhead = float(overhead)
        self.net = net
        self.device = str(device)
        self.batch_size = int(batch_size)
        self.grid = tuple(float(g) for g in grid)
        self.full_latency = full_latency
        if net is not None:
            self._check_matches(net)

    # -- measurement -------------------------------------------------------------------------------------
    @classmethod
    def measure(
        cls,
        net: PrunableNetwork,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 1,
        grid: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        warmup: int = 3,
        repeats: int = 10,
    ) -> LatencyTable:
        """Time every Conv2d / Linear layer of ``net`` standalone over the channel grid, and the full model."""
        if not grid or any(not 0.0 < float(g) <= 1.0 for g in grid):
            raise ValueError(f"latency grid fractions must be in (0, 1], got {list(grid)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device(device)
        grid = tuple(sorted({float(g) for g in grid} | {1.0}))
        start = time.perf_counter()
        prunable: dict[str, set[str]] = {}
        for g in net.groups:
            for m in g.members:
                prunable.setdefault(m.layer, set()).add(m.dim)
        cache: dict[tuple, float] = {}
        layers: dict[str, LayerLatency] = {}
        for name, cost in net.costs.items():
            module = net.modules[name]
            dims = prunable.get(name, set())
            depthwise = _is_depthwise(module)
            grouped = isinstance(module, nn.Conv2d) and module.groups > 1 and not depthwise
            scale_in = "in" in dims and not depthwise and not grouped
            scale_out = not grouped and (bool(dims) if depthwise else "out" in dims)
            in_values = _scaled(cost.in_channels, grid) if scale_in else [cost.in_channels]
            out_values = _scaled(cost.out_channels, grid) if scale_out else [cost.out_channels]
            seconds = []
            for ci in in_values:
                row = []
                for co in out_values:
                    layer, shape, key = _standalone(module, cost, ci, co, depthwise, batch_size)
                    if key not in cache:
                        cache[key] = measure_latency(layer.to(device), shape, warmup=warmup, repeats=repeats, device=device)
                    row.append(cache[key])
                seconds.append(row)
            table = np.maximum.accumulate(np.maximum.accumulate(np.asarray(seconds), axis=0), axis=1)
            layers[name] = LayerLatency(in_values, out_values, table.tolist(), depthwise)
        model = net.model
        param = next(model.parameters(), None)
        if param is not None and param.device.type != device.type:
            model = copy.deepcopy(model).to(device)  # never move the caller's model
        full = measure_latency(model, (batch_size, *net.input_shape[1:]), warmup=warmup, repeats=repeats, device=device)
        table = cls(layers, 0.0, net=net, device=str(device), batch_size=batch_size, grid=grid, full_latency=full)
        table.overhead = max(0.0, full - table.predict([g.channels for g in net.groups]))
        log.info("latency table: %d layers, %d timings in %.2fs; full model %.3f ms, overhead %.3f ms",
                 len(layers), len(cache), time.perf_counter() - start, full * 1e3, table.overhead * 1e3)
        return table

    # -- prediction --------------------------------------------------------------------------------------
    def predict_layers(self, channels: Mapping[str, tuple[int, int]]) -> float:
        """Seconds for explicit per-layer (in, out) channels; layers not given run at full size."""
        total = self.overhead
        for name, layer in self.layers.items():
            c_in, c_out = channels.get(name, (layer.in_values[-1], layer.out_values[-1]))
            total += layer.predict(c_in, c_out)
        return total

    def predict(self, counts: Sequence[int]) -> float:
        """Predicted seconds per forward of the network pruned to ``counts`` channels per group."""
        if self.net is None:
            raise ValueError("this latency table has no network attached: pass net to from_dict(), or use predict_layers()")
        return self.predict_layers(self.net.layer_channels(counts))

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for caching the table in a run dir)."""
        return {
            "version": FORMAT_VERSION,
            "device": self.device,
            "batch_size": self.batch_size,
            "grid": list(self.grid),
            "overhead": self.overhead,
            "full_latency": self.full_latency,
            "layers": {
                name: {"in": list(t.in_values), "out": list(t.out_values), "seconds": t.seconds, "depthwise": t.depthwise}
                for name, t in self.layers.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], net: PrunableNetwork | None = None) -> LatencyTable:
        """Rebuild a table from ``to_dict()``; with ``net``, check it describes that network."""
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported latency table version {data.get('version')!r}; expected {FORMAT_VERSION}")
        layers = {
            name: LayerLatency([int(v) for v in t["in"]], [int(v) for v in t["out"]],
                               [[float(s) for s in row] for row in t["seconds"]], bool(t.get("depthwise", False)))
            for name, t in data["layers"].items()
        }
        return cls(layers, float(data["overhead"]), net=net, device=str(data["device"]),
                   batch_size=int(data["batch_size"]), grid=data["grid"], full_latency=data.get("full_latency"))

    def _check_matches(self, net: PrunableNetwork) -> None:
        if set(self.layers) != set(net.costs):
            missing, extra = sorted(set(net.costs) - set(self.layers)), sorted(set(self.layers) - set(net.costs))
            raise ValueError(f"latency table does not match the network: missing layers {missing}, unknown layers {extra}")
        for name, cost in net.costs.items():
            t = self.layers[name]
            if t.out_values[-1] != cost.out_channels or (not t.depthwise and t.in_values[-1] != cost.in_channels):
                raise ValueError(
                    f"latency table layer {name!r} is for ({t.in_values[-1]}, {t.out_values[-1]}) channels but the "
                    f"network has ({cost.in_channels}, {cost.out_channels}): re-measure the table"
                )


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _scaled(channels: int, grid: Sequence[float]) -> list[int]:
    return sorted({max(1, round(f * channels)) for f in grid})


def _standalone(
    module: nn.Module, cost: Any, c_in: int, c_out: int, depthwise: bool, batch_size: int
) -> tuple[nn.Module, tuple[int, ...], tuple]:
    """A fresh layer like ``module`` with (c_in, c_out) channels, its input shape and a cache key."""
    bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Conv2d):
        if depthwise:
            c_in, groups = c_out, c_out
        else:
            groups = module.groups
        layer = nn.Conv2d(c_in, c_out, module.kernel_size, module.stride, module.padding, module.dilation,  # type: ignore[arg-type]
                          groups=groups, bias=bias, padding_mode=module.padding_mode)
        shape = (batch_size, c_in, *cost.in_hw)
        key = ("conv", c_in, c_out, module.kernel_size, module.stride, module.padding, module.dilation, groups, bias,
               module.padding_mode, shape)
        return layer.eval(), shape, key
    if isinstance(module, nn.Linear):
        positions = max(1, cost.macs // max(1, module.in_features * module.out_features))
        shape = (batch_size, c_in) if positions == 1 else (batch_size, positions, c_in)
        return nn.Linear(c_in, c_out, bias=bias).eval(), shape, ("linear", c_in, c_out, bias, shape)
    raise TypeError(f"cannot time a standalone {type(module).__name__}")
