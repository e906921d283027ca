"""Markdown tables of pruning results, and the multirun report: ``python -m amc.report <multirun_dir> [--out DIR]``.

The report finds every finished search below a directory (a ``summary.json``; baselines of ``compare_with`` sit in
``<job>/compare/<method>/``), reads the budget and seed from the job's ``.hydra/config.yaml`` (plain YAML, no hydra
here: this module is core library) and writes ``report.md`` (budget x method, mean ± std over seeds) and
``report.png`` (budget vs test accuracy, one line per method).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amc.measure.latency import NOISY_SPREAD

log = logging.getLogger(__name__)

METRICS = (("test_acc", "test acc", 100.0, "%"), ("reward_val_acc", "reward-val acc", 100.0, "%"),
           ("test_acc_bn", "test acc, BN recal", 100.0, "%"), ("macs_ratio", "MACs ratio", 1.0, ""))


def format_table(rows: Sequence[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    """A markdown table: variant, MACs (and ratio), params, latency, reward-val and test accuracy.

    Rows with ``reward_val_acc_bn`` / ``test_acc_bn`` (the same model after BN recalibration) add two columns.
    A latency with ``latency_spread`` (relative inter-quartile range) shows it; ``latency_noisy`` rows are marked,
    and a note under the table says those figures cannot be compared.
    """
    bn = any("test_acc_bn" in r for r in rows)
    head = "| variant | MACs (M) | MACs ratio | params (K) | latency (ms) | reward-val acc | test acc |"
    lines = [head + (" reward-val acc, BN recal | test acc, BN recal |" if bn else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if bn else "")]

    def pct(r: dict[str, Any], key: str) -> str:
        return f"{100 * r[key]:.2f}%" if key in r else "-"

    def latency(r: dict[str, Any]) -> str:
        if r.get("latency_ms") is None:
            return "-"
        text = f"{r['latency_ms']:.2f}"
        if r.get("latency_spread") is not None:
            text += f" ± {100 * r['latency_spread'] / 2:.0f}%"
        return text + (" (noisy)" if r.get("latency_noisy") else "")

    for r in rows:
        ratio = r["macs"] / baseline["macs"] if baseline else 1.0
        line = (f"| {r['variant']} | {r['macs'] / 1e6:.2f} | {ratio:.3f} | {r['params'] / 1e3:.1f} | "
                f"{latency(r)} | {pct(r, 'reward_val_acc')} | {pct(r, 'test_acc')} |")
        lines.append(line + (f" {pct(r, 'reward_val_acc_bn')} | {pct(r, 'test_acc_bn')} |" if bn else ""))
    if any("latency_spread" in r for r in rows):
        lines.append("\nLatency: median of one interleaved block over all rows, ± half the inter-quartile range.")
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

    @property
    def budget(self) -> tuple[str, float]:
        return (self.resource or "accuracy-guaranteed", self.target)


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
    macs_ratio = summary.get("macs_ratio")
    if macs_ratio is None and not plan.get("macs_before"):
        raise ValueError(f"{summary_path} has no macs_ratio and there is no best_plan.json to compute it")
    try:
        if macs_ratio is None:
            macs_ratio = summary["macs"] / plan["macs_before"]
        seed = cfg.get("seed")
        return RunResult(path=run_dir, method=str(method), resource=protocol.get("resource"),
                         target=float(protocol["target"]), seed=None if seed is None else int(seed),
                         test_acc=float(summary["test_acc"]), reward_val_acc=float(summary["reward_val_acc"]),
                         macs_ratio=float(macs_ratio),
                         test_acc_bn=None if summary.get("test_acc_bn") is None else float(summary["test_acc_bn"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{summary_path} cannot be read as a search result: {detail}") from e


def collect_runs(root: str | Path, skipped: list[tuple[Path, str]] | None = None) -> list[RunResult]:
    """Every finished search below ``root`` (``root`` itself included), in path order.

    A ``summary.json`` that cannot be read is skipped with a warning naming it (and appended to ``skipped`` as
    (path, reason)); the report goes on with the others. No readable one at all is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    paths = sorted(p for p in root.rglob("summary.json") if ".hydra" not in p.parts)
    if not paths:
        raise FileNotFoundError(f"no summary.json below {root}: not a finished search or multirun directory")
    runs = []
    for p in paths:
        try:
            runs.append(load_run(p))
        except ValueError as e:
            log.warning("skipped a run: %s", e)
            if skipped is not None:
                skipped.append((p, str(e)))
    if not runs:
        raise ValueError(f"none of the {len(paths)} summary.json files below {root} could be read (see warnings)")
    return runs


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per (budget, method): n and (mean, std) of every metric over seeds; budgets ascending."""
    groups: dict[tuple[tuple[str, float], str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.budget, r.method), []).append(r)
    rows = []
    for (budget, method), members in sorted(groups.items(), key=lambda kv: (kv[0][0], _method_order(kv[0][1]))):
        row: dict[str, Any] = {"resource": budget[0], "target": budget[1], "method": method, "n": len(members),
                               "seeds": sorted({m.seed for m in members if m.seed is not None})}
        for key, *_ in METRICS:
            values = [getattr(m, key) for m in members]
            row[key] = None if None in values else _mean_std(values)
        rows.append(row)
    return rows


def _method_order(method: str) -> tuple[int, str]:
    order = ("amc", "random", "uniform", "deep", "shallow")
    return (order.index(method) if method in order else len(order), method)


def format_report(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table: budget, method, n, then mean ± std of test acc, reward-val acc and MACs ratio."""
    lines = ["| budget | method | n | " + " | ".join(label for _, label, *_ in METRICS) + " |",
             "|---|---|---:|" + "---:|" * len(METRICS)]
    for r in rows:
        cells = []
        for key, _, scale, unit in METRICS:
            if r[key] is None:
                cells.append("-")
                continue
            mean, std = r[key]
            digits = 2 if scale == 100.0 else 3
            cells.append(f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}{unit}")
        lines.append(f"| {r['resource']} {r['target']:g} | {r['method']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_report(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Budget (target ratio) vs test accuracy, one line per method (per resource), error bars = std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    resources = sorted({r["resource"] for r in rows})
    lines: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        label = r["method"] if len(resources) == 1 else f"{r['method']} ({r['resource']})"
        lines.setdefault(label, []).append(r)
    for label, members in lines.items():
        members = sorted(members, key=lambda r: r["target"])
        ax.errorbar([r["target"] for r in members], [100 * r["test_acc"][0] for r in members],
                    yerr=[100 * r["test_acc"][1] for r in members], marker="o", capsize=3, label=label)
    ax.set(xlabel=f"budget ({', '.join(resources)} target ratio)", ylabel="test accuracy (%)",
           title="test accuracy vs budget (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def write_report(root: str | Path, out: str | Path | None = None) -> tuple[str, Path, Path]:
    """Collect, aggregate and write ``report.md`` and ``report.png`` into ``out`` (default ``root``).

    Unreadable runs are skipped with a warning and listed under the table.
    """
    skipped: list[tuple[Path, str]] = []
    rows = aggregate(collect_runs(root, skipped))
    out = Path(out) if out is not None else Path(root)
    out.mkdir(parents=True, exist_ok=True)
    table = format_report(rows)
    notes = "".join(f"\n- {reason}" for _, reason in skipped)
    if notes:
        notes = f"\n{len(skipped)} run(s) could not be read and are not in the table:{notes}\n"
    md = out / "report.md"
    md.write_text(f"# Search report: {Path(root)}\n\nmean ± std over seeds; n = number of runs\n\n{table}\n{notes}")
    png = plot_report(rows, out / "report.png")
    return table, md, png


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amc-report", description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path, help="a multirun (or run) directory holding summary.json files")
    parser.add_argument("--out", type=Path, default=None, help="where report.md and report.png go (default: multirun_dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(format="amc-report: %(levelname)s: %(message)s")
    try:
        table, md, png = write_report(args.multirun_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"amc-report: error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
