#!/usr/bin/env bash
# Copy the small, reviewable part of a finished search run dir into experiments/results/:
#   experiments/results/collect.sh <run dir> <destination>
# Keeps the comparison table, summaries and best plans of every method, AMC's episodes log and a reward-curve PNG,
# the hydra config and settings.json, and the pickle-free actor (actor.json + actor.safetensors, ~0.4 MB, so that
# `amc.apply agent_run=<destination>` works); leaves out agent.zip, the resume checkpoint, the pruned weights and
# TensorBoard events.
set -euo pipefail
src=${1:?usage: collect.sh <run dir> <destination>}
dst=${2:?usage: collect.sh <run dir> <destination>}
[ -f "$src/comparison.md" ] || { echo "$src holds no comparison.md: not a finished search (resume= completes it)" >&2; exit 2; }
[ -e "$dst" ] && { echo "$dst exists; not overwriting it" >&2; exit 2; }
python=${PYTHON:-.venv/bin/python}
mkdir -p "$dst"
cp "$src"/{comparison.md,summary.json,best_plan.json,episodes.jsonl} "$dst"/
[ -d "$src/.hydra" ] && cp -r "$src/.hydra" "$dst/.hydra"   # amc.report reads budget and seed from it
for f in settings.json actor.json actor.safetensors latency.json latency_table.json; do [ -f "$src/$f" ] && cp "$src/$f" "$dst/"; done
for m in "$src"/compare/*/; do
  [ -d "$m" ] || continue
  mkdir -p "$dst/compare/$(basename "$m")"
  cp "$m"/{summary.json,best_plan.json} "$dst/compare/$(basename "$m")/"
done
"$python" -m amc.plot_curve "$src" --out "$dst/reward_curve.png"
