#!/usr/bin/env bash
# Issue 27, step 2: the held-out networks (ResNet-56, MobileNet-V2; never trained on), no fine-tuning.
#   zero-shot at MACs 0.3, 0.5, 0.7: each zoo agent, the single-network ResNet-20 agent (one agent for every budget,
#   resnet20_fmnist_conditioned), uniform and deep;
#   at 0.5: each zoo agent refined for 10 and 25 episodes, against random search with 10 and 25 episodes (the
#   400-episode searches are the committed <net>_fmnist_macs50 results).
# Usage: experiments/transfer/run_heldout.sh <out root> "<variants>" "<seeds>"   (agents from run_zoo_agents.sh)
#   committees (agent_run=[...]: each agent plays one episode, the best on reward-val is kept, and refined):
#   variant "best3": the agents of the states in COMMITTEE (default "scale all amc") with that seed; "best4": the
#   same with scale_mnv2 too; "best5": with scale_mnv2 and scale_mnv2_rel;
#   variant "best9": those states' agents of every seed in COMMITTEE_SEEDS (default "0 1 2"), whatever the seed (its
#   zero-shot runs are deterministic, so only the first seed's are made; the refinements take each seed)
# Resumable: a finished run (comparison.md) is skipped; an unfinished one is moved aside and redone. EXTRA adds overrides;
# NETS, TARGETS and REFINE (default "10 25") choose the networks, zero-shot budgets and refinement episodes.
set -euo pipefail
out=$1 variants=$2 seeds=$3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-python}
B=${BASELINES:-experiments/baselines/fashion_mnist}
R20_AGENT=${R20_AGENT:-experiments/results/resnet20_fmnist_conditioned/train_e800_decay99/s0}
# channel grid 1 and AMC's reward (no BN recalibration) as the committed 400-episode searches and the agents; the
# BN-recalibrated re-evaluation is skipped and latency timed briefly: the table compares accuracies
common="env.round_to=1 env.bn_recalibration_batches=0 progress=false"
common="$common final_eval.bn_recalibration_batches=0 final_eval.latency_repeats=5"
agents() {  # agents <variant> <seed>: the agent_run value
  local list="" v s
  if [ "$1" = best3 ] || [ "$1" = best4 ] || [ "$1" = best5 ] || [ "$1" = best9 ]; then
    local states=${COMMITTEE:-scale all amc}
    [ "$1" = best4 ] && states="$states scale_mnv2"
    [ "$1" = best5 ] && states="$states scale_mnv2 scale_mnv2_rel"
    for s in $([ "$1" = best9 ] && echo "${COMMITTEE_SEEDS:-0 1 2}" || echo "$2"); do
      for v in $states; do list="$list,$out/agents/$v/s$s"; done
    done
    echo "[${list#,}]"
  else
    echo "$out/agents/$1/s$2"
  fi
}
run() {  # run <dir> <module> <args...>
  local dir=$1 module=$2; shift 2
  [ -f "$dir/comparison.md" ] && return 0
  [ -e "$dir" ] && mv "$dir" "$dir.incomplete.$(date +%s)"
  mkdir -p "$(dirname "$dir")"
  echo "== $module $* -> $dir"
  $PY -m "$module" "$@" $common "hydra.run.dir=$dir" ${EXTRA:-} > "$dir.log" 2>&1 || echo "failed: see $dir.log (going on)"
}
for net in ${NETS:-resnet56 mobilenet_v2}; do
  ck=$B/$net/model.safetensors
  for t in ${TARGETS:-0.3 0.5 0.7}; do
    h=$out/heldout/$net/t$t
    run "$h/uniform" amc.apply checkpoint=$ck policy=uniform protocol.target=$t compare_with=[]
    run "$h/deep" amc.apply checkpoint=$ck policy=deep protocol.target=$t compare_with=[]
    run "$h/resnet20_agent" amc.apply checkpoint=$ck agent_run=$R20_AGENT protocol.target=$t compare_with=[]
    for v in $variants; do
      for s in $seeds; do
        [ "$v" = best9 ] && [ "$s" != "${seeds%% *}" ] && continue  # deterministic: the first seed's run stands
        run "$h/zero_shot_${v}_s$s" amc.apply checkpoint=$ck "agent_run=$(agents $v $s)" protocol.target=$t \
          compare_with=[] seed=$s
      done
    done
  done
  h=$out/heldout/$net/t0.5
  for n in ${REFINE:-10 25}; do
    for s in $seeds; do
      run "$h/random${n}_s$s" amc.search checkpoint=$ck method=random episodes=$n protocol.target=0.5 \
        compare_with=[] seed=$s
      for v in $variants; do
        run "$h/refine${n}_${v}_s$s" amc.apply checkpoint=$ck "agent_run=$(agents $v $s)" protocol.target=0.5 \
          refine_episodes=$n compare_with=[] seed=$s
      done
    done
  done
done
