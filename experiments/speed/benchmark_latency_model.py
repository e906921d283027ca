"""Does the latency table predict whole-model latency in the deployment runtime? Prints, per model, predicted against
measured latency of random budget-meeting policies (rank correlation, median absolute error), all measured models
timed in one interleaved block.

    python experiments/speed/benchmark_latency_model.py [--models resnet20 resnet56 mobilenet_v2] [--policies 30]
        [--runtime onnxruntime] [--threads 1] [--out experiments/results/speed/latency_model]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from amc.artifacts.checkpoint import load_model
from amc.measure.latency import machine_conditions
from amc.measure.latency_measure import cached_table
from amc.measure.runtime import measure_runtime_latencies, resolve_round_to, resolve_runtime, runtime_conditions
from amc.pruning.budget import ResourceBudget
from amc.pruning.groups import PrunableNetwork, round_channels
from amc.pruning.surgery import prune_copy

ROOT = Path(__file__).resolve().parents[2]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def random_policies(net: PrunableNetwork, table, n: int, lbound: float, rng: np.random.Generator,
                    targets: tuple[float, float] = (0.25, 0.9)) -> list[list[int]]:
    """Random keep ratios through the budget wall at random latency targets (the env's rule, group by group)."""
    policies = []
    while len(policies) < n:
        target = rng.uniform(*targets)
        try:
            budget = ResourceBudget(net, "latency", target, lbound, latency_table=table)
        except ValueError:
            continue
        counts: list[int] = []
        for g in net.groups:
            counts.append(budget.cap(counts, round_channels(rng.uniform(lbound, 1.0), g.channels, net.round_to)))
        policies.append(counts)
    return policies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenet_v2"])
    parser.add_argument("--policies", type=int, default=30)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--round-to", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "latency_tables"))
    parser.add_argument("--out", type=Path, default=None, help="write results.json and results.md here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", type=float, nargs=2, default=(0.25, 0.9), help="range of the random latency targets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    runtime = resolve_runtime(args.runtime)
    round_to = resolve_round_to(args.round_to if args.round_to == "auto" else int(args.round_to), runtime)
    rng = np.random.default_rng(args.seed)
    results = {"runtime": runtime_conditions(runtime, args.threads), "round_to": round_to,
               "batch_size": args.batch_size, "policies": args.policies, "load_before": os.getloadavg(), "models": {}}
    for name in args.models:
        model, _ = load_model(ROOT / f"experiments/baselines/fashion_mnist/{name}/model.safetensors")
        net = PrunableNetwork(model.eval(), (1, 1, 28, 28), round_to=round_to)
        start = time.perf_counter()
        table = cached_table(net, args.cache, runtime=runtime, threads=args.threads, batch_size=args.batch_size,
                             max_points=12)
        table_seconds = time.perf_counter() - start
        policies = random_policies(net, table, args.policies, 0.2, rng, tuple(args.targets))
        # one small block per policy (the original and it): a block of 31 models would time them all with cold caches
        measured, original = [], []
        for c in policies:
            pruned = prune_copy(net, [torch.arange(n) for n in c]).eval()
            stats = measure_runtime_latencies({"original": net.model, "pruned": pruned}, net.input_shape,
                                              runtimes=[runtime], batch_sizes=[args.batch_size], threads=args.threads,
                                              repeats=args.repeats)
            measured.append(stats["pruned"][runtime][args.batch_size].median_ms)
            original.append(stats["original"][runtime][args.batch_size].median_ms)
        measured, original = np.array(measured), np.array(original)
        predicted = np.array([1e3 * table.predict(c) for c in policies])
        predicted_full = 1e3 * table.predict([g.channels for g in net.groups])
        err = np.abs(predicted - measured) / measured
        ratio_measured, ratio_predicted = measured / original, predicted / predicted_full
        ratio_err = np.abs(ratio_predicted - ratio_measured) / ratio_measured
        row = {"spearman": spearman(ratio_predicted, ratio_measured),
               "pearson": float(np.corrcoef(ratio_predicted, ratio_measured)[0, 1]),
               "spearman_ms": spearman(predicted, measured),
               "median_abs_error": float(np.median(err)), "p90_abs_error": float(np.percentile(err, 90)),
               "ratio_median_abs_error": float(np.median(ratio_err)),
               "ratio_p90_abs_error": float(np.percentile(ratio_err, 90)),
               "ratio_bias": float(np.median((ratio_predicted - ratio_measured) / ratio_measured)),
               "original_measured_ms": float(np.median(original)), "original_predicted_ms": predicted_full,
               "table_seconds": table_seconds, "table_fit_error": table.measurement.get("calibration", {}).get("median_abs_error"),
               "measured_speedups": (1 / ratio_measured).round(3).tolist(),
               "predicted_speedups": (1 / ratio_predicted).round(3).tolist(), "predicted_ms": predicted.round(4).tolist(),
               "measured_ms": measured.round(4).tolist(), "original_ms": original.round(4).tolist(), "counts": policies}
        results["models"][name] = row
        print(f"{name}: {len(policies)} policies, Spearman {row['spearman']:.3f}, Pearson {row['pearson']:.3f}, median "
              f"|error| {100 * row['median_abs_error']:.1f}% (p90 {100 * row['p90_abs_error']:.1f}%); latency ratio "
              f"(speedup) median |error| {100 * row['ratio_median_abs_error']:.1f}% (p90 "
              f"{100 * row['ratio_p90_abs_error']:.1f}%, bias {100 * row['ratio_bias']:+.1f}%); original "
              f"{row['original_measured_ms']:.3f} ms measured / {predicted_full:.3f} predicted; table {table_seconds:.0f} s",
              flush=True)
    results["load_after"] = os.getloadavg()
    results["machine"] = machine_conditions("cpu")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        lines = [f"# Latency table vs measured whole-model latency ({runtime}, batch {args.batch_size}, "
                 f"{args.threads} thread(s), grid {round_to})", "",
                 f"{args.policies} random budget-meeting policies per model (random keep ratios through the budget "
                 f"wall at random latency targets in [{args.targets[0]}, {args.targets[1]}]), each measured in one interleaved block with the "
                 f"original (a block per policy, each timed call after an untimed one: warm caches). Latency ratio = "
                 f"the pruned model's latency / the original's, predicted from the table and measured in the policy's "
                 f"block: the figure a latency budget is set in; Spearman and Pearson are of the ratios. Absolute "
                 f"errors (ms) also carry the machine's drift between blocks (2-3x here within hours). CPU {results['runtime']['cpu']}; load before {results['load_before']}, after "
                 f"{results['load_after']}.", "",
                 "| model | Spearman | Pearson | median abs error (ms) | p90 | latency ratio: median abs error | p90 | "
                 "bias | measured speedups (min-max) | table s |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for name, r in results["models"].items():
            s = r["measured_speedups"]
            lines.append(f"| {name} | {r['spearman']:.3f} | {r['pearson']:.3f} | {100 * r['median_abs_error']:.1f}% | "
                         f"{100 * r['p90_abs_error']:.1f}% | {100 * r['ratio_median_abs_error']:.1f}% | "
                         f"{100 * r['ratio_p90_abs_error']:.1f}% | {100 * r['ratio_bias']:+.1f}% | "
                         f"{min(s):.2f}x-{max(s):.2f}x | {r['table_seconds']:.0f} |")
        lines += ["", "Command: `python experiments/speed/benchmark_latency_model.py --out <dir>` (see the script's "
                  "docstring for the options)."]
        (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
