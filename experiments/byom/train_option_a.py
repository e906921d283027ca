"""Train the option-A ResNet-20 of tests/families.py on Fashion-MNIST briefly and save it the way users do:
``torch.save(model.state_dict(), "model.pth")`` (no amc metadata). Resumable: rerun the same command after a kill.

    python -m experiments.byom.train_option_a --out experiments/byom/resnet20_option_a --epochs 2

Then prune it with no hand-written exclude list (the lambda shortcut's stream is frozen automatically):

    python -m amc.inspect checkpoint=<out>/model.pth model._target_=tests.families.ResNet20OptionA +model.in_channels=1
    python -m amc.prune checkpoint=<out>/model.pth model._target_=tests.families.ResNet20OptionA +model.in_channels=1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from amc.data import fashion_mnist
from amc.measure.accuracy import evaluate_accuracy
from amc.training.loop import train_model
from tests.families import ResNet20OptionA


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    weights = args.out / "model.pth"
    if weights.exists():
        print(f"{weights} exists; it is left as it is", file=sys.stderr)
        return 2
    data = fashion_mnist()
    torch.manual_seed(args.seed)
    model = ResNet20OptionA(num_classes=data.num_classes, in_channels=data.in_channels)
    history = train_model(model, data, epochs=args.epochs, schedule="cosine", seed=args.seed, progress=False,
                          state_dir=args.out / "training_state")
    model.eval()
    metrics = {"test_acc": evaluate_accuracy(model, data, split="test"),
               "reward_val_acc": evaluate_accuracy(model, data, split="reward_val"),
               "epochs": history, "command": " ".join(["python -m experiments.byom.train_option_a", *sys.argv[1:]])}
    torch.save(model.state_dict(), weights)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    logging.info("test %.4f reward-val %.4f -> %s", metrics["test_acc"], metrics["reward_val_acc"], weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
