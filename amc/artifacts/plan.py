"""Pruning plans (JSON) and pruned models saved as tensors + plan, rebuilt without unpickling classes."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from amc.artifacts.checkpoint import STATE_DICT_FORMAT, CheckpointError, check_finite, load_model
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
        """Read and validate a plan file (UTF-8 JSON, known format, self-consistent groups)."""
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan file {path} not found")
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PlanError(f"plan {path} is not a valid amc plan (not UTF-8 JSON: {e})") from e
        if not isinstance(raw, dict):
            raise PlanError(f"plan {path} is not a valid amc plan: expected a JSON object, got {type(raw).__name__}")
        if raw.get("format") != PLAN_FORMAT:
            raise PlanError(f"plan {path} has format {raw.get('format')!r}, expected {PLAN_FORMAT!r}")
        try:
            plan = cls(**raw)
        except TypeError as e:
            raise PlanError(f"plan {path} is not a valid amc plan: {e}") from e
        try:
            plan.validate()
        except PlanError as e:
            raise PlanError(f"plan {path}: {e}") from e
        return plan

    def validate(self) -> None:
        """Check the plan on its own: field types, and every group's kept_indices, kept_channels and keep_ratio agree."""
        if not isinstance(self.base_model, dict):
            raise PlanError(f"base_model must be an object, got {self.base_model!r}")
        checkpoint = self.base_model.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise PlanError(f"base_model.checkpoint must be a path string, got {checkpoint!r}")
        if not isinstance(self.input_shape, list) or not all(type(d) is int and d > 0 for d in self.input_shape):
            raise PlanError(f"input_shape must be a list of positive ints, got {self.input_shape!r}")
        if type(self.round_to) is not int or self.round_to < 1:
            raise PlanError(f"round_to must be a positive int, got {self.round_to!r}")
        if not isinstance(self.exclude, list) or not all(isinstance(x, str) for x in self.exclude):
            raise PlanError(f"exclude must be a list of layer names, got {self.exclude!r}")
        if not isinstance(self.groups, list) or not self.groups:
            raise PlanError(f"groups must be a non-empty list, got {str(self.groups)[:80]}")
        for i, g in enumerate(self.groups):
            _validate_group(i, g)


def _validate_group(position: int, g: Any) -> None:
    """One plan group: kept_indices distinct in [0, channels), len == kept_channels, keep_ratio == kept/channels."""
    if not isinstance(g, dict):
        raise PlanError(f"plan group {position} must be an object, got {str(g)[:80]}")
    missing = [k for k in ("root", "channels", "kept_channels", "keep_ratio", "kept_indices") if k not in g]
    if missing:
        raise PlanError(f"plan group {position} lacks {missing}")
    name = f"plan group {position} ({g['root']})"
    channels, kept, keep_ratio, idxs = g["channels"], g["kept_channels"], g["keep_ratio"], g["kept_indices"]
    if type(channels) is not int or channels < 1:
        raise PlanError(f"{name}: channels must be a positive int, got {channels!r}")
    if type(kept) is not int or not 1 <= kept <= channels:
        raise PlanError(f"{name}: kept_channels must be an int in [1, {channels}], got {kept!r}")
    if (not isinstance(idxs, list) or len(idxs) != kept or len(set(map(repr, idxs))) != len(idxs)
            or not all(type(i) is int and 0 <= i < channels for i in idxs)):
        raise PlanError(f"{name} needs kept_channels={kept} distinct kept_indices in [0, {channels}), "
                        f"got {len(idxs) if isinstance(idxs, list) else 'no list'}: {str(idxs)[:80]}")
    if (isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float))
            or not math.isclose(keep_ratio, kept / channels, rel_tol=1e-9, abs_tol=1e-12)):
        raise PlanError(f"{name}: keep_ratio {keep_ratio!r} disagrees with kept_channels/channels = "
                        f"{kept}/{channels} = {kept / channels:.6g}")


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
    """Reject a malformed plan or one made for another model (checksum, group count and structure)."""
    plan.validate()
    expected = plan.base_model.get("checksum")
    if expected != checksum:
        raise PlanError(
            f"plan is for base model {plan.base_model.get('target')} with checksum {str(expected)[:12]}..., "
            f"but the given model has checksum {checksum[:12]}...; use the checkpoint the plan was made from"
        )
    check_plan_structure(plan, net)


def check_plan_structure(plan: PruningPlan, net: PrunableNetwork) -> None:
    """Reject a plan whose groups (count, roots, channels) are not ``net``'s, naming the first mismatching group.

    Unlike :func:`check_plan` it does not ask for the same weights: a plan transfers to a retrained checkpoint of
    the same architecture (its kept channels are then re-selected on the new weights).
    """
    plan.validate()
    if len(plan.groups) != net.num_groups:
        raise PlanError(f"plan has {len(plan.groups)} groups, the model has {net.num_groups} (the plan was made with "
                        f"exclude={plan.exclude}, round_to={plan.round_to}); use the plan made for this model")
    roots = [(g.root, g.channels) for g in net.groups]
    planned = [(g["root"], g["channels"]) for g in plan.groups]
    if roots != planned:
        diff = next(i for i, (a, b) in enumerate(zip(roots, planned)) if a != b)
        raise PlanError(f"plan groups differ from the model's groups at group {diff}: (root, channels) "
                        f"{planned[diff]} in the plan, {roots[diff]} in the model; use the plan made for this model")


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
    """Apply ``plan`` to ``base`` (checked by checksum) and load the pruned weights if given (finite ones only).

    Nothing is resolved by name here: ``base`` is already built.
    """
    net = PrunableNetwork(base, plan.input_shape, exclude=plan.exclude, round_to=plan.round_to)
    check_plan(plan, net, model_checksum(base))
    model = prune_copy(net, plan.kept_indices)
    if weights is not None:
        try:
            state = load_file(str(weights))
        except Exception as e:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"pruned weights {weights} are corrupt: {type(e).__name__}: {e}") from e
        check_finite(state, f"pruned weights {weights}")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"pruned weights {weights} do not fit the plan: {e}") from e
    return model.eval()


def load_base(
    plan: PruningPlan, checkpoint: str | Path | None = None, *, allow: Sequence[str] = (),
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The base model ``plan`` applies to, from the checkpoint it names (or ``checkpoint``); returns (model, spec).

    A plain state-dict base is rebuilt with the model spec the plan recorded. Either way the model target resolves
    only to a zoo name or under ``allow`` (see ``load_checkpoint``): the plan is a file and chooses no code.
    """
    checkpoint = checkpoint or plan.base_model.get("checkpoint")
    if checkpoint is None:
        raise PlanError("the plan names no base checkpoint; pass it (base_checkpoint=)")
    spec = plan.base_model
    model_spec = None
    if spec.get("format") == STATE_DICT_FORMAT:
        model_spec = {k: spec[k] for k in ("target", "in_channels", "num_classes", "kwargs") if k in spec}
    return load_model(checkpoint, model_spec=model_spec, map_location=map_location, allow=allow)


def load_pruned(
    directory: str | Path, base_checkpoint: str | Path | None = None, *, allow: Sequence[str] = ()
) -> nn.Module:
    """Load ``directory``/{plan.json, pruned.safetensors} onto the base checkpoint named in the plan (or given).

    The base checkpoint's model target resolves only to a zoo name or under ``allow`` (see ``load_base``).
    """
    directory = Path(directory)
    plan = PruningPlan.load(directory / "plan.json")
    base, _ = load_base(plan, base_checkpoint, allow=allow)
    return rebuild_pruned(base, plan, directory / "pruned.safetensors")
