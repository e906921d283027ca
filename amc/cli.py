"""Helpers shared by the hydra entry points: device, data and model-spec resolution."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from amc.checkpoint import load_checkpoint
from amc.data.base import DataSplits


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    return dev


def build_data(data_cfg: DictConfig) -> DataSplits:
    data = instantiate(data_cfg)
    if not isinstance(data, DataSplits):
        raise TypeError(f"data config {data_cfg.get('_target_')} built {type(data).__name__}, expected DataSplits")
    return data


def model_spec_from_cfg(model_cfg: DictConfig, data: DataSplits) -> dict[str, Any]:
    """Turn a model config (``_target_`` + kwargs) into the JSON spec stored in checkpoints and plans."""
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(cfg, dict)
    target = cfg.pop("_target_", None)
    cfg.pop("_partial_", None)
    if target is None:
        raise ValueError("model config needs a _target_ (a zoo name such as resnet20 or an import path)")
    return {"target": target, "in_channels": data.in_channels, "num_classes": data.num_classes, "kwargs": cfg}


def load_checkpoint_for(path: str, data: DataSplits, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a checkpoint and check that it fits the data (input channels, classes)."""
    model, spec = load_checkpoint(path, map_location=device)
    if (spec["in_channels"], spec["num_classes"]) != (data.in_channels, data.num_classes):
        raise ValueError(f"checkpoint {path} expects {spec['in_channels']} input channels and {spec['num_classes']} "
                         f"classes; data {data.name} has {data.in_channels} and {data.num_classes}")
    return model, spec
