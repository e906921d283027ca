#!/usr/bin/env bash
# Issue 10, end to end: full ResNet-56 searches (400 episodes, 50% MACs, AMC only) with the current defaults and with
# early stopping + two workers, to set against the committed 400-episode results (experiments/results/resnet56_fmnist_macs50).
# Usage: experiments/speed/run_e2e.sh <out root> "<seeds>" [variants]   (variants: "defaults fast", the default;
#   "stop" and "workers": early stopping alone and two workers alone, to separate the two levers of fast; "lean":
#   fast with 1000 reward-val images per episode instead of 2000, the lever that trades accuracy noise for time)
#   then: python -m experiments.speed.e2e_table <out root>/*/s*/ --committed experiments/results/resnet56_fmnist_macs50/seed*/
# Run on a quiet machine: each search uses every core (OMP_NUM_THREADS unset = torch's default). Resumable: a
# finished run (comparison.md, its last file) is skipped, an interrupted one resumed (resume=<dir>).
# EXTRA="..." adds overrides to every search: the committed searches and e2e runs used the noise decay of their time,
# 0.95 (the default until 2026-11-29), so EXTRA="agent.sigma_decay=0.95" keeps new runs comparable with them.
set -euo pipefail
out=$1 seeds=$2 variants=${3:-defaults fast}
PY=${PY:-python}
stop="env.early_stop.margin=0.05" workers="env.n_envs=2"
fast="$stop $workers"
declare -A ARGS=([defaults]="" [fast]="$fast" [stop]="$stop" [workers]="$workers" [lean]="$fast env.eval_images=1000")
for v in $variants; do
  [ -n "${ARGS[$v]+x}" ] || { echo "unknown variant '$v': use defaults, fast, stop, workers or lean" >&2; exit 2; }
  for s in $seeds; do
    d=$out/$v/s$s
    [ -f "$d/comparison.md" ] && continue
    extra=""; [ -d "$d/resume" ] && extra="resume=$d"
    mkdir -p "$(dirname "$d")"
    echo "== resnet56 $v seed $s -> $d ($(uptime | sed 's/.*load/load/'))"
    $PY -m amc.search experiment=resnet56_macs50 compare_with=[] seed=$s progress=false ${ARGS[$v]} hydra.run.dir=$d $extra ${EXTRA:-} \
      >> "$d.log" 2>&1 || echo "failed: see $d.log"
  done
done
