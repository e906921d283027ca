"""Fine-tuned comparison of issue 28 from ``run_structure.sh`` outputs: does the searched structure survive fine-tuning?

    python -m experiments.finetune.structure_table <out> [<out> ...] [--save <dir>]

Per run root (one network and budget) and method: the pruned start's test accuracy (reconstruction + BN
recalibration), the fine-tuned test accuracy as mean ± std over fine-tuning seeds, the lead over uniform, and whether
that lead is larger than the seeds' spread (the larger of the two stds; "-" while either has one seed). ``--save``
writes ``structure.md`` and ``structure.png`` (accuracy before vs after fine-tuning per method, error bars: std over
seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def load(root: Path) -> dict[str, dict[str, Any]]:
    """Per method under ``root``: the start's accuracy, every seed's fine-tuned accuracy, and the recipe."""
    methods: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("*/ft_s*/metrics.json")):
        m = json.loads(path.read_text())
        entry = methods.setdefault(path.parent.parent.name, {
            "before": m["before"]["test_acc"], "after": [], "macs_ratio": m["macs_ratio"], "model": m["model"],
            "teacher": m["teacher"]["test_acc"], "recipe": (m["epochs"], m["kd"]["alpha"], m["config"].get("lr"))})
        if entry["recipe"] != (m["epochs"], m["kd"]["alpha"], m["config"].get("lr")):
            raise ValueError(f"{path}: another recipe than the other seeds of {path.parent.parent.name} "
                             f"(epochs, KD alpha, lr) {entry['recipe']}")
        entry["after"].append(m["after"]["test_acc"])
    return methods


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def rows_of(root: Path, methods: dict[str, dict[str, Any]]) -> list[str]:
    uniform = methods.get("uniform")
    rows = []
    for name, e in sorted(methods.items(), key=lambda kv: -statistics.mean(kv[1]["after"])):
        mean, std = statistics.mean(e["after"]), _std(e["after"])
        lead = beyond = ""
        if uniform and name != "uniform":
            diff = mean - statistics.mean(uniform["after"])
            spread = max(std, _std(uniform["after"]))
            lead = f"{100 * diff:+.2f}"
            if min(len(e["after"]), len(uniform["after"])) < 2:
                beyond = "- (one seed)"  # no spread to compare with yet
            else:
                beyond = "yes" if abs(diff) > spread else "no"
        epochs, alpha, lr = e["recipe"]
        rows.append(f"| {root.name} | {e['model'].rsplit('.', 1)[-1]} | {e['macs_ratio']:.3f} | {name} | {len(e['after'])} | "
                    f"{100 * e['before']:.2f}% | {100 * mean:.2f} ± {100 * std:.2f}% | {100 * (mean - e['teacher']):+.2f} | "
                    f"{lead} | {beyond} | {epochs} ep, lr {lr}, KD {alpha} |")
    return rows


def plot(path: Path, data: dict[Path, dict[str, dict[str, Any]]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4.2), squeeze=False)
    for ax, (root, methods) in zip(axes[0], data.items()):
        for name, e in sorted(methods.items()):
            ax.errorbar(100 * e["before"], 100 * statistics.mean(e["after"]), yerr=100 * _std(e["after"]), fmt="o",
                        capsize=4, label=f"{name} (n={len(e['after'])})")
        ax.set(title=root.name, xlabel="test acc before fine-tuning (%)", ylabel="test acc after fine-tuning (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", type=Path, help="run_structure.sh output dirs")
    p.add_argument("--save", type=Path, help="write structure.md and structure.png here")
    args = p.parse_args(argv)
    try:
        data = {root: load(root) for root in args.roots}
    except (ValueError, KeyError) as e:
        print(f"structure table: {e}", file=sys.stderr)
        return 1
    empty = [str(r) for r, methods in data.items() if not methods]
    if empty:
        print(f"structure table: no <method>/ft_s<seed>/metrics.json under {', '.join(empty)}", file=sys.stderr)
        return 2
    lines = ["| run | network | MACs ratio | method | seeds | test before | test after | after − unpruned | "
             "− uniform after | beyond the seeds' spread | recipe |", "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for root, methods in data.items():
        lines += rows_of(root, methods)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        command = "python -m experiments.finetune.structure_table " + " ".join(sys.argv[1:] if argv is None else argv)
        (args.save / "structure.md").write_text(f"# Does the searched structure survive fine-tuning?\n\n`{command}`\n\n"
                                                f"test before: the pruned start (reconstruction + BN recalibration); "
                                                f"test after: mean ± std over fine-tuning seeds.\n\n{text}")
        plot(args.save / "structure.png", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
