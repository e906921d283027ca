#!/usr/bin/env bash
# Issue 24: the accuracy-vs-measured-latency front. One search per (model, target, seed) with the latency protocol in the
# deployment runtime (onnxruntime, batch 1, one thread, channel counts on its grid), AMC with uniform solved to the same
# latency and random search at equal episodes in the same harness; speedups measured at batch 1 and 64.
# Usage: experiments/deploy/run_latency_front.sh <out root> <model> "<targets>" "<seeds>"
#   e.g. experiments/deploy/run_latency_front.sh experiments/results/latency_front mobilenet_v2 "0.5 0.33" "0 1 2"
# Resumable: a finished run (comparison.md, its last file) is skipped, an interrupted one resumed (resume=<dir>).
# EXTRA="..." adds overrides.
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
    echo "== $model latency target $t seed $s -> $d"
    $PY -m amc.search experiment=${model}_macs50 protocol=latency protocol.target=$t seed=$s \
      'compare_with=[uniform,random]' 'final_eval.latency_batch_sizes=[1,64]' progress=false hydra.run.dir=$d $extra \
      ${EXTRA:-} >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
  done
done
