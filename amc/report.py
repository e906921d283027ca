"""Markdown tables of pruning results, and the multirun report:
``python -m amc.report <multirun_dir> [...] [--out DIR] [--x {macs,latency}]``.

The report finds every finished search below a directory (a ``summary.json``; baselines of ``compare_with`` sit in
``<job>/compare/<method>/``), reads the budget and seed from the job's ``.hydra/config.yaml`` (plain YAML, no hydra
here: this module is core library) and writes ``report.md`` (budget x method, mean ± std over seeds, n; with measured
speedups per runtime and the measured latency ratio when the summaries carry them) and ``report.png`` (test accuracy
against the achieved MACs or params ratio, or with ``--x latency`` the measured latency ratio in the primary runtime;
one line per method through its per-budget means with the seeds as faint points, the unpruned model as a dashed line;
one budget: methods side by side).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError, safe_open

from amc.measure.latency import NOISY_SPREAD

log = logging.getLogger(__name__)

METRICS = (("test_acc", "test acc", 100.0, "%"), ("reward_val_acc", "reward-val acc", 100.0, "%"),
           ("test_acc_bn", "test acc, BN recal", 100.0, "%"), ("macs_ratio", "MACs ratio", 1.0, ""),
           ("params_ratio", "params ratio", 1.0, ""))  # params ratio: shown when a budget is on params


def format_table(rows: Sequence[dict[str, Any]], baseline: dict[str, Any] | None = None,
                 conditions: str | None = None) -> str:
    """A markdown table: variant, MACs (and ratio), params, latency and speedup, reward-val and test accuracy.

    Rows with ``reward_val_acc_bn`` / ``test_acc_bn`` (the same model after BN recalibration) add two columns.
    Rows with ``speedups`` (``amc.measure.runtime.add_latency_figures``) get a speedup column per runtime and batch
    size, the first named in the latency column. A latency with ``latency_spread`` (relative inter-quartile range)
    shows it; ``latency_noisy`` rows are marked, and a note under the table says those figures cannot be compared.
    ``conditions``: a line on how the latencies were measured (runtime, threads, load), printed under the table.
    """
    bn = any("test_acc_bn" in r for r in rows)
    keys = list(next((r["speedups"] for r in rows if r.get("speedups")), {}))
    primary = next((r["latency_runtime"] for r in rows if r.get("latency_runtime")), None)
    head = f"| variant | MACs (M) | MACs ratio | params (K) | latency (ms{', ' + primary if primary else ''}) |"
    head += "".join(f" speedup {k} |" for k in keys) + " reward-val acc | test acc |"
    lines = [head + (" reward-val acc, BN recal | test acc, BN recal |" if bn else ""),
             "|---|---:|---:|---:|---:|" + "---:|" * len(keys) + "---:|---:|" + ("---:|---:|" if bn else "")]

    def pct(r: dict[str, Any], key: str) -> str:
        return f"{100 * r[key]:.2f}%" if key in r else "-"

    def latency(r: dict[str, Any]) -> str:
        if r.get("latency_ms") is None:
            return "-"
        text = f"{r['latency_ms']:.3g}"
        if r.get("latency_spread") is not None:
            text += f" ± {100 * r['latency_spread'] / 2:.0f}%"
        return text + (" (noisy)" if r.get("latency_noisy") else "")

    def speedup(r: dict[str, Any], key: str) -> str:
        value = (r.get("speedups") or {}).get(key)
        return "-" if value is None else f"{value:.2f}x"

    for r in rows:
        ratio = r["macs"] / baseline["macs"] if baseline else 1.0
        line = (f"| {r['variant']} | {r['macs'] / 1e6:.2f} | {ratio:.3f} | {r['params'] / 1e3:.1f} | {latency(r)} |"
                + "".join(f" {speedup(r, k)} |" for k in keys) + f" {pct(r, 'reward_val_acc')} | {pct(r, 'test_acc')} |")
        lines.append(line + (f" {pct(r, 'reward_val_acc_bn')} | {pct(r, 'test_acc_bn')} |" if bn else ""))
    if any("latency_spread" in r for r in rows):
        lines.append("\nLatency: median of one interleaved block over all rows, ± half the inter-quartile range; "
                     "speedup = the original's latency / the row's, same runtime and batch, same block.")
    if conditions:
        lines.append(conditions)
    if any(r.get("latency_noisy") for r in rows):
        lines.append(f"(noisy): the spread of that latency exceeds {100 * NOISY_SPREAD:.0f}% of its median; the machine "
                     f"was too busy for the figure to mean much: compare latencies only where none is noisy.")
    return "\n".join(lines)


@dataclass(frozen=True)
class RunResult:
    """One finished search: where it is, what was searched (method, budget, seed) and what came out."""

    path: Path
    method: str
    resource: str | None
    target: float
    seed: int | None
    test_acc: float
    reward_val_acc: float
    macs_ratio: float
    test_acc_bn: float | None = None  # the same model after BN recalibration (final_eval.bn_recalibration_batches)
    params_ratio: float | None = None  # achieved params ratio (summary, or params / the plan's params_before)
    original_test_acc: float | None = None  # the unpruned model's (summary "original", or comparison.md)
    model: str | None = None  # the base model's builder, e.g. amc.models.resnet20
    dataset: str | None = None  # e.g. fashion_mnist
    # measured speedups keyed "<runtime> b<batch>" (amc.measure.runtime.add_latency_figures); None in older summaries
    speedups: dict[str, float] | None = field(default=None, hash=False)
    latency_ratio: float | None = None  # measured latency / the original's in the primary runtime (1 / its speedup)
    latency_runtime: str | None = None  # the primary runtime and batch, e.g. "onnxruntime b1"

    @property
    def budget(self) -> tuple[str, float]:
        return (self.resource or "accuracy-guaranteed", self.target)

    @property
    def job_dir(self) -> Path:
        """The search job's dir: a baseline in ``<job>/compare/<method>/`` belongs to ``<job>``."""
        return self.path.parent.parent if self.path.parent.name == "compare" else self.path

    @property
    def achieved_ratio(self) -> float:
        """What the budget constrained, as achieved: the params ratio for params budgets, else the MACs ratio
        (MACs stand in for latency budgets here; the measured ``latency_ratio`` is the ``--x latency`` axis)."""
        if self.resource == "params" and self.params_ratio is not None:
            return self.params_ratio
        return self.macs_ratio


def _read_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file; raises ValueError (JSONDecodeError, UnicodeDecodeError) when it cannot be read."""
    return json.loads(path.read_bytes().decode("utf-8"))


def job_config(run_dir: Path) -> dict[str, Any] | None:
    """The hydra config of the job that produced ``run_dir`` (a baseline in ``compare/<method>/`` uses its parent's).

    A config that cannot be parsed is skipped with a warning naming it, as if there were none.
    """
    run_dir = Path(run_dir)
    candidates = [run_dir]
    if run_dir.parent.name == "compare":
        candidates.append(run_dir.parent.parent)
    for d in candidates:
        path = d / ".hydra" / "config.yaml"
        if path.is_file():
            try:
                cfg = yaml.safe_load(path.read_bytes().decode("utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                log.warning("skipped %s: not a readable YAML config (%s)", path, str(e).splitlines()[0] if str(e) else e)
                return None
            return cfg if isinstance(cfg, dict) else None
    return None


def original_test_acc_from_table(path: Path) -> float | None:
    """The unpruned model's test accuracy (a fraction) from the ``| original | ...`` row of a ``comparison.md``.

    The column is found by its header ``test acc``; None when the file, the row or a number is missing.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        log.warning("skipped %s: not readable UTF-8 (%s)", path, e)
        return None
    column: int | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index("test acc") if "test acc" in cells else None
        elif cells[0] == "original" and column < len(cells):
            value = cells[column]
            try:
                return float(value.rstrip("%")) / 100 if value.endswith("%") else float(value)
            except ValueError:
                return None
    return None


def _original_test_acc(summary: dict[str, Any], run_dir: Path) -> float | None:
    """The unpruned model's test accuracy: ``summary["original"]``, else the comparison.md of the run or its job."""
    original = summary.get("original")
    if isinstance(original, dict) and isinstance(original.get("test_acc"), int | float):
        return float(original["test_acc"])
    for d in dict.fromkeys((run_dir, run_dir.parent.parent if run_dir.parent.name == "compare" else run_dir)):
        if (d / "comparison.md").is_file():
            return original_test_acc_from_table(d / "comparison.md")
    return None


def _checkpoint_names(path: Any) -> tuple[str | None, str | None]:
    """(model builder, dataset) recorded in an amc safetensors checkpoint's header; no tensor is read."""
    if not isinstance(path, str) or not Path(path).is_file():
        return None, None
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        spec, extra = json.loads(meta.get("model_spec", "{}")), json.loads(meta.get("extra", "{}"))
    except (SafetensorError, OSError, ValueError) as e:  # a plain state dict or a .pt file: nothing recorded
        log.debug("no model names in %s (%s)", path, e)
        return None, None
    model = spec.get("target") if isinstance(spec, dict) else None
    dataset = extra.get("dataset") if isinstance(extra, dict) else None
    return (model if isinstance(model, str) else None), (dataset if isinstance(dataset, str) else None)


def _model_and_dataset(cfg: dict[str, Any], plan: dict[str, Any]) -> tuple[str | None, str | None]:
    """The base model (plan's base_model.target, config's model._target_) and dataset (config's data._target_),
    completed from the checkpoint's header when the config or plan does not say."""
    base = plan.get("base_model") if isinstance(plan.get("base_model"), dict) else {}
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    data_cfg = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    model = base.get("target") or model_cfg.get("_target_")
    data_target = data_cfg.get("_target_")
    dataset = data_target.rsplit(".", 1)[-1] if isinstance(data_target, str) else None
    if not (isinstance(model, str) and dataset):
        ckpt_model, ckpt_dataset = _checkpoint_names(cfg.get("checkpoint") or base.get("checkpoint"))
        model = model if isinstance(model, str) else ckpt_model
        dataset = dataset or ckpt_dataset
    return (model if isinstance(model, str) else None), dataset


def _achieved(summary: dict[str, Any], plan: dict[str, Any], resource: str, *, required: bool) -> float | None:
    """The achieved ``resource`` ratio (macs, params) from the summary, else the summary's count over the plan's
    (a KeyError when ``required`` and the summary lacks the count)."""
    ratio = summary.get(f"{resource}_ratio")
    if ratio is None and plan.get(f"{resource}_before") and (required or resource in summary):
        ratio = summary[resource] / plan[f"{resource}_before"]
    return None if ratio is None else float(ratio)


def _latency_figures(summary: dict[str, Any]) -> tuple[dict[str, float] | None, float | None, str | None]:
    """(speedups, latency ratio, primary key) from a summary with ``speedups``; (None, None, None) without.

    The primary key is the summary's ``latency_runtime``, else the first speedup's. A speedup that is not a positive
    finite number is a ValueError.
    """
    raw = summary.get("speedups")
    if raw is None or raw == {}:
        return None, None, None
    if not isinstance(raw, dict):
        raise ValueError(f"speedups is not an object: {raw!r}")
    speedups = {str(k): float(v) for k, v in raw.items()}
    bad = {k: v for k, v in speedups.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"speedups must be positive finite numbers: {bad}")
    primary = summary.get("latency_runtime")
    primary = primary if primary in speedups else next(iter(speedups))
    return speedups, 1.0 / speedups[primary], primary


def load_run(summary_path: Path) -> RunResult:
    """Read one ``summary.json`` with its job config (or, without one, the protocol recorded in best_plan.json).

    Raises ValueError, starting with the summary's path, when it is unreadable or lacks what the report needs.
    """
    run_dir = summary_path.parent
    try:
        summary = _read_json(summary_path)
    except ValueError as e:
        raise ValueError(f"{summary_path} is not UTF-8 JSON ({e})") from e
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_path} is not a JSON object")
    cfg = job_config(run_dir) or {}
    plan_path = run_dir / "best_plan.json"
    plan: Any = {}
    if plan_path.is_file():
        try:
            plan = _read_json(plan_path)
        except ValueError as e:
            log.warning("skipped %s: not UTF-8 JSON (%s)", plan_path, e)
        if not isinstance(plan, dict):
            plan = {}
    settings = plan.get("settings") if isinstance(plan.get("settings"), dict) else {}
    protocol = cfg.get("protocol") or settings.get("protocol") or {}
    if not isinstance(protocol, dict) or "target" not in protocol:
        raise ValueError(f"{summary_path}: no protocol target in .hydra/config.yaml nor in best_plan.json")
    if run_dir.parent.name == "compare":
        method = run_dir.name
    else:
        method = summary.get("variant") or cfg.get("method") or settings.get("method", "?")
    for resource in ("macs", "params"):
        if (resource == "macs" or protocol.get("resource") == resource) and summary.get(f"{resource}_ratio") is None \
                and not plan.get(f"{resource}_before"):
            raise ValueError(f"{summary_path} has no {resource}_ratio and there is no best_plan.json to compute it")
    model, dataset = _model_and_dataset(cfg, plan)
    try:
        seed = cfg.get("seed")
        macs_ratio = _achieved(summary, plan, "macs", required=True)
        params_ratio = _achieved(summary, plan, "params", required=protocol.get("resource") == "params")
        speedups, latency_ratio, latency_runtime = _latency_figures(summary)
        return RunResult(path=run_dir, method=str(method), resource=protocol.get("resource"),
                         target=float(protocol["target"]), seed=None if seed is None else int(seed),
                         test_acc=float(summary["test_acc"]), reward_val_acc=float(summary["reward_val_acc"]),
                         macs_ratio=float(macs_ratio),
                         test_acc_bn=None if summary.get("test_acc_bn") is None else float(summary["test_acc_bn"]),
                         params_ratio=params_ratio,
                         original_test_acc=_original_test_acc(summary, run_dir), model=model, dataset=dataset,
                         speedups=speedups, latency_ratio=latency_ratio, latency_runtime=latency_runtime)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{summary_path} cannot be read as a search result: {detail}") from e


def _as_roots(root: str | Path | Sequence[str | Path]) -> list[Path]:
    """One directory or several, as a list of paths."""
    return [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]


def collect_runs(
    root: str | Path | Sequence[str | Path], skipped: list[tuple[Path, str]] | None = None
) -> list[RunResult]:
    """Every finished search below ``root`` (``root`` itself included; one directory or several), in path order.

    Several roots join runs made apart (a new sweep and committed seeds at another budget); a run reached through
    two roots counts once. A ``summary.json`` that cannot be read is skipped with a warning naming it (and appended
    to ``skipped`` as (path, reason)); the report goes on with the others. No readable one at all is an error.
    """
    roots = _as_roots(root)
    if not roots:
        raise ValueError("no directory given: pass at least one multirun or run directory")
    found: dict[Path, Path] = {}
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"{r} is not a directory")
        paths = [p for p in r.rglob("summary.json") if ".hydra" not in p.parts]
        if not paths:
            raise FileNotFoundError(f"no summary.json below {r}: not a finished search or multirun directory")
        for p in paths:
            found.setdefault(p.resolve(), p)
    paths = [found[k] for k in sorted(found)]
    runs = []
    for p in paths:
        try:
            runs.append(load_run(p))
        except ValueError as e:
            log.warning("skipped a run: %s", e)
            if skipped is not None:
                skipped.append((p, str(e)))
    if not runs:
        where = roots[0] if len(roots) == 1 else ", ".join(map(str, roots))
        raise ValueError(f"none of the {len(paths)} summary.json files below {where} could be read (see warnings)")
    return runs


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _method_order(method: str) -> tuple[int, str]:
    order = ("amc", "random", "uniform", "deep", "shallow")
    return (order.index(method) if method in order else len(order), method)


def _groups(runs: Sequence[RunResult]) -> dict[tuple[tuple[str, float], str], list[RunResult]]:
    """Runs grouped by (budget, method); budgets ascending, methods in the usual order."""
    groups: dict[tuple[tuple[str, float], str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.budget, r.method), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], _method_order(kv[0][1]))))


def aggregate(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per (budget, method): n and (mean, std) of every metric over seeds; budgets ascending.

    Also ``speedups`` (runtime key -> (mean, std), for every key any run measured; None where a member lacks it) and
    ``latency_ratio`` ((mean, std), or None unless every member has one): empty / None without latency figures.
    """
    keys = list(dict.fromkeys(k for r in runs for k in r.speedups or {}))
    primaries = sorted({r.latency_runtime for r in runs if r.latency_runtime})
    rows = []
    for (budget, method), members in _groups(runs).items():
        row: dict[str, Any] = {"resource": budget[0], "target": budget[1], "method": method, "n": len(members),
                               "seeds": sorted({m.seed for m in members if m.seed is not None})}
        for key, *_ in METRICS:
            values = [getattr(m, key) for m in members]
            row[key] = None if None in values else _mean_std(values)
        if keys:
            speedups = [m.speedups or {} for m in members]
            row["speedups"] = {k: _mean_std([s[k] for s in speedups]) if all(k in s for s in speedups) else None
                               for k in keys}
        else:
            row["speedups"] = {}
        ratios = [m.latency_ratio for m in members if m.latency_ratio is not None]
        row["latency_ratio"] = _mean_std(ratios) if len(ratios) == len(members) else None
        row["latency_runtimes"] = primaries
        rows.append(row)
    return rows


def unpruned_test_acc(runs: Sequence[RunResult]) -> tuple[float, int] | None:
    """The unpruned model's test accuracy (mean over the jobs that record it) and how many jobs do; None if none."""
    per_job: dict[Path, float] = {}
    for r in runs:
        if r.original_test_acc is not None:
            per_job.setdefault(r.job_dir, r.original_test_acc)
    return (statistics.fmean(per_job.values()), len(per_job)) if per_job else None


def format_report(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table: budget, method, n, then mean ± std of test acc, reward-val acc, MACs ratio (and params ratio
    when a budget is on params); a group of one run shows its value alone.

    When runs measured latencies: a ``speedup <runtime> b<batch>`` column per key and a ``latency ratio`` column
    (measured latency / the original's in the primary runtime), with a note under the table.
    """
    metrics = [m for m in METRICS if m[0] != "params_ratio" or any(r["resource"] == "params" for r in rows)]
    keys = list(dict.fromkeys(k for r in rows for k in r.get("speedups") or {}))
    latency = bool(keys) or any(r.get("latency_ratio") is not None for r in rows)
    heads = [label for _, label, *_ in metrics] + [f"speedup {k}" for k in keys] + (["latency ratio"] if latency else [])
    lines = ["| budget | method | n | " + " | ".join(heads) + " |", "|---|---|---:|" + "---:|" * len(heads)]

    def cell(value: tuple[float, float] | None, n: int, scale: float, digits: int, unit: str) -> str:
        if value is None:
            return "-"
        mean, std = value
        spread = f" ± {scale * std:.{digits}f}" if n > 1 else ""
        return f"{scale * mean:.{digits}f}{spread}{unit}"

    for r in rows:
        cells = [cell(r.get(key), r["n"], scale, 2 if scale == 100.0 else 3, unit) for key, _, scale, unit in metrics]
        cells += [cell((r.get("speedups") or {}).get(k), r["n"], 1.0, 2, "x") for k in keys]
        if latency:
            cells.append(cell(r.get("latency_ratio"), r["n"], 1.0, 3, ""))
        lines.append(f"| {r['resource']} {r['target']:g} | {r['method']} | {r['n']} | " + " | ".join(cells) + " |")
    if latency:
        primaries = ", ".join(next((r["latency_runtimes"] for r in rows if r.get("latency_runtimes")), [])) or "?"
        lines.append(f"\nspeedup <runtime> b<batch>: the unpruned model's measured latency / the pruned one's, same "
                     f"runtime and batch, same block; latency ratio: measured latency / the unpruned model's, in "
                     f"{primaries} (1 / that speedup).")
    return "\n".join(lines)


# display names of the zoo's model families, for titles only ("resnet20" -> "ResNet-20", "mobilenet_v2" -> "MobileNet-V2")
_FAMILIES = {"resnet": "ResNet", "mobilenet": "MobileNet", "vgg": "VGG", "plain": "Plain"}


def model_label(target: str) -> str:
    """'ResNet-20 (amc.models.resnet20)' for a builder named <family><depth>[_v<k>] of a known family, else ``target``."""
    m = re.fullmatch(r"([a-z]+)(\d*)(?:_v(\d+))?", target.rsplit(".", 1)[-1])
    if m is None or m.group(1) not in _FAMILIES:
        return target
    name = _FAMILIES[m.group(1)] + (f"-{m.group(2)}" if m.group(2) else "") + (f"-V{m.group(3)}" if m.group(3) else "")
    return f"{name} ({target})"


def report_title(runs: Sequence[RunResult]) -> str:
    """'<model> on <dataset>, n = <k> seeds per point' (several models or datasets joined; 'n = 1-3' when n varies)."""
    models = ", ".join(dict.fromkeys(model_label(r.model) for r in runs if r.model)) or "unknown model"
    datasets = ", ".join(dict.fromkeys(r.dataset for r in runs if r.dataset)) or "unknown data"
    counts = [len(members) for members in _groups(runs).values()]
    lo, hi = min(counts), max(counts)
    n = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"{models} on {datasets}, n = {n} seed{'s' if hi > 1 else ''} per point"


@dataclass(frozen=True)
class Series:
    """One method in one panel of report.png. Per budget (ascending target): mean ± std over seeds of the achieved
    ratio (x) and of the test accuracy in % (y), the number of runs, and every run's (achieved ratio, test acc %)."""

    method: str
    targets: tuple[float, ...]
    x: tuple[float, ...]
    x_std: tuple[float, ...]
    y: tuple[float, ...]
    y_std: tuple[float, ...]
    n: tuple[int, ...]
    seeds: tuple[tuple[tuple[float, float], ...], ...]


@dataclass(frozen=True)
class Panel:
    """The runs of one budget resource: lines over the achieved ratio, or, with a single budget, one point per method
    on a categorical x axis (``categorical``). ``unpruned_x``: where the unpruned model sits on the x axis (1.0 for
    the measured latency ratio; None: only its dashed line is drawn)."""

    resource: str
    xlabel: str
    categorical: bool
    series: tuple[Series, ...]
    unpruned_x: float | None = None


@dataclass(frozen=True)
class ReportFigure:
    """What report.png draws: a title, the unpruned model's test accuracy in % (None if no run records it), panels."""

    title: str
    unpruned: float | None
    panels: tuple[Panel, ...]


def _ratio_label(resource: str) -> str:
    """The achieved ratio plotted for a budget resource (see ``RunResult.achieved_ratio``)."""
    if resource == "params":
        return "achieved params ratio"
    return "achieved MACs ratio" + ("" if resource == "macs" else f" ({resource} budgets)")


# report.png's x: the achieved MACs (params, for params budgets) ratio, or the measured latency ratio (primary runtime)
X_AXES = ("macs", "latency")


def primary_runtime(runs: Sequence[RunResult]) -> str:
    """The primary runtime every run measured its latency ratio in, e.g. "onnxruntime b1".

    A ValueError naming the run dirs without measured latencies, or the runtimes when the runs disagree.
    """
    missing = [str(r.path) for r in runs if r.latency_ratio is None]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"x = latency needs a measured latency in every run: none in {', '.join(missing[:5])}{more} "
                         f"(no speedups in summary.json); report these with --x macs")
    runtimes = sorted({r.latency_runtime or "?" for r in runs})
    if len(runtimes) > 1:
        raise ValueError(f"x = latency: the runs measured their latency ratio in different runtimes "
                         f"({', '.join(runtimes)}); report them apart or with --x macs")
    return runtimes[0]


def default_x(runs: Sequence[RunResult]) -> str:
    """``latency`` when every run has a measured latency ratio (in one runtime) and one had a latency budget, else
    ``macs``."""
    if not any(r.resource == "latency" for r in runs):
        return "macs"
    try:
        primary_runtime(runs)
    except ValueError:
        return "macs"
    return "latency"


def figure_data(runs: Sequence[RunResult], x: str = "macs") -> ReportFigure:
    """The series report.png draws, computed from the runs (pure: no file is read or written).

    One panel per budget resource; in each, one series per method with a point per budget at the mean achieved
    ratio (not the target), or with ``x="latency"`` the mean measured latency ratio (the unpruned model at 1.0; a
    ValueError from :func:`primary_runtime` when a run lacks it). A panel with a single budget is categorical
    (methods side by side).
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    latency_label = f"measured latency / original ({primary_runtime(runs)})" if x == "latency" else None

    def value(m: RunResult) -> float:
        return m.latency_ratio if x == "latency" and m.latency_ratio is not None else m.achieved_ratio

    by_panel: dict[str, dict[str, list[tuple[float, list[RunResult]]]]] = {}
    for ((resource, target), method), members in _groups(runs).items():
        by_panel.setdefault(resource, {}).setdefault(method, []).append((target, members))
    panels = []
    for resource in sorted(by_panel):
        series = []
        for method, points in by_panel[resource].items():
            xs = [_mean_std([value(m) for m in members]) for _, members in points]
            ys = [_mean_std([100 * m.test_acc for m in members]) for _, members in points]
            series.append(Series(
                method=method, targets=tuple(t for t, _ in points), x=tuple(x for x, _ in xs),
                x_std=tuple(s for _, s in xs), y=tuple(y for y, _ in ys), y_std=tuple(s for _, s in ys),
                n=tuple(len(members) for _, members in points),
                seeds=tuple(tuple((value(m), 100 * m.test_acc) for m in members) for _, members in points)))
        targets = sorted({t for s in series for t in s.targets})
        categorical = len(targets) == 1
        label = latency_label or _ratio_label(resource)
        xlabel = f"method ({resource} target {targets[0]:g}; {label} under each name)" if categorical else label
        panels.append(Panel(resource=resource, xlabel=xlabel, categorical=categorical, series=tuple(series),
                            unpruned_x=1.0 if latency_label and not categorical else None))
    unpruned = unpruned_test_acc(runs)
    return ReportFigure(title=report_title(runs), unpruned=None if unpruned is None else 100 * unpruned[0],
                        panels=tuple(panels))


def _jitter(count: int, centre: float = 0.2, width: float = 0.06) -> list[float]:
    """Offsets (deterministic) of a category's single seeds: beside its mean's marker, spread so none hides another."""
    return [centre] if count == 1 else [centre - width + 2 * width * i / (count - 1) for i in range(count)]


def plot_report(runs: Sequence[RunResult], path: str | Path, x: str = "macs") -> Path:
    """Test accuracy against the achieved ratio (``x="latency"``: the measured latency ratio): a line per method
    through its per-budget means, error bars = std over seeds in x and y, each seed a faint point, the unpruned model
    a dashed line (and a star at x = 1.0 on the latency axis); one panel per resource."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = figure_data(runs, x)
    fig = Figure(figsize=(6.5 * len(data.panels), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(data.panels), squeeze=False)[0]
    methods = sorted({s.method for p in data.panels for s in p.series}, key=_method_order)
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, panel in zip(axes, data.panels):
        for i, s in enumerate(panel.series):
            colour = colours[s.method]
            if panel.categorical:
                ax.errorbar([i], s.y, yerr=s.y_std, marker="o", capsize=4, color=colour, label=s.method)
                seeds = s.seeds[0]
                ax.scatter([i + dx for dx in _jitter(len(seeds))], [y for _, y in seeds], color=colour, alpha=0.3,
                           s=18, linewidths=0)
            else:
                ax.errorbar(s.x, s.y, xerr=s.x_std, yerr=s.y_std, marker="o", capsize=3, color=colour, label=s.method)
                ax.scatter([x for seeds in s.seeds for x, _ in seeds], [y for seeds in s.seeds for _, y in seeds],
                           color=colour, alpha=0.3, s=18, linewidths=0)
        if panel.categorical:
            ax.set_xticks(range(len(panel.series)), [f"{s.method}\n{s.x[0]:.3f}" for s in panel.series])
            ax.set_xlim(-0.5, len(panel.series) - 0.5)
        if data.unpruned is not None:
            ax.axhline(data.unpruned, linestyle="--", color="0.35", linewidth=1, label=f"unpruned ({data.unpruned:.2f}%)")
            if panel.unpruned_x is not None:
                ax.plot([panel.unpruned_x], [data.unpruned], marker="*", markersize=11, color="0.2", linestyle="none")
        ax.set(xlabel=panel.xlabel, ylabel="test accuracy (%)")
        if len(data.panels) > 1:
            ax.set_title(f"{panel.resource} budgets", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{data.title}\nmean ± std over seeds; faint points: single seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def write_report(
    root: str | Path | Sequence[str | Path], out: str | Path | None = None, x: str | None = None
) -> tuple[str, Path, Path]:
    """Collect, aggregate and write ``report.md`` and ``report.png`` into ``out`` (default ``root``).

    ``root`` may be several directories (see :func:`collect_runs`); then ``out`` is required. ``x``: report.png's x
    axis, ``macs`` or ``latency`` (None: :func:`default_x`); ``latency`` when a run lacks a measured latency is a
    ValueError naming it, raised before anything is written.

    Unreadable runs are skipped with a warning and listed under the table. Returns (the table, with the unpruned
    model's test accuracy above it when known; report.md; report.png).
    """
    roots = _as_roots(root)
    if out is None and len(roots) != 1:
        raise ValueError(f"{len(roots)} directories given: say where the report goes (out=, --out DIR)")
    skipped: list[tuple[Path, str]] = []
    runs = collect_runs(roots, skipped)
    x = default_x(runs) if x is None else x
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    if x == "latency":
        primary_runtime(runs)  # a latency axis the runs cannot give fails here, before any file is written
    log.info("report.png: x axis %s", x)
    rows = aggregate(runs)
    out = Path(out) if out is not None else roots[0]
    out.mkdir(parents=True, exist_ok=True)
    table = format_report(rows)
    notes = "".join(f"\n- {reason}" for _, reason in skipped)
    if notes:
        notes = f"\n{len(skipped)} run(s) could not be read and are not in the table:{notes}\n"
    unpruned = unpruned_test_acc(runs)
    if unpruned is not None:
        jobs = f"{unpruned[1]} job{'s' if unpruned[1] > 1 else ''}"
        table = f"unpruned model: test acc {100 * unpruned[0]:.2f}% (mean over the {jobs} that record it)\n\n{table}"
    md = out / "report.md"
    md.write_text(f"# Search report: {', '.join(map(str, roots))}\n\n{report_title(runs)}; mean ± std over seeds; n = number of runs "
                  f"(n = 1: the value alone)\n\n{table}\n{notes}")
    png = plot_report(runs, out / "report.png", x)
    return table, md, png


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amc-report", description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path, nargs="+",
                        help="a multirun (or run) directory holding summary.json files; several are reported together")
    parser.add_argument("--out", type=Path, default=None,
                        help="where report.md and report.png go (default: multirun_dir; required with several)")
    parser.add_argument("--x", choices=X_AXES, default=None,
                        help="report.png's x axis: the achieved MACs ratio, or the measured latency ratio in the "
                             "primary runtime (default: latency when every run measured it and one had a latency "
                             "budget, else macs)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="amc-report: %(levelname)s: %(message)s")
    try:
        table, md, png = write_report(args.multirun_dir, args.out, args.x)
    except (FileNotFoundError, ValueError) as e:
        print(f"amc-report: error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
