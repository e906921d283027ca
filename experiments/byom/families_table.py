"""Bring-your-own-model table: every family of ``tests/families.py`` through inspect, uniform prune, smoke search, rebuild.

Run from the repository root: ``python -m experiments.byom.families_table --out <dir>``. For each family it saves a
randomly initialised model (seed 0) as a plain state dict (``<out>/<name>/model.pth``, as a user would with
``torch.save(model.state_dict(), ...)``) and runs, each step in a subprocess under a time limit:

1. ``python -m amc.inspect``: prunable and frozen groups, the share of the MACs pruning can remove;
2. ``python -m amc.prune target_macs_ratio=0.5``: uniform pruning to half the MACs (``<out>/<name>/prune``), on the
   deployment runtime's channel grid, its speedup in onnxruntime at batch 1 measured against the original;
3. ``python -m amc.search debug=smoke env.eval_images=null``: a smoke search on the default 50% MACs budget
   (``<out>/<name>/search``; the smoke preset's 300 reward-val images are more than synthetic data has);
4. the search's ``best/`` rebuilt with ``amc.artifacts.plan.load_pruned`` (base model from the plan, weights from
   ``pruned.safetensors``, loaded strictly): its MACs, params, reward-val and test accuracy must equal those of
   ``summary.json``.

All steps use synthetic data (10 classes, 32x32). A failing step ends that family's row with the error's last line in
the notes; it never stops the table. Writes ``<out>/table.md`` and ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tests.families import FAMILIES

DATA = ["data=synthetic", "data.num_classes=10", "data.image_size=32"]
INPUT_SHAPE = (1, 3, 32, 32)
ALLOW = ("tests.families", "tests.families_more")  # where the families' classes live
TOLERANCE = 1e-9  # a budget counts as met when the achieved MACs ratio is at most target + this


def _error_line(text: str) -> str:
    """The last line naming an error (``amc-prune: error: ...``, ``XError: ...``), else the last line."""
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip() and not line.strip().startswith("(set HYDRA_FULL_ERROR")]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no output)"])[-1][:300]


def _run_step(name: str, args: list[str], log: Path, timeout: float) -> tuple[bool, str, float, str]:
    """Run ``python <args>`` with its output in ``log``; returns (ok, last error line or '', seconds, stdout)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        seconds = time.perf_counter() - start
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        log.write_text(f"$ python {' '.join(args)}\n{out}\n--- stderr ---\n{err}\n--- killed after {timeout:g} s ---\n")
        return False, f"{name}: no result within {timeout:g} s (killed)", seconds, out
    seconds = time.perf_counter() - start
    log.write_text(f"$ python {' '.join(args)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n--- exit {proc.returncode} ---\n")
    if proc.returncode != 0:
        return False, f"{name}: {_error_line(proc.stderr or proc.stdout)}", seconds, proc.stdout
    return True, "", seconds, proc.stdout


def _parse_inspect(text: str) -> dict[str, Any]:
    """Counts and frozen roots from ``amc.inspect``'s report (see ``amc.inspect.format_inspection``)."""
    head = re.search(r"(\d+) prunable group\(s\), (\d+) frozen", text)
    if head is None:
        return {}
    frozen_roots, in_frozen = [], False
    for line in text.splitlines():
        if line.startswith("Frozen"):
            in_frozen = True
        elif in_frozen and line.startswith("| ") and not line.startswith("| root layer"):
            frozen_roots.append(line.split("|")[1].strip())
    share = re.search(r"pruning can remove up to ([\d.]+)% of the MACs", text)
    return {"prunable": int(head.group(1)), "frozen": int(head.group(2)), "frozen_roots": frozen_roots,
            "prunable_macs_share": None if share is None else float(share.group(1)) / 100}


def rebuild_check(search_dir: Path) -> dict[str, Any]:
    """Rebuild ``search_dir``/best from its plan; MACs, params, reward-val and test accuracy must equal summary.json's."""
    from omegaconf import OmegaConf

    from amc.artifacts.plan import load_pruned
    from amc.cli import build_data
    from amc.measure.accuracy import evaluate_accuracy
    from amc.measure.macs import count_macs_params

    summary = json.loads((search_dir / "summary.json").read_text())
    model = load_pruned(search_dir / "best", allow=list(ALLOW))
    macs, params = count_macs_params(model, INPUT_SHAPE)
    data = build_data(OmegaConf.load(search_dir / ".hydra" / "config.yaml").data)
    with torch.no_grad():
        acc = {split: evaluate_accuracy(model, data, split=split, device="cpu") for split in ("reward_val", "test")}
    return {"macs": macs, "summary_macs": summary["macs"], "params": params, "summary_params": summary["params"],
            "test_acc": acc["test"], "summary_test_acc": summary["test_acc"],
            "reward_val_acc": acc["reward_val"], "summary_reward_val_acc": summary["reward_val_acc"],
            "identical": (macs, params, acc["test"], acc["reward_val"])
            == (summary["macs"], summary["params"], summary["test_acc"], summary["reward_val_acc"])}


def inspect_family(name: str, root: Path, timeout: float, graph_time_limit: float | None) -> tuple[dict[str, Any], str]:
    """``amc.inspect`` of the family's saved model: the parsed counts (empty on failure) and the error line."""
    cls = FAMILIES[name]
    common = [f"checkpoint={(root / 'model.pth').resolve()}", f"model._target_={cls.__module__}.{cls.__name__}", *DATA,
              "device=cpu"]
    limit = [] if graph_time_limit is None else [f"graph_time_limit={graph_time_limit:g}"]
    ok, err, _, stdout = _run_step("inspect", ["-m", "amc.inspect", *common, *limit], root / "inspect.txt", timeout)
    return (_parse_inspect(stdout), "") if ok else ({}, err)


def redo_step(out: Path, step: str, timeout: float, graph_time_limit: float | None) -> list[dict[str, Any]]:
    """Re-run one step (``inspect`` or ``rebuild``) for every family of the finished table in ``out`` (its report or
    its check changed); the other columns stay as measured. The step's earlier error notes are replaced."""
    rows = json.loads((out / "results.json").read_text())
    for row in rows:
        root = out / row["family"]
        row["notes"] = [n for n in row["notes"] if not n.startswith(f"{step}:")]
        if step == "inspect":
            parsed, err = inspect_family(row["family"], root, timeout, graph_time_limit)
            row.update(parsed)
        elif (root / "search" / "summary.json").is_file():
            err = _rebuild(row, root / "search", root, timeout)
        else:
            continue
        if err:
            row["notes"].append(err)
    return rows


def _rebuild(row: dict[str, Any], search_dir: Path, root: Path, timeout: float) -> str:
    """The rebuild check of a finished smoke search, in a subprocess, into ``row``; returns an error note or ''."""
    ok, err, row["seconds"]["rebuild"], stdout = _run_step(
        "rebuild", ["-m", "experiments.byom.families_table", "--rebuild-check", str(search_dir)],
        root / "rebuild.txt", timeout)
    if not ok:
        return err
    check = json.loads(stdout.strip().splitlines()[-1])
    row["rebuild"] = check
    if check["identical"]:
        return ""
    return (f"rebuild differs: MACs {check['macs']} vs {check['summary_macs']}, params {check['params']} vs "
            f"{check['summary_params']}, test acc {check['test_acc']:.4f} vs {check['summary_test_acc']:.4f}")


def run_family(name: str, out: Path, timeout: float, graph_time_limit: float | None) -> dict[str, Any]:
    cls = FAMILIES[name]
    root = out / name
    root.mkdir(parents=True)
    torch.manual_seed(0)
    pth = (root / "model.pth").resolve()
    torch.save(cls().state_dict(), pth)
    common = [f"checkpoint={pth}", f"model._target_={cls.__module__}.{cls.__name__}", *DATA, "device=cpu"]
    limit = [] if graph_time_limit is None else [f"graph_time_limit={graph_time_limit:g}"]
    row: dict[str, Any] = {"family": name, "class": cls.__name__, "notes": [], "seconds": {}}

    start = time.perf_counter()
    parsed, err = inspect_family(name, root, timeout, graph_time_limit)
    row["seconds"]["inspect"] = time.perf_counter() - start
    row.update(parsed)
    if err:
        row["notes"].append(err)

    prune_dir = root / "prune"
    ok, err, row["seconds"]["prune"], _ = _run_step(
        "prune", ["-m", "amc.prune", *common, *limit, "target_macs_ratio=0.5", f"hydra.run.dir={prune_dir}"],
        root / "prune.txt", timeout)
    if ok:
        rows = json.loads((prune_dir / "results.json").read_text())["rows"]
        row["uniform_macs_ratio"] = rows[1]["macs"] / rows[0]["macs"]
        row["uniform_speedups"] = rows[-1].get("speedups")  # reconstruction + BN recal; every variant has the widths
        row["uniform_met"] = row["uniform_macs_ratio"] <= 0.5 + TOLERANCE
    else:
        row["notes"].append(err)

    search_dir = root / "search"
    search_limit = [] if graph_time_limit is None else [f"env.graph_time_limit={graph_time_limit:g}"]
    ok, err, row["seconds"]["search"], _ = _run_step(
        "search", ["-m", "amc.search", *common, *search_limit, "debug=smoke", "env.eval_images=null",
                   f"hydra.run.dir={search_dir}"],
        root / "search.txt", timeout)
    if ok:
        from omegaconf import OmegaConf

        summary = json.loads((search_dir / "summary.json").read_text())
        target = OmegaConf.load(search_dir / ".hydra" / "config.yaml").protocol.target
        row["search_macs_ratio"], row["search_target"] = summary["macs_ratio"], float(target)
        row["search_met"] = summary["macs_ratio"] <= float(target) + TOLERANCE
        err = _rebuild(row, search_dir, root, timeout)
        if err:
            row["notes"].append(err)
    else:
        row["notes"].append(err)
    return row


def _yes_no(met: bool | None, ratio: float | None) -> str:
    if met is None or ratio is None or math.isnan(ratio):
        return "-"
    return f"{'yes' if met else 'no'} ({ratio:.3f})"


def _merge_notes(notes: list[str], limit: int = 220) -> str:
    """``step: message`` notes, the steps that failed with the same message named once: ``inspect, prune: ...``."""
    merged: dict[str, list[str]] = {}
    for note in notes:
        step, _, message = note.partition(": ")
        message = re.sub(r"^amc-\w+: error: ", "", message)
        merged.setdefault(message if len(message) <= limit else message[:limit] + "...", []).append(step)
    return "; ".join(f"{', '.join(steps)}: {m}" for m, steps in merged.items())


def _speedup(speedups: dict[str, float] | None) -> str:
    """The uniform model's speedup in onnxruntime at batch 1 (eager PyTorch when onnxruntime was not used)."""
    if not speedups:
        return "-"
    key = "onnxruntime b1" if "onnxruntime b1" in speedups else next(iter(speedups))
    return f"{speedups[key]:.2f}x" + ("" if key == "onnxruntime b1" else f" ({key})")


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| family | groups prunable | frozen | MACs removable | uniform 50% MACs met (achieved ratio) | uniform "
             "speedup, onnxruntime b1 | smoke search budget met (ratio) | plan rebuild identical | notes |",
             "|---|---:|---|---:|---|---:|---|---|---|"]
    for r in rows:
        frozen = "-" if "frozen" not in r else str(r["frozen"]) + (
            f" ({', '.join(r['frozen_roots'])})" if r.get("frozen_roots") else "")
        rebuild = "-" if "rebuild" not in r else ("yes" if r["rebuild"]["identical"] else "no")
        notes = _merge_notes(r["notes"]).replace("|", "\\|")
        share = "-" if r.get("prunable_macs_share") is None else f"{100 * r['prunable_macs_share']:.0f}%"
        lines.append(f"| {r['family']} | {r.get('prunable', '-')} | {frozen} | {share} | "
                     f"{_yes_no(r.get('uniform_met'), r.get('uniform_macs_ratio'))} | "
                     f"{_speedup(r.get('uniform_speedups'))} | "
                     f"{_yes_no(r.get('search_met'), r.get('search_macs_ratio'))} | {rebuild} | {notes} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (new, or without these families' folders)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each step")
    parser.add_argument("--graph-time-limit", type=float, default=None,
                        help="pass graph_time_limit (seconds) to every step; default: the configs' own")
    parser.add_argument("--rebuild-check", type=Path, help=argparse.SUPPRESS)  # one step, run in a subprocess
    parser.add_argument("--redo", choices=("inspect", "rebuild"), default=None,
                        help="re-run only this step of the finished table in --out (rewrites its table)")
    args = parser.parse_args()
    if args.rebuild_check is not None:
        print(json.dumps(rebuild_check(args.rebuild_check)))
        return
    if args.out is None:
        parser.error("--out is required")
    if args.redo:
        rows = redo_step(args.out, args.redo, args.timeout, args.graph_time_limit)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
        (args.out / "table.md").write_text(format_table(rows) + "\n")
        print(format_table(rows))
        return
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    taken = [str(args.out / n) for n in names if (args.out / n).exists()] + [
        str(args.out / f) for f in ("table.md", "results.json") if (args.out / f).exists()]
    if taken:
        parser.error(f"{', '.join(taken)} exist; they are left as they are (choose another --out)")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        rows.append(run_family(name, args.out, args.timeout, args.graph_time_limit))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    table = format_table(rows)
    (args.out / "table.md").write_text(table + "\n")
    print("\n" + table)


if __name__ == "__main__":
    main()
