"""How long a zero-shot ``amc.apply`` takes, stage by stage: the default command against the quick one.

    python -m experiments.speed.benchmark_apply [--agent <run dir>] [--checkpoint <model>] [--rounds 2]

Runs ``amc.apply`` in subprocesses (one thread), interleaving the variants round by round so they share the machine's
load: ``default`` (the uniform row and BN-recalibrated columns), ``quick`` (``compare_with=[]
final_eval.bn_recalibration_batches=0``, the original evaluated and the model calibrated) and ``quick, cached``
(the original's accuracies and the reconstruction statistics from the caches a first quick run filled: every apply to
a checkpoint after its first). Prints each stage's seconds (median over rounds), the total, and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AGENT = "experiments/results/resnet20_fmnist_conditioned/train_e800_decay99/s0"
CHECKPOINT = "experiments/baselines/fashion_mnist/resnet56/model.safetensors"
QUICK = ["compare_with=[]", "final_eval.bn_recalibration_batches=0"]


def run_apply(out: Path, args: list[str]) -> dict[str, float]:
    """One ``amc.apply`` in a fresh process; its stage seconds (from summary.json) and the wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "amc.apply", *args, "progress=false", f"hydra.run.dir={out}"], check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["stage_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default=AGENT)
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    common = [f"agent_run={args.agent}", f"checkpoint={args.checkpoint}", "protocol.target=0.5"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        uncached = ["original_cache_dir=null", "calibration_cache_dir=null"]
        cached = [f"original_cache_dir={cache}", f"calibration_cache_dir={cache}"]
        variants = {"default": [*common, *uncached], "quick": [*common, *QUICK, *uncached],
                    "quick, cached": [*common, *QUICK, *cached]}
        run_apply(Path(tmp) / "fill", [*common, *QUICK, *cached])  # fills the caches
        seconds: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        loads = []
        for r in range(args.rounds):
            for v, (name, overrides) in enumerate(variants.items()):
                loads.append(os.getloadavg()[0])
                seconds[name].append(run_apply(Path(tmp) / f"round{r}-variant{v}", overrides))
    print(f"zero-shot amc.apply of {args.agent} on {args.checkpoint}, MACs 0.5, one thread; median of "
          f"{args.rounds} interleaved rounds; load {min(loads):.1f}-{max(loads):.1f} (2 cores)")
    print("| variant | " + " | ".join(["set-up", "original", "policy", "final evaluation", "comparison", "total"])
          + " |\n|---|" + "---:|" * 6)
    for name, runs in seconds.items():
        stages = [statistics.median(r[k] for r in runs) for k in runs[0]]
        print(f"| {name} | " + " | ".join(f"{s:.1f} s" for s in stages) +
              f" | {statistics.median(sum(r.values()) for r in runs):.1f} s |")


if __name__ == "__main__":
    main()
