"""Measuring a latency table: every Conv2d / Linear layer of a network timed standalone on its channel grid in the
deployment runtime, whole models timed in the same run to fit the table's scale and overhead; and the on-disk cache
of tables keyed by the conditions they hold under (``table_identity``)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.measure.latency import NOISY_SPREAD, LatencyStats, machine_conditions, measure_latencies
from amc.measure.latency_table import LatencyTable, LayerLatency, table_identity
from amc.measure.runtime import (
    forward_callable,
    identity_onnx,
    layer_onnx,
    resolve_runtime,
    resolve_threads,
    runtime_conditions,
)
from amc.pruning.budget import grid_points
from amc.pruning.groups import PrunableNetwork

log = logging.getLogger(__name__)
_FULL = "full model"  # the whole models of the fit, in the timing block


def measure_table(
    net: PrunableNetwork,
    *,
    runtime: str = "torch",
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    max_points: int = 12,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    calibration_models: int = 8,
    seed: int = 0,
    noisy_spread: float = NOISY_SPREAD,
    warm_calls: int = 1,
) -> LatencyTable:
    """Time every Conv2d / Linear layer of ``net`` standalone in ``runtime`` on its channel grid, and whole models.

    A prunable dimension is timed at the counts the search can choose (multiples of its group's ``step``, and all
    channels), at most ``max_points`` of them spread evenly (always the smallest and all): the latency is a step
    function of the channel count, so the table is measured on the grid the counts land on, never across it.
    The whole unpruned model and ``calibration_models`` pruned ones (uniform at several widths and random grid
    counts) are timed in the same interleaved block; ``measured ~ scale * sum(layers) + overhead`` is fitted on
    them (least squares), which absorbs what layer timings alone miss (fusions, layout changes, dispatch).
    Every timed call follows ``warm_calls`` untimed ones of the same layer or model (warm caches, as deployed).
    The machine's conditions and the timings' spread are recorded in ``measurement``.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2 (the smallest count and all channels), got {max_points}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    runtime = resolve_runtime(runtime)
    device = torch.device(device)
    threads = resolve_threads(threads)
    start = time.perf_counter()
    conditions = {**machine_conditions(device), **runtime_conditions(runtime, threads)}
    prunable: dict[str, set[str]] = {}
    steps: dict[tuple[str, str], int] = {}  # (layer, dim) -> the grid of its group's counts
    for g in net.groups:
        for m in g.members:
            prunable.setdefault(m.layer, set()).add(m.dim)
            steps[(m.layer, m.dim)] = g.step
    timed: dict[tuple, str] = {}  # configuration key -> name in the interleaved block
    fns: dict[str, Callable[[], object]] = {}
    references: dict[str, str] = {}  # a timed layer -> the session call of its input shape (onnxruntime)
    entries: dict[str, tuple[list[int], list[int], list[list[str]], bool]] = {}
    for name, cost in net.costs.items():
        module = net.modules[name]
        dims = prunable.get(name, set())
        depthwise = _is_depthwise(module)
        scale_in = "in" in dims and not depthwise
        scale_out = bool(dims) if depthwise else "out" in dims
        in_step, out_step = steps.get((name, "in"), net.round_to), steps.get((name, "out"), net.round_to)
        in_values = grid_points(cost.in_channels, in_step, max_points) if scale_in else [cost.in_channels]
        out_values = grid_points(cost.out_channels, out_step, max_points) if scale_out else [cost.out_channels]
        keys = []
        for ci in in_values:
            row = []
            for co in out_values:
                layer, shape, key = _standalone(module, cost, ci, co, depthwise, batch_size)
                if key not in timed:
                    timed[key] = f"layer{len(timed)}"
                    if runtime == "onnxruntime":
                        fns[timed[key]] = forward_callable(layer, shape, runtime=runtime, threads=threads,
                                                           onnx_bytes=layer_onnx(layer, shape))
                        call = f"call {shape}"  # what a session call costs without the layer's compute
                        references[timed[key]] = call
                        if call not in fns:
                            fns[call] = forward_callable(layer, shape, runtime=runtime, threads=threads,
                                                         onnx_bytes=identity_onnx(shape))
                    else:
                        fns[timed[key]] = forward_callable(layer.to(device), shape, runtime=runtime,
                                                           threads=threads)
                row.append(timed[key])
            keys.append(row)
        entries[name] = (in_values, out_values, keys, depthwise)
    calibration = _calibration_counts(net, calibration_models, seed)
    whole: dict[str, Callable[[], object]] = {}
    for i, counts in enumerate(calibration):
        model = net.model if i == 0 else _pruned_for_timing(net, counts)
        if runtime == "torch":  # a copy of the caller's model (never moved), the pruned copies as they are
            model = (copy.deepcopy(model) if i == 0 else model).to(device).eval()
        whole[f"{_FULL} {i}"] = forward_callable(model, (batch_size, *net.input_shape[1:]), runtime=runtime,
                                                 threads=threads)
    log.info("latency table: timing %d layer configurations and %d whole models in %s (%d thread(s))",
             len(timed), len(calibration), runtime, threads)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    stats: dict[str, LatencyStats] = {}
    with torch.no_grad():  # two blocks: the whole models are not timed among hundreds of others' weights
        for block in (fns, whole):
            stats.update(measure_latencies(block, warmup=warmup, repeats=repeats, threads=threads,
                                           noisy_spread=noisy_spread, sync=sync, warm_calls=warm_calls))
    layers: dict[str, LayerLatency] = {}
    for name, (in_values, out_values, keys, depthwise) in entries.items():
        seconds = np.array([[_compute_seconds(stats, k, references.get(k)) for k in row] for row in keys])
        table = np.maximum.accumulate(np.maximum.accumulate(seconds, axis=0), axis=1)
        layers[name] = LayerLatency(in_values, out_values, table.tolist(), depthwise)
    layer_stats = [s for k, s in stats.items() if k.startswith("layer")]
    full = stats[f"{_FULL} 0"]
    measurement = {
        "conditions": conditions,
        "runtime": runtime,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "warm_calls": warm_calls,
        "timings": len(stats),
        "seconds": time.perf_counter() - start,
        "loadavg_after": machine_conditions(device)["loadavg_1_5_15"],
        "full_model": full.to_dict(),
        "layer_spread_median": float(np.median([s.spread for s in layer_stats])) if layer_stats else 0.0,
        "layer_spread_max": float(max((s.spread for s in layer_stats), default=0.0)),
        "noisy_layer_timings": sum(s.noisy for s in layer_stats),
        "noisy_spread": noisy_spread,
    }
    table = LatencyTable(layers, 0.0, net=net, device=str(device), batch_size=batch_size, round_to=net.round_to,
                max_points=max_points, runtime=runtime, full_latency=full.median_ms / 1e3, measurement=measurement)
    sums = np.array([table.predict(c) for c in calibration])
    measured = np.array([stats[f"{_FULL} {i}"].median_ms / 1e3 for i in range(len(calibration))])
    table.scale, table.overhead = _fit(sums, measured)
    predicted = np.array([table.predict(c) for c in calibration])
    table.measurement["calibration"] = {
        "counts": [list(map(int, c)) for c in calibration], "measured_ms": (1e3 * measured).tolist(),
        "layer_sum_ms": (1e3 * sums).tolist(),
        "median_abs_error": float(np.median(np.abs(predicted - measured) / measured)),
    }
    log.info("latency table: %d layers, %d timings in %.2fs (%s, %s threads, load %s); full model %s; fit "
             "scale %.3f, overhead %.3f ms, median error on the %d whole models %.1f%%", len(layers), len(stats),
             measurement["seconds"], runtime, threads, conditions["loadavg_1_5_15"], full, table.scale,
             table.overhead * 1e3, len(calibration), 100 * table.measurement["calibration"]["median_abs_error"])
    if table.noisy:
        log.warning("the latency table was measured under noisy conditions (full model %s, %d of %d layer timings "
                    "noisy): the latency budget may not hold on an idle machine; re-measure it on a quiet machine "
                    "and reuse it with protocol.latency_table.path=<latency_table.json>",
                    full, measurement["noisy_layer_timings"], len(layer_stats))
    return table


def cached_table(net: PrunableNetwork, cache_dir: str | Path | None, *, runtime: str, threads: int, batch_size: int,
                 max_points: int, **measure_kwargs: Any) -> LatencyTable:
    """The table for ``net`` under these conditions: from ``cache_dir`` when measured before, else measured now
    (and saved there). ``cache_dir`` None: always measure."""
    identity = table_identity(net, runtime=runtime, threads=threads, batch_size=batch_size, max_points=max_points)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"{runtime}-{digest}.json"
        if path.is_file():
            log.info("latency table from the cache: %s", path)
            return LatencyTable.load(path, net, batch_size=batch_size, expect=identity)
    table = LatencyTable.measure(net, runtime=runtime, threads=threads, batch_size=batch_size, max_points=max_points,
                                 **measure_kwargs)
    table.identity = identity
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table.to_dict()))
        tmp.replace(path)  # atomic: a concurrent search never reads half a table
        log.info("latency table cached in %s", path)
    return table


def _calibration_counts(net: PrunableNetwork, n: int, seed: int) -> list[list[int]]:
    """Group channel counts of the whole models the fit is made on: all channels, uniform widths, random grid counts."""
    from amc.pruning.budget import channel_candidates

    full = [g.channels for g in net.groups]
    counts = [full]
    uniform = [0.75, 0.5, 0.3, 0.2][: max(0, n // 2)]
    counts += [net.channel_counts([k] * net.num_groups) for k in uniform]
    rng = np.random.default_rng(seed)
    while len(counts) < n + 1:
        level = rng.uniform(0.2, 1.0)  # a random overall width, each group's count on the grid around it
        row = []
        for g in net.groups:
            values = channel_candidates(g.channels, g.step)
            i = np.searchsorted(values, level * rng.uniform(0.7, 1.3) * g.channels)
            row.append(values[min(int(i), len(values) - 1)])
        counts.append(row)
    return counts


def _pruned_for_timing(net: PrunableNetwork, counts: Sequence[int]) -> nn.Module:
    """``net.model`` pruned to ``counts`` (the first channels of each group: weights do not change latency)."""
    from amc.pruning.surgery import prune_copy

    return prune_copy(net, [torch.arange(n) for n in counts]).eval()


def _fit(sums: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``measured ~ scale * sums + overhead`` by least squares with scale > 0 and overhead >= 0 (a negative overhead
    would predict a negative latency for a small enough model): through the origin when the free fit's is negative."""
    if len(sums) >= 2 and np.ptp(sums) > 0:
        scale, overhead = np.polyfit(sums, measured, 1)
        if scale > 0 and overhead >= 0:
            return float(scale), float(overhead)
    if float(np.dot(sums, sums)) > 0:
        return float(np.dot(sums, measured) / np.dot(sums, sums)), 0.0
    return 1.0, float(max(0.0, np.mean(measured - sums)))


def _compute_seconds(stats: Mapping[str, Any], key: str, reference: str | None) -> float:
    """A standalone layer's median seconds, less the bare session call of its input shape when there is one (a
    whole model pays that once, not once per layer)."""
    seconds = stats[key].median_ms / 1e3
    return seconds if reference is None else max(0.0, seconds - stats[reference].median_ms / 1e3)


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


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
