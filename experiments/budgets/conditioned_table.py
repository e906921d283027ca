"""Table of issue 9's budget-conditioned agent against per-budget searches and uniform.

    python experiments/budgets/conditioned_table.py <run_conditioned.sh out>/<model> [--front <run_front.sh out>/<model>]
        [--front-dir 0.5=experiments/results/resnet20_fmnist_macs50] [--front "decay 0.99=<other front>/<model>"]

One row per target: the conditioned agent applied zero-shot (one column per training run, ``apply_e<N>`` or
``apply_e<N>_<label>`` for a variant, e.g. ``apply_e800_decay99``),
AMC searched at that target (``--front``: ``t<target>/s<seed>/``; ``--front-dir`` adds a committed folder of
``seed*/`` runs for one target to the first front; a further ``--front LABEL=DIR`` adds a column "AMC searched, LABEL",
e.g. searches with other settings) and uniform (from the apply runs' ``compare/uniform``). Test accuracy (%) mean ± std
over seeds with the MACs ratio; the last line gives the episodes each column spent for all its targets.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path


def _cell(rows: list[dict]) -> str:
    if not rows:
        return "-"
    acc = [100 * r["test_acc"] for r in rows]
    macs = statistics.fmean(r["macs_ratio"] for r in rows)
    spread = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
    return f"{statistics.fmean(acc):.2f}{spread} ({macs:.3f}, n={len(rows)})"


def _read(paths: list[Path]) -> list[dict]:
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def _front(arg: str) -> tuple[str, Path]:
    """``LABEL=DIR`` or ``DIR`` as (label, dir); a directory whose own name holds "=" (a hydra sweep dir) is no label."""
    if "=" not in arg or Path(arg).is_dir():
        return "", Path(arg)
    label, _, path = arg.partition("=")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="run_conditioned.sh's <out>/<model>")
    parser.add_argument("--front", action="append", default=[], metavar="[LABEL=]DIR",
                        help="run_front.sh's <out>/<model>; repeatable, LABEL= names a further column")
    parser.add_argument("--front-dir", action="append", default=[], metavar="TARGET=DIR",
                        help="a folder of seed*/ search runs at one target (repeatable)")
    args = parser.parse_args()
    runs = sorted((m.group(2) or "", int(m.group(1)), p.name) for p in args.root.glob("apply_e*")
                  if p.is_dir() and (m := re.fullmatch(r"apply_e(\d+)(?:_(\w+))?", p.name)))
    extra = {float(t): Path(d) for t, d in (s.split("=", 1) for s in args.front_dir)}
    targets = sorted({float(p.name[1:]) for *_, d in runs for p in (args.root / d).glob("s*/t*") if p.is_dir()} | set(extra))
    header = [f"conditioned, {n} episodes" + (f", {label}" if label else "") for label, n, _ in runs]
    fronts = [_front(f) for f in args.front] or [("", None)]
    header += ["AMC searched at this target" + (f", {label}" if label else "") for label, _ in fronts]
    header += ["uniform"]
    lines = ["| target | " + " | ".join(header) + " |", "|---:|" + "---:|" * len(header)]
    searched = [0] * len(fronts)
    for t in targets:
        cells = [_cell(_read(sorted((args.root / d).glob(f"s*/t{t:g}/summary.json")))) for *_, d in runs]
        for i, (_, front_dir) in enumerate(fronts):
            front = _read(sorted(front_dir.glob(f"t{t:g}/s*/summary.json"))) if front_dir else []
            front += _read(sorted(extra[t].glob("seed*/summary.json"))) if i == 0 and t in extra else []
            searched[i] += max((r.get("episodes", 0) for r in front), default=0)
            cells.append(_cell(front))
        uniform = _read(sorted((args.root / runs[0][2]).glob(f"s*/t{t:g}/compare/uniform/summary.json"))) \
            if runs else []
        lines.append(f"| {t:g} | " + " | ".join([*cells, _cell(uniform)]) + " |")
    lines.append("| episodes per seed, all targets | " + " | ".join(
        [*(str(n) for _, n, _ in runs), *(str(n) if n else "-" for n in searched), "1 per target"]) + " |")
    print("\n".join(lines))
    print("\ncells: test accuracy % (mean ± std over seeds) (achieved MACs ratio, n); no fine-tuning")


if __name__ == "__main__":
    main()
