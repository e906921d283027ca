#!/usr/bin/env bash
# Issue 9: the accuracy-vs-MACs front. One search per (model, target, seed), AMC with every baseline in the same
# harness (compare_with from the experiment config: uniform, random, deep, shallow), one run dir each.
# Usage: experiments/budgets/run_front.sh <out root> <model> "<targets>" "<seeds>" [method]
#   e.g. experiments/budgets/run_front.sh outputs/front resnet20 "0.3 0.5 0.7" "0 1 2"; then python -m amc.report <out>/<model>
# With a method (uniform, deep or shallow) it re-runs that one baseline alone (method=<m> compare_with=[]) into
# <out>/<model>/<method>/t<t>/s<s>, e.g. after the search's baselines began to fill the budget rounding left
# (amc.pruning.heuristics, fill=True); python -m experiments.budgets.replace_baseline then puts it in place.
# Resumable: a finished run (comparison.md, its last file) is skipped, an interrupted one resumed (resume=<dir>). One thread per run.
# EXTRA="..." adds overrides: the committed fronts used AMC's noise decay, the default until 2026-11-29, so further seeds
# of them need EXTRA="agent.sigma_decay=0.95" (a run started before that date resumes only with it).
set -euo pipefail
out=$1 model=$2 targets=$3 seeds=$4 method=${5:-}
only=""
if [ -n "$method" ]; then
  case $method in uniform|deep|shallow) ;; *) echo "method must be uniform, deep or shallow, got '$method'" >&2; exit 2;; esac
  only="method=$method compare_with=[]"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
for t in $targets; do
  for s in $seeds; do
    d=$out/$model${method:+/$method}/t$t/s$s
    [ -f "$d/comparison.md" ] && continue
    extra=""; [ -d "$d/resume" ] && extra="resume=$d"
    mkdir -p "$(dirname "$d")"
    echo "== $model${method:+ $method} target $t seed $s -> $d"
    $PY -m amc.search experiment=${model}_macs50 $only protocol.target=$t seed=$s progress=false hydra.run.dir=$d $extra ${EXTRA:-} \
      >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
  done
done
