#!/usr/bin/env python
"""Rewrite (or check) the generated blocks of README.md and docs/*.md from the committed experiment files.

    python docs/generate.py            # rewrite every generated block (and docs/img/)
    python docs/generate.py --check    # exit 1 naming each stale block, with a short diff

A generated block is a pair of marker comments; the body between them belongs to this script:

    <!-- generated: results/resnet20_fmnist_macs50/report.md table=1 -->
    ...
    <!-- end generated -->

Paths are relative to `experiments/` (`--root` is the repository, default: this file's parent's parent). The spec
after `generated:` is split like a shell line; its first word is the kind, or a path for `include`:

- `PATH` (include): the file verbatim; `table=N`: only its N-th markdown table (1-based).
- `pivot REPORT.md [REPORT.md ...]`: an `amc.report` table turned round, methods x budgets, one value per cell
  (`value="test acc"`, `budgets=0.3,0.5,0.7`, `methods=amc,random`); `extra="LABEL=DIR[,DIR][:METHOD]"` adds a row
  (second, under the first method) aggregated from run dirs as `seeds` does.
- `seeds "LABEL=DIR[,DIR...][:METHOD]" ...`: mean ± std over the runs (`summary.json` + `best_plan.json`) found under
  the dirs, per budget and group (`targets=0.3,0.5`); METHOD reads `compare/<METHOD>/` (default: the run's own, AMC).
- `export "LABEL=DIR" ...`: the parity and latency of `amc.export` reports (`export_report.json`).
- `baselines "LABEL=DIR" ...`: trained baselines (`metrics.json`).
- `prune DIR`: the variants of one `amc.prune` run (`results.json`).
- `image PATH [alt=TEXT] [copy]`: a markdown image; `copy` copies the file to `docs/img/` (mkdocs cannot reach
  outside docs/) and links it from there, otherwise it links the repository path.

Standard library only (json, pathlib, ...): nothing of the `amc` package is imported.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
import statistics
import sys
from pathlib import Path

START = re.compile(r"^<!-- generated: (?P<spec>.+?) -->[ \t]*$", re.M)
END = "<!-- end generated -->"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent
IMG_DIR = Path("docs") / "img"
MAX_DIFF_LINES = 14


class SpecError(Exception):
    pass


class Context:
    def __init__(self, root: Path):
        self.root = root
        self.experiments = root / "experiments"
        self.copies: dict[Path, Path] = {}  # docs/img/<name> -> source

    def source(self, rel: str) -> Path:
        path = self.experiments / rel
        if not path.exists():
            raise SpecError(f"source missing: experiments/{rel}")
        return path


# ---------------------------------------------------------------- helpers


def split_spec(spec: str) -> tuple[str, list[str], dict[str, str]]:
    words = shlex.split(spec)
    if not words:
        raise SpecError("empty spec")
    kind = words[0] if words[0] in BUILDERS else "include"
    rest = words[1:] if kind == words[0] else words
    args, opts = [], {}
    for word in rest:
        key, sep, value = word.partition("=")
        if sep and key in OPTION_KEYS:
            opts[key] = value
        elif word in FLAGS:
            opts[word] = "1"
        else:
            args.append(word)
    return kind, args, opts


def tables(text: str) -> list[list[str]]:
    found, current = [], []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            current.append(line.strip())
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def parse_table(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    return cells(lines[0]), [cells(line) for line in lines[2:]]


def render(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def labelled(word: str) -> tuple[str, str]:
    label, sep, path = word.rpartition("=")
    if not sep:
        return Path(word).name, word
    return label, path


def mean_std(values: list[float], digits: int = 2, unit: str = "%") -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}{unit}"


def target_of(run: Path) -> float | None:
    plan = run / "best_plan.json"
    if not plan.exists():
        return None
    target = json.loads(plan.read_text()).get("settings", {}).get("protocol", {}).get("target")
    return None if target is None else round(float(target), 4)


def runs(ctx: Context, dirs: str, method: str | None) -> dict[float, list[tuple[Path, dict]]]:
    """summary.json of every run under the dirs (a run: a dir with summary.json and best_plan.json, not compare/)."""
    found: dict[float, list[tuple[Path, dict]]] = {}
    for rel in dirs.split(","):
        base = ctx.source(rel)
        for summary in sorted(base.rglob("summary.json")):
            run = summary.parent
            if "compare" in run.relative_to(base).parts:
                continue
            if method:
                run = run / "compare" / method
                summary = run / "summary.json"
                if not summary.exists():
                    continue
            target = target_of(run)
            if target is None:
                continue
            found.setdefault(target, []).append((run, json.loads(summary.read_text())))
    if not found:
        raise SpecError(f"no runs under experiments/{dirs}" + (f" for method {method}" if method else ""))
    return found


def group(word: str) -> tuple[str, str, str | None]:
    label, sep, rest = word.partition("=")
    if not sep:
        raise SpecError(f"group {word!r}: expected LABEL=DIR[,DIR...][:METHOD]")
    dirs, _, method = rest.partition(":")
    return label, dirs, method or None


def pct(summaries: list[dict], key: str) -> str:
    return mean_std([100 * s[key] for s in summaries if s.get(key) is not None])


def wanted(option: str | None) -> list[float] | None:
    return None if not option else [round(float(t), 4) for t in option.split(",")]


# ---------------------------------------------------------------- builders


def build_include(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    if len(args) != 1:
        raise SpecError("include takes one path")
    text = ctx.source(args[0]).read_text()
    if "table" in opts:
        found = tables(text)
        n = int(opts["table"])
        if not 1 <= n <= len(found):
            raise SpecError(f"experiments/{args[0]} has {len(found)} table(s), not {n}")
        return "\n".join(found[n - 1])
    return text.strip("\n")


def build_pivot(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    value = opts.get("value", "test acc")
    cells: dict[str, dict[float, str]] = {}
    for rel in args:
        found = tables(ctx.source(rel).read_text())
        if not found:
            raise SpecError(f"no table in experiments/{rel}")
        header, rows = parse_table(found[0])
        for key in ("budget", "method", "n", value):
            if key not in header:
                raise SpecError(f"experiments/{rel}: no column {key!r}")
        for row in rows:
            rec = dict(zip(header, row))
            budget = round(float(rec["budget"].split()[-1]), 4)
            cells.setdefault(rec["method"], {})[budget] = f"{rec[value]} (n={rec['n']})"
    budgets = wanted(opts.get("budgets")) or sorted({b for c in cells.values() for b in c})
    methods = opts["methods"].split(",") if "methods" in opts else list(cells)
    rows = [[m] + [cells.get(m, {}).get(b, "-") for b in budgets] for m in methods]
    if "extra" in opts:
        label, dirs, method = group(opts["extra"])
        key = {"test acc": "test_acc", "reward-val acc": "reward_val_acc", "test acc, BN recal": "test_acc_bn"}[value]
        by_target = runs(ctx, dirs, method)
        extra = []
        for b in budgets:
            summaries = [s for _, s in by_target.get(b, [])]
            extra.append(f"{pct(summaries, key)} (n={len(summaries)})" if summaries else "-")
        rows.insert(1, [label] + extra)
    header = ["method"] + [f"{b:g} MACs" for b in budgets]
    return render(header, rows, ["---"] + ["---:"] * len(budgets)) + f"\n\ncells: {value}, mean ± std over seeds (n runs)"


def build_seeds(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    groups = [(label, runs(ctx, dirs, method)) for label, dirs, method in map(group, args)]
    targets = wanted(opts.get("targets")) or sorted({t for _, by in groups for t in by})
    rows = []
    for t in targets:
        for label, by_target in groups:
            found = by_target.get(t, [])
            if not found:
                continue
            summaries = [s for _, s in found]
            episodes = ", ".join(str(s.get("best_episode", "-")) for s in summaries)
            rows.append([
                label, f"{t:g}", str(len(summaries)), pct(summaries, "test_acc"), pct(summaries, "reward_val_acc"),
                pct(summaries, "test_acc_bn"), mean_std([s["macs_ratio"] for s in summaries], 3, ""), episodes,
            ])
    header = ["runs", "MACs target", "n", "test acc", "reward-val acc", "test acc, BN recal", "MACs ratio",
              "episode of the best policy, per run"]
    return render(header, rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---"])


def _median_ms(rep: dict, model: str, runtime: str, batch: int) -> float:
    return rep["latency"][model][runtime][f"batch_{batch}"]["median_ms"]


def build_export(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    rows = []
    for word in args:
        label, rel = labelled(word)
        rep = json.loads((ctx.source(rel) / "export_report.json").read_text())
        ort, torch = [], []
        for batch in (1, 64):
            pruned = _median_ms(rep, "pruned", "onnxruntime", batch)
            original = _median_ms(rep, "original", "onnxruntime", batch)
            ort.append(f"{pruned:.3g} / {original:.3g} ms ({original / pruned:.2f}x)")
            speedup = _median_ms(rep, "original", "torch", batch) / _median_ms(rep, "pruned", "torch", batch)
            torch.append(f"{speedup:.2f}x")
        macs = rep["macs"]["pruned"] / rep["macs"]["original"]
        parity = rep["parity"]
        rows.append([f"{label} ({macs:.3f} MACs)", f"{parity['max_abs_logit_diff']:.2e}",
                     f"{100 * parity['top1_agreement']:.0f}%", *ort, *torch])
    header = ["pruned model", "max \\|logit diff\\|", "top-1 agreement",
              "onnxruntime batch 1, pruned / original (speedup)", "onnxruntime batch 64", "PyTorch speedup batch 1",
              "PyTorch speedup batch 64"]
    return render(header, rows, ["---"] + ["---:"] * 6)


def _rerun_command(command: str, rel: str) -> str:
    """The recorded command as a fresh clone reruns it: run dir relative to the repo, no ``resume=`` (a killed run
    that was resumed trains the same epochs)."""
    words = [w for w in command.split() if not w.startswith("resume=")]
    return " ".join(f"hydra.run.dir=experiments/{rel}" if w.startswith("hydra.run.dir=") else w for w in words)


def build_baselines(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    rows = []
    for word in args:
        label, rel = labelled(word)
        m = json.loads((ctx.source(rel) / "metrics.json").read_text())
        rows.append([
            label, str(len(m["epochs"])), f"{m['macs'] / 1e6:.1f}", f"{m['params'] / 1e3:.0f}",
            f"{100 * m['reward_val_acc']:.2f}%", f"{100 * m['test_acc']:.2f}%", f"{m['train_seconds'] / 60:.1f} min",
            f"`{_rerun_command(m['command'], rel)}`",
        ])
    header = ["model", "epochs", "MACs (M)", "params (K)", "reward-val acc", "test acc", "train time", "command"]
    return render(header, rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---"])


def build_prune(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    if len(args) != 1:
        raise SpecError("prune takes one dir")
    res = json.loads((ctx.source(args[0]) / "results.json").read_text())
    base = res["rows"][0]
    rows = [[
        r["variant"], f"{r['macs'] / base['macs']:.3f}", f"{r['params'] / 1e3:.1f}", f"{100 * r['reward_val_acc']:.2f}%",
        f"{100 * r['test_acc']:.2f}%",
    ] for r in res["rows"]]
    header = ["variant", "MACs ratio", "params (K)", "reward-val acc", "test acc"]
    return render(header, rows, ["---", "---:", "---:", "---:", "---:"]) + f"\n\nmethod: {res['method']}"


def build_image(ctx: Context, args: list[str], opts: dict[str, str]) -> str:
    if len(args) != 1:
        raise SpecError("image takes one path")
    src = ctx.source(args[0])
    alt = opts.get("alt", src.parent.name)
    if "copy" in opts:
        name = args[0].removeprefix("results/").replace("/", "_")
        ctx.copies[ctx.root / IMG_DIR / name] = src
        return f"![{alt}](img/{name})"
    return f"![{alt}]({src.relative_to(ctx.root).as_posix()})"


BUILDERS = {
    "include": build_include, "pivot": build_pivot, "seeds": build_seeds, "export": build_export,
    "baselines": build_baselines, "prune": build_prune, "image": build_image,
}
OPTION_KEYS = {"table", "value", "budgets", "methods", "extra", "targets", "alt"}
FLAGS = {"copy"}


# ---------------------------------------------------------------- blocks


def process(path: Path, ctx: Context, check: bool, shown: str) -> list[str]:
    """Regenerate the blocks of one file; returns the problems (stale or broken blocks)."""
    text = path.read_text()
    out, pos, problems = [], 0, []
    for match in START.finditer(text):
        if match.start() < pos:
            continue
        spec = match.group("spec")
        line_no = text.count("\n", 0, match.start()) + 1
        body_start = match.end() + 1
        end = text.find("\n" + END, match.end())
        if end < 0:
            problems.append(f"{shown}:{line_no}: block `{spec}` has no `{END}`")
            break
        old = text[body_start:end + 1]
        try:
            kind, args, opts = split_spec(spec)
            new = "\n" + BUILDERS[kind](ctx, args, opts).rstrip("\n") + "\n\n"
        except (SpecError, OSError, KeyError, ValueError) as exc:
            problems.append(f"{shown}:{line_no}: block `{spec}`: {exc}")
            new = old
        if new != old and check:
            diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "committed", "generated", lineterm="",
                                             n=0))
            more = len(diff) - MAX_DIFF_LINES
            shown_diff = diff[:MAX_DIFF_LINES] + ([f"... {more} more diff lines"] if more > 0 else [])
            problems.append(f"{shown}:{line_no}: stale block `{spec}`\n" + "\n".join("    " + d for d in shown_diff))
        out.append(text[pos:body_start] + new)
        pos = end + 1
    out.append(text[pos:])
    result = "".join(out)
    if not check and result != text:
        path.write_text(result)
        print(f"rewrote {shown}")
    return problems


def sync_images(ctx: Context, check: bool, prune: bool) -> list[str]:
    problems = []
    img_dir = ctx.root / IMG_DIR
    for dest, src in sorted(ctx.copies.items()):
        same = dest.exists() and dest.read_bytes() == src.read_bytes()
        if same:
            continue
        if check:
            problems.append(f"{dest.relative_to(ctx.root)}: stale copy of {src.relative_to(ctx.root)}")
        else:
            img_dir.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
            print(f"copied {src.relative_to(ctx.root)} -> {dest.relative_to(ctx.root)}")
    if prune and img_dir.is_dir():
        for orphan in sorted(set(img_dir.glob("*.png")) - set(ctx.copies)):
            if check:
                problems.append(f"{orphan.relative_to(ctx.root)}: no generated block uses it")
            else:
                orphan.unlink()
                print(f"removed {orphan.relative_to(ctx.root)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the repository (sources: ROOT/experiments)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    ctx = Context(root)
    files = args.files or [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    problems = []
    for path in files:
        path = path.resolve()
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        problems += process(path, ctx, args.check, shown)
    problems += sync_images(ctx, args.check, prune=not args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s); run `python docs/generate.py` to rewrite the generated blocks",
              file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(files)} file(s) up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
