#!/usr/bin/env bash
# Copy the small, reviewable part of a finished search run dir into experiments/results/:
#   experiments/results/collect.sh <run dir> <destination>
# Keeps the comparison table, summaries and best plans of every method, AMC's episodes log and a reward-curve PNG,
# and the hydra config; leaves out the agent, the resume checkpoint, the pruned weights and TensorBoard events.
set -euo pipefail
src=${1:?usage: collect.sh <run dir> <destination>}
dst=${2:?usage: collect.sh <run dir> <destination>}
[ -f "$src/summary.json" ] || { echo "$src holds no summary.json: not a finished search" >&2; exit 2; }
[ -e "$dst" ] && { echo "$dst exists; not overwriting it" >&2; exit 2; }
python=${PYTHON:-.venv/bin/python}
mkdir -p "$dst"
cp "$src"/{comparison.md,summary.json,best_plan.json,episodes.jsonl} "$dst"/
[ -d "$src/.hydra" ] && cp -r "$src/.hydra" "$dst/.hydra"   # amc.report reads budget and seed from it
for m in "$src"/compare/*/; do
  [ -d "$m" ] || continue
  mkdir -p "$dst/compare/$(basename "$m")"
  cp "$m"/{summary.json,best_plan.json} "$dst/compare/$(basename "$m")/"
done
"$python" -m amc.plot_curve "$src" --out "$dst/reward_curve.png"
