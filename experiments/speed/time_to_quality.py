"""Time to quality of committed searches: how many episodes a search needed for its best reward.

    python -m experiments.speed.time_to_quality experiments/results/resnet56_fmnist_macs50/seed* \
        experiments/results/resnet20_fmnist_macs50/seed*

Per run (a dir with ``episodes.jsonl``): the best reward after 50, 100, ..., all episodes, the first episode within
0.2 and 0.5 points of the final best, and the share of episodes whose accuracy ended more than 5 points under the
best so far (those an adaptive evaluation with ``env.early_stop.margin=0.05`` could have cut short).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

CHECKPOINTS = (50, 100, 150, 200, 250, 300, 400)


def episodes(run_dir: Path) -> list[dict]:
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_row(run_dir: Path, margin: float = 0.05) -> dict:
    rows = episodes(run_dir)
    rewards = [float(r["reward"]) for r in rows]
    best_so_far, best = [], float("-inf")
    for r in rewards:
        best = max(best, r)
        best_so_far.append(best)
    final = best_so_far[-1]
    within = {tol: next(i + 1 for i, b in enumerate(best_so_far) if b >= final - tol) for tol in (0.002, 0.005)}
    below, running = 0, None
    for r in rows:
        acc = float(r.get("accuracy", r["reward"]))
        if running is not None and acc < running - margin:
            below += 1
        running = acc if running is None else max(running, acc)
    at = {k: best_so_far[k - 1] for k in CHECKPOINTS if k <= len(best_so_far)}
    return {"run": str(run_dir), "episodes": len(rows), "final_best": final, "at": at, "within_0.2": within[0.002],
            "within_0.5": within[0.005], "below_margin": below / len(rows)}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    rows = [run_row(d) for d in args.runs if (d / "episodes.jsonl").is_file()]
    if not rows:
        print("no run dir with an episodes.jsonl among the arguments", file=sys.stderr)
        return 2
    cols = [k for k in CHECKPOINTS if any(k in r["at"] for r in rows)]
    print("| run | episodes | final best | " + " | ".join(f"best @{k}" for k in cols)
          + " | first within 0.2 pt | first within 0.5 pt | episodes > 5 pt under best so far |")
    print("|---|---:|---:|" + "---:|" * len(cols) + "---:|---:|---:|")
    for r in rows:
        at = " | ".join(f"{100 * r['at'][k]:.2f}" if k in r["at"] else "-" for k in cols)
        print(f"| {r['run']} | {r['episodes']} | {100 * r['final_best']:.2f} | {at} | {r['within_0.2']} | "
              f"{r['within_0.5']} | {100 * r['below_margin']:.0f}% |")
    print(f"\nfirst episode within 0.2 pt of the final best: {mean_std([r['within_0.2'] for r in rows])}; within 0.5 pt: "
          f"{mean_std([r['within_0.5'] for r in rows])} (mean ± std over {len(rows)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
