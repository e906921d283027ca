"""How well each proxy predicts the fine-tuned accuracy: Pearson and Spearman correlation with bootstrap 95%
confidence intervals (numpy only), the proxy's pick, its cost; ``correlations.md`` / ``.json`` and one scatter plot
per proxy."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
MIN_FINISHED = 10
TARGET = "test_acc"  # the fine-tuned figure the proxies should predict


class NotEnoughCandidates(RuntimeError):
    """Fewer finished candidates than a correlation needs."""


@dataclass(frozen=True)
class Finished:
    """A candidate with its proxies and its fine-tuned accuracy."""

    id: str
    kind: str
    proxies: dict[str, float]
    seconds: dict[str, float]
    finetuned: float
    finetune_seconds: float
    macs_ratio: float


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=r) / counts)[inverse]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN when either is constant (or there are fewer than two points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(ranks(x), ranks(y))


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic, *, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)`` over candidates drawn with replacement; resamples where
    the statistic is undefined (a constant resample) are left out; NaN when more than half are."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(x[i], y[i]) for i in rng.integers(0, len(x), (resamples, len(x)))])
    values = values[np.isfinite(values)]
    if len(values) < resamples / 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def read_candidates(out: Path) -> tuple[list[Finished], list[dict[str, Any]], list[str]]:
    """(finished candidates, failed ones with their errors, ids still without a fine-tuned accuracy)."""
    finished, failed, pending = [], [], []
    for d in sorted(p for p in (out / "candidates").glob("*") if p.is_dir()):
        if (d / "error.json").is_file():
            error = json.loads((d / "error.json").read_text())
            failed.append({"id": d.name, "stage": error.get("stage"), "error": error.get("error")})
            continue
        if not (d / "candidate.json").is_file() or not (d / "finetuned.json").is_file():
            pending.append(d.name)
            continue
        c, f = json.loads((d / "candidate.json").read_text()), json.loads((d / "finetuned.json").read_text())
        finished.append(Finished(c["id"], c["kind"], c["proxies"], c["proxy_seconds"], f[TARGET],
                                 sum(f["seconds"].values()), c["macs_ratio"]))
    return finished, failed, pending


def correlate(finished: Sequence[Finished], *, resamples: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per proxy: Pearson and Spearman with the fine-tuned accuracy, their intervals, cost, and its pick (the
    candidate it ranks first: fine-tuned accuracy and rank among the fine-tuned, 1 = best)."""
    y = np.array([c.finetuned for c in finished])
    order = ranks(-y)
    top = np.argsort(-y, kind="stable")[: max(3, len(y) // 2)]  # the better half: where a search's pick is made
    result = {}
    for name in finished[0].proxies:
        x = np.array([c.proxies[name] for c in finished])
        seconds = np.array([c.seconds[name] for c in finished])
        pick = int(np.argmax(x))
        result[name] = {
            "pearson": pearson(x, y), "pearson_ci": bootstrap_ci(x, y, pearson, resamples=resamples, seed=seed),
            "spearman": spearman(x, y), "spearman_ci": bootstrap_ci(x, y, spearman, resamples=resamples, seed=seed),
            "spearman_top_half": spearman(x[top], y[top]),
            "seconds_mean": float(seconds.mean()), "seconds_median": float(np.median(seconds)),
            "pick": {"id": finished[pick].id, "finetuned": float(y[pick]), "rank": float(order[pick])},
        }
    return result


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def markdown(study: dict[str, Any], base: dict[str, Any], stats: dict[str, dict[str, Any]],
             finished: Sequence[Finished], failed: Sequence[dict[str, Any]], pending: Sequence[str]) -> str:
    """``correlations.md``: one row per proxy."""
    s = study.get("settings", {})
    unpruned = (f" Unpruned model: reward-val {base['reward_val_acc']:.4f}, test {base['test_acc']:.4f}."
                if base else "")
    best = max(finished, key=lambda c: c.finetuned)
    lines = [
        f"# Proxy study: {s.get('model', '?')} on {s.get('data', {}).get('name', '?')} at {s.get('target')} of MACs",
        "",
        f"{len(finished)} finished candidates ({', '.join(sorted({c.kind for c in finished}))}), {len(failed)} failed, "
        f"{len(pending)} pending. Fine-tuned figure: {TARGET} after the fixed short fine-tune "
        f"(mean {np.mean([c.finetune_seconds for c in finished]):.1f} s per candidate); best "
        f"{best.finetuned:.4f} ({best.id}).{unpruned} Correlations with bootstrap 95% intervals over candidates; a proxy's "
        f"pick is the candidate it ranks first, with its fine-tuned accuracy and rank (1 = best). Spearman, better "
        f"half: over the candidates in the upper half of fine-tuned accuracy only (the same set for every proxy), "
        f"where a search makes its pick.",
        "",
        "| proxy | Pearson | 95% CI | Spearman | 95% CI | Spearman, better half | seconds / candidate (mean) | "
        "pick: fine-tuned acc (rank) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in stats.items():
        p, sp, pick = r["pearson_ci"], r["spearman_ci"], r["pick"]
        lines.append(f"| {name} | {_fmt(r['pearson'])} | [{_fmt(p[0])}, {_fmt(p[1])}] | {_fmt(r['spearman'])} | "
                     f"[{_fmt(sp[0])}, {_fmt(sp[1])}] | {_fmt(r['spearman_top_half'])} | {r['seconds_mean']:.2f} | "
                     f"{pick['finetuned']:.4f} ({pick['rank']:g}, {pick['id']}) |")
    if failed:
        lines += ["", "Failed candidates:", ""] + [f"- {f['id']}: {f.get('error', '?')}" for f in failed]
    return "\n".join(lines) + "\n"


def scatter(path: Path, name: str, finished: Sequence[Finished], r: dict[str, Any]) -> None:
    """Proxy against fine-tuned accuracy, random candidates as dots, the others labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    rand = [c for c in finished if c.kind == "random"]
    ax.scatter([c.proxies[name] for c in rand], [c.finetuned for c in rand], s=14, c="0.5", label="random")
    labelled = [c for c in finished if c.kind != "random"]
    for c in labelled:
        ax.scatter([c.proxies[name]], [c.finetuned], s=40, marker="*" if c.kind == "amc" else "D")
    ax.autoscale_view()
    placed: list[tuple[float, float, float, float]] = []  # label boxes in points (x0, x1, y0, y1)
    for c in labelled:  # each label at the first height, from its point downwards, that no earlier label takes
        x, y = (v * 72 / fig.dpi for v in ax.transData.transform((c.proxies[name], c.finetuned)))
        x0, x1 = x + 4, x + 4 + 4.6 * len(c.id)  # a fontsize-8 label 4 points right of its point, in points
        dy = next(d for d in range(2, -9 * len(labelled) - 1, -9)  # one 9-point line lower at a time
                  if not any(x0 < bx1 and bx0 < x1 and y + d < by1 and by0 < y + d + 8 for bx0, bx1, by0, by1 in placed))
        placed.append((x0, x1, y + dy, y + dy + 8))
        ax.annotate(c.id, (c.proxies[name], c.finetuned), fontsize=8, xytext=(4, dy), textcoords="offset points")
    ax.set_xlabel(f"{name}: reward-val accuracy")
    ax.set_ylabel(f"fine-tuned {TARGET}")
    ax.set_title(f"{name}: Pearson {_fmt(r['pearson'], 2)}, Spearman {_fmt(r['spearman'], 2)}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def analyse(out: Path, *, resamples: int = 2000, seed: int = 0, min_finished: int = MIN_FINISHED) -> dict[str, Any]:
    """Write ``correlations.md``, ``correlations.json`` and ``scatter_<proxy>.png`` in ``out``; returns the JSON.
    Raises NotEnoughCandidates below ``min_finished`` finished candidates."""
    finished, failed, pending = read_candidates(out)
    if len(finished) < min_finished:
        raise NotEnoughCandidates(
            f"only {len(finished)} finished candidate(s) in {out} ({len(pending)} pending, {len(failed)} failed); the "
            f"correlations need at least {min_finished}: run the study with more --candidates or let it finish")
    study, base = ({} if not (out / name).is_file() else json.loads((out / name).read_text())
                   for name in ("study.json", "base.json"))
    stats = correlate(finished, resamples=resamples, seed=seed)
    report = {
        "n": len(finished), "target": TARGET, "bootstrap_resamples": resamples, "proxies": stats,
        "candidates": [{"id": c.id, "kind": c.kind, "macs_ratio": c.macs_ratio, "proxies": c.proxies,
                        "finetuned": c.finetuned} for c in finished],
        "failed": failed, "pending": pending,
    }
    (out / "correlations.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "correlations.md").write_text(markdown(study, base, stats, finished, failed, pending))
    for name, r in stats.items():
        scatter(out / f"scatter_{name}.png", name, finished, r)
    log.info("analysis of %d candidates written to %s", len(finished), out / "correlations.md")
    return report
