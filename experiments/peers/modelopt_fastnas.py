"""NVIDIA ModelOpt FastNAS pruning (``modelopt.torch.prune``, mode "fastnas") on our Fashion-MNIST checkpoints.

Issue 26, part 3: the peer itself, side by side. FastNAS prunes the committed baseline with
  * our reward-val images (``env.eval_images`` of them, as every amc episode) as its score function
    (``amc.measure.accuracy.evaluate_accuracy``),
  * our training batches as its ``data_loader``, for the BN reset and re-estimation ModelOpt runs on up to 50 of them
    before each score; drawn exactly as our BN recalibration draws them (batch 100, shuffled by a generator seeded
    with the search seed), so its first 10 batches are the ones of our ``final_eval`` recalibration,
then evaluates the pruned model (no fine-tuning) with our code on ALL reward-val and test images, also after our BN
recalibration (``final_eval.bn_recalibration_batches`` batches), and counts MACs with our counter.

ModelOpt's default channel divisor (32) leaves only three widths of a CIFAR ResNet-20 (16/32/64 channels) searchable,
the last stage's inner convs (64 -> 32), far from 50% FLOPs; so the divisor is a parameter (``--divisor``, state it
with every figure), applied to every rule of its FastNASConfig
(``channel_divisor`` of convolutions, ``feature_divisor`` of norms and linears); the channel ratios stay ModelOpt's
(0.05, 0.10, ..., 1.0).

Setup and run (from the repo root, in the separate venv of experiments/peers/README.md):

    OMP_NUM_THREADS=1 /work/peers_venv/bin/python experiments/peers/modelopt_fastnas.py \\
        --model resnet20 --target 0.5 --divisor 8 \\
        --out experiments/results/peers/modelopt_fastnas/resnet20_t0.5_d8

ModelOpt 0.47.0 sorts channels by importance with an index order (``Hparam.enforce_order``), after which a dynamic
BatchNorm's running_mean/var are indexed *copies*: its reset and re-estimation before each score never reach the
BNs of searchable widths (they keep the trained statistics; only BNs outside the search space, e.g. those of the
widths it cannot search, are re-estimated). ``--bn-workaround`` scores an exported copy of each candidate instead,
re-estimated with our ``recalibrate_bn`` on the same batches (ModelOpt's own loop is then not given data), and
re-estimates the result the same way: FastNAS as it is meant to work.

Writes summary.json and summary.md (figures, per-layer widths, ModelOpt's sensitivity map, command line, package
versions), run.log and ModelOpt's search checkpoint (modelopt_search_state.pth) into --out; refuses an --out that
already holds files unless --resume (which continues from ModelOpt's checkpoint: its wall time then covers only
the resumed process).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import json
import logging
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

# amc's module paths are being reorganised: the new location first, the old one as a fallback
try:
    from amc.artifacts.checkpoint import load_checkpoint
except ImportError:  # pragma: no cover - older layout
    from amc.checkpoint import load_checkpoint  # type: ignore[no-redef]
from amc.data import fashion_mnist
from amc.data.base import DataSplits
from amc.measure.accuracy import evaluate_accuracy
from amc.measure.macs import count_macs_params, layer_costs
from amc.pruning.bn import recalibrate_bn

REPO = Path(__file__).resolve().parents[2]
MODELS = ("resnet20", "resnet56", "mobilenet_v2")
MODELOPT_QUEUE_MAXLEN = 50  # ModelOpt caches at most this many batches for its BN recalibration (nas/autonas.py)

log = logging.getLogger("modelopt_fastnas")


# ---------------------------------------------------------------------------------------------------------- config
def read_yaml(rel: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / rel).read_text()) or {}


def harness_defaults(model: str) -> dict[str, Any]:
    """The values our searches use, read from conf/: data split, search seed, reward-val images, final BN batches."""
    data = read_yaml("conf/data/fashion_mnist.yaml")
    env = read_yaml("conf/env/default.yaml")
    search = read_yaml("conf/search.yaml")
    final = read_yaml("conf/final_eval/default.yaml")
    exp_path = REPO / f"conf/experiment/{model}_macs50.yaml"
    exp = read_yaml(f"conf/experiment/{model}_macs50.yaml") if exp_path.is_file() else {}
    eval_images = (exp.get("env") or {}).get("eval_images", env["eval_images"])
    return {
        "data_root": data["root"], "reward_val_size": int(data["reward_val_size"]), "data_seed": int(data["seed"]),
        "seed": int(exp.get("seed", search["seed"])), "eval_images": eval_images,
        "eval_batch_size": int(env.get("eval_batch_size", 500)),
        "final_bn_batches": int(final["bn_recalibration_batches"]),
        "checkpoint": exp.get("checkpoint", f"experiments/baselines/fashion_mnist/{model}/model.safetensors"),
        "experiment_file": str(exp_path.relative_to(REPO)) if exp_path.is_file() else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--target", type=float, default=0.5, help="FLOPs fraction of the unpruned model (default 0.5)")
    p.add_argument("--divisor", type=int, default=8, help="channel/feature divisor of every FastNAS rule (ModelOpt's default: 32)")
    p.add_argument("--out", type=Path, required=True, help="result dir (refused if it already holds files)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from ModelOpt's checkpoint")
    p.add_argument("--checkpoint", type=Path, default=None, help="base model (default: the experiment config's)")
    p.add_argument("--data-root", default=None, help="Fashion-MNIST dir (default: conf/data/fashion_mnist.yaml's)")
    p.add_argument("--reward-val-images", type=int, default=None,
                   help="reward-val images per score (default: env.eval_images of conf/experiment/<model>_macs50.yaml / conf/env/default.yaml)")
    p.add_argument("--bn-batches", type=int, default=50,
                   help="training batches ModelOpt recalibrates BN on before each score (default and maximum: 50, its queue length)")
    p.add_argument("--batch-size", type=int, default=100,
                   help="images per training batch of the data_loader (default 100: our recalibrate_bn's batch)")
    p.add_argument("--eval-batch-size", type=int, default=None, help="images per forward pass when scoring (default: env.eval_batch_size)")
    p.add_argument("--seed", type=int, default=None, help="seed of the training-batch shuffle (default: conf/search.yaml's seed)")
    p.add_argument("--final-bn-batches", type=int, default=None,
                   help="batches of our BN recalibration of the result (default: final_eval.bn_recalibration_batches)")
    p.add_argument("--bn-workaround", action="store_true",
                   help="score an exported copy of each candidate after our BN re-estimation on the same batches (see above)")
    p.add_argument("--quiet-modelopt", action="store_true", help="verbose=False for ModelOpt (no search-space profile)")
    args = p.parse_args(argv)
    if not 0 < args.target <= 1:
        p.error(f"--target must be in (0, 1], got {args.target}")
    if args.divisor < 1:
        p.error(f"--divisor must be >= 1, got {args.divisor}")
    if not 1 <= args.bn_batches <= MODELOPT_QUEUE_MAXLEN:
        p.error(f"--bn-batches must be in [1, {MODELOPT_QUEUE_MAXLEN}]: ModelOpt caches at most "
                f"{MODELOPT_QUEUE_MAXLEN} batches for its BN recalibration (MODELOPT_QUEUE_MAXLEN)")
    return args


# ------------------------------------------------------------------------------------------------------ the peer's I/O
class TrainBatches:
    """A re-iterable data_loader: every pass yields the same ``num_batches`` shuffled, un-augmented training batches,
    drawn as ``amc.pruning.bn.recalibrate_bn`` draws them (so its first batches are that function's batches)."""

    def __init__(self, data: DataSplits, batch_size: int, num_batches: int, seed: int) -> None:
        self.data, self.batch_size, self.num_batches, self.seed = data, batch_size, num_batches, seed
        self.passes = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.passes += 1
        gen = torch.Generator().manual_seed(self.seed)
        return self.data.batches("train", self.batch_size, shuffle=True, generator=gen,
                                 limit=self.num_batches * self.batch_size)

    def __len__(self) -> int:
        return self.num_batches


class CountingScore:
    """ModelOpt's score_func: our reward-val accuracy on the first ``limit`` images; counts and times its calls."""

    def __init__(self, data: DataSplits, limit: int | None, batch_size: int, log_every: int = 10,
                 recal: dict[str, int] | None = None) -> None:
        self.data, self.limit, self.batch_size, self.log_every = data, limit, batch_size, log_every
        self.recal = recal  # None: ModelOpt's own BN handling; else recalibrate_bn kwargs for an exported copy
        self.calls = 0
        self.seconds = 0.0
        self.started = time.perf_counter()
        self.scores: list[float] = []

    def __call__(self, model: nn.Module) -> float:
        t = time.perf_counter()
        if self.recal is None:
            # evaluate_accuracy calls model.eval(): ModelOpt's patched train(False) runs its BN reset first
            acc = evaluate_accuracy(model, self.data, split="reward_val", batch_size=self.batch_size, limit=self.limit)
        else:
            import modelopt.torch.nas as mtn

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "modelopt data queue not filled": its own BN loop gets no data here
                candidate = mtn.export(copy.deepcopy(model))
            recalibrate_bn(candidate, self.data, **self.recal)
            acc = evaluate_accuracy(candidate, self.data, split="reward_val", batch_size=self.batch_size, limit=self.limit)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        self.scores.append(acc)
        if self.calls == 1 or self.calls % self.log_every == 0:
            log.info("score call %d: reward-val acc %.4f (%.1fs per call on average, %.0fs since the search began)",
                     self.calls, acc, self.seconds / self.calls, time.perf_counter() - self.started)
        return acc


def fastnas_rules(divisor: int) -> dict[str, Any]:
    """ModelOpt's own FastNAS default rules (channel ratios 0.05..1.0) with every divisor set to ``divisor``."""
    from modelopt.torch.prune.fastnas import _get_fastnas_default_rules

    rules = _get_fastnas_default_rules()
    for rule in rules.values():
        for key in ("channel_divisor", "feature_divisor"):
            if key in rule:
                rule[key] = divisor
    return rules


# ------------------------------------------------------------------------------------------------------------ figures
def widths(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, int]]:
    """In/out channels (features) and MACs of every Conv2d / Linear, in call order (our MACs counter)."""
    return {name: {"in": c.in_channels, "out": c.out_channels, "groups": c.groups, "macs": c.macs}
            for name, c in layer_costs(model, input_shape).items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "nvidia-modelopt", "torchprofile", "pulp", "numpy", "pydantic", "amc"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        out["amc_git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                               text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "amc"], capture_output=True,
                               text=True, check=True).stdout.strip()
        out["amc_working_tree"] = "modified (uncommitted changes under amc/)" if dirty else "clean"
    except (OSError, subprocess.CalledProcessError):
        out["amc_git_commit"] = "unknown"
    out["torch_threads"] = str(torch.get_num_threads())
    out["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "unset")
    return out


class Tee(io.TextIOBase):
    """Writes to several text streams (ModelOpt prints its search-space profile to stdout)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()


def bn_stats_diff(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference of BN running means/variances of two same-shaped models."""
    diffs = [0.0]
    for (_, ma), (_, mb) in zip(a.named_modules(), b.named_modules()):
        if isinstance(ma, nn.modules.batchnorm._BatchNorm):
            diffs.append(float((ma.running_mean - mb.running_mean).abs().max()))
            diffs.append(float((ma.running_var - mb.running_var).abs().max()))
    return max(diffs)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return repr(obj)


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def write_markdown(s: dict[str, Any], path: Path) -> None:
    r = s["results"]
    lines = [
        f"# ModelOpt FastNAS on {s['model']} (Fashion-MNIST), FLOPs target {s['target']}, divisor {s['divisor']}"
        + (" (BN workaround)" if s["bn_workaround"] else ""),
        "",
        f"Command: `{s['command']}`",
        "",
        f"ModelOpt {s['versions']['nvidia-modelopt']}, torch {s['versions']['torch']}, torchprofile "
        f"{s['versions']['torchprofile']}; {s['versions']['torch_threads']} torch thread(s); base "
        f"`{s['checkpoint']}`.",
        "",
        "| | unpruned | FastNAS (no fine-tuning) |",
        "|---|---:|---:|",
        f"| test acc | {pct(r['base_test_acc'])} | {pct(r['test_acc'])} |",
        f"| reward-val acc (all {s['data']['reward_val_images_total']}) | {pct(r['base_reward_val_acc'])} | "
        f"{pct(r['reward_val_acc'])} |",
        f"| test acc, our BN recal ({s['final_bn_batches']} batches) | {pct(r['base_test_acc_bn'])} | "
        f"{pct(r['test_acc_bn'])} |",
        f"| reward-val acc, our BN recal | {pct(r['base_reward_val_acc_bn'])} | {pct(r['reward_val_acc_bn'])} |",
        f"| MACs (ours) | {r['macs_before']:,} | {r['macs_after']:,} ({r['macs_ratio']:.3f}) |",
        f"| params | {r['params_before']:,} | {r['params_after']:,} ({r['params_ratio']:.3f}) |",
        "",
        f"* constraint: FLOPs <= {s['target']:.0%} of the original; met by ModelOpt's count: "
        f"{r['constraint_met_modelopt']} (its FLOPs ratio {r['modelopt_flops_ratio']}); met by our MACs counter: "
        f"{r['constraint_met_ours']}",
        f"* search wall time {r['search_seconds']:.0f} s ({r['score_seconds']:.0f} s inside the score function); "
        f"whole script {r['total_seconds']:.0f} s; peak RSS {r['peak_rss_mb_after_search']:.0f} MB after the search, "
        f"{r['peak_rss_mb']:.0f} MB at the end (ru_maxrss, whole process)",
        f"* score calls: {r['score_calls']} = 1 unpruned + {r['presearch_scored']} width settings scored by the "
        f"pre-search ({r['sensitivity_entries']} settings over {r['searchable_hparams']} searchable widths; the full "
        f"width of each and the settings after the first one as good as unpruned are not scored)",
        f"* reward-val images per score: {s['reward_val_images']}; "
        + (f"each candidate exported and its BN re-estimated by our recalibrate_bn on {s['bn_batches']} training "
           f"batches of {s['batch_size']} before its score, the result likewise (--bn-workaround)"
           if s["bn_workaround"] else
           f"ModelOpt's BN reset + re-estimation on {s['bn_batches']} training batches of {s['batch_size']} runs "
           f"before every score and for the result, but in 0.47.0 reaches only BNs outside the search space "
           f"(see experiments/peers/README.md)"),
        f"* the result's BN statistics vs our recalibration on the same {s['bn_batches']} batches: max abs "
        f"difference {r['bn_stats_vs_same_batches_recal']:.2e}",
        "",
        "## Per-layer widths (Conv2d / Linear output channels)",
        "",
        "| layer | original | FastNAS | kept |",
        "|---|---:|---:|---:|",
    ]
    for name, before in s["widths_before"].items():
        after = s["widths_after"].get(name)
        if after is None:
            lines.append(f"| {name} | {before['out']} | (removed) | |")
        else:
            lines.append(f"| {name} | {before['out']} | {after['out']} | {after['out'] / before['out']:.2f} |")
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------------------------- run
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not args.resume:
        print(f"refusing to overwrite {out}: it already holds files (choose a new --out, or --resume an "
              f"interrupted run)", file=sys.stderr)
        return 2
    if args.resume and (out / "summary.json").exists():
        print(f"{out} already holds a finished run (summary.json)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(out / "run.log")])
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv]) if argv is None else shlex.join(argv)
    log.info("command: %s", command)
    t_start = time.perf_counter()

    d = harness_defaults(args.model)
    reward_val_images = args.reward_val_images if args.reward_val_images is not None else d["eval_images"]
    seed = args.seed if args.seed is not None else d["seed"]
    final_bn = args.final_bn_batches if args.final_bn_batches is not None else d["final_bn_batches"]
    eval_bs = args.eval_batch_size or d["eval_batch_size"]
    ckpt = args.checkpoint or (REPO / d["checkpoint"])

    import modelopt
    import modelopt.torch.prune as mtp

    vers = versions()
    log.info("versions: %s", vers)

    data = fashion_mnist(args.data_root or d["data_root"], reward_val_size=d["reward_val_size"], seed=d["data_seed"])
    model, spec = load_checkpoint(ckpt)
    model.eval()
    input_shape = (1, data.in_channels, *data.image_size)
    macs_before, params_before = count_macs_params(model, input_shape)
    widths_before = widths(model, input_shape)
    log.info("%s: %d MACs, %d params, %d reward-val / %d test images; score on %s reward-val images",
             spec["target"], macs_before, params_before, len(data.reward_val), len(data.test), reward_val_images)

    # the unpruned model with our code, on the same images (and after our BN recalibration, as final_eval reports)
    base = {"base_test_acc": evaluate_accuracy(model, data, split="test"),
            "base_reward_val_acc": evaluate_accuracy(model, data, split="reward_val")}
    base_bn = recalibrate_bn(copy.deepcopy(model), data, num_batches=final_bn, seed=seed)
    base["base_test_acc_bn"] = evaluate_accuracy(base_bn, data, split="test")
    base["base_reward_val_acc_bn"] = evaluate_accuracy(base_bn, data, split="reward_val")
    del base_bn
    log.info("unpruned: %s", {k: round(v, 4) for k, v in base.items()})

    loader = TrainBatches(data, args.batch_size, args.bn_batches, seed)
    recal_kwargs = {"num_batches": args.bn_batches, "batch_size": args.batch_size, "seed": seed}
    score = CountingScore(data, reward_val_images, eval_bs, recal=recal_kwargs if args.bn_workaround else None)
    dummy = torch.zeros(input_shape)
    mode = [("fastnas", fastnas_rules(args.divisor))]
    config = {"data_loader": None if args.bn_workaround else loader, "score_func": score,
              "checkpoint": str(out / "modelopt_search_state.pth"), "max_iter_data_loader": args.bn_batches,
              "verbose": not args.quiet_modelopt}
    log.info("mtp.prune(mode=fastnas, divisor %d, constraints flops <= %.0f%%) begins", args.divisor, 100 * args.target)
    # in eval mode: the search ends with train(False), which runs ModelOpt's BN re-estimation for the result
    searched = copy.deepcopy(model).eval()
    stdout_log = (out / "modelopt_stdout.txt").open("a")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(Tee(sys.__stdout__, stdout_log)):
        pruned, state = mtp.prune(searched, mode=mode, constraints={"flops": f"{100 * args.target:g}%"},
                                  dummy_input=dummy, config=config)
    search_seconds = time.perf_counter() - t0
    stdout_log.close()
    rss_after_search = peak_rss_mb()
    log.info("search done in %.0f s, %d score calls, peak RSS %.0f MB", search_seconds, score.calls, rss_after_search)

    pruned = pruned.eval()
    if args.bn_workaround:  # the result re-estimated as ModelOpt means to (its own loop had no data)
        recalibrate_bn(pruned, data, **recal_kwargs)
    macs_after, params_after = count_macs_params(pruned, input_shape)
    widths_after = widths(pruned, input_shape)
    best = state.get("best", {})
    modelopt_flops = (best.get("constraints") or {}).get("flops")
    from modelopt.torch.nas.utils import inference_flops
    modelopt_flops_orig = float(inference_flops(model, dummy_input=dummy, unit=1.0))  # as its constraint counts

    # our figures, on all reward-val and test images: as ModelOpt leaves it, and after our BN recalibration
    results: dict[str, Any] = {
        **base,
        "test_acc": evaluate_accuracy(pruned, data, split="test"),
        "reward_val_acc": evaluate_accuracy(pruned, data, split="reward_val"),
    }
    recal = recalibrate_bn(copy.deepcopy(pruned), data, num_batches=final_bn, seed=seed)
    results["test_acc_bn"] = evaluate_accuracy(recal, data, split="test")
    results["reward_val_acc_bn"] = evaluate_accuracy(recal, data, split="reward_val")
    # the result's BN statistics vs our recalibration on the same batches (0 if ModelOpt's had reached every BN)
    same = recalibrate_bn(copy.deepcopy(pruned), data, num_batches=args.bn_batches, batch_size=args.batch_size, seed=seed)
    smap = state.get("sensitivity_map", {})
    results.update({
        "macs_before": macs_before, "macs_after": macs_after, "macs_ratio": macs_after / macs_before,
        "params_before": params_before, "params_after": params_after, "params_ratio": params_after / params_before,
        "modelopt_flops_before": modelopt_flops_orig, "modelopt_flops_after": modelopt_flops,
        "modelopt_flops_ratio": None if modelopt_flops is None else round(modelopt_flops / modelopt_flops_orig, 4),
        "constraint_met_modelopt": bool(best.get("is_satisfied", False)),
        "constraint_met_ours": macs_after <= args.target * macs_before,
        "search_seconds": search_seconds, "score_seconds": score.seconds, "score_calls": score.calls,
        "presearch_scored": score.calls - 1, "searchable_hparams": len(smap),
        "sensitivity_entries": sum(len(v) for v in smap.values()),
        "modelopt_original_score": state.get("original_score"), "loader_passes": loader.passes,
        "bn_stats_vs_same_batches_recal": bn_stats_diff(pruned, same),
        "peak_rss_mb_after_search": rss_after_search, "peak_rss_mb": peak_rss_mb(),
        "total_seconds": time.perf_counter() - t_start,
    })
    summary = {
        "peer": "nvidia-modelopt FastNAS (modelopt.torch.prune, mode fastnas, BinarySearcher)",
        "model": args.model, "checkpoint": str(Path(ckpt).resolve().relative_to(REPO)) if Path(ckpt).resolve().is_relative_to(REPO) else str(ckpt),
        "target": args.target, "divisor": args.divisor, "resumed": args.resume, "bn_workaround": args.bn_workaround,
        "reward_val_images": reward_val_images, "bn_batches": args.bn_batches, "batch_size": args.batch_size,
        "eval_batch_size": eval_bs, "seed": seed, "final_bn_batches": final_bn,
        "data": {"root": args.data_root or d["data_root"], "reward_val_size": d["reward_val_size"],
                 "split_seed": d["data_seed"], "reward_val_images_total": len(data.reward_val),
                 "test_images": len(data.test), "input_shape": list(input_shape)},
        "harness_defaults": d, "command": command, "versions": vers, "modelopt_version": modelopt.__version__,
        "fastnas_rules": jsonable(mode[0][1]),
        "results": results,
        "widths_before": widths_before, "widths_after": widths_after,
        "modelopt_best": jsonable({k: best.get(k) for k in ("config", "constraints", "metric", "is_satisfied")}),
        "sensitivity_map": jsonable(smap),
        "score_trace": score.scores,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_markdown(summary, out / "summary.md")
    log.info("results: %s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()})
    log.info("wrote %s and %s", out / "summary.json", out / "summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
