"""The third-party-style model families of tests/families.py: each builds from ``num_classes`` alone and is small."""

from __future__ import annotations

import inspect

import pytest
import torch
from families import FAMILIES  # tests/ is on sys.path under pytest; scripts import it as ``tests.families``


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_builds_runs_and_is_small(name: str) -> None:
    cls = FAMILIES[name]
    # like a downloaded MyNet(num_classes=10); option-A ResNet-20 also takes in_channels (for Fashion-MNIST runs)
    assert list(inspect.signature(cls).parameters)[0] == "num_classes"
    assert set(inspect.signature(cls).parameters) <= {"num_classes", "in_channels"}
    torch.manual_seed(0)
    model = cls().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    assert cls(num_classes=7).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_families_keep_their_characteristic_layers() -> None:
    """The structures that make each family a test of the pruner are really there."""
    convs = {name: [m for m in cls().modules() if isinstance(m, torch.nn.Conv2d)] for name, cls in FAMILIES.items()}
    depthwise = lambda m: m.groups > 1 and m.groups == m.in_channels  # noqa: E731
    for name in ("mobilenet_v1", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2"):
        assert any(depthwise(m) for m in convs[name]), name
    for name in ("resnext", "dpn"):  # grouped, not depthwise
        assert any(1 < m.groups < m.in_channels for m in convs[name]), name
    assert sum(type(m).__name__ == "InceptionModule" for m in FAMILIES["inception"]().modules()) == 3
    assert sum(type(m).__name__ == "Root" for m in FAMILIES["dla_tree"]().modules()) == 4  # trees of levels 1 and 2
    grouped = [m for m in convs["regnetx"] if m.groups > 1]
    assert grouped and all(not depthwise(m) and m.in_channels // m.groups == 8 for m in grouped)
    assert sum(type(m).__name__ == "LambdaLayer" for m in FAMILIES["resnet20_option_a"]().modules()) == 2
    assert sum(type(m).__name__ == "ShuffleUnit" for m in FAMILIES["shufflenet_v2"]().modules()) >= 3
    assert len(convs["resnet20_option_a"]) == 19  # 1 stem + 3 stages x 3 blocks x 2 convs (the linear makes 20)


def test_shufflenet_split_spellings_compute_the_same_function() -> None:
    """``shufflenet_v2_slice`` differs from ``shufflenet_v2`` only in how the split is written."""
    chunked = FAMILIES["shufflenet_v2"]().eval()
    sliced = FAMILIES["shufflenet_v2_slice"]().eval()
    sliced.load_state_dict(chunked.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(chunked(x), sliced(x))
    assert type(sliced.stages[0][1]).__name__ == "ShuffleSliceUnit"
