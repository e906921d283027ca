#!/usr/bin/env bash
# Issue 27, step 1: agents trained across the zoo, one agent for every budget (MACs 0.3-0.7) and every network.
# ResNet-56 and MobileNet-V2 are held out: never trained on. Channel grid 1, as the committed single-network searches. Each variant is a state (observation) of the ablation:
#   amc    AMC's 11 fields + the episode's target
#   scale  + kind and absolute sizes (envs/state_fields.py)
#   all    + kind, scale, macs_share, stage, budget_left
#   <state>_mnv2: that state, trained on an eighth network too, a second inverted-residual one (MobileNet-V2 width
#   0.35; the held-out MobileNet-V2 is width 0.5), 960 episodes (120 per network, as the others)
#   <variant>_rel: that variant learning from its reward minus uniform's at the episode's budget on the episode's
#   network (env.reward_baseline=uniform): what a policy gains over uniform, not how prunable each network is
# Usage: experiments/transfer/run_zoo_agents.sh <out root> "<variants>" "<seeds>"
#   e.g. experiments/transfer/run_zoo_agents.sh experiments/results/transfer_zoo "amc all" "0 1 2"
# Resumable: a finished run (comparison.md) is skipped, an interrupted one resumed (resume=<dir>). EXTRA adds overrides.
# The reward is pinned to AMC's (env.bn_recalibration_batches=0: no BN recalibration), the reward of every committed
# search these agents are compared with, whatever the default reward becomes (issue 28).
# The networks' reconstruction statistics are computed once per seed and reused by the other variants (CALIBRATION_CACHE,
# default outputs/calibration).
set -euo pipefail
out=$1 variants=$2 seeds=$3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
B=${BASELINES:-experiments/baselines/fashion_mnist}
declare -A EXTRAS=([amc]="[]" [scale]="[kind,scale]" [all]="[kind,scale,macs_share,stage,budget_left]")
networks="[$B/plain20/model.safetensors,$B/resnet20_w8/model.safetensors,$B/resnet32/model.safetensors,\
$B/mobilenet_v1/model.safetensors,$B/resnet20_w24/model.safetensors,$B/vgg16/model.safetensors]"
for v in $variants; do
  for s in $seeds; do
    d=$out/agents/$v/s$s
    [ -f "$d/comparison.md" ] && continue
    extra=""; [ -f "$d/settings.json" ] && extra="resume=$d"
    mkdir -p "$(dirname "$d")"
    echo "== zoo agent, state $v, seed $s -> $d"
    nets=$networks episodes=${EPISODES:-840} state=$v rel=""
    if [[ $state == *_rel ]]; then state=${state%_rel} rel=env.reward_baseline=uniform; fi
    if [[ $state == *_mnv2 ]]; then
      state=${state%_mnv2} nets="${networks%]},$B/mobilenet_v2_w035/model.safetensors]" episodes=${EPISODES:-960}
    fi
    $PY -m amc.search experiment=resnet20_macs50 "env.networks=$nets" env.network_order=round_robin \
      'protocol.target_range=[0.3,0.7]' env.budget_in_state=true "env.state_extras=${EXTRAS[$state]}" $rel \
      agent.sigma_decay=0.99 episodes=$episodes 'compare_with=[]' seed=$s progress=false env.round_to=1 \
      env.bn_recalibration_batches=0 final_eval.bn_recalibration_batches=0 \
      calibration_cache_dir=${CALIBRATION_CACHE:-outputs/calibration} \
      hydra.run.dir=$d $extra ${EXTRA:-} >> "$d.log" 2>&1 \
      || echo "failed: see $d.log (going on)"
  done
done
