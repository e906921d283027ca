#!/usr/bin/env bash
# Issue 24: AMC's committed MACs-0.5 policies (searched on channel grid 1) applied on the runtime's default grid, their
# counts rounded onto it (amc.apply plan=...), measured in onnxruntime and eager PyTorch at batch 1 and 64.
# Usage: experiments/deploy/run_macs_plans.sh <out root>   (resumable: a finished run is skipped)
set -euo pipefail
out=$1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
R=experiments/results
plans="mobilenet_v2:0:$R/mobilenet_v2_fmnist_macs50/seed0 mobilenet_v2:1:$R/mobilenet_v2_fmnist_front/t0.5/s1
mobilenet_v2:2:$R/mobilenet_v2_fmnist_front/t0.5/s2 resnet56:0:$R/resnet56_fmnist_macs50/seed0
resnet56:1:$R/resnet56_fmnist_macs50/seed1"
for item in $plans; do
  IFS=: read -r model seed run <<< "$item"
  d=$out/$model/macs_plan/s$seed
  [ -f "$d/comparison.md" ] && continue
  rm -rf "$d"; mkdir -p "$(dirname "$d")"
  echo "== $model plan of $run -> $d"
  $PY -m amc.apply checkpoint=experiments/baselines/fashion_mnist/$model/model.safetensors plan=$run/best_plan.json \
    protocol=macs protocol.target=0.5 'compare_with=[]' 'final_eval.latency_batch_sizes=[1,64]' progress=false \
    hydra.run.dir=$d ${EXTRA:-} >> "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
done
