"""Plans: make -> save -> load / rebuild round trip, checksums, malformed files; the uniform keep ratio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from amc.artifacts.checkpoint import CheckpointError, save_checkpoint
from amc.artifacts.plan import (
    PlanError,
    PruningPlan,
    check_plan,
    load_pruned,
    make_plan,
    model_checksum,
    rebuild_pruned,
    save_pruned,
)
from amc.measure.macs import count_macs_params
from amc.models import build_model
from amc.pruning.groups import PrunableNetwork
from amc.pruning.selection import select_channels
from amc.pruning.surgery import prune_copy
from amc.pruning.uniform import smallest_macs_ratio, uniform_keep_ratio

INPUT = (1, 3, 16, 16)
SPEC = {"target": "resnet20", "in_channels": 3, "num_classes": 4, "kwargs": {}}


def _base(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("resnet20", in_channels=3, num_classes=4)
    with torch.no_grad():  # non-trivial BN statistics, so that buffers matter in the round trip
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path):
    """A base checkpoint, a pruned copy with changed weights (as after reconstruction) and its plan, saved."""
    base = _base()
    checkpoint = save_checkpoint(base, tmp_path / "base.safetensors", model_spec=SPEC)
    net = PrunableNetwork(base, INPUT, exclude=["layers.8.conv1"])
    ratios = torch.linspace(0.2, 0.9, net.num_groups).tolist()
    kept = select_channels(net, net.channel_counts(ratios))
    pruned = prune_copy(net, kept)
    with torch.no_grad():  # stand-in for reconstruction + BN recalibration: the saved weights are not the base's
        for p in pruned.parameters():
            p.add_(0.01 * torch.randn_like(p))
        pruned.layers[0].bn1.running_mean.add_(1.0)
    info = {**SPEC, "checksum": model_checksum(base), "checkpoint": str(checkpoint)}
    plan = make_plan(net, kept, base_model=info, exclude=["layers.8.conv1"], accuracy={"reward_val_acc": 0.5},
                     settings={"method": "test"})
    directory = tmp_path / "pruned"
    save_pruned(pruned, plan, directory)
    return base, net, kept, pruned, plan, directory


def test_round_trip_gives_identical_outputs(saved) -> None:
    base, net, kept, pruned, plan, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["plan.json", "pruned.safetensors"]
    x = torch.randn(5, *INPUT[1:])
    with torch.no_grad():
        expected = pruned(x)
        loaded = load_pruned(directory)
        assert torch.equal(loaded(x), expected)
        rebuilt = rebuild_pruned(base, PruningPlan.load(directory / "plan.json"), directory / "pruned.safetensors")
        assert torch.equal(rebuilt(x), expected)
        # without the weights the rebuild has the plan's shapes but the base model's (unchanged) weights
        bare = rebuild_pruned(base, plan)
        assert not torch.allclose(bare(x), expected)
        assert torch.equal(bare(x), prune_copy(net, kept)(x))
    for k, v in pruned.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.layers[8].conv1.out_channels == 64  # excluded layer kept all its channels


def test_plan_contents_match_the_rebuilt_model(saved) -> None:
    base, net, kept, _, plan, directory = saved
    loaded_plan = PruningPlan.load(directory / "plan.json")
    assert loaded_plan == plan
    assert json.loads((directory / "plan.json").read_text())["format"] == "amc-plan/1"
    rebuilt = load_pruned(directory)
    assert count_macs_params(rebuilt, INPUT) == (plan.macs_after, plan.params_after)
    assert count_macs_params(base, INPUT) == (plan.macs_before, plan.params_before)
    assert plan.macs_after < plan.macs_before and plan.params_after < plan.params_before
    assert [len(k) for k in kept] == [g["kept_channels"] for g in plan.groups]
    assert all(torch.equal(a, b) for a, b in zip(loaded_plan.kept_indices, kept))
    assert loaded_plan.keep_ratios == [len(k) / g.channels for k, g in zip(kept, net.groups)]
    assert [g["root"] for g in plan.groups] == [g.root for g in net.groups]
    assert plan.input_shape == list(INPUT) and plan.exclude == ["layers.8.conv1"]


def test_plan_for_another_model_is_rejected(saved, tmp_path: Path) -> None:
    base, net, _, _, plan, directory = saved
    other = _base(seed=1)
    assert model_checksum(other) != model_checksum(base)
    assert model_checksum(_base()) == model_checksum(base)  # same weights, same checksum
    with pytest.raises(PlanError, match="checksum"):
        rebuild_pruned(other, plan, directory / "pruned.safetensors")
    with pytest.raises(PlanError, match="checksum"):
        check_plan(plan, net, model_checksum(other))
    other_checkpoint = save_checkpoint(other, tmp_path / "other.safetensors", model_spec=SPEC)
    with pytest.raises(PlanError, match="checksum"):
        load_pruned(directory, base_checkpoint=other_checkpoint)

    # same weights but other groups (no exclusion): the structure check catches it
    with pytest.raises(PlanError, match="groups"):
        check_plan(plan, PrunableNetwork(base, INPUT), model_checksum(base))


def test_pruned_weights_that_do_not_fit_are_rejected(saved, tmp_path: Path) -> None:
    base, _, _, _, plan, directory = saved
    other_dir = tmp_path / "other"
    net = PrunableNetwork(base, INPUT, exclude=["layers.8.conv1"])
    save_pruned(prune_copy(net, select_channels(net, net.channel_counts([0.9] * net.num_groups))), plan, other_dir)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_pruned(other_dir)


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '{"format": "amc-plan/0"}', '{"format": "amc-plan/1"}',
     '{"format": "amc-plan/1", "unknown": 1}'],
    ids=["syntax", "list", "other-format", "missing-fields", "unknown-field"],
)
def test_malformed_plan_raises_plan_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanError, match="plan"):
        PruningPlan.load(path)
    with pytest.raises(PlanError, match="not found"):
        PruningPlan.load(tmp_path / "missing.json")


def test_plan_without_checkpoint_needs_one(saved, tmp_path: Path) -> None:
    base, _, _, pruned, plan, _ = saved
    plan.base_model.pop("checkpoint")
    save_pruned(pruned, plan, tmp_path / "anonymous")
    with pytest.raises(PlanError, match="base_checkpoint"):
        load_pruned(tmp_path / "anonymous")
    checkpoint = save_checkpoint(base, tmp_path / "again.safetensors", model_spec=SPEC)
    x = torch.randn(2, *INPUT[1:])
    with torch.no_grad():
        assert torch.equal(load_pruned(tmp_path / "anonymous", base_checkpoint=checkpoint)(x), pruned(x))


def test_save_pruned_refuses_to_overwrite(saved) -> None:
    _, _, _, pruned, plan, directory = saved
    before = (directory / "pruned.safetensors").read_bytes(), (directory / "plan.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pruned(pruned, plan, directory)
    (directory / "pruned.safetensors").unlink()
    with pytest.raises(FileExistsError, match="plan.json"):  # either file is enough to refuse
        save_pruned(pruned, plan, directory)
    assert (directory / "plan.json").read_text() == before[1]


@pytest.mark.parametrize(("name", "round_to"), [("resnet20", 1), ("resnet20", 8), ("mobilenet_v2", 1)])
@pytest.mark.parametrize("target", [0.25, 0.5, 0.8])
def test_uniform_keep_ratio_is_the_largest_that_meets_the_target(name: str, round_to: int, target: float) -> None:
    torch.manual_seed(0)
    net = PrunableNetwork(build_model(name, in_channels=3, num_classes=10), INPUT, round_to=round_to)
    keep = uniform_keep_ratio(net, target)
    assert 0 < keep <= 1
    macs = lambda k: net.predict_macs(net.channel_counts([k] * net.num_groups))  # noqa: E731
    assert macs(keep) <= target * net.original_macs
    if keep < 1.0:  # one more channel (or multiple of round_to) in every group breaks the budget
        step = round_to / min(g.channels for g in net.groups)
        assert macs(min(1.0, keep + step)) > target * net.original_macs
    pruned = prune_copy(net, select_channels(net, net.channel_counts([keep] * net.num_groups)))
    assert count_macs_params(pruned, INPUT)[0] == macs(keep)


def test_uniform_keep_ratio_full_budget_and_bad_targets() -> None:
    net = PrunableNetwork(_base(), INPUT)
    assert uniform_keep_ratio(net, 1.0) == 1.0
    for bad in (0, 0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="target_macs_ratio"):
            uniform_keep_ratio(net, bad)
    floor = smallest_macs_ratio(net)
    assert 0 < floor < 0.05
    assert floor == net.predict_macs([1] * net.num_groups) / net.original_macs
    with pytest.raises(ValueError, match="unreachable") as e:
        uniform_keep_ratio(net, 1e-6)
    assert f"{floor:.4f}" in str(e.value)
    keep = uniform_keep_ratio(net, floor * 1.001)  # just reachable
    assert net.predict_macs(net.channel_counts([keep] * net.num_groups)) <= floor * 1.001 * net.original_macs


def test_smallest_macs_ratio_respects_round_to_and_lbound() -> None:
    base = _base()
    fine, coarse = PrunableNetwork(base, INPUT), PrunableNetwork(base, INPUT, round_to=8)
    assert smallest_macs_ratio(coarse) > smallest_macs_ratio(fine)
    assert smallest_macs_ratio(fine, lbound=0.5) == pytest.approx(
        fine.predict_macs(fine.channel_counts([0.5] * fine.num_groups)) / fine.original_macs)
    with pytest.raises(ValueError, match=f"{smallest_macs_ratio(coarse):.4f}"):
        uniform_keep_ratio(coarse, smallest_macs_ratio(coarse) * 0.99)


@pytest.mark.parametrize(
    "edit",
    [lambda g: g.update(kept_indices=[0, 999]), lambda g: g.update(kept_indices=[]),
     lambda g: g.update(kept_indices=[1, 1]), lambda g: g.update(kept_channels=g["kept_channels"] + 1),
     lambda g: g.update(kept_indices=["0"]), lambda g: g.pop("root")],
    ids=["out-of-range", "empty", "duplicate", "count-mismatch", "not-int", "no-root"],
)
def test_plan_with_invalid_groups_raises_plan_error(saved, tmp_path: Path, edit) -> None:
    base, _, _, _, plan, directory = saved
    raw = json.loads((directory / "plan.json").read_text())
    edit(raw["groups"][1])
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError, match="group"):
        rebuild_pruned(base, PruningPlan.load(path))


# --- plans that contradict themselves, files that are not UTF-8 JSON, non-finite weights, names from files ----------


def _edited_plan(directory: Path, tmp_path: Path, edit) -> Path:
    raw = json.loads((directory / "plan.json").read_text())
    edit(raw)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda g: g.update(keep_ratio=g["keep_ratio"] + 0.1), r"keep_ratio .* disagrees with kept_channels/channels"),
     (lambda g: g.update(keep_ratio=1.0), "disagrees"),
     (lambda g: g.update(kept_indices=g["kept_indices"][:-1]), r"needs kept_channels=\d+ distinct kept_indices"),
     (lambda g: g.update(kept_channels=g["kept_channels"] - 1, kept_indices=g["kept_indices"][:-1]), "disagrees"),
     (lambda g: g.update(keep_ratio="0.5"), "disagrees"),
     (lambda g: g.update(channels=0), "channels must be a positive int")],
    ids=["ratio-off", "ratio-one", "indices-short", "count-and-indices-without-ratio", "ratio-str", "no-channels"],
)
def test_plan_whose_keep_ratios_disagree_with_kept_indices_is_rejected(saved, tmp_path: Path, edit, message) -> None:
    *_, directory = saved
    path = _edited_plan(directory, tmp_path, lambda raw: edit(raw["groups"][2]))
    with pytest.raises(PlanError, match=rf"{re.escape(str(path))}: plan group 2 .*{message}"):
        PruningPlan.load(path)


@pytest.mark.parametrize("payload", [b"\xff\xfe{\x00}\x00", "{\"format\": \"amc-plan/1\", \"x\": \"\xe9\"}".encode("latin-1"),
                                     b"\x00\x01\x02"], ids=["utf16", "latin1", "binary"])
def test_plan_file_that_is_not_utf8_json_raises_plan_error(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(payload)
    with pytest.raises(PlanError, match=rf"{re.escape(str(path))} is not a valid amc plan \(not UTF-8 JSON"):
        PruningPlan.load(path)


def test_plan_with_the_wrong_number_of_groups_names_both_counts(saved, tmp_path: Path) -> None:
    base, net, *_, directory = saved
    path = _edited_plan(directory, tmp_path, lambda raw: raw.update(groups=raw["groups"][:5]))
    plan = PruningPlan.load(path)  # consistent on its own
    with pytest.raises(PlanError, match=f"plan has 5 groups, the model has {net.num_groups}"):
        rebuild_pruned(base, plan)
    with pytest.raises(PlanError, match=f"plan has 5 groups, the model has {net.num_groups}"):
        check_plan(plan, net, model_checksum(base))


def test_pruned_weights_with_nan_are_rejected(saved, tmp_path: Path) -> None:
    base, net, kept, pruned, plan, _ = saved
    with torch.no_grad():
        pruned.layers[2].conv2.weight.view(-1)[3] = float("nan")
    save_pruned(pruned, plan, tmp_path / "nan")
    with pytest.raises(CheckpointError, match=r"pruned weights .*nan.*'layers\.2\.conv2\.weight'.*NaN/Inf"):
        load_pruned(tmp_path / "nan")


def _tiny_pruned(tmp_path: Path, target: str, kwargs: dict) -> Path:
    """A tiny_net base saved under ``target`` (with recipe ``kwargs``), pruned and saved with its plan."""
    torch.manual_seed(0)
    base = build_model("tests.helpers.tiny_net", in_channels=3, num_classes=4, allow=["tests.helpers"]).eval()
    spec = {"target": target, "in_channels": 3, "num_classes": 4, "kwargs": kwargs}
    checkpoint = save_checkpoint(base, tmp_path / "base.safetensors", model_spec=spec)
    net = PrunableNetwork(base, INPUT)
    kept = select_channels(net, net.channel_counts([0.5] * net.num_groups))
    plan = make_plan(net, kept, base_model={**spec, "checksum": model_checksum(base), "checkpoint": str(checkpoint)})
    save_pruned(prune_copy(net, kept), plan, tmp_path / "pruned")
    return tmp_path / "pruned"


def test_load_pruned_resolves_the_base_model_only_under_allow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # ``tests`` importable
    directory = _tiny_pruned(tmp_path / "ok", "tests.helpers.tiny_net", {})
    with pytest.raises(CheckpointError, match=r"refused.*model_allow=\[tests\.helpers\]"):
        load_pruned(directory)
    model = load_pruned(directory, allow=["tests.helpers"])
    assert model(torch.randn(2, *INPUT[1:])).shape == (2, 4)

    marker = tmp_path / "pwned"  # a plan whose base checkpoint names logging.basicConfig
    evil = _tiny_pruned(tmp_path / "evil", "logging.basicConfig",
                        {"filename": str(marker), "filemode": "w", "force": True})
    with pytest.raises(CheckpointError, match=r"logging\.basicConfig"):
        load_pruned(evil)
    with pytest.raises(CheckpointError, match=r"logging\.basicConfig"):
        load_pruned(evil, allow=["tests.helpers"])
    assert not marker.exists()
