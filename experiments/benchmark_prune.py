"""Benchmark of one AMC prune: calibration cost, per-prune times, ratio to one reward-val pass, peak RSS.

    python experiments/benchmark_prune.py                 # ResNet-20 and ResNet-56, 50% MACs
    python experiments/benchmark_prune.py --models resnet56 --repeats 5

Each model runs in its own subprocess so that peak RSS is that of a process holding one model, its data and its
calibration statistics. Uses the committed Fashion-MNIST baselines (random weights if a checkpoint is missing:
timings do not depend on the weights). Targets: (prune + evaluate) / evaluate < 1.3; ResNet-56 peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

BASELINES = Path("experiments/baselines/fashion_mnist")


def bench_one(model_name: str, target: float, repeats: int, threads: int) -> dict:
    from amc.artifacts.checkpoint import load_checkpoint
    from amc.data import fashion_mnist
    from amc.measure.accuracy import evaluate_accuracy
    from amc.models import build_model
    from amc.pruning.engine import PruningEngine
    from amc.pruning.groups import PrunableNetwork
    from amc.pruning.reconstruction import Reconstructor
    from amc.pruning.uniform import uniform_keep_ratio

    torch.set_num_threads(threads)
    data = fashion_mnist()
    ckpt = BASELINES / model_name / "model.safetensors"
    model = load_checkpoint(ckpt)[0] if ckpt.exists() else build_model(model_name, in_channels=1, num_classes=10).eval()
    net = PrunableNetwork(model, (1, 1, 28, 28))
    t = time.perf_counter()
    reconstructor = Reconstructor.calibrate(net, data)
    calibration = time.perf_counter() - t
    engine = PruningEngine(net, reconstructor=reconstructor)
    keep = [uniform_keep_ratio(net, target)] * net.num_groups
    rows = []
    for _ in range(repeats):
        result = engine.prune(keep)
        t = time.perf_counter()
        acc = evaluate_accuracy(result.model, data, split="reward_val")
        rows.append({**result.seconds, "evaluate": time.perf_counter() - t, "acc": acc})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    prune = med["select"] + med["surgery"] + med["reconstruct"]
    return {
        "model": model_name, "trained": ckpt.exists(), "groups": net.num_groups, "macs_ratio": result.macs / net.original_macs,
        "calibration_s": calibration, "select_s": med["select"], "reconstruct_s": med["reconstruct"],
        "surgery_s": med["surgery"], "evaluate_s": med["evaluate"], "ratio": (prune + med["evaluate"]) / med["evaluate"],
        "stats_mb": reconstructor.nbytes / 2**20, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reward_val_acc": med["acc"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--target", type=float, default=0.5, help="MACs ratio of the uniform prune")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(bench_one(args.one, args.target, args.repeats, args.threads)))
        return
    print(f"{'model':10} {'calib s':>8} {'select s':>9} {'recon s':>8} {'surgery s':>9} {'eval s':>7} "
          f"{'(prune+eval)/eval':>18} {'stats MB':>9} {'peak RSS MB':>12} {'acc':>6}")
    for name in args.models:
        cmd = [sys.executable, __file__, "--one", name, "--target", str(args.target), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{r['model']:10} {r['calibration_s']:8.2f} {r['select_s']:9.4f} {r['reconstruct_s']:8.4f} "
              f"{r['surgery_s']:9.4f} {r['evaluate_s']:7.3f} {r['ratio']:18.3f} {r['stats_mb']:9.1f} "
              f"{r['peak_rss_mb']:12.0f} {r['reward_val_acc']:6.3f}" + ("" if r["trained"] else "  (random weights)"))


if __name__ == "__main__":
    main()
