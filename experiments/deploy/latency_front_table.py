"""The latency front's table: per network and onnxruntime latency target, each method's test accuracy (as pruned and
after BN recalibration), measured speedups and MACs, mean ± std over seeds, from the committed run dirs.

    python experiments/deploy/latency_front_table.py experiments/results/latency_front [--out table.md]

Reads ``<root>/<model>/t<target>/s<seed>/`` (amc.search runs: AMC with compare/uniform and compare/random) and
``<root>/<model>/macs_plan/s<seed>/`` (amc.apply of AMC's committed MACs-0.5 plan on the default grid). Where a run
was timed again on a quieter machine (``latency_remeasured.json``, experiments/deploy/remeasure_latency.py), its
onnxruntime speedups come from there where they are clean (``runs re-timed`` counts them; the budget check stays the
run's own).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from amc.reporting.runs import remeasured_speedups

COLUMNS = (("test_acc", "test acc", 100, "{:.2f}"), ("test_acc_bn", "test acc, BN recal", 100, "{:.2f}"),
           ("speedups/onnxruntime b1", "speedup onnxruntime b1", 1, "{:.2f}x"),
           ("speedups/onnxruntime b64", "speedup onnxruntime b64", 1, "{:.2f}x"),
           ("speedups/torch b1", "speedup torch b1", 1, "{:.2f}x"), ("macs_ratio", "MACs ratio", 1, "{:.3f}"))
METHODS = {"amc": "AMC, latency protocol", "uniform": "uniform, same predicted latency",
           "random": "random search, same episodes", "plan": "AMC's MACs-0.5 plan on the grid"}


def value(summary: dict[str, Any], key: str) -> float | None:
    node: Any = summary
    for part in key.split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return None if node is None else float(node)


def cell(values: list[float], scale: float, fmt: str) -> str:
    if not values:
        return "-"
    mean = fmt.format(scale * statistics.mean(values))
    if len(values) == 1:
        return mean
    return f"{mean} ± {fmt.format(scale * statistics.stdev(values)).rstrip('x')}"


def read_summary(path: Path, variant: str) -> dict[str, Any]:
    """A method's summary, each speedup replaced by the run's re-measured one where that one is clean (neither the
    variant's nor the original's timing noisy)."""
    summary = json.loads(path.read_text())
    clean = remeasured_speedups(path.parent, variant)
    summary["speedups"] = {**summary.get("speedups", {}), **clean}
    summary["remeasured"] = bool(clean)
    return summary


def collect(root: Path) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """{(model, budget): {method: [summary per seed]}}."""
    out: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for summary in sorted(root.glob("*/t*/s*/summary.json")):
        run = summary.parent
        model, budget = run.parent.parent.name, run.parent.name[1:]
        if not (run / "comparison.md").exists():
            continue  # not finished
        methods = out.setdefault((model, f"latency {budget}"), {})
        methods.setdefault("amc", []).append(read_summary(summary, "amc"))
        for sub in sorted((run / "compare").glob("*/summary.json")):
            methods.setdefault(sub.parent.name, []).append(read_summary(sub, sub.parent.name))
    for summary in sorted(root.glob("*/macs_plan/s*/summary.json")):
        run = summary.parent
        if (run / "comparison.md").exists():
            out.setdefault((run.parent.parent.name, "MACs 0.5"), {}).setdefault("plan", []).append(
                read_summary(summary, "plan"))
    return out


def format_front(groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> str:
    lines = ["| network | budget | method | n | " + " | ".join(label for _, label, _, _ in COLUMNS)
             + " | latency budget met (measured) | runs re-timed |", "|---|---|---|---:|" + "---:|" * (len(COLUMNS) + 2)]
    for (model, budget), methods in sorted(groups.items()):
        for method in [m for m in METHODS if m in methods]:
            runs = methods[method]
            cells = [cell([v for r in runs if (v := value(r, key)) is not None], scale, fmt)
                     for key, _, scale, fmt in COLUMNS]
            met = [r["latency_budget_met"] for r in runs if "latency_budget_met" in r]
            again = sum(bool(r.get("remeasured")) for r in runs)
            lines.append(f"| {model} | {budget} | {METHODS[method]} | {len(runs)} | " + " | ".join(cells)
                         + f" | {f'{sum(met)} of {len(met)}' if met else '-'} | {again or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    table = format_front(collect(args.root))
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
