"""Markdown tables of pruning results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(rows: Sequence[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    """A markdown table: variant, MACs (and ratio), params, latency, reward-val and test accuracy."""
    lines = ["| variant | MACs (M) | MACs ratio | params (K) | latency (ms) | reward-val acc | test acc |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["macs"] / baseline["macs"] if baseline else 1.0
        lines.append(f"| {r['variant']} | {r['macs'] / 1e6:.2f} | {ratio:.3f} | {r['params'] / 1e3:.1f} | "
                     f"{r['latency_ms']:.2f} | {100 * r['reward_val_acc']:.2f}% | {100 * r['test_acc']:.2f}% |")
    return "\n".join(lines)
