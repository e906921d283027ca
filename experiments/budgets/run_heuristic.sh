#!/usr/bin/env bash
# Re-run one hand-made baseline (uniform, deep or shallow) of the front on its own, e.g. after the search's
# baselines began to fill the budget rounding left (amc.heuristics, fill=True): one run dir per (target, seed).
# Usage: experiments/budgets/run_heuristic.sh <out root> <model> "<targets>" "<seeds>" <method>
#   e.g. experiments/budgets/run_heuristic.sh outputs/uniform resnet20 "0.3 0.7" "0 1 2" uniform
# Same settings as run_front.sh's searches (experiment=<model>_macs50), method=<method>, no comparison rows.
# A finished run is skipped. One thread per run.
set -euo pipefail
out=$1 model=$2 targets=$3 seeds=$4 method=$5
case $method in uniform|deep|shallow) ;; *) echo "method must be uniform, deep or shallow, got '$method'" >&2; exit 2;; esac
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
for t in $targets; do
  for s in $seeds; do
    d=$out/$model/$method/t$t/s$s
    [ -f "$d/comparison.md" ] && continue
    mkdir -p "$(dirname "$d")"
    echo "== $model $method target $t seed $s -> $d"
    $PY -m amc.search experiment=${model}_macs50 method=$method compare_with=[] protocol.target=$t seed=$s \
      progress=false hydra.run.dir=$d >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
  done
done
