"""The reward proxies of one candidate and its fixed short fine-tune.

Every proxy is the pruned model's accuracy on the first ``eval_images`` reward-val images (the searches' reward)
after one more recovery step than the last:

- ``select``: channel selection and surgery only (``PruningEngine`` without reconstruction);
- ``recon``: + least-squares reconstruction of the consuming layers (the searches' default reward);
- ``recon_bn<k>``: + BatchNorm statistics re-estimated on k training batches (EagleEye's adaptive BN);
- ``sgd<n>``: + n SGD steps of the fine-tuning recipe, from the ``recon_bn<largest k>`` model.

A proxy's cost is what it takes per candidate: selection, surgery, its recovery steps and its evaluation (the
one-off calibration of the reconstruction is not counted). The fine-tune starts from the model the engine makes with
reconstruction and BN recalibration on the largest k (the ``recon_bn<largest k>`` proxy's model) and trains it with
``train_model`` and distillation from the unpruned model; its figure is the test accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from amc.data.base import DataSplits
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.fast_paths import check_fast_paths, evaluation_copy
from amc.pruning.bn import recalibrate_bn
from amc.pruning.engine import PruningEngine
from amc.pruning.fold import conv_bn_pairs
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.training.loop import train_model


@dataclass(frozen=True)
class Recipe:
    """The short training of the fine-tune and of the SGD proxy: ``amc.finetune``'s defaults (SGD with Nesterov,
    cosine to 0 without warm-up, distillation from the unpruned model at alpha 0.5, T 4)."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    nesterov: bool = True
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0


@dataclass
class Scores:
    """A candidate's proxies: accuracy and cost (seconds) of each, and the seconds of every stage they share."""

    accuracy: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)


def training_data(data: DataSplits, batch_size: int, *, steps: int | None = None, epochs: float | None = None,
                  seed: int = 0) -> tuple[DataSplits, int]:
    """The data and epoch count for ``train_model`` to run ``steps`` steps, or ``epochs`` epochs (a fraction of one:
    that share of the steps of an epoch; more than one: whole epochs only).

    A fraction of an epoch trains one epoch over a seeded random subset of the training images. The reward-val split
    is left out so that ``train_model`` does not evaluate it after every epoch (the proxies evaluate it themselves).
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give either steps or epochs")
    no_val = data.reward_val.subset(torch.arange(0))
    full = data.num_batches("train", batch_size)
    if epochs is not None and epochs >= 1:
        if epochs != int(epochs):
            raise ValueError(f"fine-tune epochs must be below 1 or whole, got {epochs}")
        return dataclasses.replace(data, reward_val=no_val), int(epochs)
    if epochs is not None:
        if epochs <= 0:
            raise ValueError(f"fine-tune epochs must be > 0, got {epochs}")
        steps = max(1, round(epochs * full))
    assert steps is not None
    if steps < 1:
        raise ValueError(f"training steps must be >= 1, got {steps}")
    images = steps * batch_size
    if images > len(data.train):
        raise ValueError(f"{steps} steps of {batch_size} images are more than one epoch ({full} steps of "
                         f"{len(data.train)} images); give whole epochs instead")
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:images].sort().values
    return dataclasses.replace(data, train=data.train.subset(order), reward_val=no_val), 1


def short_train(model: nn.Module, teacher: nn.Module, data: DataSplits, recipe: Recipe, *, steps: int | None = None,
                epochs: float | None = None, seed: int = 0, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Train ``model`` in place with ``recipe`` for ``steps`` steps or ``epochs`` epochs; returns what it did."""
    subset, whole_epochs = training_data(data, recipe.batch_size, steps=steps, epochs=epochs, seed=seed)
    history = train_model(
        model, subset, epochs=whole_epochs, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
        batch_size=recipe.batch_size, schedule="cosine", warmup_epochs=0.0, nesterov=recipe.nesterov, seed=seed,
        device=device, progress=False, teacher=teacher if recipe.kd_alpha > 0 else None,
        kd_temperature=recipe.kd_temperature, kd_alpha=recipe.kd_alpha)
    model.eval()
    return {"steps": whole_epochs * subset.num_batches("train", recipe.batch_size), "images": len(subset.train),
            "loss": history[-1]["loss"], "train_acc": history[-1]["train_acc"]}


def proxy_costs(stages: dict[str, float], bn_batches: Sequence[int], sgd_steps: int) -> dict[str, float]:
    """Seconds per candidate of each proxy: the stages it needs, from selection to its own evaluation."""
    base = stages["select"] + stages["surgery"]
    recon = base + stages["reconstruct"]
    costs = {"select": base + stages["eval_select"], "recon": recon + stages["eval_recon"]}
    for k in bn_batches:
        costs[f"recon_bn{k}"] = recon + stages[f"bn{k}"] + stages[f"eval_recon_bn{k}"]
    if sgd_steps:
        start = recon + (stages[f"bn{max(bn_batches)}"] if bn_batches else 0.0)
        costs[f"sgd{sgd_steps}"] = start + stages["sgd"] + stages[f"eval_sgd{sgd_steps}"]
    return costs


class Scorer:
    """Scores candidates' channel counts with every proxy and fine-tunes them, for one network and data set."""

    def __init__(self, net: PrunableNetwork, data: DataSplits, reconstructor: Reconstructor, *, selection: str,
                 eval_images: int | None, eval_batch_size: int, bn_batches: Sequence[int], bn_batch_size: int,
                 sgd_steps: int, recipe: Recipe, finetune_steps: int | None, finetune_epochs: float | None,
                 seed: int, device: torch.device | str = "cpu") -> None:
        if any(k < 1 for k in bn_batches):
            raise ValueError(f"BN recalibration batches must be >= 1, got {list(bn_batches)}")
        self.net, self.data, self.reconstructor = net, data, reconstructor
        self.eval_images, self.eval_batch_size = eval_images, eval_batch_size
        self.bn_batches, self.bn_batch_size = sorted(set(bn_batches)), bn_batch_size
        self.sgd_steps, self.recipe, self.seed, self.device = sgd_steps, recipe, seed, device
        self.finetune_steps, self.finetune_epochs = finetune_steps, finetune_epochs
        self.teacher = copy.deepcopy(net.model).eval()
        # the search env's fast paths (BN folded, channels-last; identical up to float rounding), where this model
        # runs identically with them: a proxy then costs what it costs in a search
        images = next(data.batches("reward_val", batch_size=8))[0].to(device)
        self.fold_pairs, self.channels_last = check_fast_paths(net.model, images, fold_pairs=conv_bn_pairs(net.model),
                                                               channels_last=True)
        self.plain = PruningEngine(net, selection=selection, device=device)
        start_bn = max(self.bn_batches, default=0)
        self.start = PruningEngine(net, selection=selection, reconstructor=reconstructor, bn_data=data,
                                   bn_batches=start_bn, bn_batch_size=bn_batch_size, device=device,
                                   bn_channels_last=self.channels_last)

    def _fast(self, model: nn.Module) -> nn.Module:
        """``model`` as the env evaluates it (a copy with the fast paths, or itself)."""
        return evaluation_copy(model, fold_pairs=self.fold_pairs, channels_last=self.channels_last)

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """(reward-val accuracy on the first ``eval_images`` images, seconds)."""
        t = time.perf_counter()
        accuracy = evaluate_accuracy(self._fast(model), self.data, split="reward_val", batch_size=self.eval_batch_size,
                                     limit=self.eval_images, device=self.device)
        return accuracy, time.perf_counter() - t

    def score(self, counts: Sequence[int]) -> Scores:
        """Every proxy of one candidate, on one pruned copy taken one recovery step further each time."""
        scores = Scores()
        acc, stages = scores.accuracy, scores.stages
        result = self.plain.prune_counts(counts)
        stages.update(select=result.seconds["select"], surgery=result.seconds["surgery"])
        model = result.model
        acc["select"], stages["eval_select"] = self.evaluate(model)
        t = time.perf_counter()
        self.reconstructor.reconstruct(model, self.net, result.kept)
        stages["reconstruct"] = time.perf_counter() - t
        acc["recon"], stages["eval_recon"] = self.evaluate(model)
        for k in self.bn_batches:  # each recalibration starts from reset statistics: the same as the engine's
            t = time.perf_counter()
            recalibrate_bn(model, self.data, num_batches=k, batch_size=self.bn_batch_size, device=self.device,
                           channels_last=self.channels_last)
            stages[f"bn{k}"] = time.perf_counter() - t
            acc[f"recon_bn{k}"], stages[f"eval_recon_bn{k}"] = self.evaluate(model)
        if self.sgd_steps:  # the model now has the largest k's statistics: the fine-tune's start
            t = time.perf_counter()
            short_train(model, self.teacher, self.data, self.recipe, steps=self.sgd_steps, seed=self.seed,
                        device=self.device)
            stages["sgd"] = time.perf_counter() - t
            name = f"sgd{self.sgd_steps}"
            acc[name], stages[f"eval_{name}"] = self.evaluate(model)
        scores.seconds = proxy_costs(stages, self.bn_batches, self.sgd_steps)
        return scores

    def finetune(self, counts: Sequence[int]) -> dict[str, Any]:
        """Fine-tune the candidate's reconstructed, BN-recalibrated model; test accuracy and seconds."""
        t = time.perf_counter()
        model = self.start.prune_counts(counts).model
        seconds = {"rebuild": time.perf_counter() - t}
        start_acc, seconds["evaluate_start"] = self.evaluate(model)  # a check: the recon_bn<largest k> proxy
        t = time.perf_counter()
        info = short_train(model, self.teacher, self.data, self.recipe, steps=self.finetune_steps,
                           epochs=self.finetune_epochs, seed=self.seed, device=self.device)
        seconds["train"] = time.perf_counter() - t
        t = time.perf_counter()
        test_acc = evaluate_accuracy(self._fast(model), self.data, split="test", batch_size=self.eval_batch_size,
                                     device=self.device)
        seconds["evaluate"] = time.perf_counter() - t
        return {"test_acc": test_acc, "start_reward_val_acc": start_acc, **info, "seconds": seconds,
                "seconds_per_step": seconds["train"] / max(1, info["steps"]),
                "epochs": info["steps"] / math.ceil(len(self.data.train) / self.recipe.batch_size)}
