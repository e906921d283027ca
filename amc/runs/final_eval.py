"""The end of a run: the best policy re-pruned and evaluated on all reward-val and test images, saved as plan and
pruned model; then every variant of the comparison timed in one block, and the latency budget checked as measured."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from amc.artifacts.plan import make_plan, save_pruned
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.fast_paths import evaluation_copy
from amc.measure.latency import machine_conditions
from amc.measure.runtime import (
    add_latency_figures,
    comparison_runtimes,
    describe_conditions,
    latency_key,
    measure_runtime_latencies,
    runtime_conditions,
)
from amc.pruning.bn import recalibrate_bn
from amc.runs.setup import Setup

log = logging.getLogger(__name__)


def final_accuracies(setup: Setup, model: torch.nn.Module, images: int | None,
                     splits: tuple[str, ...] = ("reward_val", "test")) -> list[float]:
    """Accuracy of ``model`` on ``images`` of each split (None: all), evaluated as the env evaluates (its fast paths:
    BN folding and channels-last on a copy, identical up to float rounding; its batch size)."""
    env = setup.env
    fast = evaluation_copy(model, fold_pairs=env.fold_pairs, channels_last=env.channels_last)
    return [evaluate_accuracy(fast, setup.data, split=split, device=setup.device, limit=images,
                              batch_size=env.eval_batch_size) for split in splits]


def final_evaluation(setup: Setup, best: dict[str, Any] | None, *, method: str, episodes: int, run_dir: Path,
                     images: int | None, bn_batches: int, reward_recalibrates_bn: bool, seed: int,
                     exclude: list[str], plan_settings: dict[str, Any]) -> tuple[dict[str, Any], torch.nn.Module]:
    """Re-prune ``best`` (an episode's info), evaluate on ``images`` reward-val and test images (None: all), save plan +
    model; returns the summary row and the saved model (its latency is measured later, with every variant of the
    table in one block). The same figures for every method and reward, so tables compare: the plain pruned model
    (selection and reconstruction, the unpruned model's BN statistics) and, with ``bn_batches`` > 0, the same model
    after BN recalibration on that many batches. The model saved is the one the reward judged: the recalibrated one
    when ``reward_recalibrates_bn`` (and ``bn_batches`` > 0), else the plain one (``saved_model`` in the row).
    Accuracies as :func:`final_accuracies`."""
    if best is None:
        raise RuntimeError("the search recorded no episode")
    net, data, device = setup.net, setup.data, setup.device
    result = setup.engine.prune_counts(best["channels"], bn_recalibration=False)  # whatever the reward recalibrated
    reward_val_acc, test_acc = final_accuracies(setup, result.model, images)
    row = {
        "variant": method, "macs": result.macs, "params": result.params,
        "macs_ratio": result.macs / net.original_macs, "params_ratio": result.params / net.original_params,
        "reward_val_acc": reward_val_acc, "test_acc": test_acc,
        "best_reward": best["reward"], "best_episode": best["episode"], "episodes": episodes,
        "keep_ratios": result.keep_ratios, "channels": result.channels, "final_eval_images": images,
        **{k: best[k] for k in ("evaluations", "threshold") if k in best},  # the sensitivity method's cost
    }
    if setup.latency_table is not None:
        row["predicted_latency_ms"] = 1e3 * setup.latency_table.predict(result.channels)
    if bn_batches > 0:
        # like-for-like figures for every method: the same policy with BN statistics re-estimated after pruning
        bn_model = recalibrate_bn(copy.deepcopy(result.model), data, num_batches=bn_batches, seed=seed, device=device,
                                  channels_last=setup.env.channels_last)
        row["reward_val_acc_bn"], row["test_acc_bn"] = final_accuracies(setup, bn_model, images)
    saved, suffix = (bn_model, "_bn") if bn_batches > 0 and reward_recalibrates_bn else (result.model, "")
    row["saved_model"] = "bn_recalibrated" if suffix else "plain"
    plan = make_plan(net, result.kept, base_model=setup.base_info, exclude=exclude,
                     accuracy={k: row[k + suffix] for k in ("reward_val_acc", "test_acc")},
                     settings={**plan_settings, "saved_bn_recalibration_batches": bn_batches if suffix else 0})
    if (run_dir / "best").exists():  # from an earlier final evaluation of this run (resumed); redone now
        shutil.rmtree(run_dir / "best")
    save_pruned(saved, plan, run_dir / "best")
    plan.save(run_dir / "best_plan.json")
    (run_dir / "summary.json").write_text(json.dumps(row, indent=2))
    return row, saved


def measure_comparison_latencies(setup: Setup, models: dict[str, torch.nn.Module], rows: list[dict[str, Any]], *,
                                 runtime: str, eager: bool, batch_sizes: list[int], threads: int, warmup: int,
                                 repeats: int, latency_target: float) -> dict[str, Any]:
    """Latency of every variant of the table in ONE interleaved block (round-robin, warm-up, median and inter-quartile
    spread, fixed threads), in ``runtime`` and eager PyTorch (``eager``) at every batch size, so all figures and
    speedups share the machine's load. Adds the figures to ``rows`` (the original first) and, with a latency table,
    checks the budget (``latency_target``) as measured. Returns the record for latency.json."""
    runtimes = comparison_runtimes(runtime, eager=eager)
    conditions = {**machine_conditions(setup.device), **runtime_conditions(runtime, threads)}
    stats = measure_runtime_latencies(models, setup.net.input_shape, runtimes=runtimes, batch_sizes=batch_sizes,
                                      threads=threads, warmup=warmup, repeats=repeats)
    add_latency_figures(rows, stats)
    if setup.latency_table is not None:
        check_measured_budget(setup, rows[0], rows[1:], runtime=runtime, target=latency_target)
    return {"conditions": conditions, "loadavg_after": machine_conditions(setup.device)["loadavg_1_5_15"],
            "runtimes": runtimes, "batch_sizes": batch_sizes, "batch_size": batch_sizes[0],
            "stats": {name: s for name, s in ((r["variant"], r["latencies"]) for r in rows)}}


def conditions_line(record: dict[str, Any]) -> str:
    """The line under a comparison table naming runtime, version, threads, batch, CPU and load."""
    return describe_conditions(record["conditions"], record["runtimes"], record["batch_sizes"])


def check_measured_budget(setup: Setup, original: dict[str, Any], rows: list[dict[str, Any]], *, runtime: str,
                          target: float) -> None:
    """The latency protocol's promise, measured: each row's predicted and measured speedup in the table's runtime
    and batch size, and a warning when the measured latency misses the budget by more than the timings' noise."""
    table = setup.latency_table
    assert table is not None
    key = latency_key(runtime, table.batch_size)
    full = table.predict([g.channels for g in setup.net.groups])
    for row in rows:
        if key not in row.get("speedups", {}):
            log.warning("the latency budget cannot be checked: the table's batch size %d is not among "
                        "final_eval.latency_batch_sizes", table.batch_size)
            return
        measured = 1.0 / row["speedups"][key]
        noise = (row["latencies"][key]["spread"] + original["latencies"][key]["spread"]) / 2  # half IQRs, both
        row.update(predicted_speedup=full / table.predict(row["channels"]), measured_speedup=row["speedups"][key],
                   latency_target=target, measured_latency_ratio=measured,
                   latency_budget_met=bool(measured <= target * (1 + noise)))
        if not row["latency_budget_met"]:
            log.warning("%s: measured latency ratio %.3f (speedup %.2fx) misses the budget %.3f by more than the "
                        "timings' noise (%.0f%%); predicted speedup %.2fx. The table may be stale or the machine busy: "
                        "re-measure (protocol.latency_table.cache_dir=null) on a quiet machine", row["variant"],
                        measured, row["measured_speedup"], target, 100 * noise, row["predicted_speedup"])
