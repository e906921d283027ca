"""Safetensors checkpoints: round trip, clear errors, and no unpickling ever."""

from __future__ import annotations

import os
import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

from amc.checkpoint import CheckpointError, file_checksum, load_checkpoint, read_checkpoint, save_checkpoint
from amc.models import build_model

SPEC = {"target": "resnet20", "in_channels": 1, "num_classes": 7, "kwargs": {}}



@pytest.fixture
def trained() -> nn.Module:
    """A resnet20 whose weights and BN statistics differ from a fresh build."""
    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=1, num_classes=7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        model.train()(torch.randn(4, 1, 12, 12))  # moves BN running stats
    return model.eval()


@pytest.fixture
def saved(trained: nn.Module, tmp_path: Path) -> Path:
    return save_checkpoint(trained, tmp_path / "sub" / "model.safetensors", model_spec=SPEC, extra={"epoch": 3})


def _escaped(path: Path) -> str:
    return re.escape(str(path))


def test_round_trip_gives_identical_outputs(trained: nn.Module, saved: Path) -> None:
    assert saved.is_file()
    model, spec = load_checkpoint(saved)
    assert spec == SPEC and not model.training
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))
    state, spec, extra = read_checkpoint(saved)
    assert extra == {"epoch": 3} and spec == SPEC
    assert state.keys() == trained.state_dict().keys()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in state.items())
    assert len(file_checksum(saved)) == 64


def test_missing_file_mentions_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=_escaped(missing)):
        load_checkpoint(missing)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path)  # a directory is not a checkpoint


def test_random_bytes_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "random.safetensors"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match=_escaped(bad)):
        load_checkpoint(bad)


@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_truncated_checkpoint_is_rejected(saved: Path, keep: int) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    "spec",
    [
        {"target": "resnet32", "in_channels": 1, "num_classes": 7},  # more layers than saved
        {"target": "resnet20", "in_channels": 3, "num_classes": 7},  # first conv shape differs
        {"target": "resnet20", "in_channels": 1, "num_classes": 10},  # classifier shape differs
    ],
)
def test_weights_that_do_not_fit_the_spec(trained: nn.Module, tmp_path: Path, spec: dict[str, object]) -> None:
    path = save_checkpoint(trained, tmp_path / "m.safetensors", model_spec=spec)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "spec", [{"in_channels": 1, "num_classes": 7}, {"target": "no.such.model", "in_channels": 1, "num_classes": 7}]
)
def test_unusable_spec_is_a_checkpoint_error(trained: nn.Module, tmp_path: Path, spec: dict[str, object]) -> None:
    path = save_checkpoint(trained, tmp_path / "m.safetensors", model_spec=spec)
    with pytest.raises(CheckpointError, match=_escaped(path)):
        load_checkpoint(path)


def test_safetensors_file_without_amc_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not an amc safetensors checkpoint"):
        read_checkpoint(path)


class _Exploit:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _forbid(*args: object, **kwargs: object) -> None:
    raise AssertionError("checkpoint loading must never unpickle")


def test_torch_save_pickles_are_never_unpickled(
    trained: nn.Module, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, _forbid)
    monkeypatch.setattr(torch, "load", _forbid)
    plain = tmp_path / "model.pt"
    torch.save(trained.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not an amc safetensors checkpoint"):
        load_checkpoint(plain)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    torch.save({"state_dict": trained.state_dict(), "payload": _Exploit(marker)}, evil)
    with pytest.raises(CheckpointError, match=_escaped(evil)):
        load_checkpoint(evil)
    assert not marker.exists()
    load_checkpoint(saved)  # a real checkpoint still loads with pickle disabled
