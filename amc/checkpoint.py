"""Checkpoints as safetensors: weights plus the JSON recipe to rebuild the model. Nothing is unpickled."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from amc.models import TargetNotAllowedError, build_model, check_target


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the model."""

def save_checkpoint(model: nn.Module, path: str | Path, *, model_spec: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s state dict with ``model_spec`` ({'target', 'in_channels', 'num_classes', 'kwargs'})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"model_spec": json.dumps(model_spec), "extra": json.dumps(extra or {})}
    save_file(state, str(path), metadata=meta)
    return path

def file_checksum(path: str | Path) -> str:
    """sha256 of a file, identifying a base model in plans."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Return (state_dict, model_spec, extra) of a safetensors checkpoint, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `python -m amc.train` or pass the right path")
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        spec = json.loads(meta["model_spec"])
        extra = json.loads(meta.get("extra", "{}"))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not an amc safetensors checkpoint ({type(e).__name__}: {e})"
        ) from e
    return state, spec, extra

def check_finite(state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Reject weights holding NaN or Inf, naming the first bad tensor (a diverged or tampered file)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = ~torch.isfinite(tensor)
            if bad.any():
                raise CheckpointError(f"{source}: tensor {name!r} holds {int(bad.sum())} NaN/Inf value(s) of "
                                      f"{tensor.numel()}; refusing to load non-finite weights")


def _check_spec(spec: Any, path: Path, allow: Sequence[str]) -> None:
    """The recipe is well-formed and its target may run: a zoo name or under ``allow``. Imports nothing."""
    if not isinstance(spec, dict) or "target" not in spec:
        raise CheckpointError(f"checkpoint {path} has an unusable model spec {spec!r}: it needs a 'target'")
    try:
        check_target(spec["target"], allow)
    except TargetNotAllowedError as e:
        raise CheckpointError(f"checkpoint {path} refused: {e}") from e
    for key in ("in_channels", "num_classes"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"checkpoint {path} has an unusable model spec: {key}={value!r}, expected a positive int")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or {"allow", "target", "in_channels", "num_classes"} & set(kwargs):
        raise CheckpointError(f"checkpoint {path} has unusable model kwargs {kwargs!r}: expected a JSON object of "
                              "builder arguments other than target, in_channels, num_classes and allow")


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, allow: Sequence[str] = ()
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model, model_spec).

    The file's ``target`` must be a zoo name or under one of the ``allow`` import prefixes (checked before any
    import: a downloaded file never chooses code to run); its weights must be finite.
    """
    path = Path(path)
    state, spec, _ = read_checkpoint(path)
    _check_spec(spec, path, allow)
    check_finite(state, f"checkpoint {path}")
    try:
        model = build_model(spec["target"], in_channels=spec["in_channels"], num_classes=spec["num_classes"],
                            allow=allow, **spec.get("kwargs", {}))
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} has an unusable model spec {spec}: {type(e).__name__}: {e}") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit model {spec['target']}: {e}") from e
    return model.to(map_location).eval(), spec
