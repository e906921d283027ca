"""Finished runs below a directory, read from their files (summary.json, plan, the job's .hydra/config.yaml as
plain YAML: no hydra here), and aggregated over seeds per budget and method."""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError, safe_open

from amc.reporting.table import METRICS
from amc.runs.search_log import elapsed_seconds, read_episodes

log = logging.getLogger(__name__)


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
    evaluations: int | None = None  # reward evaluations the method spent (episodes; the sensitivity search's probes)
    search_seconds: float | None = None  # wall time of the method's episodes (not the final evaluation)

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


REMEASURED = "latency_remeasured.json"


def remeasured_speedups(run_dir: Path, variant: str) -> dict[str, float]:
    """The clean speedups of ``variant`` (neither its timing nor the original's noisy) from the search run's
    ``latency_remeasured.json`` (experiments/deploy/remeasure_latency.py: the run's variants timed again on a quieter
    machine); ``run_dir`` is the run or one of its ``compare/<method>`` dirs. Empty without that file."""
    path = run_dir.parent.parent / REMEASURED if run_dir.parent.name == "compare" else run_dir / REMEASURED
    if not path.is_file():
        return {}
    record = _read_json(path)
    stats = record.get("stats", {})
    return {key: float(x) for key, x in record.get("speedups", {}).get(variant, {}).items()
            if not any(stats.get(name, {}).get(key, {}).get("noisy", False) for name in (variant, "original"))}


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
        again = remeasured_speedups(run_dir, str(method))
        if again:  # timed again on a quieter machine: those figures replace the run's own
            summary = {**summary, "speedups": {**summary.get("speedups", {}), **again}}
        speedups, latency_ratio, latency_runtime = _latency_figures(summary)
        return RunResult(path=run_dir, method=str(method), resource=protocol.get("resource"),
                         target=float(protocol["target"]), seed=None if seed is None else int(seed),
                         test_acc=float(summary["test_acc"]), reward_val_acc=float(summary["reward_val_acc"]),
                         macs_ratio=float(macs_ratio),
                         test_acc_bn=None if summary.get("test_acc_bn") is None else float(summary["test_acc_bn"]),
                         params_ratio=params_ratio,
                         original_test_acc=_original_test_acc(summary, run_dir), model=model, dataset=dataset,
                         speedups=speedups, latency_ratio=latency_ratio, latency_runtime=latency_runtime,
                         evaluations=_optional(summary.get("evaluations", summary.get("episodes")), int),
                         search_seconds=_search_seconds(summary, run_dir))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{summary_path} cannot be read as a search result: {detail}") from e


def _search_seconds(summary: dict[str, Any], run_dir: Path) -> float | None:
    """The summary's search time, or the episode log's sum over the run's processes where that is larger: summaries
    written before 2026-12-06 counted only the last process of a resumed run (even none of its episodes)."""
    recorded = _optional(summary.get("search_seconds"), float)
    log_path = run_dir / "episodes.jsonl"
    try:
        logged = elapsed_seconds(read_episodes(log_path))[0] if log_path.exists() else 0.0
    except ValueError as e:  # a damaged log costs the run its corrected time, not its place in the report
        log.warning("%s: search time from the summary only (%s)", run_dir, e)
        return recorded
    return logged if logged > (recorded or 0.0) else recorded


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)


def as_roots(root: str | Path | Sequence[str | Path]) -> list[Path]:
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
    roots = as_roots(root)
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


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def method_order(method: str) -> tuple[int, str]:
    order = ("amc", "random", "eagleeye", "sensitivity", "uniform", "deep", "shallow")
    return (order.index(method) if method in order else len(order), method)


def group_runs(runs: Sequence[RunResult]) -> dict[tuple[tuple[str, float], str], list[RunResult]]:
    """Runs grouped by (budget, method); budgets ascending, methods in the usual order."""
    groups: dict[tuple[tuple[str, float], str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.budget, r.method), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0], method_order(kv[0][1]))))


def aggregate(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per (budget, method): n and (mean, std) of every metric over seeds; budgets ascending.

    Also ``speedups`` (runtime key -> (mean, std), for every key any run measured; None where a member lacks it) and
    ``latency_ratio`` ((mean, std), or None unless every member has one): empty / None without latency figures.
    """
    keys = list(dict.fromkeys(k for r in runs for k in r.speedups or {}))
    primaries = sorted({r.latency_runtime for r in runs if r.latency_runtime})
    rows = []
    for (budget, method), members in group_runs(runs).items():
        row: dict[str, Any] = {"resource": budget[0], "target": budget[1], "method": method, "n": len(members),
                               "seeds": sorted({m.seed for m in members if m.seed is not None})}
        for key, *_ in METRICS:
            values = [getattr(m, key) for m in members]
            row[key] = None if None in values else mean_std(values)
        if keys:
            speedups = [m.speedups or {} for m in members]
            row["speedups"] = {k: mean_std([s[k] for s in speedups]) if all(k in s for s in speedups) else None
                               for k in keys}
        else:
            row["speedups"] = {}
        ratios = [m.latency_ratio for m in members if m.latency_ratio is not None]
        row["latency_ratio"] = mean_std(ratios) if len(ratios) == len(members) else None
        row["latency_runtimes"] = primaries
        for key in ("evaluations", "search_seconds"):  # the method's cost
            values = [getattr(m, key) for m in members]
            row[key] = None if None in values else mean_std(values)
        rows.append(row)
    return rows


def unpruned_test_acc(runs: Sequence[RunResult]) -> tuple[float, int] | None:
    """The unpruned model's test accuracy (mean over the jobs that record it) and how many jobs do; None if none."""
    per_job: dict[Path, float] = {}
    for r in runs:
        if r.original_test_acc is not None:
            per_job.setdefault(r.job_dir, r.original_test_acc)
    return (statistics.fmean(per_job.values()), len(per_job)) if per_job else None
