"""report.png: test accuracy against the achieved MACs (params) ratio or the measured latency ratio, one line per
method through its per-budget means with the seeds as faint points, the unpruned model as a dashed line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from amc.reporting.runs import RunResult, group_runs, mean_std, method_order, unpruned_test_acc

# display names of the zoo's model families, for titles only ("resnet20" -> "ResNet-20", "mobilenet_v2" -> "MobileNet-V2")
_FAMILIES = {"resnet": "ResNet", "mobilenet": "MobileNet", "vgg": "VGG", "plain": "Plain"}


def model_label(target: str) -> str:
    """'ResNet-20 (amc.models.resnet20)' for a builder named <family><depth>[_v<k>] of a known family, else ``target``."""
    m = re.fullmatch(r"([a-z]+)(\d*)(?:_v(\d+))?", target.rsplit(".", 1)[-1])
    if m is None or m.group(1) not in _FAMILIES:
        return target
    name = _FAMILIES[m.group(1)] + (f"-{m.group(2)}" if m.group(2) else "") + (f"-V{m.group(3)}" if m.group(3) else "")
    return f"{name} ({target})"


def report_title(runs: Sequence[RunResult]) -> str:
    """'<model> on <dataset>, n = <k> seeds per point' (several models or datasets joined; 'n = 1-3' when n varies)."""
    models = ", ".join(dict.fromkeys(model_label(r.model) for r in runs if r.model)) or "unknown model"
    datasets = ", ".join(dict.fromkeys(r.dataset for r in runs if r.dataset)) or "unknown data"
    counts = [len(members) for members in group_runs(runs).values()]
    lo, hi = min(counts), max(counts)
    n = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"{models} on {datasets}, n = {n} seed{'s' if hi > 1 else ''} per point"


@dataclass(frozen=True)
class Series:
    """One method in one panel of report.png. Per budget (ascending target): mean ± std over seeds of the achieved
    ratio (x) and of the test accuracy in % (y), the number of runs, and every run's (achieved ratio, test acc %)."""

    method: str
    targets: tuple[float, ...]
    x: tuple[float, ...]
    x_std: tuple[float, ...]
    y: tuple[float, ...]
    y_std: tuple[float, ...]
    n: tuple[int, ...]
    seeds: tuple[tuple[tuple[float, float], ...], ...]


@dataclass(frozen=True)
class Panel:
    """The runs of one budget resource: lines over the achieved ratio, or, with a single budget, one point per method
    on a categorical x axis (``categorical``). ``unpruned_x``: where the unpruned model sits on the x axis (1.0 for
    the measured latency ratio; None: only its dashed line is drawn)."""

    resource: str
    xlabel: str
    categorical: bool
    series: tuple[Series, ...]
    unpruned_x: float | None = None


@dataclass(frozen=True)
class ReportFigure:
    """What report.png draws: a title, the unpruned model's test accuracy in % (None if no run records it), panels."""

    title: str
    unpruned: float | None
    panels: tuple[Panel, ...]


def _ratio_label(resource: str) -> str:
    """The achieved ratio plotted for a budget resource (see ``RunResult.achieved_ratio``)."""
    if resource == "params":
        return "achieved params ratio"
    return "achieved MACs ratio" + ("" if resource == "macs" else f" ({resource} budgets)")


# report.png's x: the achieved MACs (params, for params budgets) ratio, or the measured latency ratio (primary runtime)
X_AXES = ("macs", "latency")


def primary_runtime(runs: Sequence[RunResult]) -> str:
    """The primary runtime every run measured its latency ratio in, e.g. "onnxruntime b1".

    A ValueError naming the run dirs without measured latencies, or the runtimes when the runs disagree.
    """
    missing = [str(r.path) for r in runs if r.latency_ratio is None]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"x = latency needs a measured latency in every run: none in {', '.join(missing[:5])}{more} "
                         f"(no speedups in summary.json); report these with --x macs")
    runtimes = sorted({r.latency_runtime or "?" for r in runs})
    if len(runtimes) > 1:
        raise ValueError(f"x = latency: the runs measured their latency ratio in different runtimes "
                         f"({', '.join(runtimes)}); report them apart or with --x macs")
    return runtimes[0]


def default_x(runs: Sequence[RunResult]) -> str:
    """``latency`` when every run has a measured latency ratio (in one runtime) and one had a latency budget, else
    ``macs``."""
    if not any(r.resource == "latency" for r in runs):
        return "macs"
    try:
        primary_runtime(runs)
    except ValueError:
        return "macs"
    return "latency"


def figure_data(runs: Sequence[RunResult], x: str = "macs") -> ReportFigure:
    """The series report.png draws, computed from the runs (pure: no file is read or written).

    One panel per budget resource; in each, one series per method with a point per budget at the mean achieved
    ratio (not the target), or with ``x="latency"`` the mean measured latency ratio (the unpruned model at 1.0; a
    ValueError from :func:`primary_runtime` when a run lacks it). A panel with a single budget is categorical
    (methods side by side).
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    latency_label = f"measured latency / original ({primary_runtime(runs)})" if x == "latency" else None

    def value(m: RunResult) -> float:
        return m.latency_ratio if x == "latency" and m.latency_ratio is not None else m.achieved_ratio

    by_panel: dict[str, dict[str, list[tuple[float, list[RunResult]]]]] = {}
    for ((resource, target), method), members in group_runs(runs).items():
        by_panel.setdefault(resource, {}).setdefault(method, []).append((target, members))
    panels = []
    for resource in sorted(by_panel):
        series = []
        for method, points in by_panel[resource].items():
            xs = [mean_std([value(m) for m in members]) for _, members in points]
            ys = [mean_std([100 * m.test_acc for m in members]) for _, members in points]
            series.append(Series(
                method=method, targets=tuple(t for t, _ in points), x=tuple(x for x, _ in xs),
                x_std=tuple(s for _, s in xs), y=tuple(y for y, _ in ys), y_std=tuple(s for _, s in ys),
                n=tuple(len(members) for _, members in points),
                seeds=tuple(tuple((value(m), 100 * m.test_acc) for m in members) for _, members in points)))
        targets = sorted({t for s in series for t in s.targets})
        categorical = len(targets) == 1
        label = latency_label or _ratio_label(resource)
        xlabel = f"method ({resource} target {targets[0]:g}; {label} under each name)" if categorical else label
        panels.append(Panel(resource=resource, xlabel=xlabel, categorical=categorical, series=tuple(series),
                            unpruned_x=1.0 if latency_label and not categorical else None))
    unpruned = unpruned_test_acc(runs)
    return ReportFigure(title=report_title(runs), unpruned=None if unpruned is None else 100 * unpruned[0],
                        panels=tuple(panels))


def _jitter(count: int, centre: float = 0.2, width: float = 0.06) -> list[float]:
    """Offsets (deterministic) of a category's single seeds: beside its mean's marker, spread so none hides another."""
    return [centre] if count == 1 else [centre - width + 2 * width * i / (count - 1) for i in range(count)]


def plot_report(runs: Sequence[RunResult], path: str | Path, x: str = "macs") -> Path:
    """Test accuracy against the achieved ratio (``x="latency"``: the measured latency ratio): a line per method
    through its per-budget means, error bars = std over seeds in x and y, each seed a faint point, the unpruned model
    a dashed line (and a star at x = 1.0 on the latency axis); one panel per resource."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = figure_data(runs, x)
    fig = Figure(figsize=(6.5 * len(data.panels), 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(data.panels), squeeze=False)[0]
    methods = sorted({s.method for p in data.panels for s in p.series}, key=method_order)
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, panel in zip(axes, data.panels):
        for i, s in enumerate(panel.series):
            colour = colours[s.method]
            if panel.categorical:
                ax.errorbar([i], s.y, yerr=s.y_std, marker="o", capsize=4, color=colour, label=s.method)
                seeds = s.seeds[0]
                ax.scatter([i + dx for dx in _jitter(len(seeds))], [y for _, y in seeds], color=colour, alpha=0.3,
                           s=18, linewidths=0)
            else:
                ax.errorbar(s.x, s.y, xerr=s.x_std, yerr=s.y_std, marker="o", capsize=3, color=colour, label=s.method)
                ax.scatter([x for seeds in s.seeds for x, _ in seeds], [y for seeds in s.seeds for _, y in seeds],
                           color=colour, alpha=0.3, s=18, linewidths=0)
        if panel.categorical:
            ax.set_xticks(range(len(panel.series)), [f"{s.method}\n{s.x[0]:.3f}" for s in panel.series])
            ax.set_xlim(-0.5, len(panel.series) - 0.5)
        if data.unpruned is not None:
            ax.axhline(data.unpruned, linestyle="--", color="0.35", linewidth=1, label=f"unpruned ({data.unpruned:.2f}%)")
            if panel.unpruned_x is not None:
                ax.plot([panel.unpruned_x], [data.unpruned], marker="*", markersize=11, color="0.2", linestyle="none")
        ax.set(xlabel=panel.xlabel, ylabel="test accuracy (%)")
        if len(data.panels) > 1:
            ax.set_title(f"{panel.resource} budgets", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{data.title}\nmean ± std over seeds; faint points: single seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
