"""The model zoo and building models by name or import path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from amc.models import ZOO, build_model, resolve_target
from amc.models.resnet import resnet20

REPO_ROOT = Path(__file__).resolve().parents[1]



@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_build_and_run(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=in_channels, num_classes=7).eval()
    with torch.no_grad():
        for size in (28, 32):
            out = model(torch.randn(2, in_channels, size, size))
            assert out.shape == (2, 7), (name, size)
            assert torch.isfinite(out).all()


def test_build_model_passes_kwargs() -> None:
    narrow = build_model("mobilenet_v2", in_channels=3, num_classes=10, width_mult=0.5)
    full = build_model("mobilenet_v2", in_channels=3, num_classes=10)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in full.parameters())


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56", "plain20"])
def test_resnet_widths_scale_every_stage(name: str) -> None:
    model = build_model(name, in_channels=1, num_classes=10, width=8)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(convs)) == [8, 16, 32] and model.fc.in_features == 32


def test_vgg_width_mult_scales_every_conv_and_is_checked() -> None:
    half = build_model("vgg16", in_channels=1, num_classes=10, width_mult=0.5)
    full = build_model("vgg16", in_channels=1, num_classes=10)
    widths = lambda m: [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert widths(half) == [w // 2 for w in widths(full)] and half.classifier[0].in_features == 256
    with pytest.raises(ValueError, match="width_mult must be > 0, got 0"):
        build_model("vgg16", in_channels=1, num_classes=10, width_mult=0)


def test_build_model_from_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # make the tests folder importable as ``tests``
    model = build_model("tests.helpers.tiny_net", in_channels=2, num_classes=5, allow=["tests.helpers"])
    assert model(torch.randn(3, 2, 9, 9)).shape == (3, 5)
    assert resolve_target("amc.models.resnet.resnet20") is resnet20
    assert resolve_target("resnet20") is resnet20
    model = build_model("amc.models.resnet.resnet20", in_channels=1, num_classes=4)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 4


@pytest.mark.parametrize("target", ["resnet21", "amc.models.nonexistent.fn", "amc.models.resnet.resnet99"])
def test_unknown_model_raises_value_error_naming_it(target: str) -> None:
    with pytest.raises(ValueError, match=target.replace(".", r"\.")):
        build_model(target, in_channels=3, num_classes=10)


def test_builder_with_wrong_signature_or_result() -> None:
    with pytest.raises(TypeError, match="math.sqrt"):
        build_model("math.sqrt", in_channels=3, num_classes=10, allow=["math"])  # does not take in_channels
    with pytest.raises(TypeError, match="expected an nn.Module"):
        build_model("builtins.dict", in_channels=3, num_classes=10, allow=["builtins"])


def test_torchvision_models_when_available() -> None:
    torchvision = pytest.importorskip("torchvision")
    # torchvision builders take num_classes but not in_channels, so they are built directly
    model = torchvision.models.resnet18(num_classes=7)
    assert isinstance(model, nn.Module)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(TypeError, match="in_channels"):
        build_model("torchvision.models.resnet18", in_channels=3, num_classes=7, allow=["torchvision.models"])
