"""Does a study's short fine-tune rank candidates as a longer one does? (issue 28: a short recipe is fine if a subset
of candidates shows it ranks like a 3-epoch one.)

Two studies of the same network, budget and candidate seed, differing in the fine-tune: the same candidate id is the
same policy in both (checked on its channel counts). On the candidates both finished, the fine-tuned test accuracies
are correlated (Spearman and Pearson, bootstrap 95% intervals), and whether both recipes pick the same best.

    python -m experiments.proxy.recipe_check --short <study> --long <study with --finetune-epochs 3> [--out <dir>]

Writes ``recipe_check.md`` and ``recipe_check.json`` into ``--out`` (default: the long study's dir).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.proxy.analysis import bootstrap_ci, pearson, ranks, read_candidates, spearman
from experiments.proxy.rundir import StudyMismatch, read_study

MIN_COMMON = 3  # below this a rank correlation says nothing
SAME = ("model", "checkpoint_sha256", "data", "resource", "target", "seed", "lbound", "rbound", "round_to", "selection",
        "calibration_images")  # what makes a candidate id the same pruned model in both studies


def _finetune(settings: dict[str, Any]) -> str:
    f = settings.get("finetune", {})
    length = f"{f['epochs']:g} epochs" if f.get("epochs") is not None else f"{f.get('steps')} steps"
    return f"{length}, lr {f.get('lr')}, batch {f.get('batch_size')}, KD alpha {f.get('kd_alpha')}"


def compare(short: Path, long: Path, *, resamples: int = 2000) -> dict[str, Any]:
    """The two recipes' fine-tuned accuracies on their common finished candidates, and how they agree."""
    a, b = read_study(short)["settings"], read_study(long)["settings"]
    differ = [k for k in SAME if a.get(k) != b.get(k)]
    if differ:
        raise StudyMismatch(f"{short} and {long} are studies of different candidates ({', '.join(differ)} differ)")
    if a.get("finetune") == b.get("finetune"):
        raise StudyMismatch(f"{short} and {long} fine-tune with the same recipe: nothing to compare")
    fast = {c.id: c for c in read_candidates(short)[0]}
    slow = {c.id: c for c in read_candidates(long)[0]}
    common = sorted(set(fast) & set(slow))
    for cid in common:
        counts = [json.loads((study / "candidates" / cid / "candidate.json").read_text())["counts"]
                  for study in (short, long)]
        if counts[0] != counts[1]:
            raise StudyMismatch(f"candidate {cid} has other channel counts in {short} than in {long}")
    if len(common) < MIN_COMMON:
        raise ValueError(f"{len(common)} candidate(s) finished in both studies; a rank correlation needs at least "
                         f"{MIN_COMMON} (run the longer study on more of the short one's candidates)")
    x = np.array([fast[c].finetuned for c in common])
    y = np.array([slow[c].finetuned for c in common])
    return {
        "short": {"study": str(short), "recipe": _finetune(a)}, "long": {"study": str(long), "recipe": _finetune(b)},
        "candidates": [{"id": c, "kind": slow[c].kind, "short": float(fx), "long": float(fy), "rank_short": float(rx),
                        "rank_long": float(ry)} for c, fx, fy, rx, ry in zip(common, x, y, ranks(-x), ranks(-y))],
        "spearman": spearman(x, y), "spearman_ci": bootstrap_ci(x, y, spearman, resamples=resamples),
        "pearson": pearson(x, y), "pearson_ci": bootstrap_ci(x, y, pearson, resamples=resamples),
        "same_best": common[int(np.argmax(x))] == common[int(np.argmax(y))],
    }


def markdown(result: dict[str, Any]) -> str:
    def ci(name: str) -> str:
        low, high = result[f"{name}_ci"]
        return f"{result[name]:.3f} [{low:.3f}, {high:.3f}]"

    lines = ["# Recipe check: does the short fine-tune rank candidates like the long one?", "",
             f"short: {result['short']['recipe']} ({result['short']['study']})",
             f"long: {result['long']['recipe']} ({result['long']['study']})", "",
             f"{len(result['candidates'])} candidates finished in both. Spearman {ci('spearman')}, Pearson "
             f"{ci('pearson')} (bootstrap 95% intervals); the same best candidate: "
             f"{'yes' if result['same_best'] else 'no'}.", "",
             "| candidate | kind | test acc, short | test acc, long | rank, short | rank, long |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {c['id']} | {c['kind']} | {100 * c['short']:.2f}% | {100 * c['long']:.2f}% | {c['rank_short']:g} | "
              f"{c['rank_long']:g} |" for c in result["candidates"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", type=Path, required=True, help="the study with the short recipe")
    p.add_argument("--long", type=Path, required=True, help="the study with the longer recipe (same candidates)")
    p.add_argument("--out", type=Path, help="where recipe_check.md/.json go (default: --long)")
    p.add_argument("--bootstrap", type=int, default=2000)
    args = p.parse_args(argv)
    try:
        result = compare(args.short, args.long, resamples=args.bootstrap)
    except (StudyMismatch, ValueError) as e:
        print(f"recipe check: {e}", file=sys.stderr)
        return 1
    out = args.out or args.long
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe_check.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (out / "recipe_check.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
