#!/usr/bin/env bash
# Issue 9: one agent for every budget. Trains a budget-conditioned agent on <model> over [0.3, 0.7] for each episode
# count, then applies it zero-shot at every target (0.4 and 0.6 never searched directly) next to uniform.
# Usage: experiments/budgets/run_conditioned.sh <out root> <model> "<episode counts>" [seed]
#   e.g. experiments/budgets/run_conditioned.sh outputs/conditioned resnet20 "400 800" 0
# Resumable: finished runs are skipped, an interrupted training resumed. One thread per run.
# EXTRA="agent.sigma_decay=0.99" adds overrides to the training command (e.g. the slower noise decay of tight budgets).
set -euo pipefail
out=$1 model=$2 counts=$3 seed=${4:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
ck=experiments/baselines/fashion_mnist/$model/model.safetensors
for n in $counts; do
  d=$out/$model/train_e$n/s$seed
  if [ ! -f "$d/comparison.md" ]; then  # its last file: a run killed after summary.json is resumed
    extra=""; [ -d "$d/resume" ] && extra="resume=$d"
    mkdir -p "$(dirname "$d")"
    echo "== train $model conditioned on [0.3, 0.7], $n episodes -> $d"
    $PY -m amc.search experiment=${model}_macs50 protocol.target_range=[0.3,0.7] env.budget_in_state=true \
      episodes=$n compare_with=[] seed=$seed progress=false hydra.run.dir=$d $extra ${EXTRA:-} >> "$d.log" 2>&1 \
      || { echo "failed: see $d.log"; continue; }
  fi
  for t in 0.3 0.4 0.5 0.6 0.7; do
    a=$out/$model/apply_e$n/s$seed/t$t
    [ -f "$a/comparison.md" ] && continue
    [ -e "$a" ] && mv "$a" "$a.incomplete.$(date +%s)"
    mkdir -p "$(dirname "$a")"
    $PY -m amc.apply checkpoint=$ck agent_run=$d protocol.target=$t compare_with=[uniform] seed=$seed progress=false \
      hydra.run.dir=$a > "$a.log" 2>&1 || echo "failed: see $a.log"
  done
done
