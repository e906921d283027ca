"""Markdown tables: a comparison of variants (``comparison.md``) and the budget x method report of seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amc.measure.latency import NOISY_SPREAD

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


def format_report(rows: Sequence[dict[str, Any]], cost: bool = False) -> str:
    """A markdown table: budget, method, n, then mean ± std of test acc, reward-val acc, MACs ratio (and params ratio
    when a budget is on params); a group of one run shows its value alone.

    When runs measured latencies: a ``speedup <runtime> b<batch>`` column per key and a ``latency ratio`` column
    (measured latency / the original's in the primary runtime), with a note under the table. ``cost``: the reward
    evaluations each method spent and its search time (the episodes, not the final evaluation), in minutes.
    """
    metrics = [m for m in METRICS if m[0] != "params_ratio" or any(r["resource"] == "params" for r in rows)]
    keys = list(dict.fromkeys(k for r in rows for k in r.get("speedups") or {}))
    latency = bool(keys) or any(r.get("latency_ratio") is not None for r in rows)
    heads = [label for _, label, *_ in metrics] + [f"speedup {k}" for k in keys] + (["latency ratio"] if latency else [])
    heads += ["reward evaluations", "search time (min)"] if cost else []
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
        if cost:
            cells += [cell(r.get("evaluations"), r["n"], 1.0, 0, ""), cell(r.get("search_seconds"), r["n"], 1 / 60, 1, "")]
        lines.append(f"| {r['resource']} {r['target']:g} | {r['method']} | {r['n']} | " + " | ".join(cells) + " |")
    if latency:
        primaries = ", ".join(next((r["latency_runtimes"] for r in rows if r.get("latency_runtimes")), [])) or "?"
        lines.append(f"\nspeedup <runtime> b<batch>: the unpruned model's measured latency / the pruned one's, same "
                     f"runtime and batch, same block; latency ratio: measured latency / the unpruned model's, in "
                     f"{primaries} (1 / that speedup).")
    if cost:
        lines.append("\nreward evaluations: episodes (one pruned model scored on the reward-val images each), or the "
                     "sensitivity search's probes + 2; search time: wall time of those evaluations on the machine of "
                     "each run (loads differ between runs).")
    return "\n".join(lines)
