"""Least-squares reconstruction, its sampled rows and statistics, and BN recalibration."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from amc.data.synthetic import synthetic
from amc.measure.accuracy import evaluate_accuracy
from amc.models import build_model
from amc.pruning.bn import recalibrate_bn
from amc.pruning.engine import PruningEngine
from amc.pruning.groups import PrunableNetwork
from amc.pruning.reconstruction import LayerStatistics, Reconstructor, _sample_rows
from amc.pruning.selection import select_channels
from amc.pruning.surgery import prune_copy
from amc.training.loop import train_model

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE = 16
CLASSES = 4


@pytest.fixture(scope="module")
def data():
    return synthetic(train_size=1024, test_size=128, reward_val_size=256, in_channels=3, image_size=IMAGE,
                     num_classes=CLASSES, seed=0)


@pytest.fixture(scope="module")
def trained(data):
    """ResNet-20 trained to >= 85% reward-val accuracy on the synthetic blobs (~5 s on one thread)."""
    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=3, num_classes=CLASSES)
    history = train_model(model, data, epochs=6, lr=0.1, batch_size=128, progress=False)
    assert history[-1]["reward_val_acc"] >= 0.85, history
    return model.eval()


@pytest.fixture(scope="module")
def calibrated(trained, data):
    net = PrunableNetwork(trained, (1, 3, IMAGE, IMAGE))
    return net, Reconstructor.calibrate(net, data, num_images=512, positions_per_image=10, batch_size=128)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # make the tests folder importable as ``tests``
    torch.manual_seed(1)
    return build_model("tests.helpers.tiny_net", in_channels=3, num_classes=CLASSES, width=8,
                       allow=["tests.helpers"]).eval()


def _logits(model: nn.Module, data) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x) for x, _ in data.batches("reward_val", 256)])


@pytest.mark.parametrize("keep", [0.4, 0.5])
def test_reconstruction_beats_selection_only(calibrated, data, keep: float) -> None:
    net, reconstructor = calibrated
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    reference = _logits(net.model, data)
    ratios = [keep] * net.num_groups
    selected = PruningEngine(net).prune(ratios)
    rebuilt = PruningEngine(net, reconstructor=reconstructor).prune(ratios)
    assert selected.channels == rebuilt.channels and selected.macs == rebuilt.macs
    assert all(torch.equal(a, b) for a, b in zip(selected.kept, rebuilt.kept))

    acc_selected = evaluate_accuracy(selected.model, data)
    acc_rebuilt = evaluate_accuracy(rebuilt.model, data)
    assert acc_rebuilt > acc_selected + 0.1, (acc_selected, acc_rebuilt)
    mse_selected = F.mse_loss(_logits(selected.model, data), reference)
    mse_rebuilt = F.mse_loss(_logits(rebuilt.model, data), reference)
    assert mse_rebuilt < 0.5 * mse_selected, (mse_selected, mse_rebuilt)
    assert "reconstruct" in rebuilt.seconds and "reconstruct" not in selected.seconds
    for k, v in net.model.state_dict().items():
        assert torch.equal(v, before[k]), f"the original model changed at {k}"


def test_reconstruct_with_all_channels_kept_changes_nothing(calibrated) -> None:
    net, reconstructor = calibrated
    kept = [torch.arange(g.channels) for g in net.groups]
    pruned = prune_copy(net, kept)
    assert reconstructor.reconstruct(pruned, net, kept) == []
    original = net.model.state_dict()
    for k, v in pruned.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_only_layers_with_pruned_inputs_are_refit(calibrated) -> None:
    net, reconstructor = calibrated
    counts = [g.channels for g in net.groups]
    target = next(g for g in net.groups if g.root == "layers.4.conv1")
    counts[target.index] = target.channels // 2
    kept = select_channels(net, counts)
    pruned = prune_copy(net, kept)
    reference = {k: v.clone() for k, v in pruned.state_dict().items()}
    assert reconstructor.reconstruct(pruned, net, kept) == ["layers.4.conv2"]
    for k, v in pruned.state_dict().items():
        assert torch.equal(v, reference[k]) == (k != "layers.4.conv2.weight"), k


def test_calibration_statistics_and_memory(calibrated, data) -> None:
    net, reconstructor = calibrated
    consumers = {c for g in net.groups for c in g.consumers}
    assert set(reconstructor.stats) == consumers  # resnet20 has no grouped convs
    expected = 0
    for name, s in reconstructor.stats.items():
        module = net.modules[name]
        if isinstance(module, nn.Conv2d):
            d, out, area = module.in_channels * module.kernel_size[0] * module.kernel_size[1], module.out_channels, \
                module.kernel_size[0] * module.kernel_size[1]
            out_hw = net.costs[name].out_hw
            rows = 512 * min(10, out_hw[0] * out_hw[1])
        else:
            d, out, area, rows = module.in_features, module.out_features, 1, 512
        assert s.xtx.shape == (d, d) and s.xty.shape == (d, out) and s.kernel_area == area, name
        assert s.xtx.dtype == s.xty.dtype == torch.float64
        assert s.rows == rows, name
        assert torch.allclose(s.xtx, s.xtx.T)
        assert (s.xtx.diagonal() >= 0).all()
        expected += 8 * (d * d + d * out)
    assert reconstructor.nbytes == expected
    assert reconstructor.calibration_seconds > 0
    with pytest.raises(ValueError, match="num_images"):
        Reconstructor.calibrate(net, data, num_images=0)


CONVS = {
    "stride2_pad1": dict(kernel_size=3, stride=2, padding=1),
    "dilation2": dict(kernel_size=3, stride=1, padding=2, dilation=2),
    "1x1": dict(kernel_size=1),
    "rect_kernel_stride": dict(kernel_size=(3, 5), stride=(2, 1), padding=(1, 2)),
    "same": dict(kernel_size=3, padding="same", dilation=2),
    "valid_no_bias": dict(kernel_size=3, padding="valid", bias=False),
}


@pytest.mark.parametrize("kwargs", CONVS.values(), ids=CONVS.keys())
def test_sample_rows_reproduce_conv_outputs(kwargs: dict) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, **kwargs).double()
    x = torch.randn(4, 3, 9, 11, dtype=torch.float64)
    y = conv(x)
    positions = 7
    xs, ys = _sample_rows(conv, x, y, positions, torch.Generator().manual_seed(0))
    count = min(positions, y.shape[-2] * y.shape[-1])
    assert xs.shape == (4 * count, 3 * conv.kernel_size[0] * conv.kernel_size[1]) and ys.shape == (4 * count, 5)
    assert torch.allclose(xs @ conv.weight.flatten(1).T, ys, atol=1e-10)
    # the bias was removed and the rows are real output positions of the right images
    bias = conv.bias if conv.bias is not None else torch.zeros(5, dtype=torch.float64)
    flat = y.flatten(2).transpose(1, 2)  # (N, H*W, C)
    for i in range(4):
        for row in (ys[i * count : (i + 1) * count] + bias):
            assert (flat[i] - row).abs().amax(1).min() < 1e-10


def test_sample_rows_more_positions_than_pixels() -> None:
    conv = nn.Conv2d(2, 3, 3, stride=2).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    y = conv(x)  # 2x2 output positions
    xs, ys = _sample_rows(conv, x, y, 10, torch.Generator().manual_seed(0))
    assert xs.shape == (2 * 4, 18)
    assert torch.allclose(xs @ conv.weight.flatten(1).T + conv.bias, ys + conv.bias, atol=1e-10)


def test_sample_rows_linear() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(6, 4).double()
    x = torch.randn(10, 6, dtype=torch.float64)
    xs, ys = _sample_rows(linear, x, linear(x), 3, torch.Generator().manual_seed(0))
    assert torch.equal(xs, x)  # every sample is one row
    assert torch.allclose(xs @ linear.weight.T, ys, atol=1e-12)


def _rows_like_calibration(model: nn.Module, layer: str, data, *, num_images: int, positions: int, batch_size: int,
                           seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay calibration for one conv layer (the only one drawing random positions) and keep the raw rows."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []

    def collect(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x, y = _sample_rows(module, inputs[0], output, positions, gen)
        xs.append(x)
        ys.append(y)

    hook = dict(model.named_modules())[layer].register_forward_hook(collect)
    with torch.no_grad():
        for x, _ in data.batches("train", batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                                 limit=num_images):
            model(x)
    hook.remove()
    return torch.cat(xs).double(), torch.cat(ys).double()


def test_reconstruct_kxk_is_the_least_squares_optimum(tiny: nn.Module, data) -> None:
    net = PrunableNetwork(tiny, (1, 3, IMAGE, IMAGE))
    assert [g.root for g in net.groups] == ["0", "3"] and net.groups[0].consumers == ("3",)
    settings = dict(num_images=300, positions=6, batch_size=64, seed=3)
    reconstructor = Reconstructor.calibrate(net, data, num_images=300, positions_per_image=6, batch_size=64, seed=3,
                                            ridge=1e-9)
    x, y = _rows_like_calibration(tiny, "3", data, **settings)
    s = reconstructor.stats["3"]
    assert s.rows == len(x) == 300 * 6
    assert torch.allclose(s.xtx, x.T @ x, rtol=1e-5, atol=1e-6)
    assert torch.allclose(s.xty, x.T @ y, rtol=1e-5, atol=1e-6)

    kept = select_channels(net, [4, 6])  # conv '3' (3x3, stride 2) loses half its inputs and two outputs
    pruned = prune_copy(net, kept)
    selected = dict(pruned.named_modules())["3"].weight.detach().clone()
    assert "3" in reconstructor.reconstruct(pruned, net, kept)
    refit = dict(pruned.named_modules())["3"].weight.detach().double()

    cols = (kept[0].view(-1, 1) * 9 + torch.arange(9)).flatten()
    xk, yk = x[:, cols], y[:, kept[1]]
    optimum = torch.linalg.lstsq(xk, yk).solution.T  # (out, kept_in * 9)
    assert torch.allclose(refit.flatten(1), optimum, rtol=1e-3, atol=1e-4)
    residual = lambda w: (xk @ w.flatten(1).double().T - yk).pow(2).sum().item()  # noqa: E731
    assert residual(refit) <= residual(optimum) * (1 + 1e-6)
    assert residual(refit) < 0.9 * residual(selected)


def test_reconstruct_solves_the_ridge_system() -> None:
    """Statistics given directly: the refit weight is (A + ridge * mean(diag A) I)^-1 B on the kept rows."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 1), nn.Conv2d(6, 3, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 2)).eval()
    net = PrunableNetwork(model, (1, 2, 4, 4))
    x = torch.randn(200, 6 * 9, dtype=torch.float64)
    y = torch.randn(200, 3, dtype=torch.float64)
    ridge = 0.1
    reconstructor = Reconstructor({"1": LayerStatistics(x.T @ x, x.T @ y, 9, 200)}, ridge=ridge)
    kept = [torch.tensor([0, 2, 5]), torch.arange(3)]
    pruned = prune_copy(net, kept)
    assert reconstructor.reconstruct(pruned, net, kept) == ["1"]
    cols = (kept[0].view(-1, 1) * 9 + torch.arange(9)).flatten()
    a, b = (x.T @ x)[cols][:, cols], (x.T @ y)[cols]
    expected = torch.linalg.solve(a + ridge * a.diagonal().mean() * torch.eye(len(cols), dtype=a.dtype), b).T
    assert torch.allclose(pruned[1].weight.double().flatten(1), expected, atol=1e-5)


def test_recalibrate_bn_recomputes_running_stats(data) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3), nn.Flatten())
    bn = model[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(7.0)
    model.train()
    returned = recalibrate_bn(model, data, num_batches=3, batch_size=50, seed=2)
    assert returned is model and not model.training
    assert bn.momentum == 0.3
    assert int(bn.num_batches_tracked) == 3

    means, variances = [], []
    with torch.no_grad():
        for x, _ in data.batches("train", 50, shuffle=True, generator=torch.Generator().manual_seed(2), limit=150):
            h = model[0](x)
            means.append(h.mean((0, 2, 3)))
            variances.append(h.var((0, 2, 3), unbiased=True))
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack(variances).mean(0), atol=1e-5)


def test_recalibrate_bn_on_a_pruned_resnet(calibrated, data) -> None:
    net, _ = calibrated
    pruned = PruningEngine(net).prune([0.5] * net.num_groups).model
    stale = copy.deepcopy(pruned)
    recalibrate_bn(pruned, data, num_batches=2, batch_size=100)
    bns = [(n, m) for n, m in pruned.named_modules() if isinstance(m, nn.BatchNorm2d)]
    old = dict(stale.named_modules())
    assert bns and all(m.momentum == old[n].momentum == 0.1 for n, m in bns)
    changed = [n for n, m in bns if not torch.allclose(m.running_mean, old[n].running_mean)]
    assert len(changed) == len(bns)
    for n, m in bns:  # weights are untouched, only statistics move
        assert torch.equal(m.weight, old[n].weight) and torch.equal(m.bias, old[n].bias)
    no_bn = nn.Sequential(nn.Linear(2, 2))
    assert recalibrate_bn(no_bn, data) is no_bn  # nothing to do


def test_recalibrate_bn_channels_last_gives_the_same_statistics(calibrated, data) -> None:
    net, _ = calibrated
    pruned = PruningEngine(net).prune([0.5] * net.num_groups).model
    fast = copy.deepcopy(pruned)
    recalibrate_bn(pruned, data, num_batches=2, batch_size=100)
    recalibrate_bn(fast, data, num_batches=2, batch_size=100, channels_last=True)
    slow_bns = dict(pruned.named_modules())
    for name, m in fast.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.allclose(m.running_mean, slow_bns[name].running_mean, atol=1e-4)
            assert torch.allclose(m.running_var, slow_bns[name].running_var, rtol=1e-4, atol=1e-4)
    # handed back in the default memory format, as it came
    assert all(p.is_contiguous() for p in fast.parameters())


def test_engine_recalibrates_channels_last_when_asked(calibrated, data, monkeypatch) -> None:
    import amc.pruning.engine as engine_module
    net, _ = calibrated
    formats = []

    def recording(model, *args, **kwargs):
        formats.append(kwargs.get("channels_last"))
        return recalibrate_bn(model, *args, **kwargs)

    monkeypatch.setattr(engine_module, "recalibrate_bn", recording)
    plain = PruningEngine(net, bn_data=data, bn_batches=2).prune([0.5] * net.num_groups).model
    fast = PruningEngine(net, bn_data=data, bn_batches=2, bn_channels_last=True).prune([0.5] * net.num_groups).model
    assert formats == [False, True]
    fast_bns = dict(fast.named_modules())
    bns = [(n, m) for n, m in plain.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(torch.allclose(m.running_var, fast_bns[n].running_var, rtol=1e-4, atol=1e-4) for n, m in bns)
