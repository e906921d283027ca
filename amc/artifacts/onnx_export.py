"""Exporting a pruned model (a dir with plan.json + pruned.safetensors) to ONNX, with a parity and latency report:
the max |logit difference| and top-1 agreement between PyTorch and onnxruntime on test images, and the batch-1 and
batch-64 latency of the original (base checkpoint) and the pruned model under both runtimes, in one interleaved block.

The exporter is torch's TorchScript path (``torch.onnx.export(..., dynamo=False)``): it needs no onnxscript, exports
our zoo in about a second (the dynamo exporter took 12-18 s per model here) and folds BatchNorm into the convolutions.
It is deprecated since torch 2.9 but present in the pinned torch; the dynamo path is the way out if it is removed.
Existing files are never overwritten. Needs the ``export`` extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.artifacts.checkpoint import is_amc_checkpoint, read_checkpoint
from amc.artifacts.plan import PruningPlan, load_base, rebuild_pruned
from amc.data import DataSplits, cifar10, fashion_mnist, image_folder, synthetic
from amc.measure.latency import LatencyStats, machine_conditions, measure_latencies
from amc.measure.runtime import (
    GRAPH_OPTIMIZATION,
    INPUT_NAME,
    MAX_OPSET,
    OPSET,
    OUTPUT_NAME,
    RuntimeUnavailable,
    export_onnx,
    onnx_session,
    require_onnx,
)

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max |logit difference| PyTorch vs onnxruntime accepted as parity
BATCH_SIZES = (1, 64)  # latency batch sizes
DATASETS = ("fashion_mnist", "cifar10", "image_folder", "synthetic")
PLAN_FILE, WEIGHTS_FILE = "plan.json", "pruned.safetensors"
OUTPUT_FILES = ("model.onnx", "export_report.json", "export_report.md")
REPO_ROOT = Path(__file__).resolve().parents[2]


class ExportError(ValueError):
    """Bad input for an export (missing files, a dataset that does not fit, missing packages)."""


def check_pruned_dir(directory: Path) -> None:
    """``directory`` holds a pruned model as ``save_pruned`` writes it."""
    if not directory.is_dir():
        raise ExportError(f"pruned dir {directory} is not a directory; pass a dir with {PLAN_FILE} and {WEIGHTS_FILE} "
                          f"(e.g. a variant dir of `python -m amc.prune` or a search run's best/)")
    missing = [name for name in (PLAN_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:
        raise ExportError(f"{directory} has no {' and no '.join(missing)}: not a pruned model dir (expected "
                          f"{PLAN_FILE} + {WEIGHTS_FILE}, as written by amc.prune, amc.search or save_pruned)")


def check_outputs(out: Path) -> dict[str, Path]:
    """The output paths in ``out``; refuses if any exists (nothing is overwritten)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output dir {out} is a file; choose a directory with --out DIR")
    paths = {name: out / name for name in OUTPUT_FILES}
    existing = [p for p in paths.values() if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; it is left as it is: choose another output dir with --out DIR")
    return paths


def resolve_base_checkpoint(plan: PruningPlan, override: str | Path | None = None) -> Path:
    """The plan's base checkpoint: absolute, or relative to the working dir or the repo root (or ``override``)."""
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise ExportError(f"base checkpoint {path} (--base-checkpoint) is not a file")
        return path
    named = plan.base_model.get("checkpoint")
    if not named:
        raise ExportError("the plan names no base checkpoint; pass --base-checkpoint PATH")
    candidates = [Path(named)] if Path(named).is_absolute() else [Path.cwd() / named, REPO_ROOT / named]
    for path in candidates:
        if path.is_file():
            return path
    raise ExportError(f"the plan's base checkpoint {named} was not found (looked at {', '.join(map(str, candidates))});"
                      f" pass --base-checkpoint PATH")


def build_test_data(
    dataset: str | None, *, input_shape: Sequence[int], num_classes: int, num_images: int, root: str | Path | None = None,
) -> DataSplits:
    """The dataset a model was trained on, built without hydra; it must fit ``input_shape`` and ``num_classes``."""
    if dataset not in DATASETS:
        recorded = "the base checkpoint records no dataset" if dataset is None else f"dataset {dataset!r}"
        raise ExportError(f"{recorded} is not one of {', '.join(DATASETS)}; choose one with --data")
    _, channels, height, width = input_shape
    if dataset == "synthetic":
        if height != width:
            raise ExportError(f"synthetic data is square, the model's input is {height}x{width}; choose --data")
        data = synthetic(train_size=1, test_size=num_images, reward_val_size=0, in_channels=channels,
                         image_size=height, num_classes=num_classes)
    elif dataset == "fashion_mnist":
        data = fashion_mnist(root) if root is not None else fashion_mnist()
    elif dataset == "image_folder":
        if root is None:
            raise ExportError("--data image_folder needs --data-root DIR (the dir with train/<class>/ and val/<class>/ "
                              "or test/<class>/ images, as data=image_folder data.root=DIR takes)")
        if height != width or channels not in (1, 3):
            raise ExportError(f"an image folder gives square 1- or 3-channel images; the model's input is "
                              f"{channels}x{height}x{width}")
        data = image_folder(root, image_size=height, in_channels=channels, reward_val_size=0)
    else:
        if root is None:
            raise ExportError("--data cifar10 needs --data-root DIR (the dir with data_batch_1..5 and test_batch)")
        data = cifar10(root)
    fits = (data.in_channels, *data.image_size, data.num_classes) == (channels, height, width, num_classes)
    if not fits:
        raise ExportError(f"data {data.name} has {data.in_channels}x{data.image_size[0]}x{data.image_size[1]} images "
                          f"and {data.num_classes} classes; the model expects {channels}x{height}x{width} and "
                          f"{num_classes}: choose the dataset the model was trained on with --data")
    return data


def annotate(onnx: ModuleType, model_bytes: bytes, props: dict[str, str]) -> bytes:
    """Check the ONNX model and record ``props`` (input normalisation, provenance) in its metadata."""
    proto = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


@torch.no_grad()
def check_parity(model: nn.Module, session: Any, images: torch.Tensor, labels: torch.Tensor, *,
                 batch_size: int = 64) -> dict[str, float | int]:
    """Max |logit difference| and top-1 agreement of ``model`` and ``session`` on ``images``, plus both accuracies."""
    max_diff, agree, torch_correct, onnx_correct = 0.0, 0, 0, 0
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size].numpy()
        expected = model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        max_diff = max(max_diff, float(np.abs(expected - got).max()))
        agree += int((expected.argmax(1) == got.argmax(1)).sum())
        torch_correct += int((expected.argmax(1) == y).sum())
        onnx_correct += int((got.argmax(1) == y).sum())
    n = len(images)
    return {"num_images": n, "max_abs_logit_diff": max_diff, "top1_agreement": agree / n,
            "torch_top1_acc": torch_correct / n, "onnx_top1_acc": onnx_correct / n}


def _batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """The first ``size`` images (repeated if there are fewer)."""
    reps = math.ceil(size / len(images))
    return images.repeat(reps, 1, 1, 1)[:size].contiguous()


def measure_export_latencies(
    models: dict[str, nn.Module], sessions: dict[str, Any], images: torch.Tensor, *, threads: int, warmup: int,
    repeats: int,
) -> dict[str, LatencyStats]:
    """Latency of every (model, runtime, batch size) in ONE interleaved block; keys ``<model>/<runtime>/b<size>``."""
    fns: dict[str, Callable[[], object]] = {}
    for size in BATCH_SIZES:
        x = _batch(images, size)
        feed = {INPUT_NAME: x.numpy()}
        for name, model in models.items():
            fns[f"{name}/torch/b{size}"] = partial(model, x)
            fns[f"{name}/onnxruntime/b{size}"] = partial(sessions[name].run, [OUTPUT_NAME], feed)
    with torch.no_grad():
        return measure_latencies(fns, warmup=warmup, repeats=repeats, threads=threads)


def export_pruned(
    directory: str | Path,
    out: str | Path | None = None,
    *,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    base_checkpoint: str | Path | None = None,
    allow: Sequence[str] = (),
    num_images: int = 512,
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 30,
    opset: int = OPSET,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Export ``directory``'s pruned model to ``out``/model.onnx (default: ``directory``) and write the report.

    ``dataset`` defaults to the one the base checkpoint records; ``allow`` lists import prefixes a non-zoo base model
    may come from. Returns the report (also written as export_report.json / .md).
    """
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    if not 7 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported by the TorchScript exporter; choose one in [7, {MAX_OPSET}]")
    if num_images < 1 or warmup < 0 or repeats < 1 or (threads is not None and threads < 1):
        raise ExportError(f"need num_images >= 1, warmup >= 0, repeats >= 1, threads >= 1; got {num_images}, "
                          f"{warmup}, {repeats}, {threads}")
    check_pruned_dir(directory)
    paths = check_outputs(out)
    try:
        onnx, ort = require_onnx()
    except RuntimeUnavailable as e:
        raise ExportError(str(e)) from None
    plan = PruningPlan.load(directory / PLAN_FILE)
    checkpoint = resolve_base_checkpoint(plan, base_checkpoint)
    base, spec = load_base(plan, checkpoint, allow=list(allow))
    extra = read_checkpoint(checkpoint)[2] if is_amc_checkpoint(checkpoint) else {}
    pruned = rebuild_pruned(base, plan, directory / WEIGHTS_FILE)
    dataset = dataset or extra.get("dataset")
    data = build_test_data(dataset, input_shape=plan.input_shape, num_classes=spec["num_classes"],
                           num_images=num_images, root=data_root)
    images, labels = (torch.cat(t) for t in zip(*data.batches("test", 256, limit=num_images)))
    threads = threads if threads is not None else torch.get_num_threads()
    models = {"original": base, "pruned": pruned}
    log.info("exporting %s (pruned, %d groups) and its base model with opset %d", spec["target"], len(plan.groups), opset)

    props = {"amc.model": spec["target"], "amc.dataset": data.name, "amc.input_mean": json.dumps(list(data.mean)),
             "amc.input_std": json.dumps(list(data.std)), "amc.input_scale": "pixels / 255, then (x - mean) / std",
             "amc.macs": str(plan.macs_after), "amc.params": str(plan.params_after)}
    onnx_bytes = {name: annotate(onnx, export_onnx(m, plan.input_shape, opset=opset), props) for name, m in models.items()}
    sessions = {name: onnx_session(b, threads=threads) for name, b in onnx_bytes.items()}
    parity = {name: check_parity(m, sessions[name], images, labels) for name, m in models.items()}
    for p in parity.values():
        p["ok"] = p["max_abs_logit_diff"] < tolerance
    stats = measure_export_latencies(models, sessions, images, threads=threads, warmup=warmup, repeats=repeats)

    latency: dict[str, Any] = {}
    for key, s in stats.items():
        name, runtime, size = key.split("/")
        latency.setdefault(name, {}).setdefault(runtime, {})[f"batch_{size[1:]}"] = s.to_dict()
    report = {
        "pruned_dir": str(directory), "onnx": str(paths["model.onnx"]), "onnx_bytes": len(onnx_bytes["pruned"]),
        "exporter": "torch.onnx.export(dynamo=False) (TorchScript)", "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", *plan.input_shape[1:]], "mean": list(data.mean),
                  "std": list(data.std), "scale": props["amc.input_scale"]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", spec["num_classes"]]},
        "model": spec["target"], "base_checkpoint": str(checkpoint), "dataset": data.name,
        "macs": {"original": plan.macs_before, "pruned": plan.macs_after},
        "params": {"original": plan.params_before, "pruned": plan.params_after},
        "parity": {"tolerance": tolerance, **parity["pruned"], "original": parity["original"]},
        "latency": {"unit": "ms", "threads": threads, "warmup": warmup, "repeats": repeats,
                    "batch_sizes": list(BATCH_SIZES), "machine": machine_conditions("cpu"),
                    "onnxruntime_options": {"graph_optimization": GRAPH_OPTIMIZATION, "inter_op_threads": 1,
                                            "allow_spinning": False}, **latency},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }
    out.mkdir(parents=True, exist_ok=True)
    with open(paths["model.onnx"], "xb") as f:  # "x": never overwrite, even if the file appeared meanwhile
        f.write(onnx_bytes["pruned"])
    with open(paths["export_report.json"], "x") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    with open(paths["export_report.md"], "x") as f:
        f.write(format_export_report(report))
    return report


def format_export_report(report: dict[str, Any]) -> str:
    """The markdown report: what was exported, parity, and the latency table with pruned-over-original speedups."""
    p, lat = report["parity"], report["latency"]
    inp = report["input"]
    lines = [
        f"# ONNX export: {report['pruned_dir']}", "",
        f"- `{report['onnx']}`: {report['onnx_bytes'] / 1e3:.1f} kB, opset {report['opset']}, "
        f"{report['exporter']}; input `{inp['name']}` {inp['shape']} ({inp['scale']}, mean {inp['mean']}, "
        f"std {inp['std']}), output `{report['output']['name']}` {report['output']['shape']}",
        f"- base model {report['model']} from `{report['base_checkpoint']}`, data {report['dataset']}",
        f"- MACs {report['macs']['pruned'] / 1e6:.2f} M of {report['macs']['original'] / 1e6:.2f} M "
        f"(ratio {report['macs']['pruned'] / report['macs']['original']:.3f}), params "
        f"{report['params']['pruned'] / 1e3:.1f} K of {report['params']['original'] / 1e3:.1f} K",
        "", f"## Parity: PyTorch vs onnxruntime on {p['num_images']} test images", "",
        "| model | max abs logit diff | top-1 agreement | top-1 acc PyTorch | top-1 acc onnxruntime |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, q in (("pruned", p), ("original", p["original"])):
        verdict = "ok" if q["ok"] else f"FAILS tolerance {p['tolerance']:g}"
        lines.append(f"| {name} | {q['max_abs_logit_diff']:.2e} ({verdict}) | {100 * q['top1_agreement']:.2f}% | "
                     f"{100 * q['torch_top1_acc']:.2f}% | {100 * q['onnx_top1_acc']:.2f}% |")
    sizes = lat["batch_sizes"]
    lines += ["", f"## Latency (ms, median of {lat['repeats']} after {lat['warmup']} warm-up rounds; CPU, "
                  f"{lat['threads']} thread(s); all in one interleaved block)", "",
              "| model | runtime | " + " | ".join(f"batch {s}" for s in sizes) + " |",
              "|---|---|" + "---:|" * len(sizes)]
    runtimes = {"torch": "PyTorch", "onnxruntime": "onnxruntime"}
    for name in ("original", "pruned"):
        for runtime, label in runtimes.items():
            cells = [_ms(lat[name][runtime][f"batch_{s}"]) for s in sizes]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    for runtime, label in runtimes.items():
        cells = [f"{lat['original'][runtime][f'batch_{s}']['median_ms'] / lat['pruned'][runtime][f'batch_{s}']['median_ms']:.2f}x"
                 for s in sizes]
        lines.append(f"| speedup pruned / original | {label} | " + " | ".join(cells) + " |")
    m = lat["machine"]
    lines += ["", f"Machine: load {m['loadavg_1_5_15']}, {m['usable_cpus']} usable CPUs, torch {report['versions']['torch']}, "
                  f"onnxruntime {report['versions']['onnxruntime']}. A figure marked *noisy* has an inter-quartile "
                  "range above 20% of its median.", ""]
    return "\n".join(lines)


def _ms(stats: dict[str, Any]) -> str:
    return f"{stats['median_ms']:.3g}" + (" *noisy*" if stats["noisy"] else "")
