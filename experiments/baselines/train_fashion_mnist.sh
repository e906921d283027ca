#!/usr/bin/env bash
# The exact commands that trained the committed Fashion-MNIST baselines (2 CPU cores, run from the repo root
# inside the venv). Each run writes model.safetensors, metrics.json, TensorBoard events and .hydra/ into its
# folder; amc.train refuses to overwrite an existing model.safetensors. Rerunning this script skips trained models
# and continues a killed run from its last finished epoch (resume=).
# Usage: experiments/baselines/train_fashion_mnist.sh [names...]   (default: all; PY= picks the python)
set -euo pipefail
out=${OUT:-experiments/baselines/fashion_mnist}
PY=${PY:-python}
declare -A ARGS=(
  # the three the searches use (ResNet-56 and MobileNet-V2 are the held-out networks of the transfer study)
  [resnet20]="model=resnet20 train.epochs=20"
  [resnet56]="model=resnet56 train.epochs=15"
  [mobilenet_v2]="model=mobilenet_v2 model.width_mult=0.5 train.epochs=12"
  # the networks a transferable agent trains on (issue 27)
  [plain20]="model=plain20 train.epochs=20"
  [resnet32]="model=resnet32 train.epochs=15"
  [resnet20_w8]="model=resnet20 +model.width=8 train.epochs=20"
  [resnet20_w24]="model=resnet20 +model.width=24 train.epochs=15"
  [mobilenet_v1]="model=mobilenet_v1 +model.width_mult=0.5 train.epochs=12"
  [vgg16]="model=vgg16 +model.width_mult=0.5 train.epochs=10"
  # a second inverted-residual network to train on (another width than the held-out MobileNet-V2 0.5)
  [mobilenet_v2_w035]="model=mobilenet_v2 model.width_mult=0.35 train.epochs=6"
)
ORDER="resnet20 resnet56 mobilenet_v2 plain20 resnet20_w8 resnet32 mobilenet_v1 resnet20_w24 vgg16 mobilenet_v2_w035"
for name in ${@:-$ORDER}; do
  d=$out/$name
  [ -f "$d/model.safetensors" ] && continue
  extra=""; [ -f "$d/settings.json" ] && extra="resume=$d"
  echo "== $name -> $d"
  $PY -m amc.train ${ARGS[$name]} hydra.run.dir=$d $extra
done
