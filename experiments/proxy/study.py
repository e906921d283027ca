"""Proxy study (issue 28): how well do cheap reward proxies predict the accuracy after fine-tuning?

    python -m experiments.proxy.study --checkpoint <model.safetensors> --data fashion_mnist --target 0.5 \\
        --candidates 30 --out <dir> [--bn-batches 2 20] [--sgd-steps 300] [--finetune-steps 200] \\
        [--amc-run <search run dir>]
    python -m experiments.proxy.study --out <dir> --analyse-only

For one network and a MACs budget: random search's first ``--candidates`` policies (its seeded draws through the
env's budget wall), uniform / deep / shallow at the budget and, with ``--amc-run``, AMC's best plan. Each candidate is
scored with every proxy (``proxies.py``) and then fine-tuned with one fixed short recipe; at the end each proxy's
correlation with the fine-tuned test accuracy is written (``analysis.py``). The study resumes: a rerun with the same
settings skips every finished part (``rundir.py``). Exit code 2: fewer than 10 finished candidates to correlate.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amc.artifacts.checkpoint import CheckpointError, file_checksum, load_checkpoint
from amc.data import DatasetError, DataSplits, fashion_mnist, synthetic
from amc.data.fashion_mnist import DEFAULT_ROOT
from amc.measure.accuracy import evaluate_accuracy
from amc.pruning.budget import ResourceBudget
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import Reconstructor
from amc.pruning.selection import CRITERIA
from experiments.proxy.analysis import NotEnoughCandidates, analyse
from experiments.proxy.candidates import (
    Candidate,
    amc_candidate,
    amc_plan_path,
    heuristic_candidates,
    plan_identity,
    random_candidates,
)
from experiments.proxy.proxies import Recipe, Scorer, training_data
from experiments.proxy.rundir import (
    StudyMismatch,
    check_study,
    clear_error,
    open_study,
    read_json,
    read_study,
    record_error,
    write_json,
)

log = logging.getLogger("experiments.proxy")
REWARD_VAL_SIZE = {"fashion_mnist": 5000, "synthetic": 128}  # conf/data/<name>.yaml: the searches' split
DEFAULT_FINETUNE_STEPS = 200


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study is run with (the command line)."""

    out: Path
    checkpoint: Path
    target: float
    candidates: int = 30
    data: str = "fashion_mnist"
    data_root: str = DEFAULT_ROOT
    reward_val_size: int | None = None
    data_seed: int = 0
    seed: int = 0
    lbound: float = 0.2
    rbound: float = 1.0
    round_to: int = 1
    selection: str = "consumer_l1"
    calibration_images: int = 3000
    eval_images: int | None = 2000
    bn_batches: tuple[int, ...] = (2, 20)
    bn_batch_size: int = 100
    sgd_steps: int = 0
    finetune_steps: int | None = DEFAULT_FINETUNE_STEPS
    finetune_epochs: float | None = None
    recipe: Recipe = field(default_factory=Recipe)
    amc_run: Path | None = None
    bootstrap: int = 2000
    heuristics: bool = True  # uniform, deep and shallow as candidates too


@dataclass
class StudyReport:
    """What one run of the study did, by candidate id."""

    scored: list[str] = field(default_factory=list)
    finetuned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished before this run
    failed: list[str] = field(default_factory=list)


def reward_val_size(config: StudyConfig) -> int:
    return config.reward_val_size if config.reward_val_size is not None else REWARD_VAL_SIZE[config.data]


def build_data(config: StudyConfig) -> DataSplits:
    size = reward_val_size(config)
    if config.data == "fashion_mnist":
        return fashion_mnist(root=config.data_root, reward_val_size=size, seed=config.data_seed)
    return synthetic(reward_val_size=size, seed=config.data_seed)


def study_settings(config: StudyConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """What defines the study's results (compared on a rerun): file checksums, not paths."""
    return {
        "model": spec.get("target"), "checkpoint_sha256": file_checksum(config.checkpoint),
        "data": {"name": config.data, "seed": config.data_seed,
                 "reward_val_size": reward_val_size(config)},
        "resource": "macs", "target": config.target, "seed": config.seed, "lbound": config.lbound,
        "rbound": config.rbound, "round_to": config.round_to, "selection": config.selection,
        "calibration_images": config.calibration_images, "eval_images": config.eval_images,
        "bn_batches": sorted(set(config.bn_batches)), "bn_batch_size": config.bn_batch_size,
        "sgd_steps": config.sgd_steps,
        "finetune": {"steps": config.finetune_steps, "epochs": config.finetune_epochs,
                     **dataclasses.asdict(config.recipe)},
        "amc_run": plan_identity(config.amc_run) if config.amc_run else None,
        "heuristics": config.heuristics,
    }


def check_budget(budget: ResourceBudget, counts: Sequence[int]) -> float:
    """The candidate's MACs ratio; ValueError when it is over the budget."""
    ratio = budget.ratio(counts)
    if budget.cost(counts) > budget.limit:
        raise ValueError(f"the policy uses {ratio:.4f} of the MACs, over the budget {budget.target_ratio}")
    return ratio


def run_proxies(scorer: Scorer, budget: ResourceBudget, candidate: Candidate, directory: Path) -> None:
    """Score ``candidate`` with every proxy into ``candidate.json``."""
    ratio = check_budget(budget, candidate.counts)
    t = time.perf_counter()
    scores = scorer.score(candidate.counts)
    net = scorer.net
    write_json(directory / "candidate.json", {
        "id": candidate.id, "kind": candidate.kind, "counts": candidate.counts,
        "keep_ratios": [n / g.channels for n, g in zip(candidate.counts, net.groups)],
        "macs": net.predict_macs(candidate.counts), "macs_ratio": ratio, "target": budget.target_ratio,
        "params": net.predict_params(candidate.counts), "proxies": scores.accuracy, "proxy_seconds": scores.seconds,
        "stage_seconds": scores.stages, "seconds": time.perf_counter() - t, "source": candidate.source,
    })


def candidate_status(candidate: Candidate, directory: Path) -> tuple[bool, bool]:
    """(proxies done, fine-tune done); a stored candidate with other counts than this study draws is refused."""
    path = directory / "candidate.json"
    if not path.is_file():
        return False, False
    stored = read_json(path)["counts"]
    if stored != candidate.counts:
        raise StudyMismatch(f"{path} holds counts {stored}, this study draws {candidate.counts} for {candidate.id}: "
                            f"the code or data changed since; use another --out")
    return True, (directory / "finetuned.json").is_file()


def attempt(directory: Path, stage: str, report: StudyReport, candidate: Candidate, fn: Callable[[], None]) -> bool:
    """Run ``fn()``; on an error record it in ``error.json`` and the report and go on."""
    try:
        fn()
    except Exception as e:  # a candidate's failure is a result, not the end of the study
        log.error("%s failed at %s: %s: %s", candidate.id, stage, type(e).__name__, e)
        record_error(directory, stage, e)
        report.failed.append(candidate.id)
        return False
    return True


def _eta(started: float, done: int, left: int) -> str:
    return "" if done == 0 else f", ETA {(time.perf_counter() - started) / done * left / 60:.1f} min"


def run_candidates(scorer: Scorer, budget: ResourceBudget, candidates: list[Candidate], out: Path) -> StudyReport:
    """Proxies of every candidate first (cheap), then the fine-tunes; finished parts are skipped."""
    report, todo = StudyReport(), []
    for i, c in enumerate(candidates, 1):
        d = out / "candidates" / c.id
        d.mkdir(parents=True, exist_ok=True)
        if c.error is not None:
            log.warning("candidate %s: no policy: %s", c.id, c.error)
            record_error(d, "policy", c.error)
            report.failed.append(c.id)
            continue
        scored, finetuned = candidate_status(c, d)
        if scored and finetuned:
            report.skipped.append(c.id)
            clear_error(d)
            continue
        if not scored:
            if not attempt(d, "proxies", report, c, lambda c=c, d=d: run_proxies(scorer, budget, c, d)):
                continue
            report.scored.append(c.id)
            clear_error(d)
            stored = read_json(d / "candidate.json")
            log.info("proxies %d/%d %s (MACs %.3f): %s (%.1f s)", i, len(candidates), c.id, stored["macs_ratio"],
                     " ".join(f"{k} {v:.4f}" for k, v in stored["proxies"].items()), stored["seconds"])
        todo.append((c, d))
    started = time.perf_counter()
    for j, (c, d) in enumerate(todo):
        def finetune(c: Candidate = c, d: Path = d) -> None:
            write_json(d / "finetuned.json", {"id": c.id, **scorer.finetune(c.counts)})

        if attempt(d, "finetune", report, c, finetune):
            clear_error(d)
            report.finetuned.append(c.id)
            f = read_json(d / "finetuned.json")
            log.info("fine-tune %d/%d %s: test %.4f (start %.4f on reward-val, %d steps, %.0f s)%s", j + 1,
                     len(todo), c.id, f["test_acc"], f["start_reward_val_acc"], f["steps"], sum(f["seconds"].values()),
                     _eta(started, j + 1, len(todo) - j - 1))
    return report


def run_study(config: StudyConfig) -> StudyReport:
    """Check the inputs and the output dir, set up, make the candidates and run them (no analysis). Nothing is written
    before every input is checked, so a mistaken command leaves no study behind to refuse the corrected one."""
    if not 0 < config.target <= 1:
        raise ValueError(f"--target must be in (0, 1], got {config.target}")
    if config.candidates < 0 or config.sgd_steps < 0:
        raise ValueError("--candidates and --sgd-steps must be >= 0")
    base, spec = load_checkpoint(config.checkpoint)
    settings = study_settings(config, spec)
    check_study(config.out, settings)  # a refused rerun loads no data
    data = build_data(config)
    if (spec.get("in_channels"), spec.get("num_classes")) != (data.in_channels, data.num_classes):
        raise ValueError(f"{config.checkpoint} takes {spec.get('in_channels')} channels and {spec.get('num_classes')} "
                         f"classes, data {data.name} has {data.in_channels} and {data.num_classes}")
    # the training lengths must fit the data (a mistake would fail every candidate alike)
    training_data(data, config.recipe.batch_size, steps=config.finetune_steps, epochs=config.finetune_epochs)
    if config.sgd_steps:
        training_data(data, config.recipe.batch_size, steps=config.sgd_steps)
    net = PrunableNetwork(base, (1, data.in_channels, *data.image_size), round_to=config.round_to)
    budget = ResourceBudget(net, "macs", config.target, config.lbound)
    candidates = heuristic_candidates(net, budget, lbound=config.lbound, rbound=config.rbound) if config.heuristics else []
    if config.amc_run:
        candidates.append(amc_candidate(config.amc_run, net, base, target=config.target))
    candidates += random_candidates(net, budget, count=config.candidates, seed=config.seed, lbound=config.lbound,
                                    rbound=config.rbound)
    inputs = {"checkpoint": str(config.checkpoint), "data_root": config.data_root if config.data != "synthetic" else None,
              "amc_run": str(amc_plan_path(config.amc_run)) if config.amc_run else None, "command": sys.argv}
    open_study(config.out, settings, inputs, config.candidates)

    reconstructor = Reconstructor.calibrate(net, data, num_images=config.calibration_images, seed=config.seed)
    scorer = Scorer(net, data, reconstructor, selection=config.selection, eval_images=config.eval_images,
                    eval_batch_size=250, bn_batches=config.bn_batches, bn_batch_size=config.bn_batch_size,
                    sgd_steps=config.sgd_steps, recipe=config.recipe, finetune_steps=config.finetune_steps,
                    finetune_epochs=config.finetune_epochs, seed=config.seed)
    if not (config.out / "base.json").is_file():
        write_json(config.out / "base.json", {
            "reward_val_acc": scorer.evaluate(base)[0], "eval_images": config.eval_images,
            "test_acc": evaluate_accuracy(base, data, split="test"), "macs": net.original_macs,
            "params": net.original_params, "groups": net.num_groups,
            "calibration_seconds": reconstructor.calibration_seconds})
    log.info("%d candidates (%d random) for %s at %.2f of %d MACs, %d groups", len(candidates), config.candidates,
             spec.get("target"), config.target, net.original_macs, net.num_groups)
    report = run_candidates(scorer, budget, candidates, config.out)
    log.info("this run: %d scored, %d fine-tuned, %d finished before, %d failed", len(report.scored),
             len(report.finetuned), len(report.skipped), len(report.failed))
    return report


def parse_args(argv: Sequence[str] | None = None) -> tuple[StudyConfig | None, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m experiments.proxy.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the study's dir (one per network, budget and settings)")
    p.add_argument("--analyse-only", action="store_true", help="only the correlations of the finished candidates")
    p.add_argument("--checkpoint", type=Path, help="the unpruned model (amc safetensors checkpoint)")
    p.add_argument("--data", choices=sorted(REWARD_VAL_SIZE), default="fashion_mnist")
    p.add_argument("--data-root", default=DEFAULT_ROOT, help="Fashion-MNIST dir")
    p.add_argument("--reward-val-size", type=int, help="held-out training images (default: the searches' split)")
    p.add_argument("--target", type=float, help="MACs budget as a fraction of the unpruned model's")
    p.add_argument("--candidates", type=int, default=30, help="random budget-meeting policies (plus the heuristics)")
    p.add_argument("--seed", type=int, default=0, help="random search's seed; calibration and training")
    p.add_argument("--lbound", type=float, default=0.2)
    p.add_argument("--rbound", type=float, default=1.0)
    p.add_argument("--round-to", type=int, default=1, help="channel grid (the Fashion-MNIST searches: 1)")
    p.add_argument("--selection", choices=CRITERIA, default="consumer_l1")
    p.add_argument("--calibration-images", type=int, default=3000)
    p.add_argument("--eval-images", type=int, default=2000, help="reward-val images per proxy (0: all)")
    p.add_argument("--bn-batches", type=int, nargs="*", default=[2, 20], help="k of the recon_bn<k> proxies")
    p.add_argument("--bn-batch-size", type=int, default=100)
    p.add_argument("--sgd-steps", type=int, default=0, help="steps of the sgd<n> proxy (0: off)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--finetune-steps", type=int, help=f"default {DEFAULT_FINETUNE_STEPS}")
    length.add_argument("--finetune-epochs", type=float, help="below 1 (a share of an epoch's steps) or whole")
    p.add_argument("--finetune-lr", type=float, default=Recipe.lr)
    p.add_argument("--finetune-batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--kd-alpha", type=float, default=Recipe.kd_alpha)
    p.add_argument("--kd-temperature", type=float, default=Recipe.kd_temperature)
    p.add_argument("--amc-run", type=Path, help="a search run dir (its best_plan.json) at the same budget")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the confidence intervals")
    p.add_argument("--no-heuristics", dest="heuristics", action="store_false",
                   help="random candidates (and --amc-run) only, e.g. for a recipe check's few long fine-tunes")
    args = p.parse_args(argv)
    if args.analyse_only:
        return None, args
    if args.checkpoint is None or args.target is None:
        p.error("--checkpoint and --target are needed (or --analyse-only)")
    steps = None if args.finetune_epochs is not None else args.finetune_steps
    if steps is None and args.finetune_epochs is None:
        steps = DEFAULT_FINETUNE_STEPS
    config = StudyConfig(
        out=args.out, checkpoint=args.checkpoint, target=args.target, candidates=args.candidates, data=args.data,
        data_root=args.data_root, reward_val_size=args.reward_val_size, seed=args.seed, lbound=args.lbound,
        rbound=args.rbound, round_to=args.round_to, selection=args.selection,
        calibration_images=args.calibration_images, eval_images=args.eval_images or None,
        bn_batches=tuple(sorted(set(args.bn_batches))), bn_batch_size=args.bn_batch_size, sgd_steps=args.sgd_steps,
        finetune_steps=steps, finetune_epochs=args.finetune_epochs,
        recipe=Recipe(lr=args.finetune_lr, batch_size=args.finetune_batch_size, kd_alpha=args.kd_alpha,
                      kd_temperature=args.kd_temperature),
        amc_run=args.amc_run, bootstrap=args.bootstrap, heuristics=args.heuristics)
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, args = parse_args(argv)
    try:
        if config is None:
            read_study(args.out)
        else:
            run_study(config)
        analyse(args.out, resamples=args.bootstrap)
    except NotEnoughCandidates as e:
        print(f"proxy study: {e}", file=sys.stderr)
        return 2
    except (StudyMismatch, CheckpointError, DatasetError, ValueError) as e:
        print(f"proxy study: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nproxy study: interrupted; the same command resumes it ({args.out})", file=sys.stderr)
        return 130
    print((args.out / "correlations.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
