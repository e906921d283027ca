"""Search cost side by side (issue 26, part 3): ModelOpt FastNAS, our sensitivity search and AMC on one checkpoint and
budget, run one after another in one block (the order rotated each round), each as its own process: its wall time,
the method's own search time (from its summary), the process's peak RSS (``os.wait4``) and the load around it.

    OMP_NUM_THREADS=1 python -m experiments.peers.side_by_side --model resnet20 --target 0.5 \\
        --peer-python /work/peers_venv/bin/python --out experiments/results/peers/side_by_side/resnet20_t0.5

FastNAS runs as ``experiments/peers/modelopt_fastnas.py`` in the peer's venv (``--peer-python``, see README.md) with
``--divisor`` and ``--bn-workaround`` unless ``--as-shipped``; the amc methods as ``python -m amc.search
experiment=<model>_macs50 method=<m> protocol.target=<t> env.round_to=1 env.bn_recalibration_batches=0
compare_with=[]`` (the committed fronts' settings). Each run gets its own dir under ``<out>/runs/``;
``costs.jsonl`` gets one line per finished run, so a killed block resumes with the runs not yet done. ``cost.md`` is the table (mean over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHODS = ("fastnas", "sensitivity", "amc")
REPO = Path(__file__).resolve().parents[2]


def command(method: str, *, model: str, target: float, run_dir: Path, peer_python: str, divisor: int,
            as_shipped: bool) -> list[str]:
    """The process that runs ``method`` into ``run_dir``."""
    if method == "fastnas":
        cmd = [peer_python, str(REPO / "experiments" / "peers" / "modelopt_fastnas.py"), "--model", model,
               "--target", str(target), "--divisor", str(divisor), "--out", str(run_dir)]
        return cmd if as_shipped else [*cmd, "--bn-workaround"]
    return [sys.executable, "-m", "amc.search", f"experiment={model}_macs50", f"method={method}",
            f"protocol.target={target}", "env.round_to=1", "env.bn_recalibration_batches=0", "compare_with=[]",
            "progress=false", f"hydra.run.dir={run_dir}"]


def outcome(method: str, run_dir: Path) -> dict[str, Any]:
    """Search seconds, evaluations and accuracies from the run's own summary."""
    if method == "fastnas":
        r = json.loads((run_dir / "summary.json").read_text())["results"]
        return {"search_seconds": r["search_seconds"], "evaluations": r["score_calls"], "test_acc": r["test_acc"],
                "test_acc_bn": r["test_acc_bn"], "macs_ratio": r["macs_ratio"]}
    s = json.loads((run_dir / "summary.json").read_text())
    return {"search_seconds": s["search_seconds"], "evaluations": s.get("evaluations", s.get("episodes")),
            "test_acc": s["test_acc"], "test_acc_bn": s.get("test_acc_bn"), "macs_ratio": s["macs_ratio"]}


def run_one(cmd: list[str], log_path: Path) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log_path``): wall seconds, peak RSS of the process tree's largest, return code."""
    load_before = os.getloadavg()
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    return {"wall_seconds": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024,
            "returncode": os.waitstatus_to_exitcode(status), "load_before": load_before, "load_after": os.getloadavg()}


def table(rows: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Mean over rounds per method."""
    lines = ["| method | rounds | search time (s) | wall time (s) | peak RSS (MB) | evaluations | test acc | "
             "test acc, BN recal | MACs ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def mean(values: list[Any], fmt: str) -> str:
        values = [v for v in values if v is not None]
        return format(sum(values) / len(values), fmt) if values else "-"

    for m in methods:
        done = [r for r in rows if r["method"] == m and r["returncode"] == 0]
        if not done:
            continue
        lines.append(f"| {m} | {len(done)} | {mean([r['search_seconds'] for r in done], '.0f')} | "
                     f"{mean([r['wall_seconds'] for r in done], '.0f')} | {mean([r['peak_rss_mb'] for r in done], '.0f')} | "
                     f"{mean([r['evaluations'] for r in done], '.0f')} | {mean([100 * r['test_acc'] for r in done], '.2f')}% | "
                     f"{mean([None if r['test_acc_bn'] is None else 100 * r['test_acc_bn'] for r in done], '.2f')}% | "
                     f"{mean([r['macs_ratio'] for r in done], '.3f')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a committed baseline: resnet20, resnet56, mobilenet_v2")
    p.add_argument("--target", type=float, default=0.5, help="MACs (FLOPs) fraction")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--rounds", type=int, default=1, help="blocks; the order rotates by one method each round")
    p.add_argument("--divisor", type=int, default=8, help="FastNAS channel divisor")
    p.add_argument("--as-shipped", action="store_true", help="FastNAS without --bn-workaround")
    p.add_argument("--peer-python", default="/work/peers_venv/bin/python", help="python of the ModelOpt venv")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if "fastnas" in args.methods and not Path(args.peer_python).exists():
        p.error(f"--peer-python {args.peer_python} does not exist: set up the peer's venv (experiments/peers/README.md)")
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    costs = args.out / "costs.jsonl"
    rows = [json.loads(line) for line in costs.read_text().splitlines() if line.strip()] if costs.exists() else []
    done = {(r["method"], r["round"]) for r in rows if r["returncode"] == 0}
    for k in range(args.rounds):
        order = args.methods[k % len(args.methods):] + args.methods[:k % len(args.methods)]
        for method in order:
            if (method, k) in done:
                continue
            run_dir = args.out / "runs" / f"{method}_r{k}"
            if run_dir.exists():  # a run killed mid-way: its timing is lost, so it starts again in a new dir
                run_dir.rename(run_dir.with_name(f"{run_dir.name}.killed{int(time.time())}"))
            cmd = command(method, model=args.model, target=args.target, run_dir=run_dir, peer_python=args.peer_python,
                          divisor=args.divisor, as_shipped=args.as_shipped)
            print(f"== round {k + 1}/{args.rounds}: {method} -> {run_dir}", flush=True)
            row = {"method": method, "round": k, "command": cmd, **run_one(cmd, args.out / "runs" / f"{method}_r{k}.log")}
            if row["returncode"] == 0:
                row.update(outcome(method, run_dir))
            else:
                print(f"   failed (exit {row['returncode']}): see {run_dir}.log", flush=True)
            with costs.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
    text = (f"# Search cost side by side: {args.model}, MACs {args.target}\n\n"
            f"`python -m experiments.peers.side_by_side {' '.join(sys.argv[1:] if argv is None else argv)}`; each "
            f"method its own process, one after another (order rotated per round), 1 thread "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); FastNAS divisor {args.divisor}"
            f"{' as shipped' if args.as_shipped else ' with --bn-workaround'}. Search time: the method's own "
            f"(summary); wall time: the whole process (set-up and final evaluation included); peak RSS: the process's "
            f"(os.wait4). Loads per run in costs.jsonl.\n\n" + table(rows, args.methods) + "\n")
    (args.out / "cost.md").write_text(text)
    print(text)
    finished = {(r["method"], r["round"]) for r in rows if r["returncode"] == 0}
    return 0 if all((m, k) in finished for m in args.methods for k in range(args.rounds)) else 1


if __name__ == "__main__":
    sys.exit(main())
