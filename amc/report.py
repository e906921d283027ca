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
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from amc.reporting.figure import X_AXES, default_x, plot_report, primary_runtime, report_title
from amc.reporting.runs import aggregate, as_roots, collect_runs, unpruned_test_acc
from amc.reporting.table import format_report

log = logging.getLogger(__name__)


def write_report(
    root: str | Path | Sequence[str | Path], out: str | Path | None = None, x: str | None = None, cost: bool = False
) -> tuple[str, Path, Path]:
    """Collect, aggregate and write ``report.md`` and ``report.png`` into ``out`` (default ``root``).

    ``root`` may be several directories (see :func:`collect_runs`); then ``out`` is required. ``x``: report.png's x
    axis, ``macs`` or ``latency`` (None: :func:`default_x`); ``latency`` when a run lacks a measured latency is a
    ValueError naming it, raised before anything is written.

    Unreadable runs are skipped with a warning and listed under the table. Returns (the table, with the unpruned
    model's test accuracy above it when known; report.md; report.png).
    """
    roots = as_roots(root)
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
    table = format_report(rows, cost=cost)
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
    parser.add_argument("--cost", action="store_true",
                        help="add each method's reward evaluations and search time (minutes) to the table")
    args = parser.parse_args(argv)
    logging.basicConfig(format="amc-report: %(levelname)s: %(message)s")
    try:
        table, md, png = write_report(args.multirun_dir, args.out, args.x, cost=args.cost)
    except (FileNotFoundError, ValueError) as e:
        print(f"amc-report: error: {e}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
