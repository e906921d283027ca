"""A per-layer latency model of a prunable network, measured in the runtime it is deployed with.

Every Conv2d / Linear layer is timed standalone (in onnxruntime, or eager PyTorch) at the channel counts the search
can choose: multiples of the network's ``round_to`` (the runtime's channel grid), since latency is a step function of
the channel count. A pruned model's latency is predicted as ``scale * sum(layer latencies) + overhead``, the layers
interpolated between measured grid points, with ``scale`` and ``overhead`` fitted on whole models timed in the same
block (the unpruned one and a few pruned ones). Each layer's table is made monotone in both channel counts, so the
prediction never grows when channels are removed (which the budget wall's binary search relies on).

All timings of a table run in one interleaved block (``amc.measure.latency``); the runtime, threads, batch size,
CPU and the timings' spread are saved with it. A table is cached on disk under a key of those and the network's
architecture (``table_identity``) and reused; a table measured elsewhere is refused with the difference named.
Measuring and the cache live in ``amc.measure.latency_measure``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amc.pruning.groups import PrunableNetwork

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: eager PyTorch, fractions of the channels, no fitted scale


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
        round_to: int = 1,
        max_points: int | None = None,
        runtime: str = "torch",
        scale: float = 1.0,
        full_latency: float | None = None,
        input_shape: Sequence[int] | None = None,
        measurement: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
    ) -> None:
        self.layers = dict(layers)
        self.overhead = float(overhead)
        self.scale = float(scale)
        self.net = net
        self.device = str(device)
        self.batch_size = int(batch_size)
        self.round_to, self.max_points, self.runtime = int(round_to), max_points, str(runtime)
        self.full_latency = full_latency
        if input_shape is None and net is not None:
            input_shape = net.input_shape
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.measurement = dict(measurement) if measurement else {}
        self.identity = dict(identity) if identity else {}
        if net is not None:
            self._check_matches(net)

    # -- measurement -------------------------------------------------------------------------------------
    @classmethod
    def measure(cls, net: PrunableNetwork, **kwargs: Any) -> LatencyTable:
        """Measure the table of ``net``: ``amc.measure.latency_measure.measure_table`` (its arguments)."""
        from amc.measure.latency_measure import measure_table

        return measure_table(net, **kwargs)

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
        total = 0.0
        for name, layer in self.layers.items():
            c_in, c_out = channels.get(name, (layer.in_values[-1], layer.out_values[-1]))
            total += layer.predict(c_in, c_out)
        return self.scale * total + self.overhead

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
            "identity": self.identity,
            "runtime": self.runtime,
            "device": self.device,
            "batch_size": self.batch_size,
            "round_to": self.round_to,
            "max_points": self.max_points,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "scale": self.scale,
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
        if data.get("version") not in READABLE_VERSIONS:
            raise LatencyTableError(f"unsupported latency table version {data.get('version')!r}; expected one of "
                                    f"{list(READABLE_VERSIONS)}")
        try:
            layers = {str(name): _layer_from_dict(str(name), t) for name, t in data["layers"].items()}
            overhead, batch_size = float(data["overhead"]), int(data["batch_size"])
            scale, round_to = float(data.get("scale", 1.0)), int(data.get("round_to", 1))
            max_points = data.get("max_points")
            max_points = None if max_points is None else int(max_points)
            runtime, identity = str(data.get("runtime", "torch")), data.get("identity") or {}
            if not isinstance(identity, Mapping):
                raise TypeError(f"identity is a {type(identity).__name__}, not an object")
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
        if not math.isfinite(overhead) or not math.isfinite(scale) or scale <= 0:
            raise LatencyTableError(f"latency table overhead must be finite and scale finite and > 0, got {overhead}, "
                                    f"{scale}")
        return cls(layers, overhead, net=net, device=str(data["device"]), batch_size=batch_size, round_to=round_to,
                   max_points=max_points, runtime=runtime, scale=scale, full_latency=full, input_shape=shape,
                   measurement=measurement, identity=identity)

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
        expect: Mapping[str, Any] | None = None,
    ) -> LatencyTable:
        """Read a table saved by ``save()`` (or a search's ``latency_table.json``) and check it fits ``net``.

        Refused with a LatencyTableError naming the file when it is not a latency table, its layers or channel
        counts differ from ``net``'s, (when given) it was measured on another device type or batch size, or its
        identity differs from ``expect`` (``table_identity``: another runtime, thread count, batch size, CPU, grid).
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
        if expect is not None:
            differing = [f"{k}: table {table.identity.get(k)!r}, here {v!r}" for k, v in expect.items()
                         if table.identity.get(k) != v]
            if differing:
                raise LatencyTableError(f"latency table {path} was measured under other conditions ({'; '.join(differing)})"
                                        f": its latencies do not hold here; leave protocol.latency_table.path unset to "
                                        f"measure (or reuse from the cache) a table for these conditions")
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


def architecture_key(net: PrunableNetwork) -> str:
    """A hash of what a latency table depends on in the network: every timed layer's shape and the input size
    (weights do not matter, so one table serves every checkpoint of an architecture)."""
    parts = [list(net.input_shape[1:])]
    for name, cost in sorted(net.costs.items()):
        module = net.modules[name]
        parts.append([name, type(module).__name__, cost.in_channels, cost.out_channels, cost.groups, list(cost.in_hw),
                      str(getattr(module, "kernel_size", "")), str(getattr(module, "stride", "")), cost.macs])
    parts.append([[g.root, g.channels] for g in net.groups])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def table_identity(net: PrunableNetwork, *, runtime: str, threads: int, batch_size: int,
                   max_points: int) -> dict[str, Any]:
    """The conditions a table's latencies hold under; a cached or given table must match them."""
    from amc.measure.runtime import cpu_name

    return {"architecture": architecture_key(net), "runtime": runtime, "threads": int(threads),
            "batch_size": int(batch_size), "cpu": cpu_name(), "round_to": int(net.round_to),
            "max_points": int(max_points)}


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
