"""Time a finished run's variants again, in one interleaved block, when its own block ran on a busy machine.

    python -m experiments.deploy.remeasure_latency <run dir>... [--only-noisy] [--batch-sizes 1 64] [--repeats 30]

A run's comparison times every variant once, at its end, under whatever load the machine had then; its latency.json
flags figures whose spread exceeds 20% of their median (``noisy``). This command rebuilds every variant from its
committed plan (the run's ``best_plan.json`` and each ``compare/<method>/best_plan.json``, applied to the original
checkpoint the plan names; latency depends on the shapes only, so the pruned weights are not needed) and times them
and the original again in onnxruntime, one thread, interleaved, with the load recorded. It writes
``<run>/latency_remeasured.json`` (the run's own latency.json and summaries are kept); ``latency_front_table.py`` and
``amc.report`` take the speedups from it that are clean (``amc.reporting.runs.remeasured_speedups``). ``--only-noisy``
skips runs whose onnxruntime figures were all clean.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from amc.artifacts.plan import PruningPlan, load_base, rebuild_pruned
from amc.measure.latency import machine_conditions
from amc.measure.runtime import add_latency_figures, measure_runtime_latencies, runtime_conditions
from amc.reporting.runs import REMEASURED

log = logging.getLogger(__name__)
RUNTIME = "onnxruntime"


def variant_plans(run: Path) -> dict[str, Path]:
    """The plans of ``run``'s comparison, by the names its latency.json gives them: the run's own method first
    (``best_plan.json``), then each ``compare/<method>/best_plan.json``."""
    names = [n for n in json.loads((run / "latency.json").read_text())["stats"] if n != "original"]
    return {name: run / "best_plan.json" if i == 0 else run / "compare" / name / "best_plan.json"
            for i, name in enumerate(names)}


def was_noisy(run: Path) -> bool:
    stats = json.loads((run / "latency.json").read_text())["stats"]
    return any(s.get("noisy") for v in stats.values() for key, s in v.items() if key.startswith(RUNTIME))


def remeasure(run: Path, *, batch_sizes: list[int], repeats: int, warmup: int) -> dict[str, Any]:
    """Every variant of ``run`` and its original timed in one block; the record written to ``REMEASURED``."""
    plans = {name: PruningPlan.load(path) for name, path in variant_plans(run).items()}
    base, _ = load_base(next(iter(plans.values())))
    models = {"original": base.eval(), **{name: rebuild_pruned(base, plan) for name, plan in plans.items()}}
    shape = next(iter(plans.values())).input_shape
    before = machine_conditions("cpu")
    stats = measure_runtime_latencies(models, shape, runtimes=[RUNTIME], batch_sizes=batch_sizes,
                                      threads=1, warmup=warmup, repeats=repeats)
    rows = [{"variant": name} for name in models]
    add_latency_figures(rows, stats)
    record = {
        "conditions": {**before, **runtime_conditions(RUNTIME, 1)},
        "loadavg_after": machine_conditions("cpu")["loadavg_1_5_15"], "batch_sizes": batch_sizes, "repeats": repeats,
        "stats": {r["variant"]: r["latencies"] for r in rows}, "speedups": {r["variant"]: r["speedups"] for r in rows},
    }
    (run / REMEASURED).write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--only-noisy", action="store_true")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for run in args.runs:
        if not (run / "latency.json").is_file():
            raise SystemExit(f"{run}: no latency.json (not a finished search or apply run dir)")
        if args.only_noisy and not was_noisy(run):
            continue
        record = remeasure(run, batch_sizes=args.batch_sizes, repeats=args.repeats, warmup=args.warmup)
        noisy = [f"{n} {k}" for n, v in record["stats"].items() for k, s in v.items() if s["noisy"]]
        speedups = ", ".join(f"{n} {k} {x:.2f}x" for n, v in record["speedups"].items() if n != "original"
                             for k, x in v.items())
        log.info("%s (load %s): %s%s", run, record["conditions"]["loadavg_1_5_15"], speedups,
                 f"; still noisy: {', '.join(noisy)}" if noisy else "")


if __name__ == "__main__":
    main()
