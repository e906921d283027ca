"""ONNX export of a pruned model: parity with PyTorch, pruned shapes in the graph, report files, bad input."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from amc.artifacts.checkpoint import load_checkpoint, save_checkpoint
from amc.artifacts.onnx_export import OUTPUT_FILES
from amc.artifacts.plan import load_pruned, make_plan, model_checksum, save_pruned
from amc.data.fashion_mnist import DEFAULT_ROOT as FASHION_MNIST_ROOT
from amc.export import main
from amc.models import build_model
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

INPUT = (1, 3, 16, 16)
SPEC = {"target": "resnet20", "in_channels": 3, "num_classes": 4, "kwargs": {}}
FAST = ["--num-images", "96", "--warmup", "0", "--repeats", "3", "--threads", "1"]


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-20 base checkpoint (trained on 'synthetic') pruned to different keep ratios per group, saved."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    base = build_model("resnet20", in_channels=3, num_classes=4).eval()
    with torch.no_grad():  # non-trivial BN statistics: the exporter folds them into the convolutions
        for m in base.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    checkpoint = save_checkpoint(base, root / "base.safetensors", model_spec=SPEC, extra={"dataset": "synthetic"})
    net = PrunableNetwork(base, INPUT)
    result = PruningEngine(net).prune(torch.linspace(0.3, 0.8, net.num_groups).tolist())
    plan = make_plan(net, result.kept, base_model={**SPEC, "checksum": model_checksum(base),
                                                   "checkpoint": str(checkpoint)})
    save_pruned(result.model, plan, root / "pruned")
    return root / "pruned"


def test_export_matches_pytorch_and_carries_the_pruned_shapes(pruned_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "onnx"
    assert main([str(pruned_dir), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert sorted(p.name for p in pruned_dir.iterdir()) == ["plan.json", "pruned.safetensors"]  # nothing added there

    report = json.loads((out / "export_report.json").read_text())
    parity = report["parity"]
    assert parity["num_images"] == 96 and parity["max_abs_logit_diff"] < 1e-4 and parity["ok"]
    assert parity["top1_agreement"] == 1.0 and parity["original"]["top1_agreement"] == 1.0
    assert report["dataset"] == "synthetic"  # taken from the base checkpoint
    lat = report["latency"]
    for name in ("original", "pruned"):
        for runtime in ("torch", "onnxruntime"):
            for size in (1, 64):
                stats = lat[name][runtime][f"batch_{size}"]
                assert stats["median_ms"] > 0 and stats["repeats"] == 3
    md = (out / "export_report.md").read_text()
    assert "top-1 agreement" in md and "speedup pruned / original" in md
    assert "max abs logit diff" in capsys.readouterr().out

    # the graph has the pruned channel counts (BN folded into the conv weights keeps their shapes)
    proto = onnx.load(str(out / "model.onnx"))
    pruned = load_pruned(pruned_dir)
    conv_shapes = Counter(tuple(m.weight.shape) for m in pruned.modules() if isinstance(m, nn.Conv2d))
    init_shapes = Counter(tuple(t.dims) for t in proto.graph.initializer if len(t.dims) == 4)
    assert init_shapes == conv_shapes
    assert any(s[0] < 16 for s in conv_shapes)  # really pruned: ResNet-20's narrowest layers have 16 channels

    # dynamic batch axis, and the ONNX model answers like PyTorch at a batch size not seen at export
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert inp.shape == ["batch", 3, 16, 16] and outp.shape == ["batch", 4]
    x = torch.randn(5, *INPUT[1:])
    with torch.no_grad():
        expected = pruned(x).numpy()
    assert abs(session.run(None, {inp.name: x.numpy()})[0] - expected).max() < 1e-4
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["amc.input_mean"]) == [0.5, 0.5, 0.5] and props["amc.model"] == "resnet20"


def test_existing_model_onnx_is_not_overwritten(pruned_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"users file")
    assert main([str(pruned_dir), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(out / "model.onnx") in err and "--out" in err
    assert (out / "model.onnx").read_bytes() == b"users file"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]


def test_dir_without_plan_is_rejected(pruned_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "no_plan"
    bad.mkdir()
    (bad / "pruned.safetensors").write_bytes((pruned_dir / "pruned.safetensors").read_bytes())
    assert main([str(bad), *FAST]) == 2
    err = capsys.readouterr().err
    assert "plan.json" in err and str(bad) in err
    assert main([str(tmp_path / "missing"), *FAST]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert sorted(p.name for p in bad.iterdir()) == ["pruned.safetensors"]


def test_missing_base_checkpoint_or_dataset_is_a_clear_error(pruned_dir: Path, tmp_path: Path, capsys) -> None:
    plan = json.loads((pruned_dir / "plan.json").read_text())
    plan["base_model"]["checkpoint"] = str(tmp_path / "gone.safetensors")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "plan.json").write_text(json.dumps(plan))
    (moved / "pruned.safetensors").write_bytes((pruned_dir / "pruned.safetensors").read_bytes())
    assert main([str(moved), *FAST]) == 2
    err = capsys.readouterr().err
    assert "gone.safetensors" in err and "--base-checkpoint" in err

    # the same base weights in a checkpoint that records no dataset: --data is needed
    base, _ = load_checkpoint(pruned_dir.parent / "base.safetensors")
    anonymous = save_checkpoint(base, tmp_path / "anonymous.safetensors", model_spec=SPEC)
    assert main([str(pruned_dir), "--base-checkpoint", str(anonymous), "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "records no dataset" in err and "--data" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT).is_dir(), reason="Fashion-MNIST not installed (make data)")
def test_data_that_does_not_fit_the_model_is_rejected(pruned_dir: Path, tmp_path: Path, capsys) -> None:
    # Fashion-MNIST images (1x28x28, 10 classes) do not fit a 3x16x16, 4-class model
    assert main([str(pruned_dir), "--data", "fashion_mnist", "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "1x28x28" in err and "3x16x16" in err and "--data" in err
    assert not (tmp_path / "o").exists()


def test_missing_onnxruntime_says_how_to_install(pruned_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    assert main([str(pruned_dir), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "pip install -e '.[export]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
