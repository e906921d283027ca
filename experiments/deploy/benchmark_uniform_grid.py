"""Uniform pruning and AMC's committed plan at a MACs target on channel grid 1 and on the runtime's grid: speedups over
the original in onnxruntime and eager PyTorch, every variant of a model timed in one interleaved block (warm caches).
The plans were searched on grid 1; on the runtime's grid their counts are rounded onto it through the MACs wall, as
``amc.apply plan=...`` does.

    python experiments/deploy/benchmark_uniform_grid.py [--models resnet20 resnet56 mobilenet_v2] [--target 0.5]
        [--batch-sizes 1 64] [--threads 1] [--grids 1 8 16] [--out experiments/results/deploy/uniform_grid]

``--grids`` (default: 1 and the runtime's grid on this CPU) compares other grids in the same block, e.g. 8 against 16
on an AVX-512 CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from amc.artifacts.checkpoint import load_model
from amc.measure.latency import machine_conditions
from amc.measure.runtime import default_round_to, latency_key, measure_runtime_latencies, runtime_conditions
from amc.pruning.budget import ResourceBudget
from amc.pruning.groups import PrunableNetwork, round_channels
from amc.pruning.surgery import prune_copy
from amc.pruning.uniform import solve_uniform

ROOT = Path(__file__).resolve().parents[2]
PLANS = {"resnet20": "experiments/results/resnet20_fmnist_macs50/seed0/best_plan.json",
         "resnet56": "experiments/results/resnet56_fmnist_macs50/seed0/best_plan.json",
         "mobilenet_v2": "experiments/results/mobilenet_v2_fmnist_macs50/seed0/best_plan.json"}


def plan_counts(net: PrunableNetwork, path: Path, target: float) -> list[int]:
    """A plan's channel counts on ``net``'s grid: rounded there and capped by the MACs wall at ``target``."""
    planned = [g["kept_channels"] for g in json.loads(path.read_text())["groups"]]
    budget = ResourceBudget(net, "macs", target, 0.05)
    counts: list[int] = []
    for n, g in zip(planned, net.groups):
        counts.append(budget.cap(counts, round_channels(n / g.channels, g.channels, net.round_to)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenet_v2"])
    parser.add_argument("--target", type=float, default=0.5, help="MACs ratio of the uniform policy")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--grids", type=int, nargs="+", default=None,
                        help="channel grids to compare (default: 1 and onnxruntime's grid on this CPU)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    grid = default_round_to("onnxruntime")
    grids = args.grids or [1, grid]
    runtimes = ["onnxruntime", "torch"]
    results = {"conditions": {**machine_conditions("cpu"), **runtime_conditions("onnxruntime", args.threads)},
               "target_macs_ratio": args.target, "grid": grid, "grids": grids, "models": {}}
    for name in args.models:
        model, _ = load_model(ROOT / f"experiments/baselines/fashion_mnist/{name}/model.safetensors")
        variants, rows = {"original": model.eval()}, {}
        for round_to in grids:
            net = PrunableNetwork(model.eval(), (1, 1, 28, 28), round_to=round_to)
            policy = solve_uniform(net, args.target)
            label = f"uniform, grid {round_to}"
            variants[label] = prune_copy(net, [torch.arange(n) for n in policy.counts]).eval()
            rows[label] = {"counts": policy.counts, "macs_ratio": net.predict_macs(policy.counts) / net.original_macs}
            if name in PLANS and (ROOT / PLANS[name]).is_file():
                counts = plan_counts(net, ROOT / PLANS[name], args.target)
                label = f"AMC plan, grid {round_to}"
                variants[label] = prune_copy(net, [torch.arange(n) for n in counts]).eval()
                rows[label] = {"counts": counts, "macs_ratio": net.predict_macs(counts) / net.original_macs,
                               "plan": PLANS[name]}
        stats = measure_runtime_latencies(variants, (1, 1, 28, 28), runtimes=runtimes, batch_sizes=args.batch_sizes,
                                          threads=args.threads, repeats=args.repeats)
        for label, row in rows.items():
            row["speedups"] = {latency_key(rt, b): stats["original"][rt][b].median_ms / stats[label][rt][b].median_ms
                               for rt in runtimes for b in args.batch_sizes}
            row["latency_ms"] = {latency_key(rt, b): stats[label][rt][b].median_ms for rt in runtimes for b in args.batch_sizes}
        rows["original"] = {"latency_ms": {latency_key(rt, b): stats["original"][rt][b].median_ms
                                           for rt in runtimes for b in args.batch_sizes}}
        results["models"][name] = rows
        for label, row in rows.items():
            if label != "original":
                print(f"{name} {label}: MACs {row['macs_ratio']:.3f}, " + ", ".join(
                    f"{k} {v:.2f}x" for k, v in row["speedups"].items()), flush=True)
    results["loadavg_after"] = os.getloadavg()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        keys = [latency_key(rt, b) for rt in runtimes for b in args.batch_sizes]
        c = results["conditions"]
        lines = [f"# Uniform pruning and AMC's plan at {args.target} MACs: channel grids {', '.join(map(str, grids))} "
                 f"(the runtime's grid on this CPU: {grid})",
                 "", "AMC plans (searched on grid 1): " + ", ".join(f"{k} `{v}`" for k, v in PLANS.items()) + ".", "",
                 f"Speedup = original latency / pruned latency, all variants of a model in one interleaved block "
                 f"(warm caches), {args.threads} thread(s). onnxruntime {c.get('onnxruntime_version')}, torch "
                 f"{c.get('torch_version')}, CPU {c.get('cpu')}; load before {c.get('loadavg_1_5_15')}, after "
                 f"{[round(v, 2) for v in results['loadavg_after']]}.", "",
                 "| model | variant | MACs ratio | " + " | ".join(f"speedup {k}" for k in keys) + " |",
                 "|---|---|---:|" + "---:|" * len(keys)]
        for name, rows in results["models"].items():
            for label, row in rows.items():
                if label != "original":
                    lines.append(f"| {name} | {label} | {row['macs_ratio']:.3f} | "
                                 + " | ".join(f"{row['speedups'][k]:.2f}x" for k in keys) + " |")
        command = "python experiments/deploy/benchmark_uniform_grid.py" + (
            f" --grids {' '.join(map(str, args.grids))}" if args.grids else "")
        lines += ["", f"Command: `{command} --out <dir>`."]
        (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
