"""The transfer table from the runs of ``run_transfer.sh``: ``python experiments/transfer/table.py <out root>``.

One row per (network, method): test and reward-val accuracy (mean ± std over seeds, n), MACs ratio and episodes
spent on that network. AMC searched from scratch comes from the committed search results when given
(``--scratch <net>=<results folder>``, e.g. resnet56=experiments/results/resnet56_fmnist_macs50).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METHODS = {"zero_shot": "AMC agent from ResNet-20, zero-shot", "refine50": "AMC agent from ResNet-20, + 50 episodes",
           "uniform": "uniform", "random1": "random search, 1 episode", "random50": "random search, 50 episodes",
           "scratch": "AMC searched on this network, 400 episodes"}


def fmt_mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (the value alone for one, ``-`` for none)."""
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scratch", action="append", default=[], help="<net>=<search results folder with seed*/>")
    args = parser.parse_args()
    scratch = dict(s.split("=", 1) for s in args.scratch)
    lines = ["| network | method | n | test acc (%) | reward-val acc (%) | MACs ratio | episodes on this network |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for net_dir in sorted(p for p in args.root.iterdir() if p.is_dir()):
        for key, label in METHODS.items():
            if key == "scratch":
                runs = sorted(Path(scratch[net_dir.name]).glob("seed*/summary.json")) if net_dir.name in scratch else []
            elif key == "uniform":
                runs = [net_dir / "uniform" / "summary.json"]
            else:
                runs = sorted(net_dir.glob(f"{key}_s*/summary.json"))
            rows = [json.loads(p.read_text()) for p in runs if p.is_file()]
            if not rows:
                continue
            episodes = sorted({int(r.get("episodes", 1)) for r in rows})
            lines.append(f"| {net_dir.name} | {label} | {len(rows)} | {fmt_mean_std([r['test_acc'] for r in rows])} | "
                         f"{fmt_mean_std([r['reward_val_acc'] for r in rows])} | "
                         f"{fmt_mean_std([r['macs_ratio'] for r in rows], 1.0, 3)} | {'/'.join(map(str, episodes))} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
