"""The comparison a search or ``amc.apply`` ends with: the original's figures, the ``compare_with`` baselines in
``compare/<method>/``, every row timed in one block, ``comparison.md`` written and printed."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from amc.cli.methods import final_images, run_method
from amc.measure.runtime import resolve_threads
from amc.reporting.table import format_table
from amc.runs.cache import cached_json
from amc.runs.final_eval import conditions_line, final_accuracies, measure_comparison_latencies
from amc.runs.setup import Setup

log = logging.getLogger(__name__)


def evaluate_original(cfg: DictConfig, setup: Setup, cache_dir: str | None = None) -> dict[str, Any]:
    """The unpruned model's row (MACs, params, reward-val and test accuracy); times its reward-val pass into
    ``setup.reward_val_seconds`` (the unit of an episode's cost). With ``cache_dir`` the accuracies are read from
    there when this checkpoint was evaluated on the same data, images, device and evaluation settings before."""
    env = setup.env
    key = {"checkpoint_checksum": setup.base_info["checksum"], "data": OmegaConf.to_container(cfg.data, resolve=True),
           "images": final_images(cfg), "device": setup.device.type, "fold_bn": bool(env.fold_pairs),
           "channels_last": env.channels_last, "batch_size": env.eval_batch_size, "torch": torch.__version__}
    value, path = cached_json(cache_dir, "original", key, lambda: _original_accuracies(cfg, setup))
    if path is not None:
        log.info("the original's accuracies from the cache (measured before): %s", path)
    setup.reward_val_seconds = value["reward_val_seconds"]
    return {"variant": "original", "macs": setup.net.original_macs, "params": setup.net.original_params,
            "reward_val_acc": value["reward_val_acc"], "test_acc": value["test_acc"]}


def _original_accuracies(cfg: DictConfig, setup: Setup) -> dict[str, float]:
    start = time.perf_counter()
    [reward_val_acc] = final_accuracies(setup, setup.net.model, final_images(cfg), ("reward_val",))
    seconds = time.perf_counter() - start
    [test_acc] = final_accuracies(setup, setup.net.model, final_images(cfg), ("test",))
    return {"reward_val_acc": reward_val_acc, "test_acc": test_acc, "reward_val_seconds": seconds}


def compare_and_report(cfg: DictConfig, setup: Setup, rows: list[dict[str, Any]], models: dict[str, torch.nn.Module],
                       output_dir: Path, title: str) -> None:
    """Run the ``compare_with`` baselines into ``compare/<method>/``, time every row in one block, write and print
    ``comparison.md``. ``rows`` / ``models`` start with the original and the main method."""
    for method in cfg.compare_with:
        if method == cfg.method:
            continue
        sub = cfg.copy()
        with open_dict(sub):
            sub.method = method
            sub.setdefault("episodes", 1)  # amc.apply's config has neither: its baselines run once, fresh
            sub.setdefault("resume", None)
        row, models[method] = run_method(sub, setup, output_dir / "compare" / method)
        rows.append(row)
    conditions = measure_table_latencies(cfg, setup, models, rows, output_dir)
    table = format_table(rows, baseline=rows[0], conditions=conditions)
    if final_images(cfg) is not None:
        table += f"\n\nAccuracies on the first {final_images(cfg)} reward-val and test images (final_eval.images)."
    (output_dir / "comparison.md").write_text(table + "\n")
    print(f"\n{title}")
    print(table)


def measure_table_latencies(cfg: DictConfig, setup: Setup, models: dict[str, torch.nn.Module],
                            rows: list[dict[str, Any]], run_dir: Path) -> str:
    """Every row timed in one interleaved block (``final_eval.latency_*``); conditions go to latency.json and the
    figures into each summary.json. Returns the conditions line."""
    f = cfg.final_eval
    record = measure_comparison_latencies(
        setup, models, rows, runtime=cfg.runtime, eager=bool(f.get("latency_eager", True)),
        batch_sizes=list(f.latency_batch_sizes), threads=resolve_threads(f.get("latency_threads")),
        warmup=f.latency_warmup, repeats=f.latency_repeats, latency_target=float(cfg.protocol.target))
    (run_dir / "latency.json").write_text(json.dumps(record, indent=2) + "\n")
    original = {k: rows[0][k] for k in ("macs", "params", "reward_val_acc", "test_acc", "latencies")}  # the unpruned model
    for row in rows[1:]:  # the summaries were written before the block: add the figures
        path = (run_dir if row["variant"] == cfg.method else run_dir / "compare" / row["variant"]) / "summary.json"
        path.write_text(json.dumps({**row, "original": original}, indent=2))
    return conditions_line(record)
