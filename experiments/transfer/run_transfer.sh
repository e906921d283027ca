#!/usr/bin/env bash
# Transfer table of issue 11 (Fashion-MNIST, 50% MACs, no fine-tuning): ResNet-20 agents applied to ResNet-56 and
# MobileNet-V2, zero-shot and after 50 refinement episodes, against uniform and random search with 1 and 50 episodes.
# Usage: experiments/transfer/run_transfer.sh <out root> <seed>=<ResNet-20 search run dir> [<seed>=<dir> ...]
# Resumable: a finished run (comparison.md, its last file) is skipped. One thread per run (OMP_NUM_THREADS=1).
set -euo pipefail
out=$1; shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
declare -A CKPT=([resnet56]=experiments/baselines/fashion_mnist/resnet56/model.safetensors
                 [mobilenet_v2]=experiments/baselines/fashion_mnist/mobilenet_v2/model.safetensors)
# the BN-recalibrated re-evaluation is skipped and latency timed briefly: the table compares accuracies
common="progress=false protocol.target=0.5 final_eval.bn_recalibration_batches=0 final_eval.latency_repeats=5"
run() {  # run <dir> <module> <args...>
  local dir=$1 module=$2; shift 2
  [ -f "$dir/comparison.md" ] && return 0
  [ -e "$dir" ] && mv "$dir" "$dir.incomplete.$(date +%s)"  # an unfinished attempt: kept aside, redone
  mkdir -p "$(dirname "$dir")"
  echo "== $module $* -> $dir"
  $PY -m "$module" "$@" $common "hydra.run.dir=$dir" > "$dir.log" 2>&1 || echo "failed: see $dir.log (going on with the next run)"
}
mkdir -p "$out"
for net in ${NETS:-resnet56 mobilenet_v2}; do  # NETS="resnet56" to run one network
  ck=${CKPT[$net]}
  run "$out/$net/uniform" amc.apply checkpoint=$ck policy=uniform compare_with=[]
  # the one-episode rows of every seed first, then the 50-episode rows seed by seed: a cut-short session leaves
  # complete seeds
  for spec in "$@"; do
    seed=${spec%%=*} agent=${spec#*=}
    [ -f "$agent/actor.json" ] || $PY experiments/transfer/export_actor.py "$agent"
    run "$out/$net/zero_shot_s$seed" amc.apply checkpoint=$ck agent_run=$agent compare_with=[] seed=$seed
    run "$out/$net/random1_s$seed" amc.search checkpoint=$ck method=random episodes=1 compare_with=[] seed=$seed
  done
  for spec in "$@"; do
    seed=${spec%%=*} agent=${spec#*=}
    run "$out/$net/random50_s$seed" amc.search checkpoint=$ck method=random episodes=50 compare_with=[] seed=$seed
    run "$out/$net/refine50_s$seed" amc.apply checkpoint=$ck agent_run=$agent refine_episodes=50 compare_with=[] seed=$seed
  done
done
