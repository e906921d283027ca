#!/usr/bin/env bash
# Fine-tune table of issue 11: pruned models fine-tuned with and without distillation for the same epochs.
# Usage: experiments/finetune/run_finetune.sh <out root> <epochs> <name>=<pruned dir> [<name>=<pruned dir> ...]
# e.g. ... /tmp/ft 2 amc_r20=<search run>/best uniform_r20=<amc.prune run>/reconstruction
# A finished run (metrics.json) is skipped; an interrupted one is resumed (resume=<its dir>).
set -euo pipefail
out=$1 epochs=$2; shift 2
PY=${PY:-python}
for kd in 0.5 0; do  # every model with distillation first, then every model without
  for spec in "$@"; do
    name=${spec%%=*} pruned=${spec#*=}
    dir=$out/${name}_kd$kd
    [ -f "$dir/metrics.json" ] && continue
    extra=""; [ -f "$dir/settings.json" ] && extra="resume=$dir"  # killed, even before its first epoch ended
    mkdir -p "$out"
    echo "== $name kd.alpha=$kd -> $dir"
    $PY -m amc.finetune pruned=$pruned epochs=$epochs kd.alpha=$kd progress=false hydra.run.dir=$dir $extra \
      > "$dir.log" 2>&1 || echo "failed: see $dir.log"
  done
done
