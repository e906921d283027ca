"""A per-layer latency model of a prunable network, measured on the current device.

Every Conv2d / Linear layer is timed standalone at a grid of channel counts (its prunable dimensions scaled by
each grid fraction); a pruned model's latency is predicted as the sum of the layers' bilinearly interpolated
latencies plus a constant overhead (the unmodelled rest: BN, activations, pooling, Python dispatch). The table
is made monotone in both channel counts, so the prediction never grows when channels are removed (which the
budget wall's binary search relies on).

All timings of a table run in one interleaved block (``amc.measure.latency``), and the machine's conditions and the
timings' spread are saved with it: a latency budget is only as good as the machine state its table was measured in,
so a table measured once on a quiet machine can be saved and reused (``LatencyTable.load(path, net)``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.measure.latency import NOISY_SPREAD, machine_conditions, measure_model_latencies
from amc.pruning.groups import PrunableNetwork

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FULL = "full model"


class LatencyTableError(ValueError):
    """A saved latency table that cannot be read or does not describe the network / settings at hand."""


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
        input_shape: Sequence[int] | None = None,
        measurement: Mapping[str, Any] | None = None,
    ) -> None:
        self.layers = dict(layers)
        self.overhead = float(overhead)
        self.net = net
        self.device = str(device)
        self.batch_size = int(batch_size)
        self.grid = tuple(float(g) for g in grid)
        self.full_latency = full_latency
        if input_shape is None and net is not None:
            input_shape = net.input_shape
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.measurement = dict(measurement) if measurement else {}
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
        threads: int | None = None,
        noisy_spread: float = NOISY_SPREAD,
    ) -> LatencyTable:
        """Time every Conv2d / Linear layer of ``net`` standalone over the channel grid, and the full model.

        All timings (every distinct layer configuration and the full model) run in one interleaved block with a
        fixed thread count (``threads``, default the current count); each entry is a median. The machine's
        conditions and the timings' spread are recorded in ``measurement`` (and in ``to_dict()``).
        """
        if not grid or any(not 0.0 < float(g) <= 1.0 for g in grid):
            raise ValueError(f"latency grid fractions must be in (0, 1], got {list(grid)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device(device)
        grid = tuple(sorted({float(g) for g in grid} | {1.0}))
        start = time.perf_counter()
        conditions = machine_conditions(device)
        prunable: dict[str, set[str]] = {}
        for g in net.groups:
            for m in g.members:
                prunable.setdefault(m.layer, set()).add(m.dim)
        timed: dict[tuple, str] = {}  # configuration key -> name in the interleaved block
        models: dict[str, nn.Module] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        entries: dict[str, tuple[list[int], list[int], list[list[str]], bool]] = {}
        for name, cost in net.costs.items():
            module = net.modules[name]
            dims = prunable.get(name, set())
            depthwise = _is_depthwise(module)
            grouped = isinstance(module, nn.Conv2d) and module.groups > 1 and not depthwise
            scale_in = "in" in dims and not depthwise and not grouped
            scale_out = not grouped and (bool(dims) if depthwise else "out" in dims)
            in_values = _scaled(cost.in_channels, grid) if scale_in else [cost.in_channels]
            out_values = _scaled(cost.out_channels, grid) if scale_out else [cost.out_channels]
            keys = []
            for ci in in_values:
                row = []
                for co in out_values:
                    layer, shape, key = _standalone(module, cost, ci, co, depthwise, batch_size)
                    if key not in timed:
                        timed[key] = f"layer{len(timed)}"
                        models[timed[key]], shapes[timed[key]] = layer.to(device), shape
                    row.append(timed[key])
                keys.append(row)
            entries[name] = (in_values, out_values, keys, depthwise)
        model = net.model
        param = next(model.parameters(), None)
        if param is not None and param.device.type != device.type:
            model = copy.deepcopy(model).to(device)  # never move the caller's model
        models[_FULL], shapes[_FULL] = model, (batch_size, *net.input_shape[1:])
        stats = measure_model_latencies(models, shapes, device=device, warmup=warmup, repeats=repeats, threads=threads,
                                        noisy_spread=noisy_spread)
        layers: dict[str, LayerLatency] = {}
        for name, (in_values, out_values, keys, depthwise) in entries.items():
            seconds = np.array([[stats[k].median_ms / 1e3 for k in row] for row in keys])
            table = np.maximum.accumulate(np.maximum.accumulate(seconds, axis=0), axis=1)
            layers[name] = LayerLatency(in_values, out_values, table.tolist(), depthwise)
        spreads = [s.spread for k, s in stats.items() if k != _FULL]
        full = stats[_FULL]
        measurement = {
            "conditions": conditions,
            "threads": threads if threads is not None else torch.get_num_threads(),
            "warmup": warmup,
            "repeats": repeats,
            "timings": len(stats),
            "seconds": time.perf_counter() - start,
            "loadavg_after": machine_conditions(device)["loadavg_1_5_15"],
            "full_model": full.to_dict(),
            "layer_spread_median": float(np.median(spreads)) if spreads else 0.0,
            "layer_spread_max": float(max(spreads, default=0.0)),
            "noisy_layer_timings": sum(s.noisy for k, s in stats.items() if k != _FULL),
            "noisy_spread": noisy_spread,
        }
        table = cls(layers, 0.0, net=net, device=str(device), batch_size=batch_size, grid=grid,
                    full_latency=full.median_ms / 1e3, measurement=measurement)
        table.overhead = max(0.0, table.full_latency - table.predict([g.channels for g in net.groups]))
        log.info("latency table: %d layers, %d timings in %.2fs (%s threads, load %s); full model %s, overhead %.3f ms, "
                 "median layer spread %.0f%%", len(layers), len(stats), measurement["seconds"], measurement["threads"],
                 conditions["loadavg_1_5_15"], full, table.overhead * 1e3, 100 * measurement["layer_spread_median"])
        if table.noisy:
            log.warning("the latency table was measured under noisy conditions (full model %s, %d of %d layer timings "
                        "noisy): the latency budget may not hold on an idle machine; re-measure it on a quiet machine "
                        "and reuse it with protocol.latency_table.path=<latency_table.json>",
                        full, measurement["noisy_layer_timings"], len(stats) - 1)
        return table

    @property
    def noisy(self) -> bool:
        """True when the full model's timing, or more than a tenth of the layer timings, had a large spread."""
        m = self.measurement
        full = m.get("full_model")
        try:
            return bool((isinstance(full, Mapping) and full.get("noisy"))
                        or m.get("noisy_layer_timings", 0) > 0.1 * max(1, m.get("timings", 1) - 1))
        except TypeError:  # a hand-edited record
            return False

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
        """A JSON-able description (for caching the table in a run dir), with how and where it was measured."""
        return {
            "version": FORMAT_VERSION,
            "device": self.device,
            "batch_size": self.batch_size,
            "grid": list(self.grid),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "overhead": self.overhead,
            "full_latency": self.full_latency,
            "measurement": self.measurement,
            "layers": {
                name: {"in": list(t.in_values), "out": list(t.out_values), "seconds": t.seconds, "depthwise": t.depthwise}
                for name, t in self.layers.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], net: PrunableNetwork | None = None) -> LatencyTable:
        """Rebuild a table from ``to_dict()``; with ``net``, check it describes that network."""
        if not isinstance(data, Mapping):
            raise LatencyTableError(f"a latency table is a JSON object, got {type(data).__name__}")
        if data.get("version") != FORMAT_VERSION:
            raise LatencyTableError(f"unsupported latency table version {data.get('version')!r}; expected {FORMAT_VERSION}")
        try:
            layers = {str(name): _layer_from_dict(str(name), t) for name, t in data["layers"].items()}
            overhead, batch_size = float(data["overhead"]), int(data["batch_size"])
            grid = [float(g) for g in data["grid"]]
            full = data.get("full_latency")
            full = None if full is None else float(full)
            shape = data.get("input_shape")
            shape = None if shape is None else [int(v) for v in shape]
            measurement = data.get("measurement") or {}
            if not isinstance(measurement, Mapping):
                raise TypeError(f"measurement is a {type(measurement).__name__}, not an object")
        except LatencyTableError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LatencyTableError(f"malformed latency table: {type(e).__name__}: {e}") from None
        if not math.isfinite(overhead) or overhead < 0:
            raise LatencyTableError(f"latency table overhead must be finite and >= 0, got {overhead}")
        return cls(layers, overhead, net=net, device=str(data["device"]), batch_size=batch_size, grid=grid,
                   full_latency=full, input_shape=shape, measurement=measurement)

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON to a new file (an existing file is never overwritten)."""
        path = Path(path)
        try:
            with path.open("x", encoding="utf-8") as f:
                json.dump(self.to_dict(), f)
        except FileExistsError:
            raise FileExistsError(f"{path} already exists; a latency table is never overwritten: choose another path") from None
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        net: PrunableNetwork,
        *,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> LatencyTable:
        """Read a table saved by ``save()`` (or a search's ``latency_table.json``) and check it fits ``net``.

        Refused with a LatencyTableError naming the file when it is not a latency table, its layers or channel
        counts differ from ``net``'s, or (when given) it was measured on another device type or batch size.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"latency table {path} not found (protocol.latency_table.path)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyTableError(f"latency table {path} is not UTF-8 JSON: {e}") from None
        try:
            table = cls.from_dict(data, net)
        except LatencyTableError as e:
            raise LatencyTableError(f"latency table {path}: {e}") from None
        if device is not None and torch.device(device).type != torch.device(table.device).type:
            raise LatencyTableError(f"latency table {path} was measured on {table.device}, not on {device}: "
                                    f"re-measure it on {device} (leave protocol.latency_table.path unset)")
        if batch_size is not None and int(batch_size) != table.batch_size:
            raise LatencyTableError(f"latency table {path} was measured at batch size {table.batch_size}, not {batch_size}")
        log.info("latency table %s: measured %s", path, table.measurement.get("conditions", {}).get("timestamp", "(no record)"))
        return table

    def _check_matches(self, net: PrunableNetwork) -> None:
        if set(self.layers) != set(net.costs):
            missing, extra = sorted(set(net.costs) - set(self.layers)), sorted(set(self.layers) - set(net.costs))
            raise LatencyTableError(
                f"latency table does not match the network: missing layers {missing}, unknown layers {extra}")
        if self.input_shape is not None and tuple(self.input_shape[1:]) != tuple(net.input_shape[1:]):
            raise LatencyTableError(f"latency table does not match the network: measured for inputs "
                                    f"{list(self.input_shape[1:])}, the network takes {list(net.input_shape[1:])}")
        for name, cost in net.costs.items():
            t = self.layers[name]
            if t.out_values[-1] != cost.out_channels or (not t.depthwise and t.in_values[-1] != cost.in_channels):
                raise LatencyTableError(
                    f"latency table layer {name!r} is for ({t.in_values[-1]}, {t.out_values[-1]}) channels but the "
                    f"network has ({cost.in_channels}, {cost.out_channels}): the table does not match the network, "
                    f"re-measure it"
                )


def _layer_from_dict(name: str, t: Mapping[str, Any]) -> LayerLatency:
    in_values, out_values = [int(v) for v in t["in"]], [int(v) for v in t["out"]]
    seconds = [[float(v) for v in row] for row in t["seconds"]]
    for label, values in (("in", in_values), ("out", out_values)):
        if not values or values[0] < 1 or any(b <= a for a, b in zip(values, values[1:])):
            raise LatencyTableError(f"layer {name!r}: {label!r} channel counts must be increasing and >= 1, got {values}")
    if len(seconds) != len(in_values) or any(len(row) != len(out_values) for row in seconds):
        raise LatencyTableError(f"layer {name!r}: seconds must be a {len(in_values)} x {len(out_values)} grid")
    if any(not math.isfinite(v) or v < 0 for row in seconds for v in row):
        raise LatencyTableError(f"layer {name!r}: seconds must be finite and >= 0")
    return LayerLatency(in_values, out_values, seconds, bool(t.get("depthwise", False)))


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
