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

from amc.cli import build_data, load_checkpoint_for, resolve_device
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.latency import measure_latency
from amc.plan import PruningPlan, check_plan, make_plan, model_checksum, save_pruned
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.pruning.uniform import uniform_keep_ratio
from amc.report import format_table

log = logging.getLogger(__name__)


def run(cfg: DictConfig, output_dir: Path) -> list[dict]:
    """Prune uniformly (or by plan) with the three recovery variants; returns one result row per variant."""
    output_dir = Path(output_dir)
    device = resolve_device(cfg.device)
    data = build_data(cfg.data)
    base, spec = load_checkpoint_for(cfg.checkpoint, data, device)
    input_shape = (1, data.in_channels, *data.image_size)
    net = PrunableNetwork(base, input_shape, exclude=list(cfg.exclude), round_to=cfg.round_to)
    base_info = {**spec, "checksum": model_checksum(base), "checkpoint": str(cfg.checkpoint)}
    if cfg.plan:
        plan = PruningPlan.load(cfg.plan)
        check_plan(plan, net, base_info["checksum"])
        keep_ratios, method = plan.keep_ratios, f"plan {cfg.plan}"
    else:
        keep = uniform_keep_ratio(net, cfg.target_macs_ratio)
        keep_ratios, method = [keep] * net.num_groups, f"uniform keep_ratio {keep:.4f}"
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
    shape = (lat.batch_size, *input_shape[1:])
    rows = [{
        "variant": "original", "macs": net.original_macs, "params": net.original_params,
        "latency_ms": 1e3 * measure_latency(base, shape, warmup=lat.warmup, repeats=lat.repeats, device=device),
        "reward_val_acc": evaluate_accuracy(base, data, split="reward_val", device=device),
        "test_acc": evaluate_accuracy(base, data, split="test", device=device),
    }]
    for name, engine in variants.items():
        result = engine.prune(keep_ratios) if not cfg.plan else engine.prune_kept(plan.kept_indices)
        row = {
            "variant": name, "macs": result.macs, "params": result.params,
            "latency_ms": 1e3 * measure_latency(result.model, shape, warmup=lat.warmup, repeats=lat.repeats, device=device),
            "reward_val_acc": evaluate_accuracy(result.model, data, split="reward_val", device=device),
            "test_acc": evaluate_accuracy(result.model, data, split="test", device=device),
        }
        rows.append(row)
        slug = name.strip("+ ").replace(" + ", "_").replace(" ", "_").lower()
        plan_out = make_plan(net, result.kept, base_model=base_info, exclude=list(cfg.exclude),
                             accuracy={k: row[k] for k in ("reward_val_acc", "test_acc")},
                             settings={"method": method, "variant": name, "selection": cfg.selection})
        save_pruned(result.model, plan_out, output_dir / slug)
    print(f"\n{spec['target']} on {data.name}: {method}, realised MACs ratio {rows[1]['macs'] / rows[0]['macs']:.4f}")
    print(format_table(rows, baseline=rows[0]))
    (output_dir / "results.json").write_text(json.dumps({"method": method, "keep_ratios": list(keep_ratios),
                                                         "calibration_seconds": reconstructor.calibration_seconds,
                                                         "rows": rows}, indent=2))
    return rows


@hydra.main(version_base="1.3", config_path="pkg://amc.conf", config_name="prune")
def main(cfg: DictConfig) -> float:
    return run(cfg, Path(HydraConfig.get().runtime.output_dir))[-1]["reward_val_acc"]


if __name__ == "__main__":
    main()
