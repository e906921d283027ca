"""Safetensors checkpoints: round trip, clear errors, and no unpickling ever."""

from __future__ import annotations

import importlib
import os
import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch
from torch import nn

from amc.artifacts.checkpoint import CheckpointError, file_checksum, load_checkpoint, read_checkpoint, save_checkpoint
from amc.models import TargetNotAllowedError, build_model, check_target

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


# --- a checkpoint's metadata never chooses code to run --------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


def _malicious(model: nn.Module, path: Path, marker: Path, in_channels: int = 1, num_classes: int = 7) -> Path:
    """A checkpoint whose recipe calls logging.basicConfig, which would create (or empty) ``marker``."""
    spec = {"target": "logging.basicConfig", "in_channels": in_channels, "num_classes": num_classes,
            "kwargs": {"filename": str(marker), "filemode": "w", "force": True}}
    return save_checkpoint(model, path, model_spec=spec)


def test_checkpoint_naming_any_function_is_refused_before_import(
    trained: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    evil = _malicious(trained, tmp_path / "evil.safetensors", marker)
    monkeypatch.setattr(importlib, "import_module", _forbid_import)  # the refusal comes before any import
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(evil)
    message = str(e.value)
    assert str(evil) in message and "logging.basicConfig" in message
    assert "resnet20" in message and "mobilenet_v2" in message  # the zoo names
    assert "model_allow=[logging]" in message  # how to allow it
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):  # an unrelated allowed prefix does not help
        load_checkpoint(evil, allow=["tests.helpers"])
    assert not marker.exists()


def _forbid_import(name: str, package: str | None = None) -> object:
    raise AssertionError(f"imported {name} for a refused checkpoint")


@pytest.mark.parametrize(
    ("allow", "allowed"),
    [(["tests.helpers"], True), (["tests"], True), (["tests.helpers.tiny_net"], True), ([], False),
     (["tests.help"], False), (["tests.helpers.tiny"], False), (["helpers"], False), (["amc.models"], False)],
)
def test_allowed_import_paths_match_whole_components(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: list[str], allowed: bool
) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # make the tests folder importable as ``tests``
    model = build_model("tests.helpers.tiny_net", in_channels=2, num_classes=3, allow=["tests.helpers"])
    spec = {"target": "tests.helpers.tiny_net", "in_channels": 2, "num_classes": 3, "kwargs": {"width": 4}}
    path = save_checkpoint(model, tmp_path / "tiny.safetensors", model_spec=spec)
    if not allowed:
        with pytest.raises(CheckpointError, match=r"model_allow=\[tests\.helpers\]"):
            load_checkpoint(path, allow=allow)
        return
    loaded, loaded_spec = load_checkpoint(path, allow=allow)
    assert loaded_spec == spec
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_check_target_prefix_rules() -> None:
    for zoo in ("resnet20", "amc.models.resnet20", "amc.models.resnet.resnet20"):  # zoo spellings need no allowance
        check_target(zoo)
    check_target("pkg.models.resnet.make", ["pkg.models"])
    check_target("pkg.models", ["pkg.models"])
    for target, allow in [("pkg.modelsX.f", ["pkg.models"]), ("pkg.f", ["pkg.models"]), ("os.system", []),
                          ("resnet21", ["resnet"]), ("pkg..f", ["pkg"]), ("pkg.models-1.f", ["pkg"]),
                          ("amc.models.resnet.CifarResNet", []), ("amc.models.build_model", [])]:
        with pytest.raises(TargetNotAllowedError, match=re.escape(repr(target))):
            check_target(target, allow)
    with pytest.raises(TypeError, match="list"):
        check_target("pkg.f", "pkg")  # a bare string would allow by accident
    with pytest.raises(ValueError, match="dotted import path"):
        check_target("pkg.f", ["pkg.*"])
    with pytest.raises(TargetNotAllowedError):
        build_model("math.sqrt", in_channels=3, num_classes=10)  # the library default allows the zoo only


@pytest.mark.parametrize(
    "spec",
    [{"target": ["resnet20"], "in_channels": 1, "num_classes": 7},
     {"target": "resnet20", "in_channels": "1", "num_classes": 7},
     {"target": "resnet20", "in_channels": 1, "num_classes": 0},
     {"target": "resnet20", "in_channels": 1, "num_classes": 7, "kwargs": {"allow": ["logging"]}},
     {"target": "resnet20", "in_channels": 1, "num_classes": 7, "kwargs": [1]}],
    ids=["target-list", "channels-str", "zero-classes", "kwargs-allow", "kwargs-list"],
)
def test_malformed_model_spec_is_a_checkpoint_error(trained: nn.Module, tmp_path: Path, spec: dict) -> None:
    path = save_checkpoint(trained, tmp_path / "m.safetensors", model_spec=spec)
    with pytest.raises(CheckpointError, match=_escaped(path)):
        load_checkpoint(path, allow=["logging"])


def _prune_cfg(checkpoint: Path, *overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="amc.conf", version_base="1.3"):
        return compose(config_name="prune", overrides=[
            "data=synthetic", f"checkpoint={checkpoint}", "device=cpu", "calibration.num_images=16",
            "calibration.batch_size=16", "bn_recalibration.num_batches=1", "bn_recalibration.batch_size=32",
            "latency.repeats=1", "latency.warmup=1", "target_macs_ratio=0.6", "round_to=1", *overrides,
        ])


def test_prune_refuses_a_malicious_checkpoint_and_runs_an_allowed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amc.prune import run

    monkeypatch.syspath_prepend(str(REPO_ROOT))
    marker = tmp_path / "pwned"
    model = build_model("tests.helpers.tiny_net", in_channels=3, num_classes=4, allow=["tests"])  # synthetic data
    evil = _malicious(model, tmp_path / "evil.safetensors", marker, in_channels=3, num_classes=4)
    with pytest.raises(CheckpointError, match=r"logging\.basicConfig.*model_allow=\[logging\]"):
        run(_prune_cfg(evil), tmp_path / "out")
    assert not marker.exists()

    spec = {"target": "tests.helpers.tiny_net", "in_channels": 3, "num_classes": 4, "kwargs": {}}
    tiny = save_checkpoint(model, tmp_path / "tiny.safetensors", model_spec=spec)
    with pytest.raises(CheckpointError, match=r"model_allow=\[tests\.helpers\]"):
        run(_prune_cfg(tiny), tmp_path / "refused")
    rows = run(_prune_cfg(tiny, "model_allow=[tests.helpers]"), tmp_path / "allowed")
    assert [r["variant"] for r in rows][0] == "original" and len(rows) == 4
    assert all(r["macs"] <= 0.6 * rows[0]["macs"] for r in rows[1:])
    assert not marker.exists()


# --- non-finite weights ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [("conv1.weight", float("nan")), ("layers.3.bn2.running_var", float("inf")),
                                             ("fc.bias", float("-inf"))])
def test_checkpoint_with_non_finite_weights_is_rejected(trained: nn.Module, tmp_path: Path, name: str,
                                                        value: float) -> None:
    with torch.no_grad():
        trained.state_dict()[name].view(-1)[0] = value
    path = save_checkpoint(trained, tmp_path / "bad.safetensors", model_spec=SPEC)
    with pytest.raises(CheckpointError, match=rf"{_escaped(path)}.*{re.escape(repr(name))}.*NaN/Inf"):
        load_checkpoint(path)


def test_checkpoints_trained_from_conf_model_load_without_allowance(trained: nn.Module, tmp_path: Path) -> None:
    spec = {**SPEC, "target": "amc.models.resnet20"}  # what conf/model/resnet20.yaml records in every trained model
    path = save_checkpoint(trained, tmp_path / "m.safetensors", model_spec=spec)
    model, loaded = load_checkpoint(path)
    assert loaded == spec and type(model) is type(trained)
