"""Checkpoints: our safetensors (weights + the JSON recipe to rebuild the model) or a user's plain state dict.

A plain state dict (``torch.save(model.state_dict(), "m.pth")`` or a safetensors file without our metadata) comes
with a model spec the user gives (``model._target_=pkg.module.MyNet``). Nothing is unpickled: ``.pt``/``.pth`` files
are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from amc.models import TargetNotAllowedError, build_model, check_target

log = logging.getLogger(__name__)

# ``model_spec["format"]`` of a base model read from a user's plain state dict (absent: our safetensors checkpoint)
STATE_DICT_FORMAT = "state_dict"
# keys under which training scripts commonly nest the weights in a saved dict
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


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

def is_amc_checkpoint(path: str | Path) -> bool:
    """A safetensors file carrying our ``model_spec`` metadata (False for plain state dicts and other files)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return "model_spec" in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def looks_like_checkpoint(path: str | Path) -> bool:
    """The file starts like a safetensors file (an 8-byte header size, then JSON) or a ``torch.save`` file (a zip
    archive, or a legacy pickle): anything else (a README, an image) is not a checkpoint at all."""
    with Path(path).open("rb") as f:
        head = f.read(9)
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80" or (len(head) == 9 and head[8:9] == b"{")


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a plain checkpoint: a safetensors file, or a ``torch.save``d state dict read with
    ``weights_only=True`` (also nested under 'state_dict'/'model'/..., and with DataParallel's 'module.' prefix)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({type(e).__name__}: {e})") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} holds pickled objects, not only tensors, and is not unpickled: save the weights with "
            f"torch.save(model.state_dict(), path) (first line of the loader's refusal: {str(e).splitlines()[0]})") from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is not a torch.save file or safetensors file ({type(e).__name__}: {e})") from e
    state = _tensor_dict(obj)
    if state is None and isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            state = _tensor_dict(obj.get(key))
            if state is not None:
                log.info("%s: weights read from its %r entry", path, key)
                break
    if state is None:
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors (found {keys}); save it with "
                              f"torch.save(model.state_dict(), path)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from nn.DataParallel / DDP
    return state


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
    if spec.get("format", STATE_DICT_FORMAT) != STATE_DICT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown model spec format {spec.get('format')!r}")
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
    return _build_and_load(path, state, spec, map_location, allow), spec


def load_model(
    path: str | Path, *, model_spec: dict[str, Any] | None = None, map_location: str | torch.device = "cpu",
    allow: Sequence[str] = (),
) -> tuple[nn.Module, dict[str, Any]]:
    """Our checkpoint (``model_spec=None``), or a plain state dict built with ``model_spec``; returns (model, spec).

    ``model_spec`` is ``{'target', 'in_channels', 'num_classes', 'kwargs'}``; its target must be a zoo name or under
    ``allow`` (a caller whose user named the target on the command line allows it). The returned spec of a plain
    checkpoint carries ``format='state_dict'`` so a plan records how to rebuild its base.
    """
    path = Path(path)
    if model_spec is None:
        if path.is_file() and not looks_like_checkpoint(path):
            raise CheckpointError(f"checkpoint {path} is not a checkpoint (neither a safetensors file nor a torch.save "
                                  f"file): pass the path of a model.safetensors, or of a file written by "
                                  f"torch.save(model.state_dict(), path)")
        if path.is_file() and not is_amc_checkpoint(path):
            raise CheckpointError(
                f"checkpoint {path} is a plain state dict without a model spec: name the model it holds with "
                f"model._target_=<pkg.module.Class or function> (and +model.<arg>=<value> for its arguments)")
        return load_checkpoint(path, map_location, allow=allow)
    if is_amc_checkpoint(path):
        _, own, _ = read_checkpoint(path)
        raise CheckpointError(f"checkpoint {path} is an amc checkpoint of model {own.get('target')!r} and names its own "
                              f"model; drop model._target_={model_spec.get('target')} (it is for plain state dicts)")
    spec = {**model_spec, "format": STATE_DICT_FORMAT}
    return _build_and_load(path, read_state_dict(path), spec, map_location, allow), spec


def _build_and_load(path: Path, state: dict[str, torch.Tensor], spec: Any, map_location: str | torch.device,
                    allow: Sequence[str]) -> nn.Module:
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
        raise CheckpointError(f"checkpoint {path} does not fit model {spec['target']}: {_short(e)}") from e
    return model.to(map_location).eval()


def _short(error: Exception, lines: int = 6) -> str:
    """A load_state_dict error cut to its first lines (a mismatching model lists every tensor)."""
    text = str(error).splitlines()
    return "\n".join(text[:lines]) + (f"\n... ({len(text) - lines} more lines)" if len(text) > lines else "")
