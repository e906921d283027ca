"""amc.report and amc.plot_curve on damaged run dirs: unreadable files are skipped with a warning naming them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from amc.plot_curve import main as plot_main
from amc.plot_curve import moving_average, plot_reward_curve, read_episodes, warmup_end
from amc.report import main as report_main
from amc.report import write_report
from amc.reporting.figure import default_x, figure_data, model_label, report_title
from amc.reporting.runs import aggregate, collect_runs, original_test_acc_from_table, unpruned_test_acc
from amc.reporting.table import format_report

GOOD_ROW = "| macs 0.5 | amc | 1 | 80.00% |"  # n = 1: the value alone, no "± 0.00"


def _job(job: Path, *, seed: int = 0, acc: float = 0.8, target: float = 0.5, episodes: int = 6) -> Path:
    """A finished search job as hydra leaves it: config, summary and episode log."""
    (job / ".hydra").mkdir(parents=True)
    cfg = {"method": "amc", "seed": seed, "protocol": {"resource": "macs", "target": target},
           "agent": {"warmup_episodes": 2}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = {"variant": "amc", "macs": 50, "params": 10, "test_acc": acc, "reward_val_acc": acc,
               "macs_ratio": target - 0.01}
    (job / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps({"episode": i, "reward": 0.1 * i}) for i in range(1, episodes + 1)]
    (job / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return job


def _warned(caplog: pytest.LogCaptureFixture, path: Path) -> bool:
    return any(r.levelno == logging.WARNING and str(path) in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "damage",
    [b'{"variant": "amc", "test_acc": 0.', b"\xff\xfe\x00garbage", b"[1, 2]", b'{"variant": "amc"}',
     b'{"variant": "amc", "test_acc": "high", "reward_val_acc": 0.1, "macs_ratio": 0.4}'],
    ids=["truncated", "not-utf8", "not-an-object", "missing-keys", "not-a-number"],
)
def test_report_skips_an_unreadable_summary_and_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    root = tmp_path / "multirun"
    _job(root / "0")
    bad = _job(root / "1", seed=1, acc=0.2) / "summary.json"
    bad.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        table, md, png = write_report(root)
    assert _warned(caplog, bad)
    assert GOOD_ROW in table  # only the readable run, n = 1
    report = md.read_text()
    assert GOOD_ROW in report and f"not in the table:\n- {bad}" in report
    assert png.stat().st_size > 0


def test_report_with_an_unparsable_config_falls_back_or_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "multirun"
    _job(root / "0")
    broken = _job(root / "1", seed=1, acc=0.6)
    config = broken / ".hydra" / "config.yaml"
    config.write_text("method: amc\nprotocol: {target: [0.5\n")  # unclosed flow sequence
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        runs = collect_runs(root)
    assert [r.path.name for r in runs] == ["0"]  # without a config nor best_plan.json its budget is unknown
    assert _warned(caplog, config) and _warned(caplog, broken / "summary.json")

    # with a best_plan.json the run is reported from the plan's recorded protocol
    (broken / "best_plan.json").write_text(json.dumps({"settings": {"method": "amc", "protocol": {
        "resource": "macs", "target": 0.5}}, "macs_before": 100}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        runs = collect_runs(root)
    assert [(r.path.name, r.seed, r.test_acc) for r in runs] == [("0", 0, 0.8), ("1", None, 0.6)]
    assert _warned(caplog, config)


def test_report_cli_when_nothing_is_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _job(tmp_path / "0") / "summary.json"
    bad.write_text("{")
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 summary.json" in err
    assert not (tmp_path / "report.md").exists()


def test_reward_curve_skips_unreadable_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = _job(tmp_path / "job", episodes=8)
    log_path = run_dir / "episodes.jsonl"
    with log_path.open("ab") as f:
        f.write(b'{"episode": 9, "rew')  # cut by a kill mid-write
    lines = log_path.read_bytes().splitlines()
    lines[2] = b'{"episode": 3, "reward": "\xff"}'  # not UTF-8
    lines[4] = b'{"episode": 5}'  # no reward
    log_path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="amc.plot_curve"):
        rows = read_episodes(run_dir)
        png = plot_reward_curve(run_dir)
    assert [r["episode"] for r in rows] == [1, 2, 4, 6, 7, 8]
    warning = next(r.getMessage() for r in caplog.records if str(log_path) in r.getMessage())
    assert "3 unreadable line(s)" in warning and "line 3, 5, 9" in warning
    assert png.stat().st_size > 0

    log_path.write_bytes(b"\xff\n{\n")
    with pytest.raises(ValueError, match="holds no readable episode"):
        read_episodes(run_dir)


def test_reward_curve_with_an_unparsable_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = _job(tmp_path / "job")
    assert warmup_end(run_dir) == 2
    config = run_dir / ".hydra" / "config.yaml"
    config.write_bytes(b"agent: {warmup_episodes: \xff")
    with caplog.at_level(logging.WARNING, logger="amc.report"):
        assert warmup_end(run_dir) is None
        assert plot_reward_curve(run_dir, tmp_path / "curve.png").stat().st_size > 0
    assert _warned(caplog, config)


@pytest.mark.parametrize(("window", "message"), [("0", "must be at least 1 episode, got 0"),
                                                 ("-3", "must be at least 1 episode, got -3"),
                                                 ("two", "expected a positive integer")])
def test_plot_curve_refuses_a_window_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], window: str, message: str
) -> None:
    run_dir = _job(tmp_path / "job")
    with pytest.raises(SystemExit) as e:
        plot_main([str(run_dir), f"--window={window}"])
    assert e.value.code == 2
    assert f"argument --window: {message}" in capsys.readouterr().err
    assert not (run_dir / "reward_curve.png").exists()
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0, 2.0], window=0)
    assert plot_main([str(run_dir), "--window", "1"]) == 0
    assert (run_dir / "reward_curve.png").stat().st_size > 0


# --- the report a paper shows: accuracy against the achieved ratio ----------------------------------------------


def _sweep_job(job: Path, *, target: float, seed: int, results: dict[str, tuple[float, float]],
               resource: str = "macs", original: float | None = None, model: str = "amc.models.resnet20",
               speedups: dict[str, dict[str, float]] | None = None) -> Path:
    """A search job with baselines in compare/: ``results`` maps method -> (test acc, achieved ratio).

    ``original`` is the unpruned test accuracy recorded in each summary (newer runs); None leaves it out (older runs).
    ``speedups`` maps method -> measured speedups per "<runtime> b<batch>" (first: the primary), written as
    ``amc.measure.runtime.add_latency_figures`` does; a method without an entry records no latencies (older runs).
    """
    (job / ".hydra").mkdir(parents=True)
    cfg = {"method": "amc", "seed": seed, "protocol": {"resource": resource, "target": target},
           "data": {"_target_": "amc.data.fashion_mnist"}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for method, (acc, ratio) in results.items():
        d = job if method == "amc" else job / "compare" / method
        d.mkdir(parents=True, exist_ok=True)
        summary = {"variant": method, "macs": 50, "params": 10, "test_acc": acc, "reward_val_acc": acc + 0.01,
                   "macs_ratio": ratio if resource == "macs" else 0.9, "params_ratio": ratio if resource == "params" else 0.8}
        if original is not None:
            summary["original"] = {"macs": 100, "params": 20, "reward_val_acc": original, "test_acc": original}
        if speedups and method in speedups:
            ms = {k: 2.0 / v for k, v in speedups[method].items()}  # the original takes 2 ms everywhere
            latencies = {k: {"median_ms": v, "spread": 0.02, "noisy": False} for k, v in ms.items()}
            primary = next(iter(ms))
            summary.update(latencies=latencies, speedups=speedups[method], latency_ms=ms[primary], latency_spread=0.02,
                           latency_noisy=False, speedup=speedups[method][primary], latency_runtime=primary)
            summary.setdefault("original", {"macs": 100, "params": 20, "reward_val_acc": 0.9, "test_acc": 0.9})
            summary["original"]["latencies"] = {k: {"median_ms": 2.0, "spread": 0.02, "noisy": False} for k in ms}
            if method == "amc" and resource == "latency":
                summary.update(measured_speedup=speedups[method][primary], predicted_speedup=1.9, latency_target=target,
                               measured_latency_ratio=1 / speedups[method][primary], latency_budget_met=True)
        (d / "summary.json").write_text(json.dumps(summary))
        (d / "best_plan.json").write_text(json.dumps({"base_model": {"target": model}, "macs_before": 100}))
    return job


def test_report_lines_go_through_the_achieved_ratios_over_budgets(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    achieved = {0.3: (0.27, 0.29), 0.5: (0.46, 0.48), 0.7: (0.66, 0.70)}  # per seed, below or at the target
    for target, ratios in achieved.items():
        for seed, ratio in enumerate(ratios):
            _sweep_job(root / f"{target}_{seed}", target=target, seed=seed, original=0.94,
                       results={"amc": (target + 0.1 * seed, ratio), "uniform": (target, target)})
    figure = figure_data(collect_runs(root))
    (panel,) = figure.panels
    assert not panel.categorical and panel.xlabel == "achieved MACs ratio"
    amc, uniform = panel.series
    assert (amc.method, uniform.method) == ("amc", "uniform")
    assert amc.targets == (0.3, 0.5, 0.7) and amc.n == (2, 2, 2)
    assert amc.x == pytest.approx([0.28, 0.47, 0.68])  # means of the achieved ratios, not the targets
    assert amc.x_std == pytest.approx([0.01414, 0.01414, 0.02828], abs=1e-4)
    assert amc.y == pytest.approx([35.0, 55.0, 75.0]) and amc.y_std == pytest.approx([7.0711] * 3, abs=1e-3)
    assert [x for x, _ in amc.seeds[0]] == [0.27, 0.29] and [y for _, y in amc.seeds[0]] == pytest.approx([30.0, 40.0])
    assert uniform.x == pytest.approx([0.3, 0.5, 0.7]) and uniform.x_std == pytest.approx([0, 0, 0])
    assert figure.unpruned == pytest.approx(94.0)
    assert figure.title == "ResNet-20 (amc.models.resnet20) on fashion_mnist, n = 2 seeds per point"
    _, md, png = write_report(root, tmp_path / "out")
    assert png.stat().st_size > 0
    report = md.read_text()
    assert "unpruned model: test acc 94.00% (mean over the 6 jobs that record it)" in report
    assert "| macs 0.3 | amc | 2 | 35.00 ± 7.07% | 36.00 ± 7.07% | - | 0.280 ± 0.014 |" in report


def test_report_joins_several_roots_and_counts_a_run_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep, committed = tmp_path / "sweep", tmp_path / "committed"
    for seed in range(2):
        _sweep_job(sweep / f"0.3_{seed}", target=0.3, seed=seed, results={"amc": (0.6 + 0.1 * seed, 0.29)})
        _sweep_job(committed / f"seed{seed}", target=0.5, seed=seed, results={"amc": (0.8, 0.49)})
    runs = collect_runs([sweep, committed, committed / "seed0"])  # seed0 reached twice: one run
    assert sorted((r.budget[1], r.seed) for r in runs if r.method == "amc") == [(0.3, 0), (0.3, 1), (0.5, 0), (0.5, 1)]
    with pytest.raises(ValueError, match="say where the report goes"):
        write_report([sweep, committed])
    out = tmp_path / "front"
    assert report_main([str(sweep), str(committed), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| macs 0.3 | amc | 2 | 65.00 ± 7.07% |" in report and "| macs 0.5 | amc | 2 | 80.00 ± 0.00% |" in report
    assert report_main([str(sweep), str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing is not a directory" in capsys.readouterr().err


def test_report_of_a_single_budget_puts_the_methods_on_the_x_axis(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for seed in range(3):
        _sweep_job(root / str(seed), target=0.5, seed=seed,
                   results={"shallow": (0.7, 0.5), "uniform": (0.8, 0.5), "amc": (0.85 + 0.01 * seed, 0.49)})
    _sweep_job(root / "3", target=0.5, seed=3, results={"amc": (0.9, 0.495)})
    figure = figure_data(collect_runs(root))
    (panel,) = figure.panels
    assert panel.categorical
    assert panel.xlabel.startswith("method (macs target 0.5;")
    assert [(s.method, s.n) for s in panel.series] == [("amc", (4,)), ("uniform", (3,)), ("shallow", (3,))]
    assert panel.series[0].x == pytest.approx([0.49125])  # achieved ratio, written under the method's name
    assert len(panel.series[0].seeds[0]) == 4
    assert figure.unpruned is None  # no run records the unpruned model: no line
    assert figure.title.endswith("on fashion_mnist, n = 3-4 seeds per point")
    _, md, png = write_report(root, tmp_path / "out")
    assert png.stat().st_size > 0 and "unpruned model" not in md.read_text()


def test_report_with_macs_and_params_budgets_gives_one_axis_per_resource(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for target in (0.3, 0.5):
        _sweep_job(root / f"macs{target}", target=target, seed=0, results={"amc": (target, target - 0.02)})
    _sweep_job(root / "params0.4", target=0.4, seed=0, resource="params", results={"amc": (0.6, 0.37)})
    figure = figure_data(collect_runs(root))
    macs, params = figure.panels
    assert (macs.resource, macs.categorical, macs.series[0].x) == ("macs", False, pytest.approx((0.28, 0.48)))
    assert (params.resource, params.categorical, params.xlabel) == ("params", True, "method (params target 0.4; "
                                                                    "achieved params ratio under each name)")
    assert params.series[0].x == pytest.approx([0.37])  # the params ratio, not the MACs ratio (0.9)
    assert figure.title.endswith("n = 1 seed per point")
    table, _, png = write_report(root, tmp_path / "out")
    assert png.stat().st_size > 0
    assert "| params 0.4 | amc | 1 | 60.00% | 61.00% | - | 0.900 | 0.370 |" in table


def test_report_rows_of_one_run_show_no_spread(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    _sweep_job(root / "0", target=0.5, seed=0, results={"amc": (0.80, 0.49), "uniform": (0.70, 0.5)})
    _sweep_job(root / "1", target=0.5, seed=1, results={"amc": (0.90, 0.49)})
    table = format_report(aggregate(collect_runs(root)))
    assert "| macs 0.5 | amc | 2 | 85.00 ± 7.07% | 86.00 ± 7.07% | - | 0.490 ± 0.000 |" in table
    assert "| macs 0.5 | uniform | 1 | 70.00% | 71.00% | - | 0.500 |" in table
    assert table.count("±") == 3 and "params ratio" not in table  # only the n = 2 row has a spread


def test_unpruned_accuracy_from_the_summary_or_an_older_runs_comparison_table(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    _sweep_job(root / "new", target=0.5, seed=0, original=0.94, results={"amc": (0.9, 0.5), "uniform": (0.8, 0.5)})
    old = _sweep_job(root / "old", target=0.5, seed=1, results={"amc": (0.9, 0.5), "uniform": (0.8, 0.5)})
    (old / "comparison.md").write_text(  # columns moved around: the header finds "test acc"
        "| variant | test acc | MACs (M) | test acc, BN recal |\n|---|---:|---:|---:|\n"
        "| original | 93.00% | 31.02 | - |\n| amc | 90.00% | 15.5 | 91.00% |\n")
    runs = {(r.job_dir.name, r.method): r.original_test_acc for r in collect_runs(root)}
    assert runs == {("new", "amc"): 0.94, ("new", "uniform"): 0.94, ("old", "amc"): pytest.approx(0.93),
                    ("old", "uniform"): pytest.approx(0.93)}  # a baseline reads its job's comparison.md
    assert unpruned_test_acc(collect_runs(root)) == (pytest.approx(0.935), 2)  # one value per job, not per method
    assert figure_data(collect_runs(root)).unpruned == pytest.approx(93.5)

    no_row = tmp_path / "no_row.md"
    no_row.write_text("| variant | test acc |\n|---|---:|\n| amc | 90.00% |\n")
    assert original_test_acc_from_table(no_row) is None
    no_column = tmp_path / "no_column.md"
    no_column.write_text("| variant | test acc, BN recal |\n|---|---:|\n| original | 93.00% |\n")
    assert original_test_acc_from_table(no_column) is None


def test_report_title_names_model_dataset_and_n(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from torch import zeros

    root = tmp_path / "multirun"
    job = _sweep_job(root / "0", target=0.5, seed=0, model="amc.models.mobilenet_v2", results={"amc": (0.9, 0.5)})
    assert report_title(collect_runs(root)) == ("MobileNet-V2 (amc.models.mobilenet_v2) on fashion_mnist, "
                                                "n = 1 seed per point")
    # without a plan nor a data config: both names come from the checkpoint's header
    ckpt = tmp_path / "model.safetensors"
    save_file({"w": zeros(1)}, str(ckpt), metadata={"model_spec": json.dumps({"target": "amc.models.resnet56"}),
                                                    "extra": json.dumps({"dataset": "cifar10"})})
    (job / "best_plan.json").unlink()
    cfg = {"method": "amc", "seed": 0, "checkpoint": str(ckpt), "protocol": {"resource": "macs", "target": 0.5}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert report_title(collect_runs(root)).startswith("ResNet-56 (amc.models.resnet56) on cifar10, n = 1 seed")
    cfg["checkpoint"] = str(tmp_path / "missing.safetensors")
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert report_title(collect_runs(root)) == "unknown model on unknown data, n = 1 seed per point"


@pytest.mark.parametrize(("target", "label"), [("amc.models.resnet20", "ResNet-20 (amc.models.resnet20)"),
                                               ("mobilenet_v2", "MobileNet-V2 (mobilenet_v2)"),
                                               ("amc.models.vgg16", "VGG-16 (amc.models.vgg16)"),
                                               ("mypkg.nets.TinyNet", "mypkg.nets.TinyNet")])
def test_model_label(target: str, label: str) -> None:
    assert model_label(target) == label


# --- measured latency: speedup columns and the latency x axis ----------------------------------------------------


def _speedups(primary: float, scale: float = 1.0) -> dict[str, float]:
    """Measured speedups per runtime and batch, onnxruntime b1 first (the primary)."""
    return {"onnxruntime b1": primary, "onnxruntime b64": scale * primary + 0.5, "torch b1": scale * primary - 0.25}


def _latency_sweep(root: Path) -> Path:
    """Latency-protocol jobs, targets 0.5 and 0.7, seeds 0 and 1, amc and uniform with measured speedups."""
    for target in (0.5, 0.7):
        for seed in range(2):
            amc_speedup = 1 / (target - 0.05 * (seed + 1))  # latency ratios target - 0.05, target - 0.1
            _sweep_job(root / f"{target}_{seed}", target=target, seed=seed, resource="latency", original=0.9,
                       results={"amc": (0.8 + 0.02 * seed, 0.9), "uniform": (0.7, 0.9)},
                       speedups={"amc": _speedups(amc_speedup), "uniform": _speedups(1 / target, 1.0 + 0.1 * seed)})
    return root


def test_report_of_latency_runs_has_speedup_and_latency_ratio_columns(tmp_path: Path) -> None:
    runs = collect_runs(_latency_sweep(tmp_path / "multirun"))
    amc = next(r for r in runs if r.method == "amc" and r.budget == ("latency", 0.5) and r.seed == 1)
    assert amc.latency_runtime == "onnxruntime b1" and amc.latency_ratio == pytest.approx(0.4)
    assert amc.speedups == pytest.approx({"onnxruntime b1": 2.5, "onnxruntime b64": 3.0, "torch b1": 2.25})
    rows = aggregate(runs)
    row = next(r for r in rows if r["method"] == "amc" and r["target"] == 0.5)
    assert row["latency_ratio"] == pytest.approx((0.425, 0.0353553), abs=1e-6)
    assert row["speedups"]["onnxruntime b1"] == pytest.approx(((1 / 0.45 + 2.5) / 2, 0.19642), abs=1e-4)
    table = format_report(rows)
    head, rule = table.splitlines()[:2]
    assert head == ("| budget | method | n | test acc | reward-val acc | test acc, BN recal | MACs ratio | "
                    "speedup onnxruntime b1 | speedup onnxruntime b64 | speedup torch b1 | latency ratio |")
    assert rule == "|---|---|---:|" + "---:|" * 8
    # amc at 0.5: speedups 2.222 and 2.5 (b1), +0.5 (b64), -0.25 (torch); latency ratios 0.45 and 0.4
    assert ("| latency 0.5 | amc | 2 | 81.00 ± 1.41% | 82.00 ± 1.41% | - | 0.900 ± 0.000 | 2.36 ± 0.20x | "
            "2.86 ± 0.20x | 2.11 ± 0.20x | 0.425 ± 0.035 |") in table
    # uniform at 0.7: b1 1.429 both seeds; b64 scaled by 1.0 and 1.1 -> 1.929, 2.071; latency ratio exactly 0.7
    assert ("| latency 0.7 | uniform | 2 | 70.00 ± 0.00% | 71.00 ± 0.00% | - | 0.900 ± 0.000 | 1.43 ± 0.00x | "
            "2.00 ± 0.10x | 1.25 ± 0.10x | 0.700 ± 0.000 |") in table
    assert "latency ratio: measured latency / the unpruned model's, in onnxruntime b1" in table
    _, md, _ = write_report(tmp_path / "multirun", tmp_path / "out", x="macs")
    assert "| latency 0.7 | uniform | 2 |" in md.read_text() and "speedup torch b1" in md.read_text()


def test_clean_re_timed_speedups_replace_a_runs_own(tmp_path: Path) -> None:
    root = _latency_sweep(tmp_path / "multirun")
    clean, noisy = {"noisy": False}, {"noisy": True}
    (root / "0.5_1" / "latency_remeasured.json").write_text(json.dumps({
        "speedups": {"original": {"onnxruntime b1": 1.0}, "amc": {"onnxruntime b1": 2.0, "onnxruntime b64": 9.0},
                     "uniform": {"onnxruntime b1": 1.8}},
        "stats": {"original": {"onnxruntime b1": clean, "onnxruntime b64": clean},
                  "amc": {"onnxruntime b1": clean, "onnxruntime b64": noisy}, "uniform": {"onnxruntime b1": clean}}}))
    runs = collect_runs(root)
    pick = lambda m, t, s: next(r for r in runs if r.method == m and r.budget == ("latency", t) and r.seed == s)  # noqa: E731
    amc, uniform = pick("amc", 0.5, 1), pick("uniform", 0.5, 1)
    assert amc.latency_ratio == pytest.approx(0.5) and amc.speedups["onnxruntime b64"] == pytest.approx(3.0)  # own
    assert uniform.latency_ratio == pytest.approx(1 / 1.8) and pick("amc", 0.5, 0).latency_ratio == pytest.approx(0.45)


def test_latency_x_axis_is_the_default_for_latency_runs(tmp_path: Path) -> None:
    root = _latency_sweep(tmp_path / "multirun")
    runs = collect_runs(root)
    assert default_x(runs) == "latency"
    figure = figure_data(runs, "latency")
    (panel,) = figure.panels
    assert panel.xlabel == "measured latency / original (onnxruntime b1)" and not panel.categorical
    assert panel.unpruned_x == 1.0 and figure.unpruned == pytest.approx(90.0)
    amc, uniform = panel.series
    assert amc.targets == (0.5, 0.7)
    assert amc.x == pytest.approx([0.425, 0.625]) and amc.x_std == pytest.approx([0.0353553] * 2, abs=1e-6)
    assert amc.y == pytest.approx([81.0, 81.0]) and amc.y_std == pytest.approx([1.41421] * 2, abs=1e-4)
    assert [x for x, _ in amc.seeds[1]] == pytest.approx([0.65, 0.6])
    assert uniform.x == pytest.approx([0.5, 0.7])
    assert figure_data(runs).panels[0].series[0].x == pytest.approx([0.9, 0.9])  # macs: the achieved MACs ratio
    assert figure_data(runs).panels[0].unpruned_x is None
    out = tmp_path / "out"
    assert report_main([str(root), "--out", str(out), "--x", "latency"]) == 0
    assert (out / "report.png").stat().st_size > 0
    (out / "report.png").unlink()
    assert report_main([str(root), "--out", str(out)]) == 0  # the default: latency
    assert (out / "report.png").stat().st_size > 0


def test_old_runs_without_latencies_report_as_before_on_macs(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for seed in range(2):
        _sweep_job(root / str(seed), target=0.5, seed=seed, results={"amc": (0.8 + 0.1 * seed, 0.49)})
    old = _sweep_job(root / "old_latency", target=0.5, seed=2, resource="latency", results={"amc": (0.8, 0.9)})
    summary = json.loads((old / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({**summary, "latency_ms": 1.7}))  # an old run: latency_ms only
    runs = collect_runs(root)
    assert [(r.speedups, r.latency_ratio, r.latency_runtime) for r in runs] == [(None, None, None)] * 3
    assert default_x(runs) == "macs"  # a latency budget, but no measured latency ratio
    table, md, png = write_report(root, tmp_path / "out")
    assert table.splitlines()[0] == "| budget | method | n | test acc | reward-val acc | test acc, BN recal | MACs ratio |"
    assert "| macs 0.5 | amc | 2 | 85.00 ± 7.07% | 86.00 ± 7.07% | - | 0.490 ± 0.000 |" in table
    assert "| latency 0.5 | amc | 1 | 80.00% | 81.00% | - | 0.900 |" in table
    assert "speedup" not in md.read_text() and png.stat().st_size > 0
    # a macs run that measured latencies too, next to latency runs: every run has a latency ratio -> latency
    _latency_sweep(tmp_path / "mixed")
    _sweep_job(tmp_path / "mixed" / "macs", target=0.5, seed=0, results={"amc": (0.8, 0.49)},
               speedups={"amc": _speedups(2.0)})
    assert default_x(collect_runs(tmp_path / "mixed")) == "latency"


def test_latency_x_axis_with_a_run_lacking_latencies_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _latency_sweep(tmp_path / "multirun")
    old = _sweep_job(root / "old", target=0.5, seed=5, resource="latency", results={"amc": (0.8, 0.9)})
    assert default_x(collect_runs(root)) == "macs"
    out = tmp_path / "out"
    assert report_main([str(root), "--out", str(out), "--x", "latency"]) == 2
    err = capsys.readouterr().err
    assert f"none in {old} " in err and "--x macs" in err
    assert not (out / "report.md").exists() and not (out / "report.png").exists()  # nothing written
    with pytest.raises(ValueError, match="measured latency in every run"):
        figure_data(collect_runs(root), "latency")
    assert report_main([str(root), "--out", str(out)]) == 0  # the default falls back to macs
    assert "| latency 0.5 | amc | 3 |" in (out / "report.md").read_text()


def test_cost_columns_give_each_methods_evaluations_and_search_time(tmp_path: Path) -> None:
    root = tmp_path / "multirun"
    for seed, (episodes, seconds) in enumerate([(400, 600.0), (400, 1200.0)]):
        summary = _job(root / str(seed), seed=seed) / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "episodes": episodes,
                                       "search_seconds": seconds}))
    probe = _job(root / "2", seed=0) / "summary.json"  # a sensitivity run: its probes, not its one episode
    (probe.parent / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"method": "sensitivity", "seed": 0, "protocol": {"resource": "macs", "target": 0.5}}))
    probe.write_text(json.dumps({**json.loads(probe.read_text()), "variant": "sensitivity", "episodes": 1,
                                 "evaluations": 98, "search_seconds": 120.0}))
    plain, _, _ = write_report(root, tmp_path / "plain")
    table, _, _ = write_report(root, tmp_path / "cost", cost=True)
    assert "reward evaluations" not in plain
    assert "| macs 0.5 | amc | 2 | " in table and table.split("| macs 0.5 | amc | 2 | ")[1].split("\n")[0].endswith(
        "| 400 ± 0 | 15.0 ± 7.1 |")
    assert table.split("| macs 0.5 | sensitivity | 1 | ")[1].split("\n")[0].endswith("| 98 | 2.0 |")


def test_search_time_of_a_resumed_run_adds_its_earlier_processes(tmp_path: Path) -> None:
    """Summaries written before the fix counted only the resumed process; the episode log holds every process's
    elapsed seconds (each counting from its own start)."""
    run = _job(tmp_path / "multirun" / "0", seed=0)
    summary = run / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "episodes": 4, "search_seconds": 30.0}))
    rows = [(1, 50.0), (2, 100.0), (3, 20.0), (4, 30.0)]  # killed after episode 2, resumed for 3 and 4
    (run / "episodes.jsonl").write_text("".join(json.dumps({"episode": e, "reward": 0.5, "elapsed": t}) + "\n"
                                                for e, t in rows))
    assert collect_runs(tmp_path / "multirun")[0].search_seconds == pytest.approx(130.0)
    (run / "episodes.jsonl").write_text("".join(json.dumps({"episode": e, "reward": 0.5, "elapsed": t}) + "\n"
                                                for e, t in rows[:2]))
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "search_seconds": 140.0}))
    assert collect_runs(tmp_path / "multirun")[0].search_seconds == pytest.approx(140.0)  # a summary that counted all
    (run / "episodes.jsonl").write_text("not json\n" + json.dumps({"episode": 2, "reward": 0.5, "elapsed": 1.0}) + "\n")
    assert collect_runs(tmp_path / "multirun")[0].search_seconds == pytest.approx(140.0)  # a damaged log: the summary's
