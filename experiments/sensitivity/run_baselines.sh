#!/usr/bin/env bash
# Issue 26: the non-RL baselines a practitioner would pick, in the same harness as the committed AMC fronts
# (experiments/results/<model>_fmnist_front: channel grid 1, 2000 reward-val images, no fine-tuning):
# method=sensitivity (ModelOpt FastNAS / AIMET style, deterministic: one run) and method=eagleeye (random policies
# scored after adaptive BN, as many episodes as AMC's; one run per seed). No compare_with: the fronts hold uniform and random.
# Usage: experiments/sensitivity/run_baselines.sh <out root> <model> "<targets>" "<methods>" "<seeds>"
#   e.g. experiments/sensitivity/run_baselines.sh experiments/results/baselines_fmnist mobilenet_v2 "0.5 0.3" \
#        "sensitivity eagleeye" "0"
# Resumable: a finished run (comparison.md) is skipped, an interrupted one resumed (resume=<dir>). EXTRA adds overrides.
set -euo pipefail
out=$1 model=$2 targets=$3 methods=$4 seeds=$5
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
for t in $targets; do
  for m in $methods; do
    for s in $seeds; do
      [ "$m" = sensitivity ] && [ "$s" != "$(echo $seeds | cut -d' ' -f1)" ] && continue  # deterministic: one run
      d=$out/$model/t$t/$m/s$s
      [ -f "$d/comparison.md" ] && continue
      extra=""; [ -d "$d" ] && [ -f "$d/settings.json" ] && extra="resume=$d"
      mkdir -p "$(dirname "$d")"
      echo "== $model MACs target $t $m seed $s -> $d"
      $PY -m amc.search experiment=${model}_macs50 protocol.target=$t method=$m seed=$s env.round_to=1 \
        env.bn_recalibration_batches=0 "compare_with=[]" progress=false hydra.run.dir=$d $extra ${EXTRA:-} >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
    done
  done
done
