"""The held-out table of issue 27 from ``run_heldout.sh``: ``python -m experiments.transfer.heldout_table <out root>``.

One row per (network, budget, method): test and reward-val accuracy (mean ± std over seeds, n), MACs ratio, episodes
spent on that network, and the gap to uniform. The 400-episode searches come from committed results when given
(``--scratch <net>=<folder with seed*/>``, at MACs 0.5). ``--summary`` adds, per state, the figures of the issue's
goal at MACs 0.5: zero-shot minus uniform, each seed, and the 10-episode refinement minus the 400-episode search.
Committees (``best3``, ``best4``, ``best5``, ``best9``: several agents, the best on reward-val kept) are named by what they hold.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from experiments.transfer.table import fmt_mean_std

FIXED = {"uniform": "uniform", "deep": "deep", "resnet20_agent": "ResNet-20 agent (every budget), zero-shot"}
ZERO_SHOT, REFINE = "zoo agent ({v}), zero-shot", "zoo agent ({v}) + {n} episodes"
SCRATCH = "AMC searched on this network, 400 episodes"
# committees of run_heldout.sh (agent_run=[...], the best on reward-val kept): how the table names them
COMMITTEES = {"best3": "best of 3 on reward-val: one seed's scale, all, amc",
              "best4": "best of 4 on reward-val: one seed's scale, all, amc, scale_mnv2",
              "best5": "best of 5 on reward-val: one seed's scale, all, amc, scale_mnv2, scale_mnv2_rel",
              "best9": "best of 9 on reward-val: scale, all, amc x 3 seeds"}
SEEDED = [(r"zero_shot_(?P<v>\w+)_s\d+", ZERO_SHOT),
          (r"refine(?P<n>\d+)_(?P<v>\w+)_s\d+", REFINE),
          (r"random(?P<n>\d+)_s\d+", "random search, {n} episodes")]


def method_of(name: str) -> str | None:
    """The table's method label of a run dir's name (None for dirs that are not runs of the study)."""
    if name in FIXED:
        return FIXED[name]
    for pattern, label in SEEDED:
        m = re.fullmatch(pattern, name)
        if m:
            groups = m.groupdict()
            if "v" in groups:
                groups["v"] = COMMITTEES.get(groups["v"], groups["v"])
            return label.format(**groups)
    return None


def collect(root: Path, scratch: dict[str, Path]) -> list[dict]:
    """Per (network, target, method): the finished runs' summaries."""
    rows: dict[tuple[str, float, str], list[dict]] = {}
    for summary in sorted(root.glob("heldout/*/t*/*/summary.json")):
        run = summary.parent
        label = method_of(run.name)
        if label is None or not (run / "comparison.md").is_file():
            continue
        key = (run.parent.parent.name, float(run.parent.name[1:]), label)
        rows.setdefault(key, []).append(json.loads(summary.read_text()))
    for net, folder in scratch.items():
        found = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*/summary.json"))]
        if found:
            rows[(net, 0.5, SCRATCH)] = found
    return [{"network": k[0], "target": k[1], "method": k[2], "runs": v} for k, v in sorted(rows.items())]


def table(rows: list[dict]) -> str:
    """The markdown table: accuracy, MACs, episodes and the gap to uniform at the same budget."""
    uniform = {(r["network"], r["target"]): statistics.fmean(x["test_acc"] for x in r["runs"])
               for r in rows if r["method"] == "uniform"}
    lines = ["| network | MACs target | method | n | test acc (%) | reward-val acc (%) | vs uniform (points) | "
             "MACs ratio | episodes on this network |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        runs = r["runs"]
        test = [x["test_acc"] for x in runs]
        base = uniform.get((r["network"], r["target"]))
        gap = "-" if base is None or r["method"] == "uniform" else f"{(statistics.fmean(test) - base) * 100:+.2f}"
        episodes = sorted({int(x.get("episodes", 1)) for x in runs})
        lines.append(f"| {r['network']} | {r['target']:.1f} | {r['method']} | {len(runs)} | {fmt_mean_std(test)} | "
                     f"{fmt_mean_std([x['reward_val_acc'] for x in runs])} | {gap} | "
                     f"{fmt_mean_std([x['macs_ratio'] for x in runs], 1.0, 3)} | {'/'.join(map(str, episodes))} |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
    """Per zoo-agent state (and the single-network ResNet-20 agent) and held-out network at MACs 0.5: zero-shot −
    uniform (mean, each seed) and 10-episode refinement − the 400-episode search (mean), in points of test accuracy."""
    at = {(r["network"], r["method"]): [x["test_acc"] * 100 for x in r["runs"]] for r in rows if r["target"] == 0.5}
    states = sorted({m.split("(")[1].split(")")[0] for _, m in at if m.startswith("zoo agent (")})
    agents = {f"zoo, {state}": (ZERO_SHOT.format(v=state), REFINE.format(v=state, n=10)) for state in states}
    agents["ResNet-20 alone"] = (FIXED["resnet20_agent"], "")
    lines = ["| agent, state | network | seeds | zero-shot − uniform | each seed | + 10 episodes − 400-episode search |",
             "|---|---|---:|---:|---|---:|"]
    for state, (zero_label, refine_label) in agents.items():
        for net in sorted({n for n, _ in at}):
            zero = at.get((net, zero_label), [])
            uniform, scratch = at.get((net, FIXED["uniform"])), at.get((net, SCRATCH))
            if not zero or not uniform:
                continue
            gaps = [z - statistics.fmean(uniform) for z in zero]
            refine = at.get((net, refine_label), [])
            behind = f"{statistics.fmean(refine) - statistics.fmean(scratch):+.2f}" if refine and scratch else "-"
            lines.append(f"| {state} | {net} | {len(zero)} | {statistics.fmean(gaps):+.2f} | "
                         f"{' '.join(f'{g:+.2f}' for g in gaps)} | {behind} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scratch", action="append", default=[], help="<net>=<search results folder with seed*/>")
    parser.add_argument("--summary", action="store_true", help="append the per-state summary at MACs 0.5")
    parser.add_argument("--out", type=Path, help="write the table here (else print it)")
    args = parser.parse_args()
    rows = collect(args.root, {k: Path(v) for k, v in (s.split("=", 1) for s in args.scratch)})
    text = table(rows) + ("\n" + summary(rows) if args.summary else "")
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
