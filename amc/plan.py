"""Pruning plans (JSON) and pruned models saved as tensors + plan, rebuilt without unpickling classes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from amc.checkpoint import CheckpointError, load_checkpoint
from amc.pruning.groups import PrunableNetwork
from amc.pruning.surgery import prune_copy

PLAN_FORMAT = "amc-plan/1"


class PlanError(ValueError):
    """A plan is malformed or belongs to a different base model."""


def model_checksum(model: nn.Module) -> str:
    """sha256 over the state dict (names, shapes, bytes): identifies a base model independent of file format."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class PruningPlan:
    """Per-group keep ratios and kept channels of a pruned model, with the base model they apply to."""

    base_model: dict[str, Any]
    input_shape: list[int]
    round_to: int
    exclude: list[str]
    groups: list[dict[str, Any]]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    accuracy: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    format: str = PLAN_FORMAT

    @property
    def keep_ratios(self) -> list[float]:
        return [g["keep_ratio"] for g in self.groups]

    @property
    def kept_indices(self) -> list[torch.Tensor]:
        return [torch.tensor(g["kept_indices"], dtype=torch.long) for g in self.groups]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruningPlan:
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan file {path} not found")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != PLAN_FORMAT:
                raise PlanError(f"plan {path} has format {raw.get('format')!r}, expected {PLAN_FORMAT!r}")
            return cls(**raw)
        except (json.JSONDecodeError, TypeError, AttributeError) as e:
            raise PlanError(f"plan {path} is not a valid amc plan: {e}") from e


def make_plan(
    net: PrunableNetwork, kept: list[torch.Tensor], *, base_model: dict[str, Any], exclude: list[str] | None = None,
    accuracy: dict[str, float] | None = None, settings: dict[str, Any] | None = None,
) -> PruningPlan:
    """Describe a prune of ``net`` (``base_model`` = model spec + 'checksum') as a plan."""
    counts = [len(k) for k in kept]
    groups = [
        {"index": g.index, "root": g.root, "channels": g.channels, "kept_channels": n, "keep_ratio": n / g.channels,
         "kept_indices": k.tolist()}
        for g, n, k in zip(net.groups, counts, kept)
    ]
    return PruningPlan(
        base_model=base_model, input_shape=list(net.input_shape), round_to=net.round_to, exclude=list(exclude or []),
        groups=groups, macs_before=net.original_macs, macs_after=net.predict_macs(counts),
        params_before=net.original_params, params_after=net.predict_params(counts),
        accuracy=dict(accuracy or {}), settings=dict(settings or {}),
    )


def check_plan(plan: PruningPlan, net: PrunableNetwork, checksum: str) -> None:
    """Reject a plan made for another model (checksum, group structure)."""
    expected = plan.base_model.get("checksum")
    if expected != checksum:
        raise PlanError(
            f"plan is for base model {plan.base_model.get('target')} with checksum {str(expected)[:12]}..., "
            f"but the given model has checksum {checksum[:12]}...; use the checkpoint the plan was made from"
        )
    roots = [(g.root, g.channels) for g in net.groups]
    try:
        planned = [(g["root"], g["channels"]) for g in plan.groups]
    except (KeyError, TypeError) as e:
        raise PlanError(f"plan groups are malformed (each needs 'root' and 'channels'): {e!r}") from e
    if roots != planned:
        raise PlanError(f"plan groups {planned[:3]}... do not match the model's groups {roots[:3]}...")
    for g in plan.groups:
        idxs = g.get("kept_indices")
        if (not isinstance(idxs, list) or not idxs or len(idxs) != g.get("kept_channels") or len(set(idxs)) != len(idxs)
                or not all(isinstance(i, int) and 0 <= i < g["channels"] for i in idxs)):
            raise PlanError(f"plan group {g.get('index')} ({g['root']}) needs {g.get('kept_channels')} distinct "
                            f"kept_indices in [0, {g['channels']}), got {str(idxs)[:80]}")


def save_pruned(model: nn.Module, plan: PruningPlan, directory: str | Path) -> tuple[Path, Path]:
    """Write ``pruned.safetensors`` and ``plan.json`` into ``directory`` (refusing to overwrite)."""
    directory = Path(directory)
    weights, plan_path = directory / "pruned.safetensors", directory / "plan.json"
    for p in (weights, plan_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; refusing to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    plan.save(plan_path)
    return weights, plan_path


def rebuild_pruned(base: nn.Module, plan: PruningPlan, weights: str | Path | None = None) -> nn.Module:
    """Apply ``plan`` to ``base`` (checked by checksum) and load the pruned weights if given."""
    net = PrunableNetwork(base, plan.input_shape, exclude=plan.exclude, round_to=plan.round_to)
    check_plan(plan, net, model_checksum(base))
    model = prune_copy(net, plan.kept_indices)
    if weights is not None:
        try:
            state = load_file(str(weights))
            model.load_state_dict(state)
        except Exception as e:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"pruned weights {weights} are corrupt or do not fit the plan: {e}") from e
    return model.eval()


def load_pruned(directory: str | Path, base_checkpoint: str | Path | None = None) -> nn.Module:
    """Load ``directory``/{plan.json, pruned.safetensors} onto the base checkpoint named in the plan (or given)."""
    directory = Path(directory)
    plan = PruningPlan.load(directory / "plan.json")
    checkpoint = base_checkpoint or plan.base_model.get("checkpoint")
    if checkpoint is None:
        raise PlanError("the plan names no base checkpoint; pass base_checkpoint=")
    base, _ = load_checkpoint(checkpoint)
    return rebuild_pruned(base, plan, directory / "pruned.safetensors")
