#!/usr/bin/env bash
# Issue 28, part 3: does the searched structure survive fine-tuning? Each plan is pruned once with amc.prune (its
# reconstruction + BN recalibration variant is the start), then fine-tuned with ONE recipe for every method, once per
# fine-tuning seed: amc.finetune epochs=<epochs> seed=<s> (lr 0.01 cosine, SGD + Nesterov, batch 128, augmentation,
# KD from the unpruned model alpha 0.5 T 4: conf/finetune.yaml; KD= sets another alpha).
# Usage: experiments/finetune/run_structure.sh <out> <epochs> "<seeds>" <name>=<plan.json> [<name>=<plan.json> ...]
#   e.g. R=experiments/results/mobilenet_v2_fmnist_front/t0.3/s0
#        experiments/finetune/run_structure.sh experiments/results/structure_fmnist/mobilenet_v2_t0.3 1 "0 1 2" \
#          amc=$R/best_plan.json uniform=$R/compare/uniform/best_plan.json deep=$R/compare/deep/best_plan.json \
#          random=$R/compare/random/best_plan.json
#   then: python -m experiments.finetune.structure_table <out> [<out> ...]
# Resumable: a pruned plan (results.json) and a finished fine-tune (metrics.json) are skipped, a killed fine-tune resumed.
set -euo pipefail
out=$1 epochs=$2 seeds=$3; shift 3
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for spec in "$@"; do  # prune every plan first: a bad plan fails before any fine-tune
  name=${spec%%=*} plan=${spec#*=}
  d=$out/$name/pruned
  [ -f "$d/results.json" ] && continue
  checkpoint=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['base_model']['checkpoint'])" "$plan")
  mkdir -p "$out/$name"
  echo "== prune $name: $plan -> $d"
  $PY -m amc.prune plan="$plan" checkpoint="$checkpoint" round_to=1 hydra.run.dir="$d" > "$d.log" 2>&1
done
for s in $seeds; do  # seed by seed, so an early stop leaves whole seeds of every method
  for spec in "$@"; do
    name=${spec%%=*}
    d=$out/$name/ft_s$s
    [ -f "$d/metrics.json" ] && continue
    extra=""; [ -f "$d/settings.json" ] && extra="resume=$d"  # killed, even before its first epoch ended
    echo "== fine-tune $name seed $s ($epochs epochs) -> $d"
    $PY -m amc.finetune pruned="$out/$name/pruned/reconstruction_bn_recal" epochs="$epochs" seed="$s" \
      kd.alpha="${KD:-0.5}" progress=false hydra.run.dir="$d" $extra > "$d.log" 2>&1 || echo "failed: see $d.log (going on)"
  done
done
