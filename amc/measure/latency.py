"""Wall-clock latency of forward passes, measured so that the figures of one table can be compared.

Every variant of a table is timed in ONE interleaved block: after a warm-up, each round runs every callable
once (in an order rotated from round to round), so a change of machine load during the block hits all variants
alike instead of the one that happened to run while a neighbour was busy. The torch thread count is fixed for
the block, the garbage collector is paused, and the result per variant is the median with its inter-quartile
range: a relative spread above ``noisy_spread`` marks the figure as noisy (not to be trusted).
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

NOISY_SPREAD = 0.2  # relative inter-quartile range above which a latency is flagged as noisy


@dataclass(frozen=True)
class LatencyStats:
    """Median and quartiles (milliseconds) of ``repeats`` timed calls; ``spread`` = (p75 - p25) / median."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    spread: float
    repeats: int
    noisy: bool

    @classmethod
    def from_samples(cls, seconds: list[float], *, noisy_spread: float = NOISY_SPREAD) -> LatencyStats:
        if not seconds:
            raise ValueError("no latency samples")
        p25, median, p75 = (1e3 * float(v) for v in np.percentile(np.asarray(seconds, dtype=np.float64), [25, 50, 75]))
        spread = (p75 - p25) / median if median > 0 else float("inf")
        return cls(median, p25, p75, spread, len(seconds), bool(spread > noisy_spread))

    @property
    def iqr_ms(self) -> float:
        return self.p75_ms - self.p25_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.median_ms:.3g} ms (IQR {100 * self.spread:.0f}%{', noisy' if self.noisy else ''})"


def measure_latencies(
    fns: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    noisy_spread: float = NOISY_SPREAD,
    sync: Callable[[], object] | None = None,
    timer: Callable[[], float] | None = None,
    warm_calls: int = 0,
) -> dict[str, LatencyStats]:
    """Time every zero-argument callable in one interleaved, round-robin block; returns stats per name.

    ``warmup`` untimed rounds come first. Round ``r`` runs the callables in their given order rotated by ``r``.
    ``threads`` fixes torch's intra-op thread count for the block (default: the current count, unchanged) and is
    restored afterwards. ``sync`` runs after each call inside the timed region (e.g. ``torch.cuda.synchronize``);
    ``timer`` returns seconds (default ``time.perf_counter``; tests inject a fake clock). ``warm_calls`` untimed calls
    run right before each timed one: a deployed model runs call after call with its weights in the CPU caches, while
    in a round-robin block every other variant's weights pass through them in between (a MobileNet-V2 timed among
    nine others in onnxruntime took 1.6x as long as right after a call of its own).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0 or warm_calls < 0:
        raise ValueError(f"warmup and warm_calls must be >= 0, got {warmup}, {warm_calls}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None (keep the current count), got {threads}")
    if not fns:
        raise ValueError("nothing to measure: fns is empty")
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"latency target {name!r} is a {type(fn).__name__}, not a callable")
    timer = timer if timer is not None else time.perf_counter
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    previous_threads = torch.get_num_threads()
    gc_was_enabled = gc.isenabled()
    if threads is not None:
        torch.set_num_threads(threads)
    gc.disable()  # a collection inside a timed call would be charged to whichever variant was running
    try:
        for r in range(warmup + repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                fn = fns[name]
                for _ in range(warm_calls):
                    fn()
                if sync is not None and warm_calls:
                    sync()
                start = timer()
                fn()
                if sync is not None:
                    sync()
                elapsed = timer() - start
                if r >= warmup:
                    samples[name].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
        torch.set_num_threads(previous_threads)
    return {name: LatencyStats.from_samples(samples[name], noisy_spread=noisy_spread) for name in names}


def measure_model_latencies(
    models: Mapping[str, nn.Module],
    input_shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    noisy_spread: float = NOISY_SPREAD,
    timer: Callable[[], float] | None = None,
) -> dict[str, LatencyStats]:
    """Forward-pass latency of each model on a random ``input_shape`` batch, all in one interleaved block.

    ``input_shape`` is one shape for all models or a shape per name. Models run in eval mode under ``no_grad``;
    each model's train/eval mode is restored afterwards. Models must already live on ``device``: they are never
    moved (the caller's model is not mutated). On CUDA every call is synchronised inside the timed region.
    """
    device = torch.device(device)
    fns: dict[str, Callable[[], object]] = {}
    modes: dict[str, bool] = {}
    for name, model in models.items():
        param = next(model.parameters(), None)
        if param is not None and param.device.type != device.type:
            raise ValueError(f"model {name!r} is on {param.device} but latency was requested on {device}; move it first")
        shape = input_shape[name] if isinstance(input_shape, Mapping) else input_shape
        fns[name] = _forward(model, torch.randn(tuple(shape), device=device))
        modes[name] = model.training
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    try:
        for model in models.values():
            model.eval()
        with torch.no_grad():
            return measure_latencies(fns, warmup=warmup, repeats=repeats, threads=threads, noisy_spread=noisy_spread,
                                     sync=sync, timer=timer)
    finally:
        for name, model in models.items():
            model.train(modes[name])


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    return lambda: model(x)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    warmup: int = 5,
    repeats: int = 30,
    device: torch.device | str = "cpu",
    threads: int | None = None,
) -> float:
    """Median seconds per forward pass of one model (see ``measure_model_latencies``; prefer it for tables)."""
    stats = measure_model_latencies({"model": model}, input_shape, device=device, warmup=warmup, repeats=repeats,
                                    threads=threads)
    return stats["model"].median_ms / 1e3


def machine_conditions(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The conditions a latency depends on, to record next to it (load, cores, threads, versions, time)."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not available on this platform
        load = None
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cpus = os.cpu_count()
    return {
        "loadavg_1_5_15": load,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_version": torch.__version__,
        "device": str(device),
        "processor": platform.processor() or platform.machine(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
