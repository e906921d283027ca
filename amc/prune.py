"""Uniform pruning baseline: ``python -m amc.prune checkpoint=... target_macs_ratio=0.5`` (or ``plan=...``).

Prints MACs, params, CPU latency and reward-val / test accuracy, without fine-tuning, for
selection only, + reconstruction, and + reconstruction + BN recalibration; saves plans and the pruned model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from amc.artifacts.checkpoint import CheckpointError
from amc.artifacts.plan import PruningPlan, check_plan, make_plan, model_checksum, save_pruned
from amc.cli import (
    PreflightCallback,
    build_data,
    load_checkpoint_for,
    model_allow,
    require_batch_sizes,
    require_positive_ints,
    resolve_device,
    resolve_runtime_settings,
    user_errors,
    user_model_spec,
)
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.latency import machine_conditions
from amc.measure.runtime import (
    add_latency_figures,
    comparison_runtimes,
    describe_conditions,
    export_onnx,
    measure_runtime_latencies,
    resolve_threads,
    runtime_conditions,
)
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.pruning.selection import CRITERIA
from amc.pruning.uniform import check_uniform_reachable, solve_uniform
from amc.reporting.table import format_table

log = logging.getLogger(__name__)
VARIANT_DIRS = ("selection_only", "reconstruction", "reconstruction_bn_recal")  # output dir per variant, in order


def run(cfg: DictConfig, output_dir: Path) -> list[dict]:
    """Prune uniformly (or by plan) with the three recovery variants; returns one result row per variant."""
    output_dir = preflight(cfg, Path(output_dir))
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base, spec = load_checkpoint_for(cfg.checkpoint, data, device, allow=model_allow(cfg),
                                     model_spec=user_model_spec(cfg, data))
    input_shape = (1, data.in_channels, *data.image_size)
    net = PrunableNetwork(base, input_shape, exclude=list(cfg.exclude), round_to=cfg.round_to,
                          graph_time_limit=cfg.graph_time_limit)
    base_info = {**spec, "checksum": model_checksum(base), "checkpoint": str(cfg.checkpoint)}
    if cfg.runtime == "onnxruntime":  # a model the exporter cannot convert fails now, not after the calibration
        export_onnx(base, input_shape)
    if cfg.plan:
        plan = PruningPlan.load(cfg.plan)
        check_plan(plan, net, base_info["checksum"])
        keep_ratios, method = plan.keep_ratios, f"plan {cfg.plan}"
    else:
        check_uniform_reachable(net, cfg.target_macs_ratio, lbound=float(cfg.lbound))  # before the calibration
        uniform = solve_uniform(net, cfg.target_macs_ratio)  # the solver of `amc.search method=uniform` (lbound 0)
        keep_ratios, method = uniform.keep_ratios, f"uniform keep_ratio {uniform.keep_ratios[0]:.4f}"
    log.info("%s: %d groups, %s", spec["target"], net.num_groups, method)

    c = cfg.calibration
    reconstructor = Reconstructor.calibrate(net, data, num_images=c.num_images, positions_per_image=c.positions_per_image,
                                            batch_size=c.batch_size, ridge=c.ridge, seed=cfg.seed, device=device)
    variants = {
        "selection only": PruningEngine(net, selection=cfg.selection, device=device),
        "+ reconstruction": PruningEngine(net, selection=cfg.selection, reconstructor=reconstructor, device=device),
        "+ reconstruction + BN recal": PruningEngine(
            net, selection=cfg.selection, reconstructor=reconstructor, bn_data=data,
            bn_batches=cfg.bn_recalibration.num_batches, bn_batch_size=cfg.bn_recalibration.batch_size, device=device),
    }
    lat = cfg.latency
    rows = [{
        "variant": "original", "macs": net.original_macs, "params": net.original_params,
        "reward_val_acc": evaluate_accuracy(base, data, split="reward_val", device=device),
        "test_acc": evaluate_accuracy(base, data, split="test", device=device),
    }]
    models = {"original": base}
    for (name, engine), slug in zip(variants.items(), VARIANT_DIRS):
        result = engine.prune_counts(uniform.counts) if not cfg.plan else engine.prune_kept(plan.kept_indices)
        row = {
            "variant": name, "macs": result.macs, "params": result.params,
            "reward_val_acc": evaluate_accuracy(result.model, data, split="reward_val", device=device),
            "test_acc": evaluate_accuracy(result.model, data, split="test", device=device),
        }
        rows.append(row)
        models[name] = result.model
        plan_out = make_plan(net, result.kept, base_model=base_info, exclude=list(cfg.exclude),
                             accuracy={k: row[k] for k in ("reward_val_acc", "test_acc")},
                             settings={"method": method, "variant": name, "selection": cfg.selection})
        save_pruned(result.model, plan_out, output_dir / slug)
    # every variant's latency in one interleaved block (deployment runtime and eager PyTorch), so the figures share
    # the machine's load
    runtimes = comparison_runtimes(cfg.runtime, eager=bool(lat.eager))
    threads = resolve_threads(lat.get("threads"))
    conditions = {**machine_conditions(device), **runtime_conditions(cfg.runtime, threads)}
    stats = measure_runtime_latencies(models, input_shape, runtimes=runtimes, batch_sizes=list(lat.batch_sizes),
                                      threads=threads, warmup=lat.warmup, repeats=lat.repeats)
    add_latency_figures(rows, stats)
    print(f"\n{spec['target']} on {data.name}: {method}, realised MACs ratio {rows[1]['macs'] / rows[0]['macs']:.4f}, "
          f"channels on a grid of {cfg.round_to}")
    print(format_table(rows, baseline=rows[0], conditions=describe_conditions(conditions, runtimes, lat.batch_sizes)))
    (output_dir / "results.json").write_text(json.dumps({"method": method, "keep_ratios": list(keep_ratios),
                                                         "calibration_seconds": reconstructor.calibration_seconds,
                                                         "latency_conditions": conditions,
                                                         "rows": rows}, indent=2))
    return rows


def preflight(cfg: DictConfig, output_dir: Path) -> Path:
    """Checks that need no data or model: settings, input files, a run dir without earlier results."""
    found = [n for n in ("results.json", *VARIANT_DIRS) if (output_dir / n).exists()]
    if found:
        raise FileExistsError(f"{output_dir} already holds pruning results ({', '.join(found)}); they are left as they "
                              f"are (choose another hydra.run.dir)")
    if cfg.plan:
        if not Path(str(cfg.plan)).is_file():
            raise FileNotFoundError(f"plan={cfg.plan} is not a file")
    elif not 0.0 < float(cfg.target_macs_ratio) <= 1.0:
        raise ValueError(f"target_macs_ratio must be in (0, 1], got {cfg.target_macs_ratio}")
    if not 0.0 <= float(cfg.lbound) < 1.0:
        raise ValueError(f"lbound must be in [0, 1) (the smallest uniform keep ratio accepted; 0: any), got {cfg.lbound}")
    if not Path(str(cfg.checkpoint)).is_file():
        raise CheckpointError(f"checkpoint {cfg.checkpoint} not found; train one with `python -m amc.train` or pass "
                              f"the path of a model.safetensors")
    if cfg.selection not in CRITERIA:
        raise ValueError(f"unknown selection {cfg.selection!r}; expected one of {CRITERIA}")
    resolve_runtime_settings(cfg, "round_to")
    require_batch_sizes(cfg.latency.batch_sizes, "latency.batch_sizes")
    if cfg.latency.get("threads") is not None:
        require_positive_ints(cfg, "latency.threads")
    require_positive_ints(cfg, "calibration.num_images", "calibration.positions_per_image",
                          "calibration.batch_size", "bn_recalibration.num_batches", "bn_recalibration.batch_size",
                          "latency.repeats")
    resolve_device(cfg.device)
    return output_dir


class Preflight(PreflightCallback):
    """hydra callback (conf/prune.yaml): refuse before hydra writes into a run dir with results."""

    prog = "amc-prune"

    def check(self, cfg: DictConfig, run_dir: Path) -> Path:
        return preflight(cfg, run_dir)


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="prune")
def main(cfg: DictConfig) -> float:
    with user_errors("amc-prune"):
        return run(cfg, Path(HydraConfig.get().runtime.output_dir))[-1]["reward_val_acc"]


if __name__ == "__main__":
    main()
