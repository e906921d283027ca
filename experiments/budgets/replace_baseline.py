"""Put a re-run hand-made baseline in place of a finished run's ``compare/<method>/`` row.

    python -m experiments.budgets.replace_baseline <re-run dir> <run dir> --why "<one line>"

``<re-run dir>`` is a finished ``amc.search method=uniform|deep|shallow`` (``run_front.sh ... <method>``), ``<run dir>`` a
finished search or apply run with that method in ``compare/``. Both must agree on budget, target and seed (their
``.hydra/config.yaml``). The old ``summary.json`` and ``best_plan.json`` are kept beside the new ones as
``*.superseded.json`` (``amc.report`` reads only ``summary.json``); the method's row in ``comparison.md`` is replaced
by the re-run's and a footnote says when and why. Refuses to run twice on the same row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from amc.pruning.heuristics import HEURISTICS
from amc.reporting.runs import job_config

FILES = ("summary.json", "best_plan.json")
AGREE = (("protocol", "resource"), ("protocol", "target"), ("seed",), ("checkpoint",))


def _get(cfg: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
    return cfg


def _row(table: Path, method: str) -> str:
    rows = [line for line in table.read_text().splitlines() if line.startswith(f"| {method} |")]
    if len(rows) != 1:
        raise SystemExit(f"{table}: expected one '| {method} |' row, found {len(rows)}")
    return rows[0]


def replace(src: Path, dst: Path, why: str) -> str:
    """Replace ``dst``'s ``compare/<method>`` by the finished re-run ``src``; returns the method."""
    for d in (src, dst):
        if not (d / "comparison.md").is_file() or not (d / "summary.json").is_file():
            raise SystemExit(f"{d} is not a finished run (no comparison.md or summary.json)")
    method = json.loads((src / "summary.json").read_text()).get("variant")
    if method not in HEURISTICS:
        raise SystemExit(f"{src} is not a hand-made baseline run (variant {method!r}); expected one of {HEURISTICS}")
    old = dst / "compare" / method
    if not old.is_dir():
        raise SystemExit(f"{dst} has no compare/{method}/ to replace")
    if any((old / f.replace(".json", ".superseded.json")).exists() for f in FILES):
        raise SystemExit(f"{old} was already replaced once (*.superseded.json exist); not overwriting them")
    a, b = job_config(src), job_config(dst)
    if a is None or b is None:
        raise SystemExit(f"no readable .hydra/config.yaml in {src if a is None else dst}")
    for path in AGREE:
        if _get(a, path) != _get(b, path):
            raise SystemExit(f"{'.'.join(path)} differs: {_get(a, path)!r} in {src}, {_get(b, path)!r} in {dst}")
    new_row, old_row = _row(src / "comparison.md", method), _row(dst / "comparison.md", method)
    for f in FILES:
        shutil.move(old / f, old / f.replace(".json", ".superseded.json"))
        shutil.copy2(src / f, old / f)
    table = dst / "comparison.md"
    text = table.read_text().replace(old_row, new_row).rstrip("\n")
    today = datetime.date.today().isoformat()
    table.write_text(f"{text}\n\n{method}: row replaced on {today} by a re-run ({why}); its latency was measured in "
                     f"that run's own block. Was: {old_row}\n")
    return method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the finished re-run (amc.search method=uniform|deep|shallow)")
    parser.add_argument("dst", type=Path, help="the finished run whose compare/<method>/ it replaces")
    parser.add_argument("--why", required=True, help="one line for the footnote")
    args = parser.parse_args()
    method = replace(args.src, args.dst, args.why)
    print(f"{args.dst}: {method} replaced by {args.src}", file=sys.stderr)


if __name__ == "__main__":
    main()
