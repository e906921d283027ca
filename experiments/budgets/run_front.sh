#!/usr/bin/env bash
# Issue 9: the accuracy-vs-MACs front. One search per (model, target, seed), AMC with every baseline in the same
# harness (compare_with from the experiment config: uniform, random, deep, shallow), one run dir each.
# Usage: experiments/budgets/run_front.sh <out root> <model> "<targets>" "<seeds>"
#   e.g. experiments/budgets/run_front.sh outputs/front resnet20 "0.3 0.5 0.7" "0 1 2"; then python -m amc.report <out>/<model>
# Resumable: a finished run (comparison.md, its last file) is skipped, an interrupted one resumed (resume=<dir>). One thread per run.
set -euo pipefail
out=$1 model=$2 targets=$3 seeds=$4
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
for t in $targets; do
  for s in $seeds; do
    d=$out/$model/t$t/s$s
    [ -f "$d/comparison.md" ] && continue
    extra=""; [ -d "$d/resume" ] && extra="resume=$d"
    mkdir -p "$(dirname "$d")"
    echo "== $model target $t seed $s -> $d"
    $PY -m amc.search experiment=${model}_macs50 protocol.target=$t seed=$s progress=false hydra.run.dir=$d $extra \
      >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
  done
done
