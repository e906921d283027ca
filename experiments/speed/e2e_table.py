"""End-to-end search speed against quality (issue 10): full searches side by side with the committed ones.

    python -m experiments.speed.e2e_table <out>/defaults/s*/ <out>/fast/s*/ \
        --committed experiments/results/resnet56_fmnist_macs50/seed*/

Per run (a finished search dir with ``summary.json`` and ``episodes.jsonl``): wall time of the search, seconds per
episode and per reward-val pass measured in that run (their ratio does not depend on the machine's load), the search
time in reward-val passes, the share of episodes stopped early, the best reward and the test accuracy; then mean ± std
per group (the parent dir's name, or "committed") and whether the search took at most ``--target-minutes``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def run_row(run_dir: Path, group: str) -> dict:
    """The figures of one finished search."""
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    episodes = [json.loads(line) for line in lines if line.strip()]
    seconds, per_pass = float(summary["search_seconds"]), float(summary["reward_val_pass_seconds"])
    return {"group": group, "run": str(run_dir), "episodes": len(episodes), "minutes": seconds / 60,
            "s_per_episode": float(summary["seconds_per_episode"]), "pass_s": per_pass,
            "passes": seconds / per_pass, "stopped": sum(bool(e.get("stopped_early")) for e in episodes) / len(episodes),
            "best_reward": 100 * float(summary["best_reward"]), "test": 100 * float(summary["test_acc"])}


def _mean_std(values: list[float], fmt: str) -> str:
    mean = format(statistics.fmean(values), fmt)
    return mean if len(values) < 2 else f"{mean} ± {format(statistics.stdev(values), fmt)}"


def table(rows: list[dict], target_minutes: float) -> str:
    """Markdown: one line per run, then one per group."""
    head = ("| group | run | episodes | search min | s / episode | s / reward-val pass | search in passes | "
            "stopped early | best reward % | test % |")
    out = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['group']} | {r['run']} | {r['episodes']} | {r['minutes']:.1f} | {r['s_per_episode']:.2f} | "
                   f"{r['pass_s']:.1f} | {r['passes']:.0f} | {100 * r['stopped']:.0f}% | {r['best_reward']:.2f} | "
                   f"{r['test']:.2f} |")
    out += ["", f"| group | n | search min | search in passes | best reward % | test % | ≤ {target_minutes:g} min |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        minutes = [r["minutes"] for r in g]
        met = "yes" if max(minutes) <= target_minutes else f"no ({statistics.fmean(minutes) / target_minutes:.1f}x)"
        out.append(f"| {group} | {len(g)} | {_mean_std(minutes, '.1f')} | {_mean_std([r['passes'] for r in g], '.0f')} | "
                   f"{_mean_std([r['best_reward'] for r in g], '.2f')} | {_mean_std([r['test'] for r in g], '.2f')} | "
                   f"{met} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="finished search dirs, grouped by their parent dir's name")
    parser.add_argument("--committed", nargs="*", type=Path, default=[], help="the committed searches to compare with")
    parser.add_argument("--target-minutes", type=float, default=5.0)
    args = parser.parse_args()
    for d in [*args.committed, *args.runs]:
        if not (d / "summary.json").is_file():
            parser.error(f"{d} is not a finished search dir (no summary.json in it): give run dirs, e.g. <out>/fast/s*/")
    rows = [run_row(d, "committed") for d in args.committed] + [run_row(d, d.parent.name) for d in args.runs]
    if not rows:
        parser.error("no run dirs given")
    print(table(rows, args.target_minutes))


if __name__ == "__main__":
    main()
