#!/usr/bin/env bash
# The exact commands that trained the committed Fashion-MNIST baselines (2 CPU cores, run from the repo root
# inside the venv). Each run writes model.safetensors, metrics.json, TensorBoard events and .hydra/ into its
# folder; amc.train refuses to overwrite an existing model.safetensors.
set -euo pipefail
out=experiments/baselines/fashion_mnist
python -m amc.train model=resnet20 train.epochs=20 hydra.run.dir=$out/resnet20
python -m amc.train model=resnet56 train.epochs=15 hydra.run.dir=$out/resnet56
python -m amc.train model=mobilenet_v2 model.width_mult=0.5 train.epochs=12 hydra.run.dir=$out/mobilenet_v2
